//! Adaptive concurrency limit on downstream calls.
//!
//! A fixed worker count is right for one latency only: when the downstream
//! slows down, every worker piles onto it and its queue (and latency) grows
//! further. An adaptive limit, like TCP congestion control, learns how many
//! calls the downstream can take from what its answers say, and holds the
//! rest in the relay's queue, where age shedding and the bounded queue can
//! act on them. Two algorithms, as Netflix's `concurrency-limits` library
//! has them (`AIMDLimit`, `Gradient2Limit`); Envoy's adaptive concurrency
//! filter applies the same gradient idea (`limit × minRTT / sampleRTT +
//! headroom`) to a proxy's upstream calls.
//!
//! - AIMD: on each call that ends without a drop (and not slower than the
//!   latency threshold), add `increase` while the limit is in use (calls in
//!   flight ≥ limit / 2, Netflix's "not application-limited" test); on a
//!   drop (a timeout, a throttle, a server error), multiply by
//!   `backoff_ratio`.
//! - Gradient: a long-window exponential average of the round-trip time is
//!   the "no load" latency; each sample's RTT is the short one. The gradient
//!   `clamp(tolerance × long / short, 0.5, 1)` is 1 while latency stays
//!   within the tolerance and shrinks the limit when it grows:
//!   `new = limit × gradient + queue_size`, smoothed by `smoothing`. When
//!   the long average is more than twice the short RTT (latency fell after
//!   a spell of overload), it is cut by 5 % per sample so the limit
//!   recovers without waiting for the long window.
//!
//! The limit is kept in `[min, max]` at all times; the relay starts a call
//! only while calls in flight < min(workers, limit).

use super::config::WORKERS_LIMIT;
use super::config_error::{ensure, parse_ms, ConfigError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[relay.concurrency_limit]`: which algorithm and its options.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConcurrencyLimitConfig {
    Aimd(AimdConfig),
    Gradient(GradientConfig),
}

/// Options of the AIMD limit (Netflix `AIMDLimit`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AimdConfig {
    pub initial: u32,
    pub min: u32,
    pub max: u32,
    /// The limit is multiplied by this on a drop; in (0, 1).
    pub backoff_ratio: f64,
    /// Added to the limit on a success while the limit is in use.
    pub increase: u32,
    /// Whether an attempt timeout counts as a drop.
    pub timeout_is_drop: bool,
    /// A success slower than this counts as a drop; 0 = off.
    pub latency_threshold_ms: f64,
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig {
            initial: 20,
            min: 1,
            max: 200,
            backoff_ratio: 0.9,
            increase: 1,
            timeout_is_drop: true,
            latency_threshold_ms: 0.0,
        }
    }
}

/// Options of the gradient limit (Netflix `Gradient2Limit`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradientConfig {
    pub initial: u32,
    pub min: u32,
    pub max: u32,
    /// Weight of the new estimate against the current limit; in (0, 1].
    pub smoothing: f64,
    /// How much slower than the long-window RTT a sample may be before the
    /// limit shrinks; ≥ 1.
    pub tolerance: f64,
    /// Samples in the long-window exponential average of the RTT.
    pub long_window: u32,
    /// Headroom added on every update, so the limit can grow (Netflix's
    /// default is 4).
    pub queue_size: f64,
}

impl Default for GradientConfig {
    fn default() -> Self {
        GradientConfig {
            initial: 20,
            min: 1,
            max: 200,
            smoothing: 0.2,
            tolerance: 1.5,
            long_window: 600,
            queue_size: 4.0,
        }
    }
}

/// A checked [`ConcurrencyLimitConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConcurrencyLimitSettings {
    Aimd {
        bounds: Bounds,
        backoff_ratio: f64,
        increase: f64,
        timeout_is_drop: bool,
        latency_threshold: Option<Duration>,
    },
    Gradient {
        bounds: Bounds,
        smoothing: f64,
        tolerance: f64,
        long_window: u32,
        queue_size: f64,
    },
}

/// `initial`, `min` and `max` of either algorithm, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    initial: u32,
    min: u32,
    max: u32,
}

