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

use crate::relay::{BreakerState, JobId};
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
    /// Per key (dense request number): 1 + the virtual ns its job succeeded.
    succeeded_ns: Vec<u64>,
    ttl_ns: u64,
    /// Counted from outside: jobs that entered the queue, calls started,
    /// attempts that ended.
    queued_in: u64,
    calls: u64,
    attempts_ended: u64,
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
            succeeded_ns: Vec::new(),
            ttl_ns: crate::time::ms_to_nanos(idempotency_ttl_ms),
            queued_in: 0,
            calls: 0,
            attempts_ended: 0,
            checks: 0,
        }
    }

    /// A job entered the queue: accepted, or put back after its backoff.
    pub fn enqueued(&mut self) {
        self.queued_in += 1;
    }

    /// An attempt ended: it failed (timeout included), or its job succeeded.
    pub fn attempt_ended(&mut self) {
        self.attempts_ended += 1;
    }

    pub fn accepted(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        self.queued_in += 1;
        let i = job.slot();
        if i >= self.live.len() {
            self.live.resize((i + 1).max(self.live.len() * 2), 0);
        }
        if self.live[i] != 0 {
            return fail(
                at,
                format!(
                    "job {job} accepted while job {} holds its slot",
                    JobId(self.live[i] - 1)
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

    /// Queue length and calls in flight as counted from outside must stay
    /// within the bounds, and agree with what the relay reports.
    pub fn bounds(&mut self, at: Time, queue: (usize, usize), in_flight: (usize, usize)) -> Check {
        self.checks += 1;
        let queued = self.queued_in.saturating_sub(self.calls);
        let flying = self.calls.saturating_sub(self.attempts_ended);
        let (capacity, workers) = (queue.1, in_flight.1);
        if queued > capacity as u64 || self.queued_in < self.calls {
            let why = format!("{queued} jobs queued (counted outside), capacity {capacity}");
            return fail(at, why);
        }
        if flying > workers as u64 || self.calls < self.attempts_ended {
            let why = format!("{flying} calls in flight (counted outside) with {workers} workers");
            return fail(at, why);
        }
        if (queued, flying) != (queue.0 as u64, in_flight.0 as u64) {
            return fail(
                at,
                format!(
                    "outside count {queued} queued / {flying} in flight, relay says {} / {}",
                    queue.0, in_flight.0
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
        if i >= self.succeeded_ns.len() {
            self.succeeded_ns
                .resize(i.saturating_add(1).max(self.succeeded_ns.len() * 2), 0);
        }
        self.succeeded_ns[i] = at.as_nanos().saturating_add(1);
    }

    /// The store forgot `key` early (it was full): a repeat may run again.
    pub fn key_forgotten(&mut self, key: u64) {
        if let Some(t) = usize::try_from(key)
            .ok()
            .and_then(|i| self.succeeded_ns.get_mut(i))
        {
            *t = 0;
        }
    }

    /// A call for `key` starts: not allowed while the key's success is
    /// remembered.
    pub fn call_started(&mut self, at: Time, key: u64) -> Check {
        self.checks += 1;
        self.calls += 1;
        let done = usize::try_from(key)
            .ok()
            .and_then(|i| self.succeeded_ns.get(i))
            .copied()
            .unwrap_or(0);
        if done == 0 {
            return Ok(());
        }
        let succeeded = done - 1;
        if at.as_nanos() < succeeded.saturating_add(self.ttl_ns) {
            return fail(
                at,
                format!(
                    "key {key} succeeded at {} and reached the downstream again",
                    Time::from_nanos(succeeded)
                ),
            );
        }
        Ok(())
    }

    /// A call without a key starts.
    pub fn call_started_without_key(&mut self) {
        self.calls += 1;
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
    fn bounds_are_counted_from_outside() {
        let mut c = Checker::new(1000.0);
        for j in 0..3 {
            c.accepted(Time::ZERO, JobId(j)).expect("accepted");
        }
        assert!(
            c.bounds(Time::ZERO, (3, 2), (0, 1)).is_err(),
            "three queued, capacity two"
        );
        c.call_started_without_key();
        c.call_started_without_key();
        assert!(
            c.bounds(Time::ZERO, (1, 2), (2, 1)).is_err(),
            "two in flight, one worker"
        );
        c.attempt_ended();
        assert!(c.bounds(Time::ZERO, (1, 2), (1, 1)).is_ok());
        assert!(
            c.bounds(Time::ZERO, (0, 2), (1, 1)).is_err(),
            "the relay disagrees with the outside count"
        );
    }

    #[test]
    fn breaker_legality_is_checked() {
        let mut c = Checker::new(1000.0);
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
        assert!(c.call_started(Time::from_millis(20), 5).is_err());
        assert!(
            c.call_started(Time::from_millis(2000), 5).is_ok(),
            "record expired"
        );
        assert!(c.call_started(Time::from_millis(20), 6).is_ok());
        c.key_forgotten(5);
        assert!(
            c.call_started(Time::from_millis(20), 5).is_ok(),
            "store forgot it early"
        );
    }

    #[test]
    fn ledger_must_match_the_relay_at_the_end() {
        let mut c = Checker::new(1000.0);
        c.accepted(Time::ZERO, JobId(1)).expect("ok");
        assert!(c.at_end(Time::ZERO, 0).is_err());
        assert!(c.at_end(Time::ZERO, 1).is_ok());
    }
}
