//! Retry policy: whether a failed attempt is tried again, and when to stop.
//!
//! Retries turn transient failures into successes, but every retry is extra
//! load on a downstream that may be failing *because* it is overloaded. So a
//! policy bounds them: a maximum number of attempts per job, a per-attempt
//! timeout (an attempt that hangs holds a worker), and the retry controls of
//! a [`RetryGate`] shared by all jobs — a retry budget (gRPC's token bucket,
//! Finagle's, the AWS SDKs' quota or a small per-caller bucket) and a retry
//! breaker — so that a full outage costs at most a bounded fraction of extra
//! calls.

use super::adaptive_throttle::ThrottleConfig;
use super::backoff::{Backoff, BackoffConfig};
use super::config_error::{ensure, parse_ms, ConfigError};
use super::retry_breaker::RetryBreakerConfig;
use super::retry_budget::BudgetConfig;
use super::retry_gate::{
    Denied, DeniedCounts, RetryCause, RetryGate, RetryGateConfig, SendOutcome,
};
use crate::time::Time;
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
    /// Retry budget shared by all jobs; absent means unlimited.
    pub budget: Option<BudgetConfig>,
    /// No retries while the relay's own failure ratio is above a threshold;
    /// absent means none.
    pub retry_breaker: Option<RetryBreakerConfig>,
    /// Adaptive throttling of the relay's downstream calls; absent means
    /// none. Checked here and held by the policy's [`RetryGate`].
    pub throttle: Option<ThrottleConfig>,
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
            retry_breaker: None,
            throttle: None,
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
    pub(super) gate: RetryGateConfig,
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
        let gate = RetryGateConfig {
            budget: self.budget,
            retry_breaker: self.retry_breaker,
            throttle: self.throttle,
        };
        gate.check()?;
        Ok(RetrySettings {
            attempts_max: self.attempts_max,
            attempt_timeout: (self.attempt_timeout_ms > 0.0).then_some(timeout),
            retry_on: self.retry_on.iter().map(|e| (*e, true)).collect(),
            backoff,
            gate,
            honour_retry_after: self.honour_retry_after,
        })
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
    /// The retry budget had no room for the retry.
    BudgetExhausted,
    /// Never tried: it waited in the queue longer than `queue.shed_after_ms`.
    Shed,
    /// The relay's failure ratio was above the retry breaker's threshold.
    RetryBreakerOpen,
}

impl GiveUp {
    /// The kebab-case name, as in TOML, JSON and traces.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// The policy plus the state of its retry controls, shared by all jobs.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    attempts_max: u32,
    retry_on: EnumMap<CallError, bool>,
    gate: RetryGate,
}

impl RetryPolicy {
    pub fn new(settings: &RetrySettings) -> RetryPolicy {
        assert!(
            (1..=ATTEMPTS_LIMIT).contains(&settings.attempts_max),
            "checked by RetryConfig::check"
        );
        RetryPolicy {
            attempts_max: settings.attempts_max,
            retry_on: settings.retry_on,
            gate: RetryGate::new(&settings.gate),
        }
    }

    /// Attempts per job, the first included; hedges count too.
    pub fn attempts_max(&self) -> u32 {
        self.attempts_max
    }

    /// An attempt goes out; `retry` unless it is the job's first.
    pub fn on_send(&mut self, now: Time, retry: bool) {
        self.gate.on_send(now, retry);
    }

    /// After attempt number `attempts_made` failed with `error`: retry, or
    /// give up and say why. Every failure counts against the controls (a
    /// client error too: the token bucket has always charged it); a retry
    /// is charged to the budget here.
    pub fn on_failure(
        &mut self,
        now: Time,
        attempts_made: u32,
        error: CallError,
    ) -> Result<(), GiveUp> {
        self.gate.on_outcome(now, outcome_of(error));
        if !self.retry_on[error] {
            return Err(GiveUp::NotRetryable);
        }
        if attempts_made >= self.attempts_max {
            return Err(GiveUp::AttemptsExhausted);
        }
        self.gate
            .allow_retry(now, cause_of(error))
            .map_err(|why| match why {
                Denied::Budget => GiveUp::BudgetExhausted,
                Denied::RetryBreaker => GiveUp::RetryBreakerOpen,
                Denied::Throttled => unreachable!("allow_retry does not throttle"),
            })
    }

