//! The outside checker: watches a whole run and stops it on the first
//! violation of what must always hold.
//!
//! The relay asserts its own local invariants; this checker sees the system
//! from outside, through what goes in and comes out, so it catches what no
//! single component can see:
//!
//! - nothing lost: every accepted job ends exactly once (succeeded or
//!   dead-lettered), or is still in flight at the horizon;
//! - bounds held: queue length ≤ capacity, calls in flight ≤ workers;
//! - breaker transitions legal (closed → open → half-open → closed | open);
//! - a key whose job succeeded never reaches the downstream again while
//!   its idempotency record lives.

use crate::relay::breaker::BreakerState;
use crate::relay::job::JobId;
use crate::time::Time;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at: Time,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant violated at t={}: {}", self.at, self.what)
    }
}

pub struct Checker {
    /// Job slot → the live job's id + 1 (0: free). Slots are dense, so this
    /// is a vector, not a set.
    live: Vec<u64>,
    live_count: usize,
    breaker: BreakerState,
    /// Per key (dense request number): 1 + the millisecond its job succeeded.
    succeeded_ms: Vec<u32>,
    ttl_ms: f64,
    pub checks: u64,
}

type Check = Result<(), Violation>;

fn fail(at: Time, what: String) -> Check {
    Err(Violation { at, what })
}

impl Checker {
    pub fn new(idempotency_ttl_ms: f64) -> Checker {
        Checker {
            live: Vec::new(),
            live_count: 0,
            breaker: BreakerState::Closed,
            succeeded_ms: Vec::new(),
            ttl_ms: idempotency_ttl_ms,
            checks: 0,
        }
    }

    pub fn accepted(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        let i = job.slot();
        if i >= self.live.len() {
            self.live.resize((i + 1).max(self.live.len() * 2), 0);
        }
        if self.live[i] != 0 {
            return fail(
                at,
                format!(
                    "job {job} accepted while job {} holds its slot",
                    self.live[i] - 1
                ),
            );
        }
        self.live[i] = job.0 + 1;
        self.live_count += 1;
        Ok(())
    }

    pub fn finished(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        match self.live.get_mut(job.slot()) {
            Some(held) if *held == job.0 + 1 => {
                *held = 0;
                self.live_count -= 1;
                Ok(())
            }
            _ => fail(
                at,
                format!("job {job} ended but was not live (ended twice, or never accepted)"),
            ),
        }
    }

    pub fn bounds(&mut self, at: Time, queue: (usize, usize), in_flight: (usize, usize)) -> Check {
        self.checks += 1;
        if queue.0 > queue.1 {
            return fail(
                at,
                format!("queue holds {} jobs, capacity {}", queue.0, queue.1),
            );
        }
        if in_flight.0 > in_flight.1 {
            return fail(
                at,
                format!(
                    "{} calls in flight with {} workers",
                    in_flight.0, in_flight.1
                ),
            );
        }
        Ok(())
    }

    pub fn breaker(&mut self, at: Time, from: BreakerState, to: BreakerState) -> Check {
        self.checks += 1;
        if from != self.breaker || !from.can_become(to) {
            return fail(
                at,
                format!("breaker went {from:?} -> {to:?} while {:?}", self.breaker),
            );
        }
        self.breaker = to;
        Ok(())
    }

    pub fn key_succeeded(&mut self, at: Time, key: u64) {
        let Ok(i) = usize::try_from(key) else { return };
        if i >= self.succeeded_ms.len() {
            self.succeeded_ms
                .resize(i.saturating_add(1).max(self.succeeded_ms.len() * 2), 0);
        }
        self.succeeded_ms[i] = (at.as_millis_f64() as u32).saturating_add(1);
    }

    /// A call for `key` starts. `evicted_early` says whether the store has
    /// ever forgotten a record before its TTL (then a repeat is allowed).
    pub fn call_started(&mut self, at: Time, key: u64, evicted_early: bool) -> Check {
        self.checks += 1;
        let done = usize::try_from(key)
            .ok()
            .and_then(|i| self.succeeded_ms.get(i))
            .copied()
            .unwrap_or(0);
        if done == 0 || evicted_early {
            return Ok(());
        }
        let succeeded_ms = f64::from(done - 1);
        if at.as_millis_f64() + 1.0 < succeeded_ms + self.ttl_ms {
            return fail(
                at,
                format!(
                    "key {key} succeeded at {succeeded_ms} ms and reached the downstream again"
                ),
            );
        }
        Ok(())
    }

    /// At the horizon: the jobs the checker saw live are the relay's.
    pub fn at_end(&mut self, at: Time, relay_live: usize) -> Check {
        if self.live_count != relay_live {
            return fail(
                at,
                format!(
                    "{} jobs live by the ledger, {} by the relay",
                    self.live_count, relay_live
                ),
            );
        }
        Ok(())
    }

    pub fn live(&self) -> usize {
        self.live_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_that_ends_twice_is_caught() {
        let mut c = Checker::new(1000.0);
        c.accepted(Time::ZERO, JobId(1)).expect("first");
        c.finished(Time::ZERO, JobId(1)).expect("ends once");
        assert!(c.finished(Time::ZERO, JobId(1)).is_err());
        assert!(c.finished(Time::ZERO, JobId(2)).is_err(), "never accepted");
    }

    #[test]
    fn bounds_and_breaker_legality_are_checked() {
        let mut c = Checker::new(1000.0);
        assert!(c.bounds(Time::ZERO, (3, 2), (0, 1)).is_err());
        assert!(c.bounds(Time::ZERO, (2, 2), (2, 1)).is_err());
        assert!(c.bounds(Time::ZERO, (2, 2), (1, 1)).is_ok());
        assert!(c
            .breaker(Time::ZERO, BreakerState::Closed, BreakerState::Open)
            .is_ok());
        assert!(c
            .breaker(Time::ZERO, BreakerState::Open, BreakerState::Closed)
            .is_err());
    }

    #[test]
    fn a_completed_key_reaching_the_downstream_again_is_caught() {
        let mut c = Checker::new(1000.0);
        c.key_succeeded(Time::from_millis(10), 5);
        assert!(c.call_started(Time::from_millis(20), 5, false).is_err());
        assert!(
            c.call_started(Time::from_millis(20), 5, true).is_ok(),
            "store evicted early"
        );
        assert!(
            c.call_started(Time::from_millis(2000), 5, false).is_ok(),
            "record expired"
        );
        assert!(c.call_started(Time::from_millis(20), 6, false).is_ok());
    }

    #[test]
    fn ledger_must_match_the_relay_at_the_end() {
        let mut c = Checker::new(1000.0);
        c.accepted(Time::ZERO, JobId(1)).expect("ok");
        assert!(c.at_end(Time::ZERO, 0).is_err());
        assert!(c.at_end(Time::ZERO, 1).is_ok());
    }
}
