//! RED statistics: rate, errors, duration.
//!
//! The RED method asks three questions of every service: how many requests
//! per second (rate), how many of them fail and how (errors, by kind), and
//! how long they take (duration, as a distribution, not an average). The
//! relay counts every outcome here; durations go into HDR histograms so that
//! p99.9 is as cheap and as exact as p50.

use super::answer::Refusal;
use super::retry::{CallError, GiveUp};
use super::retry_gate::DeniedCounts;
use super::route::RouteStats;
use crate::time::{duration_nanos, nanos_to_ms, Time};
use enum_map::{EnumArray, EnumMap};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

/// Durations from 1 µs to 1 hour, to three significant digits.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 3_600_000_000_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        let histogram = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, 3)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { histogram }
    }

    /// Records a duration, clamped into the histogram's range.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        let ns = duration_nanos(d).clamp(LOWEST_NS, HIGHEST_NS);
        self.histogram.saturating_record(ns);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The `q` quantile in milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        nanos_to_ms(self.histogram.value_at_quantile(q) as f64)
    }

    pub fn mean_ms(&self) -> f64 {
        nanos_to_ms(self.histogram.mean())
    }

    pub fn max_ms(&self) -> f64 {
        nanos_to_ms(self.histogram.max() as f64)
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with the same bounds add up");
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            mean_ms: self.mean_ms(),
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: self.max_ms(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Every count the relay keeps. Plain integers: cheap to bump, exact to compare.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub requests: u64,
    pub accepted: u64,
    pub replayed: u64,
    pub refused: EnumMap<Refusal, u64>,
    pub attempts: u64,
    pub attempt_errors: EnumMap<CallError, u64>,
    pub retries: u64,
    /// Retries not made because a retry control refused them, by reason.
    pub retries_denied: DeniedCounts,
    pub succeeded: u64,
    pub dead_lettered: EnumMap<GiveUp, u64>,
    pub dlq_overflowed: u64,
    /// Answers to attempts that had already timed out, successes included.
    pub late_results: u64,
    /// Late successes that completed their job (it was waiting to retry).
    pub late_successes_used: u64,
    /// Late successes that came after a retry was sent or the job ended:
    /// recorded on the job, its status or its dead letter.
    pub late_successes_recorded: u64,
    /// Jobs started by redriving a dead letter.
    pub dlq_redriven: u64,
    /// Dead letters evicted, oldest first, to make room (`drop-oldest`).
    pub dlq_evicted: u64,
    /// Pending redrives left in the dead-letter queue: their key was in use.
    pub dlq_redrive_skipped: u64,
    /// Jobs shed by age: they waited in the queue longer than
    /// `shed_after_ms` and were never called (dead-lettered with reason
    /// `shed`, or answered as failed, as `shed_to` says).
    pub shed: u64,
    /// Queued jobs served ahead of older ones (adaptive LIFO).
    pub served_out_of_order: u64,
    /// Times a worker was free and work waited, but the concurrency limit
    /// held the next call back.
    pub calls_held_back: u64,
    /// Retries of throttled attempts that waited for the downstream's
    /// `Retry-After`, longer than their backoff.
    pub retry_after_honoured: u64,
    /// Unfinished jobs taken back from a store at a restart.
    pub recovered_jobs: u64,
    /// Recovered jobs that had started an attempt before the crash: they
    /// run again, and the downstream may do their work twice.
    pub redelivered_jobs: u64,
    /// One downstream attempt, start → outcome.
    pub attempt_latency: LatencyHistogram,
    /// Requests answered from a route's fallback (at the door, or for a job
    /// that failed for good).
    pub fallbacks: u64,
    /// Per route, in the order of the settings.
    pub routes: Vec<RouteStats>,
}

impl Stats {
    /// Adds an earlier process's counts to these: the totals of a relay
    /// that restarted, as a scraper summing both lives would see them.
    pub fn absorb(&mut self, earlier: &Stats) {
        let Stats {
            requests,
            accepted,
            replayed,
            refused,
            attempts,
            attempt_errors,
            retries,
            retries_denied,
            succeeded,
            dead_lettered,
            dlq_overflowed,
            late_results,
            late_successes_used,
            late_successes_recorded,
            dlq_redriven,
            dlq_evicted,
            dlq_redrive_skipped,
            shed,
            served_out_of_order,
            calls_held_back,
            retry_after_honoured,
            recovered_jobs,
            redelivered_jobs,
            attempt_latency,
            fallbacks,
            routes,
        } = earlier;
        fn add<E: EnumArray<u64>>(to: &mut EnumMap<E, u64>, from: &EnumMap<E, u64>) {
            for (e, n) in from.iter() {
                to[e] += *n;
            }
        }
        self.requests += requests;
        self.accepted += accepted;
        self.replayed += replayed;
        add(&mut self.refused, refused);
        self.attempts += attempts;
        add(&mut self.attempt_errors, attempt_errors);
        self.retries += retries;
        add(&mut self.retries_denied, retries_denied);
        self.succeeded += succeeded;
        add(&mut self.dead_lettered, dead_lettered);
        self.dlq_overflowed += dlq_overflowed;
        self.late_results += late_results;
        self.late_successes_used += late_successes_used;
        self.late_successes_recorded += late_successes_recorded;
        self.dlq_redriven += dlq_redriven;
        self.dlq_evicted += dlq_evicted;
        self.dlq_redrive_skipped += dlq_redrive_skipped;
        self.shed += shed;
        self.served_out_of_order += served_out_of_order;
        self.calls_held_back += calls_held_back;
        self.retry_after_honoured += retry_after_honoured;
        self.recovered_jobs += recovered_jobs;
        self.redelivered_jobs += redelivered_jobs;
        self.attempt_latency.add(attempt_latency);
        self.fallbacks += fallbacks;
        if self.routes.len() < routes.len() {
            self.routes.resize_with(routes.len(), RouteStats::default);
        }
        for (to, from) in self.routes.iter_mut().zip(routes) {
            to.absorb(from);
        }
    }

    /// Accepted → success, per job, over every route. Each success is
    /// recorded once, in its route's histogram; with one route (the usual
    /// case) that histogram is the total, and several add up exactly.
    pub fn job_latency(&self) -> Cow<'_, LatencyHistogram> {
        match self.routes.as_slice() {
            [only] => Cow::Borrowed(&only.job_latency),
            routes => {
                let mut total = LatencyHistogram::new();
                for r in routes {
                    total.add(&r.job_latency);
                }
                Cow::Owned(total)
            }
        }
    }

    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why]
    }

    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }

    /// A serialisable view, errors keyed by name in a stable order.
    pub fn snapshot(&self, now: Time) -> StatsSnapshot {
        let secs = now.as_secs_f64().max(1e-9);
        StatsSnapshot {
            requests: self.requests,
            accepted: self.accepted,
            replayed: self.replayed,
            succeeded: self.succeeded,
            dead_lettered: self.dead_lettered_total(),
            attempts: self.attempts,
            retries: self.retries,
            retries_denied: named(&self.retries_denied),
            request_rate_per_s: self.requests as f64 / secs,
            refused: named(&self.refused),
            attempt_errors: named(&self.attempt_errors),
            dead_letter_reasons: named(&self.dead_lettered),
            dlq_overflowed: self.dlq_overflowed,
            late_results: self.late_results,
            late_successes_used: self.late_successes_used,
            late_successes_recorded: self.late_successes_recorded,
            redriven: self.dlq_redriven,
            dlq_evicted: self.dlq_evicted,
            dlq_redrive_skipped: self.dlq_redrive_skipped,
            shed: self.shed,
            served_out_of_order: self.served_out_of_order,
            calls_held_back: self.calls_held_back,
            retry_after_honoured: self.retry_after_honoured,
            recovered_jobs: self.recovered_jobs,
            redelivered_jobs: self.redelivered_jobs,
            job_latency: self.job_latency().summary(),
            attempt_latency: self.attempt_latency.summary(),
        }
    }
}

