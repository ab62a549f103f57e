//! Hedged requests: a second attempt for a call that is slow to answer.
//!
//! A few calls in every thousand take far longer than the rest (a GC pause,
//! a cold cache, a sick replica). Rather than wait for the timeout, the
//! relay sends the same job again once an attempt has been out for a hedge
//! delay ("The Tail at Scale", Dean & Barroso, 2013): whichever attempt
//! answers first with a success wins; the others are abandoned. The delay
//! is fixed (`after_ms`) or a percentile of recent successful calls
//! (`percentile`, over the last `window` of them), so that only the slowest
//! few per cent are hedged.
//!
//! Hedges cost downstream work, so they are capped twice: at most
//! `max_per_job` extra attempts of one job in flight at once, and in all at
//! most `budget_pct` per cent of the first attempts made since the start of
//! the run (a cumulative count, not a window). Every hedge sent, won or
//! refused is counted. A hedge carries the job's idempotency key; a losing
//! attempt that lands is a duplicate side effect unless the downstream
//! honours the key.
//!
//! This module keeps the policy and the bookkeeping (which attempts of a
//! hedged job are in flight, with their breaker permits and deadlines); the
//! relay starts the calls and ends the job.

use super::breaker::Permit;
use super::config_error::{ensure, ensure_probability, parse_ms, ConfigError};
use super::job::JobId;
use crate::time::{duration_nanos, Time};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// `[relay.hedge]` as written; absent, the relay never hedges.
///
/// A hedge is an attempt of its job, with the next attempt number. When
/// every attempt in flight has failed, the retry decision counts them all
/// against `retry.attempts_max`: a job whose first attempt was hedged once
/// has `attempts_max − 2` retries left, not `attempts_max − 1`, so hedging
/// spends retries rather than adding to them. `attempts_max` bounds the
/// job's calls, hedges included: the last attempt it allows is not hedged.
/// Within that, `max_per_job` (in flight at once) and `budget_pct` (over
/// the run) bound the extra calls.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HedgeConfig {
    /// Hedge an attempt that has been out this long; or use `percentile`.
    pub after_ms: Option<f64>,
    /// Hedge an attempt that has been out longer than this quantile (in
    /// (0, 1)) of the last `window` successful calls' latencies.
    pub percentile: Option<f64>,
    /// Successful calls the percentile is taken over.
    pub window: u32,
    /// Extra attempts of one job in flight at once.
    pub max_per_job: u32,
    /// Hedges sent ≤ this share (per cent) of first attempts, over the run.
    pub budget_pct: f64,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            after_ms: None,
            percentile: None,
            window: 1000,
            max_per_job: 1,
            budget_pct: 10.0,
        }
    }
}

/// The most latencies a percentile window keeps.
pub const HEDGE_WINDOW_MAX: u32 = 100_000;
/// Successful calls seen before a percentile delay is trusted.
pub const PERCENTILE_SAMPLES_MIN: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Delay {
    Fixed(Duration),
    Percentile { q: f64, window: usize },
}

/// A checked [`HedgeConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HedgeSettings {
    delay: Delay,
    max_per_job: u32,
    /// Hedges per first attempt.
    budget: f64,
}

impl HedgeConfig {
    /// Field names in errors are relative to the hedge section.
    pub fn check(&self) -> Result<HedgeSettings, ConfigError> {
        let delay = match (self.after_ms, self.percentile) {
            (Some(ms), None) => {
                ensure(ms > 0.0, "after_ms", format!("must be > 0, got {ms}"))?;
                Delay::Fixed(parse_ms(ms, "after_ms")?)
            }
            (None, Some(q)) => {
                ensure_probability(q, "percentile")?;
                ensure(
                    q > 0.0 && q < 1.0,
                    "percentile",
                    format!("must be strictly between 0 and 1 (0.95 for p95), got {q}"),
                )?;
                ensure(
                    (1..=HEDGE_WINDOW_MAX).contains(&self.window),
                    "window",
                    format!(
                        "must be between 1 and {HEDGE_WINDOW_MAX}, got {}",
                        self.window
                    ),
                )?;
                Delay::Percentile {
                    q,
                    window: self.window as usize,
                }
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "after_ms",
                    "set either after_ms (a fixed delay) or percentile, not both",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "after_ms",
                    "a hedge needs a delay: set after_ms (e.g. 50) or percentile (e.g. 0.95)",
                ))
            }
        };
        ensure(
            (1..=16).contains(&self.max_per_job),
            "max_per_job",
            format!("must be between 1 and 16, got {}", self.max_per_job),
        )?;
        ensure(
            self.budget_pct.is_finite() && (0.0..=100.0).contains(&self.budget_pct),
            "budget_pct",
            format!(
                "must be a percentage between 0 and 100, got {}",
                self.budget_pct
            ),
        )?;
        Ok(HedgeSettings {
            delay,
            max_per_job: self.max_per_job,
            budget: self.budget_pct / 100.0,
        })
    }
}

