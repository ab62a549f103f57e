//! The simulated downstream: latency, failures, outages, brownouts, capacity,
//! and a ledger of side effects per idempotency key.
//!
//! Faults are data: an ordered list of windows, the first that covers the
//! call's start time decides its fate. The side-effect ledger is what turns
//! "duplicates" from a guess into a count: every call that lands adds one
//! effect to its key, unless the downstream honours idempotency keys.

use crate::relay::{ensure, ensure_ms, ensure_probability, CallError, ConfigError};
use crate::rng::{exponential, unit, Stream};
use crate::time::ms_to_nanos;
use crate::time::{secs_to_nanos, Time};
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LatencyConfig {
    Constant {
        ms: f64,
    },
    Exponential {
        mean_ms: f64,
    },
    /// Heavy-tailed: `exp(N(ln median, sigma))`.
    LogNormal {
        median_ms: f64,
        sigma: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutageMode {
    /// Calls fail at once (connection refused).
    FailFast,
    /// Calls hang until the window ends (or the caller's timeout fires first).
    Hang,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageConfig {
    pub start_s: f64,
    pub end_s: f64,
    pub mode: OutageMode,
}

/// A partial outage: more failures and slower answers for a while.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrownoutConfig {
    pub start_s: f64,
    pub end_s: f64,
    pub failure_rate: f64,
    #[serde(default = "one")]
    pub latency_factor: f64,
}

fn one() -> f64 {
    1.0
}

/// Beyond `concurrency_max` calls at once, each extra call is slower, or fails.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    pub concurrency_max: u32,
    /// Latency multiplier per call over the limit, relative to the limit
    /// (1.0: twice the load, twice the latency).
    #[serde(default = "one")]
    pub slowdown_per_excess: f64,
    /// Probability that a call over the limit fails outright.
    #[serde(default)]
    pub failure_rate_over: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamConfig {
    pub latency: LatencyConfig,
    /// Probability that an attempt fails (no side effect). A failed attempt
    /// takes its full latency, like a 500 after the work was tried.
    pub failure_rate: f64,
    /// How long a call takes to fail during a fail-fast outage.
    pub fail_fast_ms: f64,
    /// Deduplicate side effects by idempotency key, as a well-behaved API does.
    pub honours_idempotency_key: bool,
    pub outages: Vec<OutageConfig>,
    pub brownouts: Vec<BrownoutConfig>,
    pub capacity: Option<CapacityConfig>,
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        DownstreamConfig {
            latency: LatencyConfig::Exponential { mean_ms: 10.0 },
            failure_rate: 0.0,
            fail_fast_ms: 1.0,
            honours_idempotency_key: false,
            outages: vec![],
            brownouts: vec![],
            capacity: None,
        }
    }
}

/// Fault windows per list; more is a mistake, not a scenario.
const WINDOWS_MAX: usize = 1000;

impl DownstreamConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.latency {
            LatencyConfig::Constant { ms } => ensure_ms(ms, "latency.ms")?,
            LatencyConfig::Exponential { mean_ms } => ensure_ms(mean_ms, "latency.mean_ms")?,
            LatencyConfig::LogNormal { median_ms, sigma } => {
                ensure_ms(median_ms, "latency.median_ms")?;
                ensure(median_ms > 0.0, "latency.median_ms", "must be > 0")?;
                ensure(
                    sigma.is_finite() && sigma >= 0.0,
                    "latency.sigma",
                    "must be ≥ 0",
                )?;
            }
        }
        ensure_probability(self.failure_rate, "failure_rate")?;
        ensure_ms(self.fail_fast_ms, "fail_fast_ms")?;
        ensure(
            self.outages.len() <= WINDOWS_MAX,
            "outages",
            format!("at most {WINDOWS_MAX} windows"),
        )?;
        ensure(
            self.brownouts.len() <= WINDOWS_MAX,
            "brownouts",
            format!("at most {WINDOWS_MAX} windows"),
        )?;
        for (i, o) in self.outages.iter().enumerate() {
            window_ok(o.start_s, o.end_s, &format!("outages[{i}]"))?;
        }
        for (i, b) in self.brownouts.iter().enumerate() {
            window_ok(b.start_s, b.end_s, &format!("brownouts[{i}]"))?;
            ensure_probability(b.failure_rate, &format!("brownouts[{i}].failure_rate"))?;
            ensure(
                b.latency_factor >= 0.0,
                &format!("brownouts[{i}].latency_factor"),
                "must be ≥ 0",
            )?;
        }
        if let Some(c) = &self.capacity {
            ensure(
                c.concurrency_max >= 1,
                "capacity.concurrency_max",
                "must be ≥ 1",
            )?;
            ensure(
                c.slowdown_per_excess >= 0.0,
                "capacity.slowdown_per_excess",
                "must be ≥ 0",
            )?;
            ensure_probability(c.failure_rate_over, "capacity.failure_rate_over")?;
        }
        Ok(())
    }
}

