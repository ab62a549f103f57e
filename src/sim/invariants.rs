//! The outside checker: watches a whole run and stops it on the first
//! violation of what must always hold.
//!
//! The relay asserts its own local invariants; this checker sees the system
//! from outside, through what goes in and comes out, so it catches what no
//! single component can see:
//!
//! - nothing lost: every accepted job ends exactly once (succeeded or
//!   dead-lettered), or is still in flight at the horizon;
//! - bounds held: queue length ≤ capacity, calls in flight ≤ workers, and
//!   the retry lane as counted from outside agrees with the relay; a retry
//!   starts only from the lane, new work only from the queue;
//! - breaker transitions legal (closed → open → half-open → closed | open);
//! - a key whose job succeeded never reaches the downstream again while
//!   its idempotency record lives;
//! - no accepted job dead-lettered because of the queue: a job ends in the
//!   dead-letter queue only right after one of its attempts failed (the
//!   retry policy gave up), never when its retry comes due;
//! - no success lost: every successful answer either ends its job as a
//!   success in the same step, or is reported as a late success that
//!   completed its job, or that the relay shows on the job (its status or
//!   dead letter), or whose job the relay no longer knows at all;
//! - a hedge is announced, and is an extra attempt of a live job that is in
//!   flight, never one waiting in the retry lane.

use crate::relay::{BreakerState, CallId, JobId, LateFate, RouteId, Stored};
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
    /// Job slot → the live job's [`mark`] (0: free). Slots are dense, so
    /// this is a vector, not a set; the slot is the index, so the mark
    /// names the job by its serial alone (4 bytes a slot, not 8).
    live: Vec<u32>,
    live_count: usize,
    /// Job slot → waiting in the retry lane (its backoff ended).
    in_lane: Vec<bool>,
    lane_count: usize,
    /// Each route's breaker, as its transitions say.
    breakers: Vec<BreakerState>,
    /// Per key (dense request number): 1 + the virtual ns its job succeeded.
    succeeded_ns: Vec<u64>,
    ttl_ns: u64,
    /// Counted from outside: jobs that entered the queue, calls started
    /// from it, all calls started, attempts that ended.
    queued_in: u64,
    queue_calls: u64,
    calls: u64,
    attempts_ended: u64,
    /// The attempt that failed last in this step: a dead letter must follow one.
    last_failed: Option<(JobId, u32)>,
    /// A successful answer the relay has not yet accounted for.
    success: Option<PendingSuccess>,
    /// Job slot → the [`mark`] of the last job called from it (0: none),
    /// and of the last job shed from it: a job shed by age is never called.
    called: Vec<u32>,
    shed: Vec<u32>,
    /// The job shed in this step whose end must follow.
    shed_pending: Option<JobId>,
    /// The hedge the relay announced; its call comes next.
    hedge_next: Option<CallId>,
    pub checks: u64,
}

/// A successful answer on its way through the relay in this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingSuccess {
    call: CallId,
    /// Reported late and completing its job: the job's success must follow.
    late_completes: bool,
}

type Check = Result<(), Violation>;

/// A job as its slot's entries name it: its serial + 1, so that 0 is free.
/// The relay never hands out serial `u32::MAX` (its serials are exhausted
/// there), so the sum fits.
fn mark(job: JobId) -> u32 {
    job.serial().saturating_add(1)
}

fn fail(at: Time, what: String) -> Check {
    Err(Violation { at, what })
}

impl Checker {
    pub fn new(idempotency_ttl_ms: f64) -> Checker {
        Checker {
            live: Vec::new(),
            live_count: 0,
            in_lane: Vec::new(),
            lane_count: 0,
            breakers: Vec::new(),
            succeeded_ns: Vec::new(),
            ttl_ns: crate::time::ms_to_nanos(idempotency_ttl_ms),
            queued_in: 0,
            queue_calls: 0,
            calls: 0,
            attempts_ended: 0,
            last_failed: None,
            success: None,
            called: Vec::new(),
            shed: Vec::new(),
            shed_pending: None,
            hedge_next: None,
            checks: 0,
        }
    }

