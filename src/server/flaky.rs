//! A flaky downstream's behaviour: how long an answer takes and whether it fails.
//!
//! Demos and tests need a downstream that misbehaves on demand: a base
//! failure rate, a latency distribution, and modes for the faults that hurt
//! a relay most — an outage that fails fast, a brownout that is slow and
//! mostly failing, a hang that answers only after the caller gave up. The
//! same model drives the relay's built-in in-process downstream and the
//! standalone `downstream` service. Draws come from a seeded stream.

use crate::relay::{ensure, ensure_ms, ensure_probability, ConfigError};
use crate::rng::{exponential, unit, Stream};
use crate::time::ms_to_nanos;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How answer times are spread around `latency_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyKind {
    /// Always `latency_ms`.
    #[default]
    Constant,
    /// Exponential with mean `latency_ms`.
    Exponential,
    /// Uniform on [0, 2 × `latency_ms`].
    Uniform,
}

/// Which fault, if any, is switched on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    /// Latency and failure rate as configured.
    #[default]
    Normal,
    /// Every call fails at once (503).
    Outage,
    /// Slower by `brownout_latency_factor`, failing at least at `brownout_failure_rate`.
    Brownout,
    /// Every call waits `hang_ms`, then fails: long past any sane timeout.
    Hang,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Probability that a call fails in normal mode.
    pub failure_rate: f64,
    /// Constant or mean answer time.
    pub latency_ms: f64,
    pub latency: LatencyKind,
    pub mode: FaultMode,
    pub brownout_latency_factor: f64,
    pub brownout_failure_rate: f64,
    pub hang_ms: f64,
    /// Seed of the failure and latency draws.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            failure_rate: 0.0,
            latency_ms: 10.0,
            latency: LatencyKind::Constant,
            mode: FaultMode::Normal,
            brownout_latency_factor: 5.0,
            brownout_failure_rate: 0.5,
            hang_ms: 30_000.0,
            seed: 1,
        }
    }
}

/// Longest delay the model may draw: every answer comes within an hour.
const DELAY_MS_MAX: f64 = 3_600_000.0;

impl FaultConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure_probability(self.failure_rate, "failure_rate")?;
        ensure_ms(self.latency_ms, "latency_ms")?;
        ensure(
            self.latency_ms <= DELAY_MS_MAX,
            "latency_ms",
            "must be ≤ 1 hour",
        )?;
        ensure(
            self.brownout_latency_factor.is_finite() && self.brownout_latency_factor >= 1.0,
            "brownout_latency_factor",
            "must be ≥ 1",
        )?;
        ensure_probability(self.brownout_failure_rate, "brownout_failure_rate")?;
        ensure_ms(self.hang_ms, "hang_ms")?;
        ensure(self.hang_ms <= DELAY_MS_MAX, "hang_ms", "must be ≤ 1 hour")
    }

    /// Draws one call's fate: when it answers, and whether it succeeds.
    pub fn draw(&self, rng: &mut Stream) -> Fate {
        match self.mode {
            FaultMode::Outage => Fate::fail(0.0),
            FaultMode::Hang => Fate::fail(self.hang_ms),
            FaultMode::Normal => {
                let delay = self.draw_latency_ms(rng);
                Fate::new(delay, unit(rng) >= self.failure_rate)
            }
            FaultMode::Brownout => {
                let delay = self.draw_latency_ms(rng) * self.brownout_latency_factor;
                let rate = self.failure_rate.max(self.brownout_failure_rate);
                Fate::new(delay, unit(rng) >= rate)
            }
        }
    }

    fn draw_latency_ms(&self, rng: &mut Stream) -> f64 {
        match self.latency {
            LatencyKind::Constant => self.latency_ms,
            LatencyKind::Exponential => exponential(rng, self.latency_ms),
            LatencyKind::Uniform => unit(rng) * 2.0 * self.latency_ms,
        }
    }
}

/// One call's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fate {
    pub delay: Duration,
    pub ok: bool,
}

impl Fate {
    fn new(delay_ms: f64, ok: bool) -> Fate {
        let ms = delay_ms.clamp(0.0, DELAY_MS_MAX);
        Fate {
            delay: Duration::from_nanos(ms_to_nanos(ms)),
            ok,
        }
    }

    fn fail(delay_ms: f64) -> Fate {
        Fate::new(delay_ms, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Domain, Seed};

    #[test]
    fn failure_rate_is_roughly_honoured_and_seeded() {
        let cfg = FaultConfig {
            failure_rate: 0.3,
            ..FaultConfig::default()
        };
        let draws = |seed| {
            let mut rng = Seed(seed).stream(Domain::Downstream, 0);
            (0..10_000).filter(|_| !cfg.draw(&mut rng).ok).count()
        };
        let failed = draws(1);
        assert_eq!(failed, draws(1), "same seed, same draws");
        assert!((2_700..3_300).contains(&failed), "{failed} failures");
    }

    #[test]
    fn outage_fails_fast_and_hang_waits() {
        let mut rng = Seed(1).stream(Domain::Downstream, 0);
        let mut cfg = FaultConfig {
            mode: FaultMode::Outage,
            ..FaultConfig::default()
        };
        assert_eq!(cfg.draw(&mut rng), Fate::fail(0.0));
        cfg.mode = FaultMode::Hang;
        cfg.hang_ms = 250.0;
        assert_eq!(cfg.draw(&mut rng).delay, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_name_their_field() {
        let cfg = FaultConfig {
            failure_rate: 1.5,
            ..FaultConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "failure_rate");
    }
}