fn window_ok(start_s: f64, end_s: f64, field: &str) -> Result<(), ConfigError> {
    ensure(
        start_s.is_finite() && start_s >= 0.0,
        &format!("{field}.start_s"),
        "must be ≥ 0",
    )?;
    ensure(
        end_s.is_finite() && end_s > start_s,
        &format!("{field}.end_s"),
        "must be after start_s",
    )
}

/// How one call will go, decided when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallPlan {
    pub done_at: Time,
    pub result: Result<(), CallError>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Time,
    end: Time,
}

impl Window {
    fn new(start_s: f64, end_s: f64) -> Window {
        Window {
            start: Time::from_secs_f64(start_s),
            end: Time::from_secs_f64(end_s),
        }
    }

    fn covers(self, t: Time) -> bool {
        self.start <= t && t < self.end
    }
}

pub struct Downstream {
    cfg: DownstreamConfig,
    outages: Vec<(Window, OutageMode)>,
    brownouts: Vec<(Window, f64, f64)>,
    log_normal: Option<LogNormal<f64>>,
    rng: Stream,
    in_flight: u32,
    in_flight_max_seen: u32,
    /// Side effects per key (keys are dense request numbers), saturating.
    effects: Vec<u8>,
    effects_total: u64,
    duplicates: u64,
    calls: u64,
}

impl Downstream {
    pub fn new(cfg: &DownstreamConfig, rng: Stream) -> Downstream {
        let log_normal = match cfg.latency {
            LatencyConfig::LogNormal { median_ms, sigma } => {
                LogNormal::new(median_ms.max(1e-9).ln(), sigma).ok()
            }
            _ => None,
        };
        Downstream {
            outages: cfg
                .outages
                .iter()
                .map(|o| (Window::new(o.start_s, o.end_s), o.mode))
                .collect(),
            brownouts: cfg
                .brownouts
                .iter()
                .map(|b| {
                    (
                        Window::new(b.start_s, b.end_s),
                        b.failure_rate,
                        b.latency_factor,
                    )
                })
                .collect(),
            cfg: cfg.clone(),
            log_normal,
            rng,
            in_flight: 0,
            in_flight_max_seen: 0,
            effects: Vec::new(),
            effects_total: 0,
            duplicates: 0,
            calls: 0,
        }
    }

    fn latency_ms(&mut self) -> f64 {
        match self.cfg.latency {
            LatencyConfig::Constant { ms } => ms,
            LatencyConfig::Exponential { mean_ms } => exponential(&mut self.rng, mean_ms),
            LatencyConfig::LogNormal { .. } => {
                self.log_normal.map_or(0.0, |d| d.sample(&mut self.rng))
            }
        }
    }

    /// A call starts now: decide when it answers and how.
    pub fn start(&mut self, now: Time) -> CallPlan {
        self.calls += 1;
        self.in_flight += 1;
        self.in_flight_max_seen = self.in_flight_max_seen.max(self.in_flight);
        let after = |ms: f64| Time::from_nanos(now.as_nanos() + ms_to_nanos(ms));
        if let Some((w, mode)) = self.outages.iter().find(|(w, _)| w.covers(now)).copied() {
            let done_at = match mode {
                OutageMode::FailFast => after(self.cfg.fail_fast_ms),
                OutageMode::Hang => w.end,
            };
            return CallPlan {
                done_at,
                result: Err(CallError::ServerError),
            };
        }
        let (mut failure_rate, mut factor) = (self.cfg.failure_rate, 1.0);
        if let Some((_, rate, f)) = self.brownouts.iter().find(|(w, ..)| w.covers(now)).copied() {
            failure_rate = rate;
            factor = f;
        }
        if let Some(c) = self.cfg.capacity {
            let excess = self.in_flight.saturating_sub(c.concurrency_max);
            if excess > 0 {
                factor *=
                    1.0 + c.slowdown_per_excess * f64::from(excess) / f64::from(c.concurrency_max);
                failure_rate = 1.0 - (1.0 - failure_rate) * (1.0 - c.failure_rate_over);
            }
        }
        let latency_ms = self.latency_ms() * factor;
        if failure_rate > 0.0 && unit(&mut self.rng) < failure_rate {
            return CallPlan {
                done_at: after(latency_ms),
                result: Err(CallError::ServerError),
            };
        }
        CallPlan {
            done_at: after(latency_ms),
            result: Ok(()),
        }
    }