/// Every count of `counts` under its kind's name.
pub fn named<E>(counts: &EnumMap<E, u64>) -> BTreeMap<String, u64>
where
    E: EnumArray<u64> + Into<&'static str>,
{
    counts
        .iter()
        .map(|(e, n)| (e.into().to_owned(), *n))
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub accepted: u64,
    pub replayed: u64,
    pub succeeded: u64,
    pub dead_lettered: u64,
    pub attempts: u64,
    pub retries: u64,
    /// Retries refused by the budget or the retry breaker, by reason.
    pub retries_denied: BTreeMap<String, u64>,
    pub request_rate_per_s: f64,
    pub refused: BTreeMap<String, u64>,
    pub attempt_errors: BTreeMap<String, u64>,
    pub dead_letter_reasons: BTreeMap<String, u64>,
    pub dlq_overflowed: u64,
    pub late_results: u64,
    pub late_successes_used: u64,
    pub late_successes_recorded: u64,
    /// Jobs started by redriving a dead letter: every job is accepted or
    /// redriven, then succeeds, is dead-lettered or is still live.
    pub redriven: u64,
    pub dlq_evicted: u64,
    pub dlq_redrive_skipped: u64,
    #[serde(default)]
    pub shed: u64,
    #[serde(default)]
    pub served_out_of_order: u64,
    #[serde(default)]
    pub calls_held_back: u64,
    #[serde(default)]
    pub retry_after_honoured: u64,
    #[serde(default)]
    pub recovered_jobs: u64,
    #[serde(default)]
    pub redelivered_jobs: u64,
    pub job_latency: LatencySummary,
    pub attempt_latency: LatencySummary,
}

#[cfg(test)]
mod tests {
    use super::*;
    use enum_map::Enum;

    #[test]
    fn quantiles_come_out_within_three_significant_digits() {
        let mut h = LatencyHistogram::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() <= 0.5, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.p999_ms - 999.0).abs() <= 1.0, "{s:?}");
    }

    #[test]
    fn out_of_range_durations_are_clamped_not_lost() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(10 * 3600));
        assert_eq!(h.count(), 2);
        assert!(h.max_ms() >= 3_599_000.0);
    }

    #[test]
    fn snapshot_names_every_error_kind() {
        let mut s = Stats::default();
        s.refused[Refusal::Shed] += 1;
        s.attempt_errors[CallError::Timeout] += 1;
        s.dead_lettered[GiveUp::AttemptsExhausted] += 1;
        let snap = s.snapshot(Time::from_millis(1000));
        assert_eq!(snap.refused["shed"], 1);
        assert_eq!(snap.refused.len(), Refusal::LENGTH);
        assert_eq!(snap.dead_letter_reasons.len(), GiveUp::LENGTH);
        assert_eq!(snap.attempt_errors["timeout"], 1);
        assert_eq!(snap.dead_lettered, 1);
    }

    /// The derived names are the serde names, which traces and files use.
    #[test]
    fn names_are_the_serde_names() {
        fn same<E: Enum + Serialize + Copy + Into<&'static str>>() {
            for i in 0..E::LENGTH {
                let e = E::from_usize(i);
                let serde = serde_json::to_string(&e).expect("serialises");
                assert_eq!(serde, format!("\"{}\"", e.into()));
            }
        }
        same::<Refusal>();
        same::<CallError>();
        same::<GiveUp>();
        same::<crate::relay::Denied>();
    }
}
