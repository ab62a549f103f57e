//! Adaptive throttling (Google SRE book, "Handling Overload"): a caller
//! rejects some of its own sends, locally, once the downstream accepts
//! noticeably fewer than it is sent.
//!
//! Over the last `window_s` seconds the caller counts `requests` (every send
//! it tried, the ones it rejected itself included) and `accepts` (sends the
//! downstream answered without refusing: successes and ordinary failures).
//! A new send is rejected with probability
//! `max(0, (requests − k·accepts) / (requests + 1))`: nothing while
//! `requests ≤ k·accepts`, then more the further the downstream falls
//! behind. Rejected sends still count as requests, so the rejection rate
//! tracks the downstream instead of locking up. The uniform draw comes from
//! the caller, whose own random stream keeps runs comparable.

use super::config_error::{ensure, ConfigError};
use super::window::{SecondWindow, WINDOW_S_MAX};
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// Settings of adaptive throttling.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Requests allowed per accept before rejecting (the SRE book's K).
    pub k: f64,
    /// The sliding window, whole seconds.
    pub window_s: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            k: 2.0,
            window_s: 120,
        }
    }
}

impl ThrottleConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        ensure(
            self.k.is_finite() && (1.0..=1e6).contains(&self.k),
            "k",
            format!(
                "must be ≥ 1 (2 is the usual choice; lower rejects sooner), got {}",
                self.k
            ),
        )?;
        ensure(
            (1..=WINDOW_S_MAX).contains(&self.window_s),
            "window_s",
            format!(
                "must be 1 to {WINDOW_S_MAX} whole seconds, got {}",
                self.window_s
            ),
        )
    }
}

const REQUESTS: usize = 0;
const ACCEPTS: usize = 1;

/// Requests and accepts per second over the window.
#[derive(Clone, Debug)]
pub(super) struct AdaptiveThrottle {
    k: f64,
    window: SecondWindow<2>,
}

impl AdaptiveThrottle {
    /// `cfg` has passed [`ThrottleConfig::check`].
    pub(super) fn new(cfg: &ThrottleConfig) -> AdaptiveThrottle {
        AdaptiveThrottle {
            k: cfg.k,
            window: SecondWindow::new(cfg.window_s),
        }
    }

    /// The chance that a send now is rejected, from the counts before it.
    pub(super) fn reject_probability(&mut self, now: Time) -> f64 {
        let requests = self.window.sum(now, REQUESTS) as f64;
        let accepts = self.window.sum(now, ACCEPTS) as f64;
        ((requests - self.k * accepts) / (requests + 1.0)).max(0.0)
    }

    /// Counts a send as a request and says whether it may go out: rejected
    /// when `draw` (U[0, 1)) falls below the rejection probability.
    pub(super) fn admit(&mut self, now: Time, draw: f64) -> bool {
        let p = self.reject_probability(now);
        self.window.add(now, REQUESTS, 1);
        draw >= p
    }

    /// The downstream accepted a send.
    pub(super) fn on_accept(&mut self, now: Time) {
        self.window.add(now, ACCEPTS, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Time {
        Time::from_secs_f64(s)
    }

    #[test]
    fn rejects_as_the_formula_says_once_accepts_fall_behind() {
        let mut t = AdaptiveThrottle::new(&ThrottleConfig::default());
        for _ in 0..10 {
            assert!(t.admit(at(0.0), 0.0));
            t.on_accept(at(0.0));
        }
        for _ in 0..10 {
            assert!(t.admit(at(0.0), 0.0), "20 requests ≤ 2 × 10 accepts");
        }
        // 20 requests, 10 accepts: p = 0 still; one more makes 21 > 20.
        assert!(t.admit(at(0.0), 0.0));
        let p = t.reject_probability(at(0.0));
        assert!((p - 1.0 / 22.0).abs() < 1e-12, "{p}");
        assert!(!t.admit(at(0.0), 0.01), "0.01 < 1/22 rejects");
        assert!(t.admit(at(0.0), 0.5));
    }

    #[test]
    fn counts_expire_with_the_window() {
        let mut t = AdaptiveThrottle::new(&ThrottleConfig {
            k: 2.0,
            window_s: 2,
        });
        for _ in 0..100 {
            t.admit(at(0.0), 0.99);
        }
        assert!(t.reject_probability(at(1.0)) > 0.9);
        assert_eq!(t.reject_probability(at(2.0)), 0.0);
    }

    #[test]
    fn k_below_one_is_refused_by_name() {
        let cfg = ThrottleConfig {
            k: 0.5,
            window_s: 120,
        };
        assert_eq!(cfg.check().map_err(|e| e.field), Err("k".to_owned()));
    }
}
