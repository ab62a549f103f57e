//! Circuit breaker: stop calling a downstream that is failing.
//!
//! When a downstream is down, every call to it waits for a timeout or fails,
//! holding a worker and adding load to something already in trouble. A
//! breaker watches outcomes and, past a threshold, *opens*: no calls for a
//! while, so work waits in the queue instead of burning attempts. After the
//! open period it lets a few probe calls through (*half-open*); enough
//! successes close it, one failure opens it again.
//!
//! Three ways to trip: a run of consecutive failures; a failure ratio over a
//! sliding time window once the window has seen a minimum number of calls
//! (so that two failures out of two calls at 3 a.m. do not open it); or a
//! failure ratio over the last N calls (resilience4j's count-based window).
//! With a window, a slow-call rate can trip it too (resilience4j's
//! `slowCallDurationThreshold` / `slowCallRateThreshold`): a downstream that
//! still answers, but slowly, holds workers as surely as one that fails.
//!
//! Half-open differs from resilience4j's: `half_open_probes_max` bounds the
//! probes *in flight at once* and `success_threshold` successes close it,
//! while one failed (or slow) probe re-opens it at once. resilience4j's
//! `permittedNumberOfCallsInHalfOpenState` instead admits that many calls in
//! all, waits for every one, and decides on their failure and slow rates.

use super::config_error::{ensure, ensure_probability, parse_ms, ConfigError};
use crate::time::{duration_nanos, Time};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TripConfig {
    /// Open after this many failures in a row.
    ConsecutiveFailures { failures: u32 },
    /// Open when failures / calls ≥ `ratio` over the last `window_ms`, once
    /// at least `calls_min` calls ended in that window.
    FailureRatio {
        ratio: f64,
        window_ms: f64,
        calls_min: u32,
    },
    /// Open when failures / calls ≥ `ratio` over the last `calls` calls,
    /// once that many have ended (resilience4j's `COUNT_BASED` window).
    FailureRatioCount { ratio: f64, calls: u32 },
}

/// The most calls a count-based window remembers.
pub const COUNT_WINDOW_MAX: u32 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub trip: TripConfig,
    /// Probe successes in half-open that close the breaker.
    pub success_threshold: u32,
    /// How long it stays open before probing.
    pub open_ms: f64,
    /// Probe calls allowed at once while half-open.
    pub half_open_probes_max: u32,
    /// A call that took longer than this counts as slow; 0: no call is slow.
    pub slow_call_ms: f64,
    /// Open when slow calls / calls ≥ this in the trip's window (1.0: only
    /// when every call is slow).
    pub slow_call_rate: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            trip: TripConfig::ConsecutiveFailures { failures: 5 },
            success_threshold: 2,
            open_ms: 5_000.0,
            half_open_probes_max: 1,
            slow_call_ms: 0.0,
            slow_call_rate: 1.0,
        }
    }
}

/// When a checked breaker trips.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Trip {
    ConsecutiveFailures {
        failures: u32,
    },
    FailureRatio {
        ratio: f64,
        window: Duration,
        calls_min: u32,
    },
    FailureRatioCount {
        ratio: f64,
        calls: u32,
    },
}

/// The slow-call rule: calls longer than `over` are slow; trip at `rate`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SlowCalls {
    over: Duration,
    rate: f64,
}

/// A checked [`BreakerConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerSettings {
    trip: Trip,
    success_threshold: u32,
    open_for: Duration,
    half_open_probes_max: u32,
    slow: Option<SlowCalls>,
}

impl BreakerSettings {
    /// How long the breaker stays open before probing.
    #[cfg(test)]
    pub(super) fn open_for(&self) -> Duration {
        self.open_for
    }
}

impl TripConfig {
    fn check(&self) -> Result<Trip, ConfigError> {
        Ok(match *self {
            TripConfig::ConsecutiveFailures { failures } => {
                ensure(failures >= 1, "failures", "must be ≥ 1")?;
                Trip::ConsecutiveFailures { failures }
            }
            TripConfig::FailureRatio {
                ratio,
                window_ms,
                calls_min,
            } => {
                ensure_probability(ratio, "ratio")?;
                ensure(ratio > 0.0, "ratio", "must be > 0")?;
                let window = parse_ms(window_ms, "window_ms")?;
                ensure(window_ms > 0.0, "window_ms", "must be > 0")?;
                ensure(calls_min >= 1, "calls_min", "must be ≥ 1")?;
                Trip::FailureRatio {
                    ratio,
                    window,
                    calls_min,
                }
            }
            TripConfig::FailureRatioCount { ratio, calls } => {
                ensure_probability(ratio, "ratio")?;
                ensure(ratio > 0.0, "ratio", "must be > 0")?;
                ensure(
                    (1..=COUNT_WINDOW_MAX).contains(&calls),
                    "calls",
                    format!("must be between 1 and {COUNT_WINDOW_MAX}, got {calls}"),
                )?;
                Trip::FailureRatioCount { ratio, calls }
            }
        })
    }
}

