//! Retry policy: whether a failed attempt is tried again, and when to stop.
//!
//! Retries turn transient failures into successes, but every retry is extra
//! load on a downstream that may be failing *because* it is overloaded. So a
//! policy bounds them three ways: a maximum number of attempts per job, a
//! per-attempt timeout (an attempt that hangs holds a worker), and a retry
//! budget shared by all jobs (as in gRPC retry throttling and Finagle's
//! `RetryBudget`): once too many attempts fail, retries stop altogether until
//! successes refill the budget, so a full outage costs at most a bounded
//! fraction of extra calls.

use super::backoff::{Backoff, BackoffConfig};
use super::config_error::{ensure, parse_ms, ConfigError};
use enum_map::EnumMap;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a downstream attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(enum_map::Enum, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum CallError {
    /// No answer before the per-attempt timeout.
    Timeout,
    /// 5xx, a reset connection, or a fast failure during an outage.
    ServerError,
    /// The downstream asked us to slow down (429).
    Throttled,
    /// 4xx other than 429: the request itself is wrong; retrying cannot help.
    ClientError,
}

impl CallError {
    /// The kebab-case name, as in TOML, JSON and traces.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Options of the gRPC-style retry budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Size of the token bucket; retries stop when it is half empty.
    pub tokens_max: f64,
    /// Tokens a success puts back (a failure takes one).
    pub tokens_per_success: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            tokens_max: 10.0,
            tokens_per_success: 0.1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per job, the first included (1 = never retry).
    pub attempts_max: u32,
    /// Per-attempt timeout; 0 means none (an attempt may hang its worker).
    pub attempt_timeout_ms: f64,
    /// Which failures are retried.
    pub retry_on: Vec<CallError>,
    pub backoff: BackoffConfig,
    /// Retry throttling shared by all jobs; absent means unlimited.
    pub budget: Option<RetryBudgetConfig>,
    /// A throttled attempt's retry waits at least the downstream's
    /// `Retry-After` (bounded by [`RETRY_AFTER_MAX`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub honour_retry_after: bool,
}

/// The longest `Retry-After` the relay waits for before a retry; a longer
/// one is cut to this (a downstream asking for hours is not obeyed blindly).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts_max: 4,
            attempt_timeout_ms: 5_000.0,
            retry_on: vec![
                CallError::Timeout,
                CallError::ServerError,
                CallError::Throttled,
            ],
            backoff: BackoffConfig::default(),
            budget: None,
            honour_retry_after: false,
        }
    }
}

/// The most attempts a job may make; bounds every job's retry loop.
pub const ATTEMPTS_LIMIT: u32 = 100;

/// A checked [`RetryConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct RetrySettings {
    pub(super) attempts_max: u32,
    /// `None`: an attempt may hang its worker.
    pub(super) attempt_timeout: Option<Duration>,
    pub(super) retry_on: EnumMap<CallError, bool>,
    pub(super) backoff: Backoff,
    pub(super) budget: Option<RetryBudgetConfig>,
    pub(super) honour_retry_after: bool,
}

impl RetryConfig {
    /// A timeout of 0 ms means none; the retryable errors become a set.
    pub fn check(&self) -> Result<RetrySettings, ConfigError> {
        ensure(
            (1..=ATTEMPTS_LIMIT).contains(&self.attempts_max),
            "attempts_max",
            format!(
                "must be between 1 and {ATTEMPTS_LIMIT}, got {}",
                self.attempts_max
            ),
        )?;
        let timeout = parse_ms(self.attempt_timeout_ms, "attempt_timeout_ms")?;
        let backoff = self.backoff.check().map_err(|e| e.within("backoff"))?;
        if let Some(b) = &self.budget {
            b.check().map_err(|e| e.within("budget"))?;
        }
        Ok(RetrySettings {
            attempts_max: self.attempts_max,
            attempt_timeout: (self.attempt_timeout_ms > 0.0).then_some(timeout),
            retry_on: self.retry_on.iter().map(|e| (*e, true)).collect(),
            backoff,
            budget: self.budget,
            honour_retry_after: self.honour_retry_after,
        })
    }
}

impl RetryBudgetConfig {
    fn check(&self) -> Result<(), ConfigError> {
        ensure(
            self.tokens_max.is_finite() && self.tokens_max >= 1.0,
            "tokens_max",
            "must be ≥ 1",
        )?;
        ensure(
            self.tokens_per_success.is_finite() && self.tokens_per_success > 0.0,
            "tokens_per_success",
            "must be > 0",
        )
    }
}