/// What became of hedging, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HedgeCounts {
    /// Extra attempts started.
    pub sent: u64,
    /// Jobs won by an attempt other than the first of its hedged set.
    pub won: u64,
    /// Attempts still in flight when another attempt of their job won: the
    /// relay stopped waiting for them (`Event::HedgeAbandoned`), and one
    /// that lands is a duplicate unless the downstream honours the key.
    pub abandoned: u64,
    /// Hedges not sent: the job already had `max_per_job` extras in flight.
    pub denied_cap: u64,
    /// Hedges not sent: the budget was spent.
    pub denied_budget: u64,
    /// Hedges not sent: the job had used `retry.attempts_max` attempts,
    /// which bounds every call of a job, hedges included.
    pub denied_attempts: u64,
    /// Hedges not sent: no worker free, or the breaker not closed.
    pub skipped: u64,
    /// First attempts, the budget's base.
    pub first_attempts: u64,
}

/// Why a hedge may not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HedgeDenied {
    Cap,
    Budget,
}

/// One attempt of a hedged job, in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Flight {
    pub attempt: u32,
    pub permit: Permit,
    pub started: Time,
    pub deadline: Option<Time>,
}

/// The attempts of one hedged job in flight; the first is the one that was
/// hedged.
#[derive(Clone, Debug)]
struct Flights {
    first: u32,
    live: Vec<Flight>,
}

/// `(due, seq, job, attempt)`: check whether this attempt needs a hedge.
type Check = Reverse<(Time, u64, JobId, u32)>;

#[derive(Clone, Debug)]
pub(super) struct Hedger {
    settings: HedgeSettings,
    /// Recent successful call latencies (ns), oldest first, ≤ the window.
    latencies: VecDeque<u64>,
    /// The percentile of `latencies`, recomputed when they change.
    cached: Option<Option<Duration>>,
    checks: BinaryHeap<Check>,
    seq: u64,
    /// Hedged jobs still in flight; each at most `1 + max_per_job` flights.
    flights: FxHashMap<JobId, Flights>,
    counts: HedgeCounts,
}

impl Hedger {
    pub fn new(settings: &HedgeSettings) -> Hedger {
        let window = match settings.delay {
            Delay::Percentile { window, .. } => window,
            Delay::Fixed(_) => 0,
        };
        Hedger {
            settings: *settings,
            latencies: VecDeque::with_capacity(window.min(1 << 12)),
            cached: None,
            checks: BinaryHeap::new(),
            seq: 0,
            flights: FxHashMap::default(),
            counts: HedgeCounts::default(),
        }
    }

    pub fn counts(&self) -> HedgeCounts {
        self.counts
    }

    /// How long an attempt waits before it is hedged; `None` while a
    /// percentile has too few samples.
    fn delay(&mut self) -> Option<Duration> {
        let (q, _) = match self.settings.delay {
            Delay::Fixed(d) => return Some(d),
            Delay::Percentile { q, window } => (q, window),
        };
        if let Some(d) = self.cached {
            return d;
        }
        let d = (self.latencies.len() >= PERCENTILE_SAMPLES_MIN).then(|| {
            let mut sorted: Vec<u64> = self.latencies.iter().copied().collect();
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            let (_, nth, _) = sorted.select_nth_unstable(rank);
            Duration::from_nanos(*nth)
        });
        self.cached = Some(d);
        d
    }

    /// A successful call took `took`: feeds the percentile.
    pub fn on_success(&mut self, took: Duration) {
        let Delay::Percentile { window, .. } = self.settings.delay else {
            return;
        };
        if self.latencies.len() >= window {
            self.latencies.pop_front();
        }
        self.latencies.push_back(duration_nanos(took));
        self.cached = None;
    }

    /// An attempt started: check on it after the hedge delay.
    pub fn on_attempt_start(&mut self, now: Time, job: JobId, attempt: u32) {
        if attempt == 1 {
            self.counts.first_attempts += 1;
        }
        if let Some(d) = self.delay() {
            self.seq += 1;
            self.checks.push(Reverse((now + d, self.seq, job, attempt)));
        }
    }

    /// The next attempt whose hedge delay is over, if any.
    pub fn pop_due(&mut self, now: Time) -> Option<(JobId, u32)> {
        let Reverse((at, _, job, attempt)) = *self.checks.peek()?;
        if at > now {
            return None;
        }
        self.checks.pop();
        Some((job, attempt))
    }

