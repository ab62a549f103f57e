//! What happened per bucket of virtual time: the over-time view of a run
//! (goodput, retries, timeouts, calls in progress), for charts of how an
//! overload starts and whether it ends.

use super::trace::SimRecord;
use crate::time::{ms_to_nanos, Time};
use serde::Serialize;

/// Counts per time bucket, one vector each, all of one length.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Series {
    /// Client sends, first tries and retries.
    pub starts: Vec<u32>,
    /// First tries of logical requests, sent or rejected locally by
    /// adaptive throttling: the offered load.
    pub first_tries: Vec<u32>,
    /// Client re-sends.
    pub retries: Vec<u32>,
    /// Logical requests that succeeded (the client heard it).
    pub successes: Vec<u32>,
    /// Client attempt timeouts.
    pub timeouts: Vec<u32>,
    /// Downstream calls started (at the downstream).
    pub calls: Vec<u32>,
    /// Downstream calls in progress at the end of the bucket, including
    /// ones whose caller gave up.
    pub in_progress: Vec<u32>,
    /// 429/503 answers of the relay to clients.
    pub refusals: Vec<u32>,
    /// Client retries not made because of a budget, breaker or throttle.
    pub budget_denied: Vec<u32>,
}

/// Which count an event adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    FirstTry,
    /// A first try adaptive throttling rejected before it left the client:
    /// offered load all the same (a first try), and a denial.
    FirstTryThrottled,
    Retry,
    Success,
    Timeout,
    Call,
    Refusal,
    BudgetDenied,
}

impl Count {
    /// What a client's record adds to, if anything (both worlds count the
    /// clients' records the same way).
    pub fn of_client_record(r: &SimRecord) -> Option<Count> {
        Some(match r {
            SimRecord::Send { send: 1, .. } => Count::FirstTry,
            SimRecord::Send { .. } => Count::Retry,
            SimRecord::ClientTimeout { .. } => Count::Timeout,
            SimRecord::ClientDone {
                outcome: "succeeded" | "replayed",
                ..
            } => Count::Success,
            // Only throttling can refuse a first try (budgets and breakers
            // govern retries): it was offered all the same.
            SimRecord::ClientRetryDenied { send: 1, .. } => Count::FirstTryThrottled,
            SimRecord::ClientRetryDenied { .. } => Count::BudgetDenied,
            _ => return None,
        })
    }
}

/// Buckets a series keeps, at most; events past the last are not counted.
pub const SERIES_BUCKETS_MAX: usize = 1_000_000;

/// Fills a [`Series`] as the run goes.
pub struct SeriesRecorder {
    bucket_ns: u64,
    series: Series,
    /// Calls in progress now, carried into buckets where nothing changed.
    level: u32,
}

impl SeriesRecorder {
    pub fn new(bucket_ms: f64) -> SeriesRecorder {
        SeriesRecorder {
            bucket_ns: ms_to_nanos(bucket_ms).max(1),
            series: Series::default(),
            level: 0,
        }
    }

    /// The bucket of `t`, grown into, or `None` past the bound.
    fn bucket(&mut self, t: Time) -> Option<usize> {
        let i = usize::try_from(t.as_nanos() / self.bucket_ns).ok()?;
        if i >= SERIES_BUCKETS_MAX {
            return None;
        }
        let s = &mut self.series;
        if i >= s.starts.len() {
            let n = i + 1;
            for v in [
                &mut s.starts,
                &mut s.first_tries,
                &mut s.retries,
                &mut s.successes,
                &mut s.timeouts,
                &mut s.calls,
                &mut s.refusals,
                &mut s.budget_denied,
            ] {
                v.resize(n, 0);
            }
            s.in_progress.resize(n, self.level);
        }
        Some(i)
    }

    pub fn count(&mut self, t: Time, what: Count) {
        let Some(i) = self.bucket(t) else {
            return;
        };
        let s = &mut self.series;
        let v = match what {
            Count::FirstTry | Count::Retry => {
                s.starts[i] += 1;
                if what == Count::FirstTry {
                    &mut s.first_tries
                } else {
                    &mut s.retries
                }
            }
            Count::Success => &mut s.successes,
            Count::Timeout => &mut s.timeouts,
            Count::Call => &mut s.calls,
            Count::Refusal => &mut s.refusals,
            Count::BudgetDenied => &mut s.budget_denied,
            Count::FirstTryThrottled => {
                s.first_tries[i] += 1;
                &mut s.budget_denied
            }
        };
        v[i] += 1;
    }

    /// Calls in progress changed to `level` at `t`.
    pub fn in_progress(&mut self, t: Time, level: u32) {
        if let Some(i) = self.bucket(t) {
            self.series.in_progress[i] = level;
        }
        self.level = level;
    }

    /// The series up to the bucket holding `end`.
    pub fn finish(mut self, end: Time) -> Series {
        if end.as_nanos() > 0 {
            self.bucket(Time::from_nanos(end.as_nanos() - 1));
        }
        self.series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_bucket_and_the_level_carries_forward() {
        let mut r = SeriesRecorder::new(1000.0);
        r.count(Time::from_millis(10), Count::FirstTry);
        r.count(Time::from_millis(1500), Count::Retry);
        r.in_progress(Time::from_millis(1600), 3);
        r.in_progress(Time::from_millis(3200), 1);
        let s = r.finish(Time::from_millis(5000));
        assert_eq!(s.starts, vec![1, 1, 0, 0, 0]);
        assert_eq!(s.first_tries, vec![1, 0, 0, 0, 0]);
        assert_eq!(s.retries, vec![0, 1, 0, 0, 0]);
        assert_eq!(s.in_progress, vec![0, 3, 3, 1, 1]);
    }

    #[test]
    fn a_throttled_first_try_is_offered_load_but_no_send() {
        let mut r = SeriesRecorder::new(1000.0);
        r.count(Time::from_millis(10), Count::FirstTryThrottled);
        let s = r.finish(Time::from_millis(1000));
        assert_eq!((s.first_tries, s.starts), (vec![1], vec![0]));
        assert_eq!(s.budget_denied, vec![1]);
    }

    #[test]
    fn buckets_past_the_bound_are_not_kept() {
        let mut r = SeriesRecorder::new(1e-6);
        r.count(Time::from_secs_f64(10.0), Count::Call);
        assert!(r.finish(Time::ZERO).calls.is_empty());
    }
}