/// Why a job stopped retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(enum_map::Enum, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum GiveUp {
    AttemptsExhausted,
    NotRetryable,
    BudgetExhausted,
    /// Never tried: it waited in the queue longer than `queue.shed_after_ms`.
    Shed,
}

impl GiveUp {
    /// The kebab-case name, as in TOML, JSON and traces.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Token bucket in thousandths of a token, so it is exact and deterministic.
#[derive(Clone, Copy, Debug)]
struct Budget {
    milli_tokens: u64,
    milli_tokens_max: u64,
    milli_per_success: u64,
}

/// The policy plus the shared budget's state.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    attempts_max: u32,
    retry_on: EnumMap<CallError, bool>,
    budget: Option<Budget>,
}

impl RetryPolicy {
    pub fn new(settings: &RetrySettings) -> RetryPolicy {
        assert!(
            (1..=ATTEMPTS_LIMIT).contains(&settings.attempts_max),
            "checked by RetryConfig::check"
        );
        let budget = settings.budget.map(|b| {
            let max = (b.tokens_max * 1000.0) as u64;
            Budget {
                milli_tokens: max,
                milli_tokens_max: max,
                milli_per_success: ((b.tokens_per_success * 1000.0) as u64).max(1),
            }
        });
        RetryPolicy {
            attempts_max: settings.attempts_max,
            retry_on: settings.retry_on,
            budget,
        }
    }

    /// After attempt number `attempts_made` failed with `error`: retry, or
    /// give up and say why. A retry is charged to the budget here.
    pub fn on_failure(&mut self, attempts_made: u32, error: CallError) -> Result<(), GiveUp> {
        if let Some(b) = &mut self.budget {
            b.milli_tokens = b.milli_tokens.saturating_sub(1000);
        }
        if !self.retry_on[error] {
            return Err(GiveUp::NotRetryable);
        }
        if attempts_made >= self.attempts_max {
            return Err(GiveUp::AttemptsExhausted);
        }
        match &self.budget {
            Some(b) if b.milli_tokens <= b.milli_tokens_max / 2 => Err(GiveUp::BudgetExhausted),
            _ => Ok(()),
        }
    }

    /// A success refills the budget a little.
    pub fn on_success(&mut self) {
        if let Some(b) = &mut self.budget {
            b.milli_tokens = (b.milli_tokens + b.milli_per_success).min(b.milli_tokens_max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(cfg: &RetryConfig) -> RetryPolicy {
        RetryPolicy::new(&cfg.check().expect("valid"))
    }

    #[test]
    fn stops_after_max_attempts() {
        let mut p = policy(&RetryConfig {
            attempts_max: 3,
            ..RetryConfig::default()
        });
        assert_eq!(p.on_failure(1, CallError::ServerError), Ok(()));
        assert_eq!(p.on_failure(2, CallError::ServerError), Ok(()));
        assert_eq!(
            p.on_failure(3, CallError::ServerError),
            Err(GiveUp::AttemptsExhausted)
        );
    }

    #[test]
    fn client_errors_are_not_retried_by_default() {
        let mut p = policy(&RetryConfig::default());
        assert_eq!(
            p.on_failure(1, CallError::ClientError),
            Err(GiveUp::NotRetryable)
        );
        assert_eq!(p.on_failure(1, CallError::Timeout), Ok(()));
    }

    #[test]
    fn budget_stops_retries_when_half_spent_and_successes_refill_it() {
        let cfg = RetryConfig {
            attempts_max: 100,
            budget: Some(RetryBudgetConfig {
                tokens_max: 4.0,
                tokens_per_success: 0.5,
            }),
            ..RetryConfig::default()
        };
        let mut p = policy(&cfg);
        assert_eq!(p.on_failure(1, CallError::ServerError), Ok(())); // 3 left
        assert_eq!(
            p.on_failure(1, CallError::ServerError),
            Err(GiveUp::BudgetExhausted)
        ); // 2 left
        for _ in 0..2 {
            p.on_success();
        }
        assert_eq!(p.budget.map(|b| b.milli_tokens), Some(3_000));
        assert_eq!(
            p.on_failure(1, CallError::ServerError),
            Err(GiveUp::BudgetExhausted)
        );
    }
}