impl BreakerConfig {
    /// Field names in errors are relative to the breaker's section.
    pub fn check(&self) -> Result<BreakerSettings, ConfigError> {
        let trip = self.trip.check().map_err(|e| e.within("trip"))?;
        ensure(
            self.success_threshold >= 1,
            "success_threshold",
            "must be ≥ 1",
        )?;
        ensure(
            self.half_open_probes_max >= 1,
            "half_open_probes_max",
            "must be ≥ 1",
        )?;
        Ok(BreakerSettings {
            trip,
            success_threshold: self.success_threshold,
            open_for: parse_ms(self.open_ms, "open_ms")?,
            half_open_probes_max: self.half_open_probes_max,
            slow: self.check_slow(trip)?,
        })
    }

    /// The slow-call rule, if on. It needs a ratio trip: its window is
    /// where slow calls are counted.
    fn check_slow(&self, trip: Trip) -> Result<Option<SlowCalls>, ConfigError> {
        let over = parse_ms(self.slow_call_ms, "slow_call_ms")?;
        ensure_probability(self.slow_call_rate, "slow_call_rate")?;
        ensure(self.slow_call_rate > 0.0, "slow_call_rate", "must be > 0")?;
        if over.is_zero() {
            return Ok(None);
        }
        ensure(
            !matches!(trip, Trip::ConsecutiveFailures { .. }),
            "slow_call_ms",
            "needs a window to count slow calls in: use trip kind `failure-ratio` or `failure-ratio-count`, or set slow_call_ms = 0",
        )?;
        Ok(Some(SlowCalls {
            over,
            rate: self.slow_call_rate,
        }))
    }
}

/// The breaker's state as others see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The transitions a breaker may make; anything else is a bug.
    pub fn can_become(self, to: BreakerState) -> bool {
        use BreakerState::*;
        matches!(
            (self, to),
            (Closed, Open) | (Open, HalfOpen) | (HalfOpen, Closed) | (HalfOpen, Open)
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Time,
    pub from: BreakerState,
    pub to: BreakerState,
}

/// What [`Breaker::allow`] granted; hand it back with the call's result.
/// It carries the breaker's epoch (bumped on every state change), so the
/// result of a call that started before the last change is recognised as
/// stale and ignored: a hung call from before an outage cannot re-open a
/// breaker that has since closed, nor count as a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit {
    probe: bool,
    epoch: u32,
}

impl Permit {
    /// A permit for a breaker-less relay, or a test.
    pub const UNGUARDED: Permit = Permit {
        probe: false,
        epoch: u32::MAX,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Time,
    },
    HalfOpen {
        probes_in_flight: u32,
        successes: u32,
    },
}

const WINDOW_BUCKETS: usize = 10;

/// Calls, failures and slow calls counted in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    calls: u32,
    failed: u32,
    slow: u32,
}

impl Tally {
    fn add(self, o: Tally) -> Tally {
        Tally {
            calls: self.calls + o.calls,
            failed: self.failed + o.failed,
            slow: self.slow + o.slow,
        }
    }

    fn of(failed: bool, slow: bool) -> Tally {
        Tally {
            calls: 1,
            failed: u32::from(failed),
            slow: u32::from(slow),
        }
    }
}

/// Outcome counts over a sliding window of fixed time buckets.
#[derive(Clone, Debug)]
struct TimeWindow {
    bucket_ns: u64,
    /// (bucket index, counts) per ring slot.
    buckets: [(u64, Tally); WINDOW_BUCKETS],
}

const EMPTY_BUCKET: (u64, Tally) = (
    u64::MAX,
    Tally {
        calls: 0,
        failed: 0,
        slow: 0,
    },
);

impl TimeWindow {
    fn new(window: Duration) -> TimeWindow {
        let ns = duration_nanos(window);
        TimeWindow {
            bucket_ns: (ns / WINDOW_BUCKETS as u64).max(1),
            buckets: [EMPTY_BUCKET; WINDOW_BUCKETS],
        }
    }