    /// Reserves room for `slots` job slots, so the per-slot vectors never
    /// reallocate while a run fills them.
    pub fn with_slots(mut self, slots: usize) -> Checker {
        self.live.reserve(slots);
        self.in_lane.reserve(slots);
        self.called.reserve(slots);
        self
    }

    /// The checker for a relay restarted from `stored`: what it must know
    /// is what the store kept (its unfinished jobs, queued or, if they had
    /// started, in the retry lane; its replays), nothing of the crashed
    /// relay's memory.
    pub fn restarted(&self, at: Time, stored: &Stored<u64, ()>) -> Result<Checker, Violation> {
        let mut c = Checker {
            ttl_ns: self.ttl_ns,
            checks: self.checks,
            ..Checker::new(0.0)
        };
        for r in &stored.replays {
            c.key_succeeded(r.finished_at, r.key);
        }
        for j in &stored.jobs {
            c.adopted(at, j.job, j.attempts > 0)?;
        }
        Ok(c)
    }

    /// A job taken from a store: live, queued, or in the retry lane when it
    /// had started an attempt.
    pub fn adopted(&mut self, at: Time, job: JobId, in_lane: bool) -> Check {
        self.accepted(at, job)?;
        if in_lane {
            self.queued_in -= 1;
            self.in_lane[job.slot()] = true;
            self.lane_count += 1;
        }
        Ok(())
    }

    /// A job entered the queue by another way than acceptance (a redrive).
    pub fn enqueued(&mut self) {
        self.queued_in += 1;
    }

    /// A job's backoff ended: it waits in the retry lane.
    pub fn requeued(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        if !self.is_live(job) || self.in_lane[job.slot()] {
            return fail(
                at,
                format!("job {job} entered the retry lane twice, or not live"),
            );
        }
        self.in_lane[job.slot()] = true;
        self.lane_count += 1;
        Ok(())
    }

    /// Attempt `attempt` of `job` failed (timeout included).
    pub fn attempt_failed(&mut self, job: JobId, attempt: u32) {
        self.attempts_ended += 1;
        self.last_failed = Some((job, attempt));
    }

    /// The relay announced a hedge: attempt `attempt` of `job`, whose
    /// call comes next.
    pub fn hedge_sent(&mut self, at: Time, job: JobId, attempt: u32) -> Check {
        self.checks += 1;
        let in_lane = self.in_lane.get(job.slot()).copied().unwrap_or(false);
        if !self.is_live(job) || in_lane || attempt < 2 {
            let why = format!(
                "hedge {attempt} of job {job}: not live, not in flight, or a first attempt"
            );
            return fail(at, why);
        }
        self.hedge_next = Some(CallId { job, attempt });
        Ok(())
    }

    /// The relay stopped waiting for an attempt: another attempt won.
    pub fn attempt_abandoned(&mut self) {
        self.attempts_ended += 1;
    }

    fn is_live(&self, job: JobId) -> bool {
        self.live.get(job.slot()) == Some(&mark(job))
    }

    /// Takes `job` out of the retry lane if it waits there.
    fn leave_lane(&mut self, job: JobId) -> bool {
        match self.in_lane.get_mut(job.slot()) {
            Some(waiting) if *waiting => {
                *waiting = false;
                self.lane_count -= 1;
                true
            }
            _ => false,
        }
    }

    pub fn accepted(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        self.queued_in += 1;
        let i = job.slot();
        if i >= self.live.len() {
            self.live.resize(i + 1, 0);
            self.in_lane.resize(i + 1, false);
        }
        if self.live[i] != 0 {
            return fail(
                at,
                format!(
                    "job {job} accepted while job {} holds its slot",
                    JobId::new(self.live[i] - 1, i)
                ),
            );
        }
        self.live[i] = mark(job);
        self.live_count += 1;
        Ok(())
    }