    /// An attempt succeeded; `after` is the error of the attempt before it,
    /// if this one was a retry (the AWS quota refunds that retry's cost).
    pub fn on_success(&mut self, now: Time, after: Option<CallError>) {
        let outcome = match after {
            None => SendOutcome::Success,
            Some(e) => SendOutcome::RetrySuccess { cause: cause_of(e) },
        };
        self.gate.on_outcome(now, outcome);
    }

    /// Retries not made, by which control refused them.
    pub fn denied(&self) -> &DeniedCounts {
        self.gate.denied()
    }
}

/// An attempt's error as the retry controls see it.
fn outcome_of(error: CallError) -> SendOutcome {
    match error {
        CallError::Timeout => SendOutcome::Timeout,
        CallError::Throttled => SendOutcome::Throttled,
        CallError::ServerError | CallError::ClientError => SendOutcome::Failure,
    }
}

fn cause_of(error: CallError) -> RetryCause {
    match error {
        CallError::Timeout => RetryCause::Timeout,
        _ => RetryCause::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::retry_budget::TokenBucketConfig;

    const T0: Time = Time::ZERO;

    fn policy(cfg: &RetryConfig) -> RetryPolicy {
        RetryPolicy::new(&cfg.check().expect("valid"))
    }

    #[test]
    fn stops_after_max_attempts() {
        let mut p = policy(&RetryConfig {
            attempts_max: 3,
            ..RetryConfig::default()
        });
        assert_eq!(p.on_failure(T0, 1, CallError::ServerError), Ok(()));
        assert_eq!(p.on_failure(T0, 2, CallError::ServerError), Ok(()));
        assert_eq!(
            p.on_failure(T0, 3, CallError::ServerError),
            Err(GiveUp::AttemptsExhausted)
        );
    }

    #[test]
    fn client_errors_are_not_retried_by_default() {
        let mut p = policy(&RetryConfig::default());
        assert_eq!(
            p.on_failure(T0, 1, CallError::ClientError),
            Err(GiveUp::NotRetryable)
        );
        assert_eq!(p.on_failure(T0, 1, CallError::Timeout), Ok(()));
    }

    #[test]
    fn budget_stops_retries_when_half_spent_and_successes_refill_it() {
        let cfg = RetryConfig {
            attempts_max: 100,
            budget: Some(BudgetConfig::TokenBucket(TokenBucketConfig {
                tokens_max: 4.0,
                tokens_per_success: 0.5,
            })),
            ..RetryConfig::default()
        };
        let mut p = policy(&cfg);
        assert_eq!(p.on_failure(T0, 1, CallError::ServerError), Ok(())); // 3 left
        assert_eq!(
            p.on_failure(T0, 1, CallError::ServerError),
            Err(GiveUp::BudgetExhausted)
        ); // 2 left
        for _ in 0..2 {
            p.on_success(T0, Some(CallError::ServerError));
        }
        assert_eq!(
            p.on_failure(T0, 1, CallError::ServerError),
            Err(GiveUp::BudgetExhausted)
        );
    }

    #[test]
    fn the_retry_breaker_gives_its_own_reason_and_is_counted() {
        let cfg = RetryConfig {
            retry_breaker: Some(RetryBreakerConfig::default()),
            ..RetryConfig::default()
        };
        let mut p = policy(&cfg);
        for _ in 0..9 {
            p.on_send(T0, false);
            p.on_success(T0, None);
        }
        p.on_send(T0, false);
        assert_eq!(p.on_failure(T0, 1, CallError::Timeout), Ok(()), "1/10");
        p.on_send(T0, true);
        assert_eq!(
            p.on_failure(T0, 2, CallError::Timeout),
            Err(GiveUp::RetryBreakerOpen),
            "2/11 > 10 %"
        );
        assert_eq!(p.denied()[Denied::RetryBreaker], 1);
        assert_eq!(p.denied()[Denied::Budget], 0);
    }

    #[test]
    fn gate_errors_are_named_under_their_control() {
        let cfg: RetryConfig =
            toml::from_str(r#"budget = { kind = "aws-standard", timeout_cost = 0 }"#)
                .expect("parses");
        assert_eq!(
            cfg.check().map_err(|e| e.field),
            Err("budget.timeout_cost".to_owned())
        );
        let cfg: RetryConfig = toml::from_str("throttle = { window_s = 0 }").expect("parses");
        assert_eq!(
            cfg.check().map_err(|e| e.field),
            Err("throttle.window_s".to_owned())
        );
    }
}