fn check_bounds(initial: u32, min: u32, max: u32) -> Result<Bounds, ConfigError> {
    ensure(
        min >= 1,
        "min",
        "must be ≥ 1 (a limit of 0 stops every call)",
    )?;
    ensure(
        max as usize <= WORKERS_LIMIT,
        "max",
        format!("must be ≤ {WORKERS_LIMIT}"),
    )?;
    ensure(max >= min, "max", format!("must be ≥ min = {min}"))?;
    ensure(
        (min..=max).contains(&initial),
        "initial",
        format!("must be between min = {min} and max = {max}"),
    )?;
    Ok(Bounds { initial, min, max })
}

impl ConcurrencyLimitConfig {
    pub fn check(&self) -> Result<ConcurrencyLimitSettings, ConfigError> {
        match *self {
            ConcurrencyLimitConfig::Aimd(c) => {
                let bounds = check_bounds(c.initial, c.min, c.max)?;
                ensure(
                    c.backoff_ratio > 0.0 && c.backoff_ratio < 1.0,
                    "backoff_ratio",
                    "must be in (0, 1), e.g. 0.9",
                )?;
                ensure(c.increase >= 1, "increase", "must be ≥ 1")?;
                let threshold = parse_ms(c.latency_threshold_ms, "latency_threshold_ms")?;
                Ok(ConcurrencyLimitSettings::Aimd {
                    bounds,
                    backoff_ratio: c.backoff_ratio,
                    increase: f64::from(c.increase),
                    timeout_is_drop: c.timeout_is_drop,
                    latency_threshold: (c.latency_threshold_ms > 0.0).then_some(threshold),
                })
            }
            ConcurrencyLimitConfig::Gradient(c) => {
                let bounds = check_bounds(c.initial, c.min, c.max)?;
                ensure(
                    c.smoothing > 0.0 && c.smoothing <= 1.0,
                    "smoothing",
                    "must be in (0, 1], e.g. 0.2",
                )?;
                ensure(
                    c.tolerance.is_finite() && c.tolerance >= 1.0,
                    "tolerance",
                    "must be ≥ 1, e.g. 1.5",
                )?;
                ensure(
                    (1..=1_000_000).contains(&c.long_window),
                    "long_window",
                    "must be between 1 and 1,000,000 samples",
                )?;
                ensure(
                    c.queue_size.is_finite() && c.queue_size >= 0.0,
                    "queue_size",
                    "must be ≥ 0",
                )?;
                Ok(ConcurrencyLimitSettings::Gradient {
                    bounds,
                    smoothing: c.smoothing,
                    tolerance: c.tolerance,
                    long_window: c.long_window,
                    queue_size: c.queue_size,
                })
            }
        }
    }
}

/// How a call ended, as the limit sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// An answer that says the downstream coped (a success or a 4xx).
    Ok,
    /// The attempt timed out.
    Timeout,
    /// The downstream throttled or failed the call.
    Dropped,
}

/// Samples before the long RTT average switches from a plain mean to an
/// exponential one (as Netflix's `ExpAvgMeasurement` warms up).
const WARMUP_SAMPLES: u32 = 10;

/// The long-window exponential average of the RTT, in nanoseconds.
#[derive(Clone, Copy, Debug)]
struct LongRtt {
    value: f64,
    count: u32,
    window: u32,
}

impl LongRtt {
    fn add(&mut self, rtt: f64) -> f64 {
        if self.count < WARMUP_SAMPLES {
            self.count += 1;
            self.value += (rtt - self.value) / f64::from(self.count);
        } else {
            let factor = 2.0 / (f64::from(self.window) + 1.0);
            self.value = self.value * (1.0 - factor) + rtt * factor;
        }
        self.value
    }
}

/// The limit's state and what it has been.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit {
    settings: ConcurrencyLimitSettings,
    bounds: Bounds,
    /// The estimate; the limit in force is its floor.
    estimate: f64,
    long_rtt: LongRtt,
    min_seen: usize,
    max_seen: usize,
}