    fn record(&mut self, now: Time, one: Tally) {
        let index = now.as_nanos() / self.bucket_ns;
        let slot = &mut self.buckets[(index % WINDOW_BUCKETS as u64) as usize];
        if slot.0 != index {
            *slot = (index, Tally::default());
        }
        slot.1 = slot.1.add(one);
    }

    /// Counts in the buckets still inside the window.
    fn totals(&self, now: Time) -> Tally {
        let current = now.as_nanos() / self.bucket_ns;
        let live = |b: &&(u64, Tally)| b.0 != u64::MAX && b.0 + WINDOW_BUCKETS as u64 > current;
        self.buckets
            .iter()
            .filter(live)
            .fold(Tally::default(), |t, b| t.add(b.1))
    }
}

/// The outcomes of the last `size` calls, with running totals.
#[derive(Clone, Debug)]
struct CountWindow {
    size: usize,
    /// (failed, slow) per call, oldest first; never longer than `size`.
    ring: VecDeque<(bool, bool)>,
    totals: Tally,
}

impl CountWindow {
    fn new(size: u32) -> CountWindow {
        let size = size as usize;
        CountWindow {
            size,
            ring: VecDeque::with_capacity(size.min(1 << 12)),
            totals: Tally::default(),
        }
    }

    fn record(&mut self, one: Tally) {
        if self.ring.len() == self.size {
            if let Some((failed, slow)) = self.ring.pop_front() {
                self.totals.calls -= 1;
                self.totals.failed -= u32::from(failed);
                self.totals.slow -= u32::from(slow);
            }
        }
        self.ring.push_back((one.failed > 0, one.slow > 0));
        self.totals = self.totals.add(one);
    }
}

/// Where closed-state outcomes are counted.
#[derive(Clone, Debug)]
enum Window {
    Time(TimeWindow),
    Count(CountWindow),
}

impl Window {
    fn for_trip(trip: Trip) -> Window {
        match trip {
            Trip::FailureRatio { window, .. } => Window::Time(TimeWindow::new(window)),
            Trip::FailureRatioCount { calls, .. } => Window::Count(CountWindow::new(calls)),
            // Unused by this trip; any length will do.
            Trip::ConsecutiveFailures { .. } => {
                Window::Time(TimeWindow::new(Duration::from_secs(1)))
            }
        }
    }

    fn record(&mut self, now: Time, one: Tally) {
        match self {
            Window::Time(w) => w.record(now, one),
            Window::Count(w) => w.record(one),
        }
    }

