//! How long a downstream takes to answer: a distribution, drawn per call.
//!
//! One set of shapes for the simulator and the real-time services, so that
//! a scenario's `latency` means the same wherever it is served.

use crate::relay::{ensure, ensure_ms, ConfigError};
use crate::rng::{exponential, unit, Stream};
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
    /// Uniform on `[min_ms, max_ms]`.
    Uniform {
        min_ms: f64,
        max_ms: f64,
    },
}

impl LatencyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            LatencyConfig::Constant { ms } => ensure_ms(ms, "latency.ms"),
            LatencyConfig::Exponential { mean_ms } => ensure_ms(mean_ms, "latency.mean_ms"),
            LatencyConfig::LogNormal { median_ms, sigma } => {
                ensure_ms(median_ms, "latency.median_ms")?;
                ensure(median_ms > 0.0, "latency.median_ms", "must be > 0")?;
                ensure(
                    sigma.is_finite() && sigma >= 0.0,
                    "latency.sigma",
                    "must be ≥ 0",
                )
            }
            LatencyConfig::Uniform { min_ms, max_ms } => {
                ensure_ms(min_ms, "latency.min_ms")?;
                ensure_ms(max_ms, "latency.max_ms")?;
                ensure(max_ms >= min_ms, "latency.max_ms", "must be ≥ min_ms")
            }
        }
    }
}

/// A latency distribution ready to draw from.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    cfg: LatencyConfig,
    log_normal: Option<LogNormal<f64>>,
}

impl Latency {
    pub fn new(cfg: LatencyConfig) -> Latency {
        let log_normal = match cfg {
            LatencyConfig::LogNormal { median_ms, sigma } => {
                LogNormal::new(median_ms.max(1e-9).ln(), sigma).ok()
            }
            _ => None,
        };
        Latency { cfg, log_normal }
    }

    pub fn config(&self) -> LatencyConfig {
        self.cfg
    }

    /// One call's latency. A constant draws nothing, so adding a constant
    /// downstream never shifts the stream.
    pub fn draw_ms(&self, rng: &mut Stream) -> f64 {
        match self.cfg {
            LatencyConfig::Constant { ms } => ms,
            LatencyConfig::Exponential { mean_ms } => exponential(rng, mean_ms),
            LatencyConfig::LogNormal { .. } => self.log_normal.map_or(0.0, |d| d.sample(rng)),
            LatencyConfig::Uniform { min_ms, max_ms } => min_ms + unit(rng) * (max_ms - min_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Domain, Seed};

    fn draws(cfg: LatencyConfig, n: usize) -> Vec<f64> {
        cfg.validate().expect("valid");
        let l = Latency::new(cfg);
        let mut rng = Seed(1).stream(Domain::Downstream, 0);
        let mut v: Vec<f64> = (0..n).map(|_| l.draw_ms(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    #[test]
    fn log_normal_median_is_close_to_configured() {
        let ms = draws(
            LatencyConfig::LogNormal {
                median_ms: 20.0,
                sigma: 1.0,
            },
            20_001,
        );
        assert!((18.5..21.5).contains(&ms[10_000]), "median {}", ms[10_000]);
    }

    #[test]
    fn uniform_stays_in_its_bounds_and_fills_them() {
        let ms = draws(
            LatencyConfig::Uniform {
                min_ms: 5.0,
                max_ms: 15.0,
            },
            10_000,
        );
        assert!(
            ms[0] >= 5.0 && ms[9_999] <= 15.0,
            "{} .. {}",
            ms[0],
            ms[9_999]
        );
        assert!((9.5..10.5).contains(&ms[5_000]), "median {}", ms[5_000]);
    }

    #[test]
    fn inverted_uniform_bounds_are_refused() {
        let cfg = LatencyConfig::Uniform {
            min_ms: 5.0,
            max_ms: 1.0,
        };
        assert_eq!(cfg.validate().unwrap_err().field, "latency.max_ms");
    }
}