impl ConcurrencyLimit {
    pub fn new(settings: &ConcurrencyLimitSettings) -> ConcurrencyLimit {
        let (bounds, window) = match *settings {
            ConcurrencyLimitSettings::Aimd { bounds, .. } => (bounds, 1),
            ConcurrencyLimitSettings::Gradient {
                bounds,
                long_window,
                ..
            } => (bounds, long_window),
        };
        let initial = bounds.initial as usize;
        ConcurrencyLimit {
            settings: *settings,
            bounds,
            estimate: f64::from(bounds.initial),
            long_rtt: LongRtt {
                value: 0.0,
                count: 0,
                window,
            },
            min_seen: initial,
            max_seen: initial,
        }
    }

    /// Calls allowed in flight now; always within `[min, max]`.
    pub fn limit(&self) -> usize {
        self.estimate as usize
    }

    /// The lowest limit so far.
    pub fn min_seen(&self) -> usize {
        self.min_seen
    }

    /// The highest limit so far.
    pub fn max_seen(&self) -> usize {
        self.max_seen
    }

    /// A call ended after `rtt` with `in_flight` calls in flight (itself
    /// included): update the limit.
    pub fn on_sample(&mut self, rtt: Duration, in_flight: usize, sample: Sample) {
        let next = match self.settings {
            ConcurrencyLimitSettings::Aimd {
                backoff_ratio,
                increase,
                timeout_is_drop,
                latency_threshold,
                ..
            } => {
                let slow = latency_threshold.is_some_and(|t| rtt > t);
                let drop = match sample {
                    Sample::Ok => slow,
                    Sample::Timeout => timeout_is_drop,
                    Sample::Dropped => true,
                };
                self.aimd(drop, in_flight, backoff_ratio, increase)
            }
            ConcurrencyLimitSettings::Gradient {
                smoothing,
                tolerance,
                queue_size,
                ..
            } => self.gradient(rtt, in_flight, smoothing, tolerance, queue_size),
        };
        let (lo, hi) = (f64::from(self.bounds.min), f64::from(self.bounds.max));
        self.estimate = if next.is_finite() {
            next.clamp(lo, hi)
        } else {
            lo
        };
        let limit = self.limit();
        self.min_seen = self.min_seen.min(limit);
        self.max_seen = self.max_seen.max(limit);
    }

    fn aimd(&self, drop: bool, in_flight: usize, ratio: f64, increase: f64) -> f64 {
        let limit = self.estimate.floor();
        if drop {
            (limit * ratio).floor()
        } else if in_flight as f64 * 2.0 >= limit {
            limit + increase
        } else {
            limit
        }
    }

