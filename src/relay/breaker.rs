//! Circuit breaker: stop calling a downstream that is failing.
//!
//! When a downstream is down, every call to it waits for a timeout or fails,
//! holding a worker and adding load to something already in trouble. A
//! breaker watches outcomes and, past a threshold, *opens*: no calls for a
//! while, so work waits in the queue instead of burning attempts. After the
//! open period it lets a few probe calls through (*half-open*); enough
//! successes close it, one failure opens it again.
//!
//! Two ways to trip: a run of consecutive failures, or a failure ratio over a
//! sliding time window once the window has seen a minimum number of calls
//! (so that two failures out of two calls at 3 a.m. do not open it).

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
}

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
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            trip: TripConfig::ConsecutiveFailures { failures: 5 },
            success_threshold: 2,
            open_ms: 5_000.0,
            half_open_probes_max: 1,
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
}

/// A checked [`BreakerConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerSettings {
    trip: Trip,
    success_threshold: u32,
    open_for: Duration,
    half_open_probes_max: u32,
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
        })
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

/// Outcome counts over a sliding window of fixed time buckets.
#[derive(Clone, Debug)]
struct Window {
    bucket_ns: u64,
    /// (bucket index, calls, failures) per ring slot.
    buckets: [(u64, u32, u32); WINDOW_BUCKETS],
}

impl Window {
    fn new(window: Duration) -> Window {
        let ns = duration_nanos(window);
        Window {
            bucket_ns: (ns / WINDOW_BUCKETS as u64).max(1),
            buckets: [(u64::MAX, 0, 0); WINDOW_BUCKETS],
        }
    }

    fn record(&mut self, now: Time, failed: bool) {
        let index = now.as_nanos() / self.bucket_ns;
        let slot = &mut self.buckets[(index % WINDOW_BUCKETS as u64) as usize];
        if slot.0 != index {
            *slot = (index, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u32::from(failed);
    }

    /// (calls, failures) in the buckets still inside the window.
    fn totals(&self, now: Time) -> (u32, u32) {
        let current = now.as_nanos() / self.bucket_ns;
        let live = |b: &&(u64, u32, u32)| b.0 != u64::MAX && b.0 + WINDOW_BUCKETS as u64 > current;
        self.buckets
            .iter()
            .filter(live)
            .fold((0, 0), |(c, f), b| (c + b.1, f + b.2))
    }

    fn clear(&mut self) {
        self.buckets = [(u64::MAX, 0, 0); WINDOW_BUCKETS];
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
        let window = match settings.trip {
            Trip::FailureRatio { window, .. } => window,
            // Unused by this trip; any length will do.
            Trip::ConsecutiveFailures { .. } => Duration::from_secs(1),
        };
        Breaker {
            settings: *settings,
            state: State::Closed {
                consecutive_failures: 0,
            },
            epoch: 0,
            window: Window::new(window),
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

    /// Reports how a permitted call ended. Results of calls that started
    /// before the breaker last changed state do not count.
    pub fn on_result(&mut self, now: Time, permit: Permit, success: bool) {
        if permit.epoch != self.epoch {
            return;
        }
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
                self.window.record(now, !success);
                if !success && self.should_trip(now, run) {
                    self.go(
                        now,
                        State::Open {
                            until: now + self.settings.open_for,
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
                if !success {
                    self.go(
                        now,
                        State::Open {
                            until: now + self.settings.open_for,
                        },
                    );
                    return;
                }
                *successes += 1;
                if *successes >= self.settings.success_threshold {
                    self.window.clear();
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

    fn should_trip(&self, now: Time, consecutive_failures: u32) -> bool {
        match self.settings.trip {
            Trip::ConsecutiveFailures { failures } => consecutive_failures >= failures,
            Trip::FailureRatio {
                ratio, calls_min, ..
            } => {
                let (calls, failed) = self.window.totals(now);
                calls >= calls_min && f64::from(failed) >= ratio * f64::from(calls)
            }
        }
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
        b.on_result(now, p, false);
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_run() {
        let mut b = consecutive(3);
        fail(&mut b, ms(0));
        fail(&mut b, ms(1));
        let p = b.allow(ms(2)).expect("closed");
        b.on_result(ms(2), p, true);
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
        b.on_result(ms(101), probe, true);
        let p = b.allow(ms(102)).expect("second probe");
        b.on_result(ms(103), p, true);
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
        b.on_result(ms(110), p, false);
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
        b.on_result(ms(3), p, true);
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
            b.on_result(ms(t), p, true);
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
        b.on_result(ms(101), p, true);
        let p = b.allow(ms(102)).expect("probe");
        b.on_result(ms(103), p, true);
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_result(ms(5000), hung, false);
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
        });
        fail(&mut b, ms(0));
        let a = b.allow(ms(100)).expect("probe a");
        let late = b.allow(ms(100)).expect("probe b");
        b.on_result(ms(101), a, false);
        let c = b.allow(ms(201)).expect("probe c");
        let _d = b.allow(ms(201)).expect("probe d");
        b.on_result(ms(202), late, true);
        assert_eq!(b.allow(ms(202)), None, "still two probes in flight");
        b.on_result(ms(203), c, true);
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