    /// Checks waiting; the relay compacts them past a bound.
    pub fn checks_len(&self) -> usize {
        self.checks.len()
    }

    /// Keeps only the checks of attempts still in flight.
    pub fn retain_checks(&mut self, mut live: impl FnMut(JobId, u32) -> bool) {
        let mut checks = std::mem::take(&mut self.checks).into_vec();
        checks.retain(|Reverse((_, _, job, attempt))| live(*job, *attempt));
        self.checks = BinaryHeap::from(checks);
    }

    /// May `job` get one more hedge? Counts the refusal when not.
    pub fn permit(&mut self, job: JobId) -> Result<(), HedgeDenied> {
        let extras = self
            .flights
            .get(&job)
            .map_or(0, |f| f.live.len().saturating_sub(1));
        if extras >= self.settings.max_per_job as usize {
            self.counts.denied_cap += 1;
            return Err(HedgeDenied::Cap);
        }
        let allowed = self.settings.budget * self.counts.first_attempts as f64;
        if (self.counts.sent + 1) as f64 > allowed {
            self.counts.denied_budget += 1;
            return Err(HedgeDenied::Budget);
        }
        Ok(())
    }

    /// A hedge not sent because the job has no attempt left.
    pub fn out_of_attempts(&mut self) {
        self.counts.denied_attempts += 1;
    }

    /// A hedge that could not start for want of a worker or a closed breaker.
    pub fn skipped(&mut self) {
        self.counts.skipped += 1;
    }

    /// A hedge `hedge` of the attempt `hedged` started.
    pub fn sent(&mut self, job: JobId, hedged: Flight, hedge: Flight) {
        self.counts.sent += 1;
        let f = self.flights.entry(job).or_insert_with(|| Flights {
            first: hedged.attempt,
            live: vec![hedged],
        });
        f.live.push(hedge);
        debug_assert!(f.live.len() <= 1 + self.settings.max_per_job as usize);
    }

    pub fn is_hedged(&self, job: JobId) -> bool {
        !self.flights.is_empty() && self.flights.contains_key(&job)
    }

    /// Takes `attempt` of a hedged job out of the flights, if it is one.
    pub fn take_flight(&mut self, job: JobId, attempt: u32) -> Option<Flight> {
        let f = self.flights.get_mut(&job)?;
        let i = f.live.iter().position(|l| l.attempt == attempt)?;
        Some(f.live.remove(i))
    }

    /// Attempts of `job` still in flight.
    pub fn in_flight(&self, job: JobId) -> usize {
        self.flights.get(&job).map_or(0, |f| f.live.len())
    }

    /// The job ends with `winner` (a success) or its last failure: the
    /// flights left are abandoned. Counts a win by a hedge.
    pub fn end(&mut self, job: JobId, winner: Option<u32>) -> Vec<Flight> {
        let Some(f) = self.flights.remove(&job) else {
            return Vec::new();
        };
        if winner.is_some_and(|w| w != f.first) {
            self.counts.won += 1;
        }
        if winner.is_some() {
            self.counts.abandoned += f.live.len() as u64;
        }
        f.live
    }

    /// The flight whose deadline passed first (ties: lowest job, then
    /// attempt), taken out of its set.
    pub fn pop_expired(&mut self, now: Time) -> Option<(JobId, Flight)> {
        let (job, attempt) = self
            .flights
            .iter()
            .flat_map(|(job, f)| f.live.iter().map(move |l| (l.deadline, *job, l.attempt)))
            .filter_map(|(d, job, attempt)| Some((d?, job, attempt)))
            .filter(|(d, ..)| *d <= now)
            .min()
            .map(|(_, job, attempt)| (job, attempt))?;
        Some((job, self.take_flight(job, attempt)?))
    }