    fn totals(&self, now: Time) -> Tally {
        match self {
            Window::Time(w) => w.totals(now),
            Window::Count(w) => w.totals,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    /// Bumped on every transition; see [`Permit`].
    epoch: u32,
    window: Window,
    transitions: VecDeque<Transition>,
}

impl Breaker {
    pub fn new(settings: &BreakerSettings) -> Breaker {
        Breaker {
            settings: *settings,
            state: State::Closed {
                consecutive_failures: 0,
            },
            epoch: 0,
            window: Window::for_trip(settings.trip),
            transitions: VecDeque::with_capacity(4),
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// May a call start now? Moves from open to half-open when the open
    /// period is over.
    pub fn allow(&mut self, now: Time) -> Option<Permit> {
        self.handle_timeout(now);
        match &mut self.state {
            State::Closed { .. } => Some(Permit {
                probe: false,
                epoch: self.epoch,
            }),
            State::Open { .. } => None,
            State::HalfOpen {
                probes_in_flight, ..
            } => {
                if *probes_in_flight >= self.settings.half_open_probes_max {
                    return None;
                }
                *probes_in_flight += 1;
                Some(Permit {
                    probe: true,
                    epoch: self.epoch,
                })
            }
        }
    }

    /// Reports how a permitted call ended and how long it `took`. Results
    /// of calls that started before the breaker last changed state do not
    /// count.
    pub fn on_result(&mut self, now: Time, permit: Permit, success: bool, took: Duration) {
        if permit.epoch != self.epoch {
            return;
        }
        let slow = self.settings.slow.is_some_and(|s| took > s.over);
        match (&mut self.state, permit.probe) {
            (
                State::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                *consecutive_failures = if success {
                    0
                } else {
                    *consecutive_failures + 1
                };
                let run = *consecutive_failures;
                self.window.record(now, Tally::of(!success, slow));
                if (!success || slow) && self.should_trip(now, run) {
                    self.go(
                        now,
                        State::Open {
                            until: self.open_until(now),
                        },
                    );
                }
            }
            (
                State::HalfOpen {
                    probes_in_flight,
                    successes,
                },
                true,
            ) => {
                *probes_in_flight = probes_in_flight.saturating_sub(1);
                if !success || slow {
                    self.go(
                        now,
                        State::Open {
                            until: self.open_until(now),
                        },
                    );
                    return;
                }
                *successes += 1;
                if *successes >= self.settings.success_threshold {
                    self.window = Window::for_trip(self.settings.trip);
                    self.go(
                        now,
                        State::Closed {
                            consecutive_failures: 0,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// Hands back a permit whose call never left (the job was taken back
    /// before it was sent): a probe slot is freed, nothing is counted.
    pub fn forget(&mut self, permit: Permit) {
        if permit.epoch != self.epoch || !permit.probe {
            return;
        }
        if let State::HalfOpen {
            probes_in_flight, ..
        } = &mut self.state
        {
            *probes_in_flight = probes_in_flight.saturating_sub(1);
        }
    }

    fn should_trip(&self, now: Time, consecutive_failures: u32) -> bool {
        let (ratio, calls_min) = match self.settings.trip {
            Trip::ConsecutiveFailures { failures } => return consecutive_failures >= failures,
            Trip::FailureRatio {
                ratio, calls_min, ..
            } => (ratio, calls_min),
            Trip::FailureRatioCount { ratio, calls } => (ratio, calls),
        };
        let t = self.window.totals(now);
        let over = |n: u32, rate: f64| f64::from(n) >= rate * f64::from(t.calls);
        let slow = self.settings.slow.is_some_and(|s| over(t.slow, s.rate));
        t.calls >= calls_min && (over(t.failed, ratio) || slow)
    }

    fn go(&mut self, now: Time, to: State) {
        let from = self.state();
        self.state = to;
        self.epoch = self.epoch.wrapping_add(1);
        let to = self.state();
        debug_assert!(
            from.can_become(to),
            "illegal breaker transition {from:?} -> {to:?}"
        );
        self.transitions.push_back(Transition { at: now, from, to });
    }

    /// When the open period ends, if open.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// When an open period starting now ends.
    fn open_until(&self, now: Time) -> Time {
        #[cfg(test)]
        if crate::planted::active(crate::planted::Bug::BreakerStaysOpen) {
            return now + self.settings.open_for * 1000;
        }
        now + self.settings.open_for
    }

    /// Open → half-open once the open period is over. Safe to call early.
    pub fn handle_timeout(&mut self, now: Time) {
        if let State::Open { until } = self.state {
            if now >= until {
                self.go(
                    now,
                    State::HalfOpen {
                        probes_in_flight: 0,
                        successes: 0,
                    },
                );
            }
        }
    }

    /// The next state change not yet reported.
    pub fn poll_transition(&mut self) -> Option<Transition> {
        self.transitions.pop_front()
    }

    /// How long until the breaker may let calls through again.
    pub fn retry_after(&self, now: Time) -> Duration {
        match self.state {
            State::Open { until } => until.since(now),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t: u64) -> Time {
        Time::from_millis(t)
    }

    fn breaker(cfg: &BreakerConfig) -> Breaker {
        Breaker::new(&cfg.check().expect("valid"))
    }

    fn consecutive(failures: u32) -> Breaker {
        breaker(&BreakerConfig {
            trip: TripConfig::ConsecutiveFailures { failures },
            success_threshold: 2,
            open_ms: 100.0,
            half_open_probes_max: 1,
            ..BreakerConfig::default()
        })
    }

    /// Trips when half the calls in `window_ms` failed, once `calls_min` ended.
    fn half_failing(window_ms: f64, calls_min: u32) -> Breaker {
        breaker(&BreakerConfig {
            trip: TripConfig::FailureRatio {
                ratio: 0.5,
                window_ms,
                calls_min,
            },
            ..BreakerConfig::default()
        })
    }

    fn fail(b: &mut Breaker, now: Time) {
        let p = b.allow(now).expect("allowed");
        b.on_result(now, p, false, Duration::ZERO);
    }

    /// A successful call at `now` that took `took_ms`.
    fn succeed_after(b: &mut Breaker, now: Time, took_ms: u64) {
        let p = b.allow(now).expect("allowed");
        b.on_result(now, p, true, Duration::from_millis(took_ms));
    }

    /// Trips when `ratio` of the last `calls` calls failed.
    fn last_calls(ratio: f64, calls: u32) -> Breaker {
        breaker(&BreakerConfig {
            trip: TripConfig::FailureRatioCount { ratio, calls },
            ..BreakerConfig::default()
        })
    }

    #[test]
    fn count_window_trips_only_once_full_and_forgets_the_oldest_call() {
        let mut b = last_calls(0.5, 4);
        fail(&mut b, ms(0));
        fail(&mut b, ms(1));
        fail(&mut b, ms(2));
        assert_eq!(b.state(), BreakerState::Closed, "3 of 4 calls seen");
        let mut b = last_calls(0.5, 4);
        fail(&mut b, ms(0));
        for t in 1..4 {
            succeed_after(&mut b, ms(t), 0);
        }
        // Window [f s s s] → [s s s f]: 1 of 4, below 0.5.
        fail(&mut b, ms(4));
        assert_eq!(b.state(), BreakerState::Closed);
        // [s s f f]: 2 of 4.
        fail(&mut b, ms(5));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn count_window_ignores_time() {
        let mut b = last_calls(0.5, 2);
        fail(&mut b, ms(0));
        fail(&mut b, ms(3_600_000));
        assert_eq!(b.state(), BreakerState::Open, "an hour apart, still 2 of 2");
    }

    fn slow_breaker(trip: TripConfig, slow_call_ms: f64, slow_call_rate: f64) -> Breaker {
        breaker(&BreakerConfig {
            trip,
            slow_call_ms,
            slow_call_rate,
            ..BreakerConfig::default()
        })
    }

    #[test]
    fn slow_successes_trip_at_the_slow_call_rate() {
        let trip = TripConfig::FailureRatioCount {
            ratio: 1.0,
            calls: 4,
        };
        let mut b = slow_breaker(trip, 100.0, 0.5);
        succeed_after(&mut b, ms(0), 100);
        succeed_after(&mut b, ms(1), 5);
        succeed_after(&mut b, ms(2), 101);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "exactly 100 ms is not slow"
        );
        succeed_after(&mut b, ms(3), 500);
        assert_eq!(b.state(), BreakerState::Open, "2 of 4 slow");
    }

    #[test]
    fn slow_calls_count_in_a_time_window_too() {
        let trip = TripConfig::FailureRatio {
            ratio: 1.0,
            window_ms: 1000.0,
            calls_min: 3,
        };
        let mut b = slow_breaker(trip, 50.0, 1.0);
        succeed_after(&mut b, ms(0), 60);
        succeed_after(&mut b, ms(1), 60);
        succeed_after(&mut b, ms(2000), 60);
        succeed_after(&mut b, ms(2001), 60);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "old slow calls left the window"
        );
        succeed_after(&mut b, ms(2002), 60);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn without_slow_calls_on_duration_is_ignored() {
        let mut b = last_calls(0.5, 2);
        succeed_after(&mut b, ms(0), 1_000_000);
        succeed_after(&mut b, ms(1), 1_000_000);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_slow_probe_reopens() {
        let trip = TripConfig::FailureRatioCount {
            ratio: 0.5,
            calls: 1,
        };
        let mut b = slow_breaker(trip, 10.0, 1.0);
        fail(&mut b, ms(0));
        assert_eq!(b.state(), BreakerState::Open);
        let p = b.allow(ms(5000)).expect("probe");
        b.on_result(ms(5100), p, true, Duration::from_millis(100));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn slow_calls_need_a_window_and_sane_values() {
        let bad = |cfg: BreakerConfig| cfg.check().expect_err("refused").field;
        let consecutive = BreakerConfig {
            slow_call_ms: 10.0,
            ..BreakerConfig::default()
        };
        assert_eq!(bad(consecutive), "slow_call_ms");
        let rate = BreakerConfig {
            slow_call_rate: 0.0,
            ..BreakerConfig::default()
        };
        assert_eq!(bad(rate), "slow_call_rate");
        let count = BreakerConfig {
            trip: TripConfig::FailureRatioCount {
                ratio: 0.5,
                calls: 0,
            },
            ..BreakerConfig::default()
        };
        assert_eq!(
            count
                .check()
                .map_err(|e| e.within("breaker"))
                .expect_err("0 calls")
                .field,
            "breaker.trip.calls"
        );
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_run() {
        let mut b = consecutive(3);
        fail(&mut b, ms(0));
        fail(&mut b, ms(1));
        let p = b.allow(ms(2)).expect("closed");
        b.on_result(ms(2), p, true, Duration::ZERO);
        fail(&mut b, ms(3));
        fail(&mut b, ms(4));
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&mut b, ms(5));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.allow(ms(50)), None);
        assert_eq!(b.retry_after(ms(50)), Duration::from_millis(55));
    }

    #[test]
    fn half_open_limits_probes_and_closes_after_enough_successes() {
        let mut b = consecutive(1);
        fail(&mut b, ms(0));
        assert_eq!(b.poll_timeout(), Some(ms(100)));
        let probe = b.allow(ms(100)).expect("a probe");
        assert!(probe.probe);
        assert_eq!(b.allow(ms(100)), None, "only one probe at a time");
        b.on_result(ms(101), probe, true, Duration::ZERO);
        let p = b.allow(ms(102)).expect("second probe");
        b.on_result(ms(103), p, true, Duration::ZERO);
        assert_eq!(b.state(), BreakerState::Closed);
        let seen: Vec<_> = std::iter::from_fn(|| b.poll_transition())
            .map(|t| (t.from, t.to))
            .collect();
        use BreakerState::*;
        assert_eq!(
            seen,
            vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
    }

    #[test]
    fn a_failed_probe_reopens() {
        let mut b = consecutive(1);
        fail(&mut b, ms(0));
        let p = b.allow(ms(100)).expect("probe");
        b.on_result(ms(110), p, false, Duration::ZERO);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.poll_timeout(), Some(ms(210)));
    }

    #[test]
    fn ratio_trip_waits_for_minimum_throughput() {
        let mut b = half_failing(1000.0, 4);
        fail(&mut b, ms(0));
        fail(&mut b, ms(1));
        fail(&mut b, ms(2));
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "three calls are below the minimum"
        );
        let p = b.allow(ms(3)).expect("closed");
        b.on_result(ms(3), p, true, Duration::ZERO);
        fail(&mut b, ms(4));
        assert_eq!(b.state(), BreakerState::Open, "4 of 5 failed");
    }

    #[test]
    fn ratio_window_forgets_old_outcomes() {
        let mut b = half_failing(100.0, 3);
        fail(&mut b, ms(0));
        fail(&mut b, ms(1));
        for t in 200..203 {
            let p = b.allow(ms(t)).expect("closed");
            b.on_result(ms(t), p, true, Duration::ZERO);
        }
        fail(&mut b, ms(203));
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "old failures left the window: 1 of 4"
        );
    }

    #[test]
    fn stale_results_do_not_count() {
        let mut b = consecutive(1);
        let hung = b.allow(ms(0)).expect("closed");
        fail(&mut b, ms(0));
        assert_eq!(b.state(), BreakerState::Open);
        // Probes close it again; then the call that hung since t=0 times out.
        let p = b.allow(ms(100)).expect("probe");
        b.on_result(ms(101), p, true, Duration::ZERO);
        let p = b.allow(ms(102)).expect("probe");
        b.on_result(ms(103), p, true, Duration::ZERO);
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_result(ms(5000), hung, false, Duration::ZERO);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a result from before the outage does not re-open it"
        );
    }

    #[test]
    fn a_late_probe_result_from_an_earlier_half_open_does_not_count() {
        let mut b = breaker(&BreakerConfig {
            trip: TripConfig::ConsecutiveFailures { failures: 1 },
            success_threshold: 2,
            open_ms: 100.0,
            half_open_probes_max: 2,
            ..BreakerConfig::default()
        });
        fail(&mut b, ms(0));
        let a = b.allow(ms(100)).expect("probe a");
        let late = b.allow(ms(100)).expect("probe b");
        b.on_result(ms(101), a, false, Duration::ZERO);
        let c = b.allow(ms(201)).expect("probe c");
        let _d = b.allow(ms(201)).expect("probe d");
        b.on_result(ms(202), late, true, Duration::ZERO);
        assert_eq!(b.allow(ms(202)), None, "still two probes in flight");
        b.on_result(ms(203), c, true, Duration::ZERO);
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "one fresh success is not two"
        );
    }

    #[test]
    fn only_legal_transitions_are_legal() {
        use BreakerState::*;
        assert!(Closed.can_become(Open));
        assert!(!Closed.can_become(HalfOpen));
        assert!(!Open.can_become(Closed));
    }
}