    /// A call ends; a successful one lands its side effect on `key`.
    /// Returns whether that effect was a duplicate.
    pub fn finish(&mut self, key: Option<u64>, landed: bool) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        let (Some(key), true) = (key, landed) else {
            return false;
        };
        let index = usize::try_from(key).unwrap_or(usize::MAX);
        if index >= self.effects.len() {
            self.effects
                .resize(index.saturating_add(1).max(self.effects.len() * 2), 0);
        }
        let seen = self.effects[index];
        if seen > 0 && self.cfg.honours_idempotency_key {
            return false;
        }
        self.effects[index] = seen.saturating_add(1);
        self.effects_total += 1;
        let duplicate = seen > 0;
        self.duplicates += u64::from(duplicate);
        duplicate
    }

    /// Side effects on `key` so far.
    pub fn effects_on(&self, key: u64) -> u8 {
        usize::try_from(key)
            .ok()
            .and_then(|i| self.effects.get(i))
            .copied()
            .unwrap_or(0)
    }

    pub fn calls(&self) -> u64 {
        self.calls
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn effects_total(&self) -> u64 {
        self.effects_total
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    pub fn in_flight_max_seen(&self) -> u32 {
        self.in_flight_max_seen
    }

    /// Is `t` inside an outage window?
    pub fn is_down(&self, t: Time) -> bool {
        self.outages.iter().any(|(w, _)| w.covers(t))
    }

    /// When the last fault window ends.
    pub fn faults_end(&self) -> Time {
        let outages = self.outages.iter().map(|(w, _)| w.end);
        let brownouts = self.brownouts.iter().map(|(w, ..)| w.end);
        outages.chain(brownouts).max().unwrap_or(Time::ZERO)
    }
}

/// Seconds to virtual time, for windows.
pub fn at_secs(s: f64) -> Time {
    Time::from_nanos(secs_to_nanos(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Domain, Seed};

    fn downstream(cfg: DownstreamConfig) -> Downstream {
        cfg.validate().expect("valid");
        Downstream::new(&cfg, Seed(1).stream(Domain::Downstream, 0))
    }

    #[test]
    fn outage_fails_fast_or_hangs_until_the_window_ends() {
        let mut d = downstream(DownstreamConfig {
            latency: LatencyConfig::Constant { ms: 10.0 },
            outages: vec![
                OutageConfig {
                    start_s: 1.0,
                    end_s: 2.0,
                    mode: OutageMode::FailFast,
                },
                OutageConfig {
                    start_s: 3.0,
                    end_s: 4.0,
                    mode: OutageMode::Hang,
                },
            ],
            ..DownstreamConfig::default()
        });
        let ok = d.start(Time::from_millis(500));
        assert_eq!(
            ok,
            CallPlan {
                done_at: Time::from_millis(510),
                result: Ok(())
            }
        );
        let fast = d.start(Time::from_millis(1500));
        assert_eq!(
            fast,
            CallPlan {
                done_at: Time::from_millis(1501),
                result: Err(CallError::ServerError)
            }
        );
        let hang = d.start(Time::from_millis(3100));
        assert_eq!(hang.done_at, Time::from_millis(4000));
        assert!(d.is_down(Time::from_millis(3999)) && !d.is_down(Time::from_millis(4000)));
    }

    #[test]
    fn failure_rate_is_respected() {
        let mut d = downstream(DownstreamConfig {
            failure_rate: 0.8,
            ..DownstreamConfig::default()
        });
        let failed = (0..10_000)
            .filter(|_| d.start(Time::ZERO).result.is_err())
            .count();
        assert!((7_700..8_300).contains(&failed), "{failed} of 10000 failed");
    }

    #[test]
    fn second_effect_on_a_key_is_a_duplicate_unless_keys_are_honoured() {
        let mut d = downstream(DownstreamConfig::default());
        assert!(!d.finish(Some(3), true));
        assert!(d.finish(Some(3), true));
        assert!(!d.finish(Some(3), false), "a failed call has no effect");
        assert_eq!((d.effects_on(3), d.duplicates()), (2, 1));
        let mut d = downstream(DownstreamConfig {
            honours_idempotency_key: true,
            ..DownstreamConfig::default()
        });
        d.finish(Some(3), true);
        assert!(!d.finish(Some(3), true));
        assert_eq!((d.effects_on(3), d.duplicates()), (1, 0));
    }

    #[test]
    fn log_normal_median_is_close_to_configured() {
        let mut d = downstream(DownstreamConfig {
            latency: LatencyConfig::LogNormal {
                median_ms: 20.0,
                sigma: 1.0,
            },
            ..DownstreamConfig::default()
        });
        let mut ms: Vec<u64> = (0..20_001)
            .map(|_| d.start(Time::ZERO).done_at.as_nanos())
            .collect();
        ms.sort_unstable();
        let median = ms[10_000] as f64 / 1e6;
        assert!((18.5..21.5).contains(&median), "median {median}");
    }
}
