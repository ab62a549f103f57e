//! Backoff: how long to wait before retry number `n`.
//!
//! Retrying at once turns one failure into a synchronized wave of calls: every
//! client that failed together retries together, and the wave fails again.
//! Exponential backoff spaces the waves out; jitter breaks them up. The kinds
//! here are the ones compared in the AWS Architecture Blog's "Exponential
//! Backoff and Jitter", with `v = min(cap, base · multiplier^(n-1))`:
//!
//! | kind | delay before retry `n` |
//! |---|---|
//! | none | 0 |
//! | constant | min(cap, base) |
//! | exponential | v |
//! | equal jitter | v/2 + U(0, v/2) |
//! | full jitter | U(0, v) |
//! | decorrelated jitter | min(cap, U(base, 3 · previous)), previous starting at base |
//!
//! Decorrelated jitter remembers its previous delay, so each job carries a
//! [`BackoffState`]. Randomness comes from the caller's stream.

use super::config_error::{ensure, parse_ms, ConfigError};
use crate::rng::{unit, Stream};
use crate::time::duration_nanos;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The strategy names, as written in TOML and on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(clap::ValueEnum, strum::VariantArray)]
pub enum BackoffKind {
    None,
    Constant,
    Exponential,
    EqualJitter,
    FullJitter,
    DecorrelatedJitter,
}

/// Backoff options as written by a user.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    pub kind: BackoffKind,
    pub base_ms: f64,
    pub cap_ms: f64,
    pub multiplier: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            kind: BackoffKind::FullJitter,
            base_ms: 100.0,
            cap_ms: 10_000.0,
            multiplier: 2.0,
        }
    }
}

impl BackoffConfig {
    /// Checks the options into the policy they describe.
    pub fn check(&self) -> Result<Backoff, ConfigError> {
        let base = parse_ms(self.base_ms, "base_ms")?;
        let cap = parse_ms(self.cap_ms, "cap_ms")?;
        ensure(
            self.cap_ms >= self.base_ms,
            "cap_ms",
            "backoff cap must be ≥ backoff base",
        )?;
        ensure(
            self.multiplier.is_finite() && self.multiplier >= 1.0,
            "multiplier",
            format!("must be ≥ 1, got {}", self.multiplier),
        )?;
        Ok(Backoff {
            kind: self.kind,
            base_ns: duration_nanos(base),
            cap_ns: duration_nanos(cap),
            multiplier: self.multiplier,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map(drop)
    }
}

/// A checked backoff policy in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    kind: BackoffKind,
    base_ns: u64,
    cap_ns: u64,
    multiplier: f64,
}

/// What decorrelated jitter remembers between retries of one job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackoffState {
    previous_ns: u64,
}

impl Backoff {
    /// The policy of a validated config. An invalid one is a bug in the
    /// caller, which should have used [`BackoffConfig::check`].
    pub fn new(cfg: &BackoffConfig) -> Backoff {
        cfg.check()
            .unwrap_or_else(|e| panic!("backoff config was not validated: {e}"))
    }

    /// `v = min(cap, base · multiplier^(retry-1))` in nanoseconds.
    fn ceiling_ns(&self, retry: u32) -> u64 {
        let exponent = retry.saturating_sub(1).min(1024) as i32;
        let v = self.base_ns as f64 * self.multiplier.powi(exponent);
        if v >= self.cap_ns as f64 {
            self.cap_ns
        } else {
            v as u64
        }
    }

