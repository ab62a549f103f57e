//! The retry circuit breaker: a caller stops retrying while its own recent
//! sends mostly fail.
//!
//! Brooker ("Fixing retries with token buckets and circuit breakers") notes
//! that retries help when failures are rare and independent, and only add
//! load when most calls fail. So retries are allowed while the caller's
//! failure ratio is at most `threshold` and stop while it is above, over all
//! sends so far (`cumulative`) or over the last `window_s` seconds
//! (`sliding`, judged only once it holds `calls_min` sends). First tries are
//! never stopped: the breaker is about retries, not about the downstream.

use super::config_error::{ensure, ConfigError};
use super::window::{SecondWindow, WINDOW_S_MAX};
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// Settings of the retry breaker.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBreakerConfig {
    /// No retries while failures / sends is above this.
    pub threshold: f64,
    pub window: RetryBreakerWindow,
}

impl Default for RetryBreakerConfig {
    fn default() -> Self {
        RetryBreakerConfig {
            threshold: 0.1,
            window: RetryBreakerWindow::Cumulative {},
        }
    }
}

/// Over which sends the failure ratio is taken.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RetryBreakerWindow {
    /// Every send so far.
    Cumulative {},
    /// The sends of the last `window_s` whole seconds; below `calls_min`
    /// sends in the window, retries are allowed.
    Sliding { window_s: u32, calls_min: u32 },
}

impl RetryBreakerConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        ensure(
            (0.0..=1.0).contains(&self.threshold),
            "threshold",
            format!(
                "must be a failure ratio between 0 and 1, got {}",
                self.threshold
            ),
        )?;
        if let RetryBreakerWindow::Sliding { window_s, .. } = self.window {
            ensure(
                (1..=WINDOW_S_MAX).contains(&window_s),
                "window.window_s",
                format!("must be 1 to {WINDOW_S_MAX} whole seconds, got {window_s}"),
            )?;
        }
        Ok(())
    }
}

const CALLS: usize = 0;
const FAILURES: usize = 1;

#[derive(Clone, Debug)]
enum Counts {
    Cumulative {
        calls: u64,
        failures: u64,
    },
    Sliding {
        window: SecondWindow<2>,
        calls_min: u64,
    },
}

/// The breaker's state: counts of the caller's sends and their failures.
#[derive(Clone, Debug)]
pub(super) struct RetryBreaker {
    threshold: f64,
    counts: Counts,
}

impl RetryBreaker {
    /// `cfg` has passed [`RetryBreakerConfig::check`].
    pub(super) fn new(cfg: &RetryBreakerConfig) -> RetryBreaker {
        let counts = match cfg.window {
            RetryBreakerWindow::Cumulative {} => Counts::Cumulative {
                calls: 0,
                failures: 0,
            },
            RetryBreakerWindow::Sliding {
                window_s,
                calls_min,
            } => Counts::Sliding {
                window: SecondWindow::new(window_s),
                calls_min: u64::from(calls_min),
            },
        };
        RetryBreaker {
            threshold: cfg.threshold,
            counts,
        }
    }

    /// A send ended, as a success or a failure (timeouts and throttling are
    /// failures to the caller).
    pub(super) fn record(&mut self, now: Time, failed: bool) {
        match &mut self.counts {
            Counts::Cumulative { calls, failures } => {
                *calls += 1;
                *failures += u64::from(failed);
            }
            Counts::Sliding { window, .. } => {
                window.add(now, CALLS, 1);
                window.add(now, FAILURES, i64::from(failed));
            }
        }
    }

    /// Retries are allowed unless the failure ratio is above the threshold.
    pub(super) fn allows_retry(&mut self, now: Time) -> bool {
        let (calls, failures) = match &mut self.counts {
            Counts::Cumulative { calls, failures } => (*calls, *failures),
            Counts::Sliding { window, calls_min } => {
                let calls = window.sum(now, CALLS).max(0) as u64;
                if calls < *calls_min {
                    return true;
                }
                (calls, window.sum(now, FAILURES).max(0) as u64)
            }
        };
        !above(failures, calls, self.threshold)
    }
}

/// failures / calls > threshold, with no ratio (so never above) at 0 calls.
pub(super) fn above(failures: u64, calls: u64, threshold: f64) -> bool {
    calls > 0 && failures as f64 > threshold * calls as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Time {
        Time::from_secs_f64(s)
    }

    #[test]
    fn cumulative_stops_retries_above_the_ratio_and_resumes_at_it() {
        let mut b = RetryBreaker::new(&RetryBreakerConfig::default());
        assert!(b.allows_retry(at(0.0)), "no sends yet");
        for _ in 0..9 {
            b.record(at(0.0), false);
        }
        b.record(at(0.0), true);
        assert!(b.allows_retry(at(0.0)), "1/10 is not above 10 %");
        b.record(at(0.0), true);
        assert!(!b.allows_retry(at(100.0)), "2/11 is, and never expires");
        for _ in 0..9 {
            b.record(at(100.0), false);
        }
        assert!(b.allows_retry(at(100.0)), "2/20");
    }

    #[test]
    fn sliding_forgets_old_failures_and_waits_for_calls_min() {
        let mut b = RetryBreaker::new(&RetryBreakerConfig {
            threshold: 0.5,
            window: RetryBreakerWindow::Sliding {
                window_s: 5,
                calls_min: 3,
            },
        });
        b.record(at(0.0), true);
        b.record(at(0.0), true);
        assert!(b.allows_retry(at(0.0)), "2 calls < calls_min");
        b.record(at(1.0), true);
        assert!(!b.allows_retry(at(1.0)));
        assert!(b.allows_retry(at(5.5)), "second 0 left the window");
    }

    #[test]
    fn window_parses_and_is_checked() {
        let cfg: RetryBreakerConfig = toml::from_str(
            r#"threshold = 0.2
window = { kind = "sliding", window_s = 0, calls_min = 10 }"#,
        )
        .expect("parses");
        assert_eq!(
            cfg.check().map_err(|e| e.field),
            Err("window.window_s".to_owned())
        );
        let ok: RetryBreakerConfig = toml::from_str(
            r#"threshold = 0.1
window = { kind = "cumulative" }"#,
        )
        .expect("parses");
        assert_eq!(ok, RetryBreakerConfig::default());
        let bad = toml::from_str::<RetryBreakerConfig>(
            r#"window = { kind = "cumulative", window_s = 3 }"#,
        );
        assert!(bad.is_err());
    }
}