    fn gradient(
        &mut self,
        rtt: Duration,
        in_flight: usize,
        smoothing: f64,
        tolerance: f64,
        queue_size: f64,
    ) -> f64 {
        // A zero RTT (an instant answer on virtual time) would divide by 0.
        let short = (rtt.as_nanos() as f64).max(1.0);
        let long = self.long_rtt.add(short);
        if long / short > 2.0 {
            self.long_rtt.value *= 0.95;
        }
        // Application-limited: too few calls to learn anything.
        if (in_flight as f64) < self.estimate / 2.0 {
            return self.estimate;
        }
        let gradient = (tolerance * long / short).clamp(0.5, 1.0);
        let target = self.estimate * gradient + queue_size;
        self.estimate * (1.0 - smoothing) + target * smoothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aimd(initial: u32, min: u32, max: u32) -> ConcurrencyLimit {
        let cfg = ConcurrencyLimitConfig::Aimd(AimdConfig {
            initial,
            min,
            max,
            ..AimdConfig::default()
        });
        ConcurrencyLimit::new(&cfg.check().expect("valid"))
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn aimd_adds_on_success_in_use_and_backs_off_on_a_drop() {
        let mut l = aimd(10, 2, 12);
        l.on_sample(MS, 5, Sample::Ok);
        assert_eq!(l.limit(), 11, "5 in flight ≥ 10/2: in use");
        l.on_sample(MS, 1, Sample::Ok);
        assert_eq!(l.limit(), 11, "application-limited: unchanged");
        l.on_sample(MS, 11, Sample::Dropped);
        assert_eq!(l.limit(), 9, "floor(11 × 0.9)");
        for _ in 0..50 {
            l.on_sample(MS, 100, Sample::Ok);
        }
        assert_eq!(l.limit(), 12, "capped at max");
        for _ in 0..100 {
            l.on_sample(MS, 100, Sample::Timeout);
        }
        assert_eq!((l.limit(), l.min_seen(), l.max_seen()), (2, 2, 12));
    }

    #[test]
    fn aimd_can_ignore_timeouts_and_treat_slow_calls_as_drops() {
        let cfg = ConcurrencyLimitConfig::Aimd(AimdConfig {
            initial: 10,
            timeout_is_drop: false,
            latency_threshold_ms: 100.0,
            ..AimdConfig::default()
        });
        let mut l = ConcurrencyLimit::new(&cfg.check().expect("valid"));
        l.on_sample(MS, 10, Sample::Timeout);
        assert_eq!(l.limit(), 11, "a timeout is not a drop here");
        l.on_sample(200 * MS, 10, Sample::Ok);
        assert_eq!(l.limit(), 9, "a slow success is");
    }

    #[test]
    fn gradient_holds_at_steady_latency_and_shrinks_when_it_grows() {
        let cfg = ConcurrencyLimitConfig::Gradient(GradientConfig {
            initial: 50,
            min: 5,
            max: 100,
            ..GradientConfig::default()
        });
        let mut l = ConcurrencyLimit::new(&cfg.check().expect("valid"));
        for _ in 0..100 {
            l.on_sample(10 * MS, 60, Sample::Ok);
        }
        let steady = l.limit();
        assert!(
            steady > 50,
            "steady latency: the queue_size headroom grows it"
        );
        for _ in 0..30 {
            l.on_sample(100 * MS, 100, Sample::Ok);
        }
        assert!(
            l.limit() < steady / 2,
            "latency ×10: {} vs {steady}",
            l.limit()
        );
        assert!(l.limit() >= 5);
    }

    #[test]
    fn bad_options_name_their_field() {
        let bad = |c: ConcurrencyLimitConfig| c.check().unwrap_err().field;
        let a = AimdConfig::default();
        let g = GradientConfig::default();
        use ConcurrencyLimitConfig::{Aimd, Gradient};
        assert_eq!(bad(Aimd(AimdConfig { min: 0, ..a })), "min");
        assert_eq!(bad(Aimd(AimdConfig { initial: 500, ..a })), "initial");
        assert_eq!(
            bad(Aimd(AimdConfig {
                max: 0,
                min: 1,
                initial: 1,
                ..a
            })),
            "max"
        );
        assert_eq!(
            bad(Aimd(AimdConfig {
                backoff_ratio: 1.0,
                ..a
            })),
            "backoff_ratio"
        );
        assert_eq!(bad(Aimd(AimdConfig { increase: 0, ..a })), "increase");
        assert_eq!(
            bad(Gradient(GradientConfig {
                smoothing: 0.0,
                ..g
            })),
            "smoothing"
        );
        assert_eq!(
            bad(Gradient(GradientConfig {
                tolerance: 0.5,
                ..g
            })),
            "tolerance"
        );
        assert_eq!(
            bad(Gradient(GradientConfig {
                long_window: 0,
                ..g
            })),
            "long_window"
        );
    }

    #[test]
    fn parses_from_toml_by_kind() {
        let c: ConcurrencyLimitConfig =
            toml::from_str("kind = \"gradient\"\ninitial = 8\nmin = 2\nmax = 16").expect("parses");
        assert!(matches!(c, ConcurrencyLimitConfig::Gradient(g) if g.initial == 8));
        let bad = toml::from_str::<ConcurrencyLimitConfig>("kind = \"aimd\"\nincrese = 2");
        assert!(bad.is_err(), "unknown keys are refused");
    }
}