    /// The delay before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32, state: &mut BackoffState, rng: &mut Stream) -> Duration {
        Duration::from_nanos(self.delay_ns(retry, state, rng))
    }

    pub fn delay_ns(&self, retry: u32, state: &mut BackoffState, rng: &mut Stream) -> u64 {
        let uniform =
            |rng: &mut Stream, lo: u64, hi: u64| lo + (unit(rng) * (hi - lo) as f64) as u64;
        match self.kind {
            BackoffKind::None => 0,
            BackoffKind::Constant => self.base_ns.min(self.cap_ns),
            BackoffKind::Exponential => self.ceiling_ns(retry),
            BackoffKind::EqualJitter => {
                let v = self.ceiling_ns(retry);
                uniform(rng, v / 2, v)
            }
            BackoffKind::FullJitter => uniform(rng, 0, self.ceiling_ns(retry)),
            BackoffKind::DecorrelatedJitter => {
                let previous = if state.previous_ns == 0 {
                    self.base_ns
                } else {
                    state.previous_ns
                };
                let hi = previous.saturating_mul(3).max(self.base_ns);
                let d = uniform(rng, self.base_ns, hi).min(self.cap_ns);
                state.previous_ns = d.max(1);
                d
            }
        }
    }

    /// The closed interval every delay for `retry` falls in, for checkers.
    pub fn bounds_ns(&self, retry: u32) -> (u64, u64) {
        match self.kind {
            BackoffKind::None => (0, 0),
            BackoffKind::Constant => (self.base_ns, self.base_ns),
            BackoffKind::Exponential => {
                let v = self.ceiling_ns(retry);
                (v, v)
            }
            BackoffKind::EqualJitter => {
                let v = self.ceiling_ns(retry);
                (v / 2, v)
            }
            BackoffKind::FullJitter => (0, self.ceiling_ns(retry)),
            BackoffKind::DecorrelatedJitter => (self.base_ns.min(self.cap_ns), self.cap_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Domain, Seed};
    use strum::VariantArray;

    fn policy(kind: BackoffKind) -> Backoff {
        Backoff::new(&BackoffConfig {
            kind,
            base_ms: 10.0,
            cap_ms: 1000.0,
            multiplier: 2.0,
        })
    }

    fn delays_ms(kind: BackoffKind, retries: u32) -> Vec<f64> {
        let b = policy(kind);
        let mut rng = Seed(1).stream(Domain::Relay, 0);
        let mut state = BackoffState::default();
        (1..=retries)
            .map(|n| b.delay(n, &mut state, &mut rng).as_secs_f64() * 1e3)
            .collect()
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        assert_eq!(
            delays_ms(BackoffKind::Exponential, 9),
            vec![10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1000.0, 1000.0]
        );
    }

    #[test]
    fn none_and_constant_ignore_the_retry_number() {
        assert_eq!(delays_ms(BackoffKind::None, 3), vec![0.0; 3]);
        assert_eq!(delays_ms(BackoffKind::Constant, 3), vec![10.0; 3]);
    }

    #[test]
    fn every_kind_stays_within_its_bounds() {
        let mut rng = Seed(9).stream(Domain::Relay, 0);
        for &kind in BackoffKind::VARIANTS {
            let b = policy(kind);
            let mut state = BackoffState::default();
            for n in 1..=30 {
                let d = b.delay_ns(n, &mut state, &mut rng);
                let (lo, hi) = b.bounds_ns(n);
                assert!(
                    lo <= d && d <= hi,
                    "{kind:?} retry {n}: {d} not in [{lo}, {hi}]"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let d = delays_ms(BackoffKind::FullJitter, 20);
        let distinct: std::collections::BTreeSet<u64> = d.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > 15, "full jitter repeated itself: {d:?}");
    }

    #[test]
    fn decorrelated_grows_from_base_within_three_times_previous() {
        let b = policy(BackoffKind::DecorrelatedJitter);
        let mut rng = Seed(3).stream(Domain::Relay, 0);
        let mut state = BackoffState::default();
        let mut previous = 10_000_000u64;
        for n in 1..=20 {
            let d = b.delay_ns(n, &mut state, &mut rng);
            assert!(
                d >= 10_000_000 && d <= (3 * previous).min(1_000_000_000),
                "retry {n}: {d}"
            );
            previous = d;
        }
    }

    #[test]
    #[should_panic(expected = "not validated")]
    fn an_invalid_config_is_refused_not_clamped() {
        Backoff::new(&BackoffConfig {
            base_ms: 50.0,
            cap_ms: 10.0,
            ..BackoffConfig::default()
        });
    }

    #[test]
    fn validation_names_the_field() {
        let bad = BackoffConfig {
            base_ms: 50.0,
            cap_ms: 10.0,
            ..BackoffConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "cap_ms");
        let bad = BackoffConfig {
            multiplier: 0.5,
            ..BackoffConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "multiplier");
    }
}