    /// When a check or a flight deadline is next due.
    pub fn poll_timeout(&self) -> Option<Time> {
        let check = self.checks.peek().map(|Reverse((at, ..))| *at);
        let deadline = self
            .flights
            .values()
            .flat_map(|f| f.live.iter().filter_map(|l| l.deadline))
            .min();
        match (check, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hedger(cfg: HedgeConfig) -> Hedger {
        Hedger::new(&cfg.check().expect("valid"))
    }

    fn fixed(after_ms: f64, max_per_job: u32, budget_pct: f64) -> Hedger {
        hedger(HedgeConfig {
            after_ms: Some(after_ms),
            max_per_job,
            budget_pct,
            ..HedgeConfig::default()
        })
    }

    fn flight(attempt: u32) -> Flight {
        Flight {
            attempt,
            permit: Permit::UNGUARDED,
            started: Time::ZERO,
            deadline: None,
        }
    }

    #[test]
    fn an_attempt_comes_due_after_the_fixed_delay() {
        let mut h = fixed(50.0, 1, 100.0);
        h.on_attempt_start(Time::from_millis(10), JobId(1), 1);
        assert_eq!(h.poll_timeout(), Some(Time::from_millis(60)));
        assert_eq!(h.pop_due(Time::from_millis(59)), None);
        assert_eq!(h.pop_due(Time::from_millis(60)), Some((JobId(1), 1)));
    }

    #[test]
    fn the_budget_is_a_share_of_first_attempts() {
        let mut h = fixed(50.0, 4, 10.0);
        for j in 0..19 {
            h.on_attempt_start(Time::ZERO, JobId(j), 1);
        }
        h.on_attempt_start(Time::ZERO, JobId(0), 2);
        assert_eq!(h.permit(JobId(1)), Ok(()), "1 ≤ 10 % of 19");
        h.sent(JobId(1), flight(1), flight(2));
        assert_eq!(h.permit(JobId(2)), Err(HedgeDenied::Budget), "2 > 1.9");
        assert_eq!(
            h.counts().first_attempts,
            19,
            "a retry is not a first attempt"
        );
    }

    #[test]
    fn the_cap_counts_extras_in_flight() {
        let mut h = fixed(50.0, 1, 100.0);
        for j in 0..10 {
            h.on_attempt_start(Time::ZERO, JobId(j), 1);
        }
        h.sent(JobId(1), flight(1), flight(2));
        assert_eq!(h.permit(JobId(1)), Err(HedgeDenied::Cap));
        assert_eq!(h.take_flight(JobId(1), 1), Some(flight(1)));
        assert_eq!(h.permit(JobId(1)), Ok(()), "the first attempt ended");
        assert_eq!(h.take_flight(JobId(1), 2), Some(flight(2)), "the winner");
        assert_eq!(h.end(JobId(1), Some(2)).len(), 0, "nothing left to abandon");
        assert_eq!(h.counts().won, 1);
        assert_eq!(h.counts().abandoned, 0);
        assert_eq!(h.counts().denied_cap, 1);
    }

    #[test]
    fn a_percentile_delay_waits_for_samples_and_follows_them() {
        let mut h = hedger(HedgeConfig {
            percentile: Some(0.9),
            window: 10,
            ..HedgeConfig::default()
        });
        h.on_attempt_start(Time::ZERO, JobId(1), 1);
        assert_eq!(h.poll_timeout(), None, "no samples: no hedging");
        for ms in 1..=10 {
            h.on_success(Duration::from_millis(ms));
        }
        assert_eq!(h.delay(), Some(Duration::from_millis(9)));
        for _ in 0..10 {
            h.on_success(Duration::from_millis(100));
        }
        assert_eq!(
            h.delay(),
            Some(Duration::from_millis(100)),
            "old samples left the window"
        );
    }

    #[test]
    fn expired_flights_leave_their_set_in_deadline_order() {
        let mut h = fixed(50.0, 2, 100.0);
        let at = |attempt, ms| Flight {
            deadline: Some(Time::from_millis(ms)),
            ..flight(attempt)
        };
        h.sent(JobId(2), at(1, 30), at(2, 10));
        h.sent(JobId(1), at(1, 20), at(2, 90));
        assert_eq!(h.poll_timeout(), Some(Time::from_millis(10)));
        let gone: Vec<_> = std::iter::from_fn(|| h.pop_expired(Time::from_millis(30)))
            .map(|(j, f)| (j, f.attempt))
            .collect();
        assert_eq!(gone, vec![(JobId(2), 2), (JobId(1), 1), (JobId(2), 1)]);
        assert_eq!((h.in_flight(JobId(1)), h.in_flight(JobId(2))), (1, 0));
    }

    #[test]
    fn a_hedge_needs_exactly_one_delay_and_sane_caps() {
        let field = |cfg: HedgeConfig| cfg.check().expect_err("refused").field;
        assert_eq!(field(HedgeConfig::default()), "after_ms");
        let both = HedgeConfig {
            after_ms: Some(5.0),
            percentile: Some(0.9),
            ..HedgeConfig::default()
        };
        assert_eq!(field(both), "after_ms");
        let p = |q| HedgeConfig {
            percentile: Some(q),
            ..HedgeConfig::default()
        };
        assert_eq!(field(p(1.0)), "percentile");
        let cap = HedgeConfig {
            after_ms: Some(5.0),
            max_per_job: 0,
            ..HedgeConfig::default()
        };
        assert_eq!(field(cap), "max_per_job");
        let budget = HedgeConfig {
            after_ms: Some(5.0),
            budget_pct: 101.0,
            ..HedgeConfig::default()
        };
        assert_eq!(field(budget), "budget_pct");
    }
}