    pub fn finished(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        match self.live.get_mut(job.slot()) {
            Some(held) if *held == mark(job) => {
                *held = 0;
                self.live_count -= 1;
                self.leave_lane(job);
                Ok(())
            }
            _ => fail(
                at,
                format!("job {job} ended but was not live (ended twice, or never accepted)"),
            ),
        }
    }

    /// Queue length, retry lane and calls in flight as counted from outside
    /// must stay within the bounds, and agree with what the relay reports.
    pub fn bounds(
        &mut self,
        at: Time,
        queue: (usize, usize),
        lane: usize,
        in_flight: (usize, usize),
    ) -> Check {
        self.checks += 1;
        let queued = self.queued_in.saturating_sub(self.queue_calls);
        let flying = self.calls.saturating_sub(self.attempts_ended);
        let (capacity, workers) = (queue.1, in_flight.1);
        if lane != self.lane_count {
            let why = format!(
                "{} retries waiting (counted outside), relay says {lane}",
                self.lane_count
            );
            return fail(at, why);
        }
        if queued > capacity as u64 || self.queued_in < self.queue_calls {
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

    pub fn breaker(
        &mut self,
        at: Time,
        route: RouteId,
        from: BreakerState,
        to: BreakerState,
    ) -> Check {
        self.checks += 1;
        let r = route.index();
        if r >= self.breakers.len() {
            self.breakers.resize(r + 1, BreakerState::Closed);
        }
        let now = self.breakers[r];
        if from != now || !from.can_become(to) {
            return fail(
                at,
                format!("breaker of route {r} went {from:?} -> {to:?} while {now:?}"),
            );
        }
        self.breakers[r] = to;
        Ok(())
    }

    pub fn key_succeeded(&mut self, at: Time, key: u64) {
        let Ok(i) = usize::try_from(key) else { return };
        if i >= self.succeeded_ns.len() {
            self.succeeded_ns.resize(i.saturating_add(1), 0);
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

    /// A call starts: a retry from the lane, a first attempt from the queue.
    pub fn call_started(&mut self, at: Time, call: CallId, key: Option<u64>) -> Check {
        self.checks += 1;
        self.calls += 1;
        if let Some(hedge) = self.hedge_next.take() {
            if hedge != call {
                return fail(
                    at,
                    format!("hedge {hedge:?} announced, call {call:?} started"),
                );
            }
            return key.map_or(Ok(()), |key| self.key_not_completed(at, key));
        }
        let retry = call.attempt > 1;
        if self.leave_lane(call.job) != retry {
            let why = format!(
                "attempt {} of job {} started, {} the retry lane",
                call.attempt,
                call.job,
                if retry { "not from" } else { "from" }
            );
            return fail(at, why);
        }
        if !retry {
            self.queue_calls += 1;
        }
        if Self::holds(&self.shed, call.job) {
            return fail(at, format!("job {} was called after it was shed", call.job));
        }
        Self::note(&mut self.called, call.job);
        key.map_or(Ok(()), |key| self.key_not_completed(at, key))
    }

    /// A call for `key` is not allowed while the key's success is remembered.
    fn key_not_completed(&self, at: Time, key: u64) -> Check {
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

    /// The downstream answered `call` with a success; the relay must account
    /// for it before the step ends.
    pub fn success_answered(&mut self, at: Time, call: CallId) -> Check {
        self.checks += 1;
        if let Some(p) = self.success.replace(PendingSuccess {
            call,
            late_completes: false,
        }) {
            return fail(
                at,
                format!("the success of {:?} was not accounted for", p.call),
            );
        }
        Ok(())
    }

    /// The relay reported a late success. `shown`: whether the relay's view
    /// of the job shows a late success, `None` when it knows no such job.
    pub fn late_success(
        &mut self,
        at: Time,
        call: CallId,
        fate: LateFate,
        shown: Option<bool>,
    ) -> Check {
        self.checks += 1;
        if self.success.map(|p| p.call) != Some(call) {
            return fail(
                at,
                format!("late success of {call:?} reported, but no such answer came"),
            );
        }
        let kept = match fate {
            LateFate::CompletedJob => true,
            LateFate::Recorded => shown == Some(true),
            LateFate::JobForgotten => shown.is_none(),
        };
        if !kept {
            let why = format!(
                "late success of {call:?} lost: reported {fate:?}, the job's view shows {shown:?}"
            );
            return fail(at, why);
        }
        self.success = (fate == LateFate::CompletedJob).then_some(PendingSuccess {
            call,
            late_completes: true,
        });
        Ok(())
    }

    /// A job ended as a success: it follows a successful answer for it, in
    /// time (its attempt ends here) or late (its attempt ended at the timeout).
    pub fn succeeded(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        match self.success.take() {
            Some(p) if p.call.job == job => {
                if !p.late_completes {
                    self.attempts_ended += 1;
                }
                Ok(())
            }
            other => fail(
                at,
                format!("job {job} succeeded, but the success on its way was {other:?}"),
            ),
        }
    }

    /// A job was dead-lettered after `attempts` attempts: the last of them
    /// must have just failed. A retry refused for want of room would not be.
    pub fn dead_lettered(&mut self, at: Time, job: JobId, attempts: u32) -> Check {
        self.checks += 1;
        if self.last_failed.take() != Some((job, attempts)) {
            let why = format!(
                "job {job} dead-lettered after {attempts} attempts, but not right after a failed attempt: an accepted job must not be dead-lettered for want of room"
            );
            return fail(at, why);
        }
        Ok(())
    }

    fn holds(slots: &[u32], job: JobId) -> bool {
        slots.get(job.slot()) == Some(&mark(job))
    }

    fn note(slots: &mut Vec<u32>, job: JobId) {
        let i = job.slot();
        if i >= slots.len() {
            slots.resize(i + 1, 0);
        }
        slots[i] = mark(job);
    }

    /// A job left the queue shed by age: it must be live, never called, and
    /// its end must follow in this step.
    pub fn shed(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        self.queue_calls += 1;
        if !self.is_live(job) || self.in_lane.get(job.slot()) == Some(&true) {
            return fail(at, format!("job {job} shed but not waiting in the queue"));
        }
        if Self::holds(&self.called, job) {
            return fail(at, format!("job {job} shed by age after it was called"));
        }
        Self::note(&mut self.shed, job);
        self.shed_pending = Some(job);
        Ok(())
    }

    /// A job ended with reason `shed`: it must be the one just shed.
    pub fn shed_finished(&mut self, at: Time, job: JobId) -> Check {
        self.checks += 1;
        if self.shed_pending.take() != Some(job) {
            return fail(at, format!("job {job} ended as shed without being shed"));
        }
        Ok(())
    }

    /// After each step: every successful answer has been accounted for.
    pub fn end_of_step(&mut self, at: Time) -> Check {
        self.last_failed = None;
        if let Some(job) = self.shed_pending.take() {
            return fail(at, format!("job {job} was shed but never ended"));
        }
        match self.success.take() {
            None => Ok(()),
            Some(p) => fail(
                at,
                format!(
                    "the success of attempt {} of job {} was lost: it neither ended the job nor was recorded",
                    p.call.attempt, p.call.job
                ),
            ),
        }
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
    fn a_shed_job_that_was_called_or_is_called_is_caught() {
        let t = Time::ZERO;
        let (a, b) = (JobId(1), JobId(2));
        let mut c = Checker::new(1000.0);
        c.accepted(t, a).expect("accepted");
        c.accepted(t, b).expect("accepted");
        c.call_started(t, CallId { job: a, attempt: 1 }, None)
            .expect("first try");
        assert!(c.shed(t, a).is_err(), "called, then shed");
        c.shed(t, b).expect("never called");
        c.finished(t, b).expect("ends");
        c.shed_finished(t, b).expect("the job just shed");
        assert!(c.shed_finished(t, b).is_err(), "ended as shed twice");
        let late = c.call_started(t, CallId { job: b, attempt: 1 }, None);
        assert!(late.is_err(), "shed, then called");
        let mut c = Checker::new(1000.0);
        c.accepted(t, a).expect("accepted");
        c.shed(t, a).expect("shed");
        assert!(c.end_of_step(t).is_err(), "shed but never ended");
    }

    #[test]
    fn a_hedge_must_be_announced_and_of_a_live_job() {
        let mut c = Checker::new(1000.0);
        c.accepted(Time::ZERO, JobId(0)).expect("accepted");
        c.call_started(Time::ZERO, call(0, 1), None)
            .expect("first try");
        assert!(
            c.call_started(Time::ZERO, call(0, 2), None).is_err(),
            "an unannounced second attempt is a retry not from the lane"
        );
        let mut c = Checker::new(1000.0);
        c.accepted(Time::ZERO, JobId(0)).expect("accepted");
        c.call_started(Time::ZERO, call(0, 1), None)
            .expect("first try");
        c.hedge_sent(Time::ZERO, JobId(0), 2).expect("live job");
        c.call_started(Time::ZERO, call(0, 2), None)
            .expect("announced");
        assert!(
            c.hedge_sent(Time::ZERO, JobId(9), 2).is_err(),
            "no such job"
        );
        c.hedge_sent(Time::ZERO, JobId(0), 3).expect("live job");
        assert!(
            c.call_started(Time::ZERO, call(0, 4), None).is_err(),
            "not the call announced"
        );
    }

    #[test]
    fn a_job_that_ends_twice_is_caught() {
        let mut c = Checker::new(1000.0);
        c.accepted(Time::ZERO, JobId(1)).expect("first");
        c.finished(Time::ZERO, JobId(1)).expect("ends once");
        assert!(c.finished(Time::ZERO, JobId(1)).is_err());
        assert!(c.finished(Time::ZERO, JobId(2)).is_err(), "never accepted");
    }

    fn call(job: u64, attempt: u32) -> CallId {
        CallId {
            job: JobId(job),
            attempt,
        }
    }

    #[test]
    fn bounds_are_counted_from_outside() {
        let mut c = Checker::new(1000.0);
        for j in 0..3 {
            c.accepted(Time::ZERO, JobId(j)).expect("accepted");
        }
        assert!(
            c.bounds(Time::ZERO, (3, 2), 0, (0, 1)).is_err(),
            "three queued, capacity two"
        );
        c.call_started(Time::ZERO, call(0, 1), None).expect("first");
        c.call_started(Time::ZERO, call(1, 1), None).expect("first");
        assert!(
            c.bounds(Time::ZERO, (1, 2), 0, (2, 1)).is_err(),
            "two in flight, one worker"
        );
        c.attempt_failed(JobId(0), 1);
        assert!(c.bounds(Time::ZERO, (1, 2), 0, (1, 1)).is_ok());
        assert!(
            c.bounds(Time::ZERO, (0, 2), 0, (1, 1)).is_err(),
            "the relay disagrees with the outside count"
        );
    }

    #[test]
    fn retries_wait_in_the_lane_and_only_retries_start_from_it() {
        let mut c = Checker::new(1000.0);
        c.accepted(Time::ZERO, JobId(0)).expect("accepted");
        c.call_started(Time::ZERO, call(0, 1), None).expect("first");
        c.attempt_failed(JobId(0), 1);
        assert!(
            c.call_started(Time::ZERO, call(0, 2), None).is_err(),
            "a retry that skipped the lane"
        );
        let mut c = Checker::new(1000.0);
        c.accepted(Time::ZERO, JobId(0)).expect("accepted");
        c.call_started(Time::ZERO, call(0, 1), None).expect("first");
        c.attempt_failed(JobId(0), 1);
        c.requeued(Time::ZERO, JobId(0)).expect("waits");
        assert!(c.requeued(Time::ZERO, JobId(0)).is_err(), "twice");
        assert!(
            c.bounds(Time::ZERO, (0, 2), 0, (0, 1)).is_err(),
            "relay lost it"
        );
        assert!(c.bounds(Time::ZERO, (0, 2), 1, (0, 1)).is_ok());
        c.call_started(Time::ZERO, call(0, 2), None)
            .expect("from the lane");
        assert!(c.bounds(Time::ZERO, (0, 2), 0, (1, 1)).is_ok());
    }

    #[test]
    fn a_dead_letter_not_right_after_a_failed_attempt_is_caught() {
        let mut c = Checker::new(1000.0);
        let t = Time::from_millis(5);
        c.attempt_failed(JobId(1), 2);
        assert!(c.dead_lettered(t, JobId(1), 2).is_ok(), "policy gave up");
        // The old queue-full-on-retry: the attempt failed in an earlier
        // step, the job is dead-lettered when its retry comes due.
        c.attempt_failed(JobId(1), 1);
        c.end_of_step(t).expect("nothing pending");
        assert!(c.dead_lettered(t, JobId(1), 1).is_err());
        c.attempt_failed(JobId(2), 1);
        assert!(
            c.dead_lettered(t, JobId(1), 1).is_err(),
            "another job's failure"
        );
    }

    #[test]
    fn a_success_neither_used_nor_recorded_is_caught() {
        let t = Time::from_millis(5);
        let answered = || {
            let mut c = Checker::new(1000.0);
            c.success_answered(t, call(1, 1)).expect("first");
            c
        };
        assert!(answered().end_of_step(t).is_err(), "dropped on the floor");
        // What the relay says became of it, against what its view shows.
        let lost = [
            (LateFate::Recorded, Some(false), "said recorded, not shown"),
            (LateFate::Recorded, None, "said recorded, the job unknown"),
            (
                LateFate::JobForgotten,
                Some(true),
                "said forgotten, yet known",
            ),
        ];
        for (fate, shown, why) in lost {
            let late = answered().late_success(t, call(1, 1), fate, shown);
            assert!(late.is_err(), "{why}");
        }
        let mut c = answered();
        c.late_success(t, call(1, 1), LateFate::CompletedJob, None)
            .expect("completes");
        assert!(c.end_of_step(t).is_err(), "said completed, no success");
        let mut c = answered();
        c.late_success(t, call(1, 1), LateFate::CompletedJob, None)
            .expect("completes");
        c.succeeded(t, JobId(1)).expect("the job's success");
        c.end_of_step(t).expect("accounted for");
        c.success_answered(t, call(1, 2)).expect("next");
        c.late_success(t, call(1, 2), LateFate::Recorded, Some(true))
            .expect("kept");
        c.end_of_step(t).expect("accounted for");
        assert!(
            c.succeeded(t, JobId(1)).is_err(),
            "a success with no answer"
        );
    }

    #[test]
    fn breaker_legality_is_checked() {
        let mut c = Checker::new(1000.0);
        assert!(c
            .breaker(
                Time::ZERO,
                RouteId::DEFAULT,
                BreakerState::Closed,
                BreakerState::Open
            )
            .is_ok());
        assert!(c
            .breaker(
                Time::ZERO,
                RouteId::DEFAULT,
                BreakerState::Open,
                BreakerState::Closed
            )
            .is_err());
    }

    #[test]
    fn a_completed_key_reaching_the_downstream_again_is_caught() {
        let mut c = Checker::new(1000.0);
        c.key_succeeded(Time::from_millis(10), 5);
        assert!(c
            .call_started(Time::from_millis(20), call(5, 1), Some(5))
            .is_err());
        assert!(
            c.call_started(Time::from_millis(2000), call(5, 1), Some(5))
                .is_ok(),
            "record expired"
        );
        assert!(c
            .call_started(Time::from_millis(20), call(6, 1), Some(6))
            .is_ok());
        c.key_forgotten(5);
        assert!(
            c.call_started(Time::from_millis(20), call(5, 1), Some(5))
                .is_ok(),
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
