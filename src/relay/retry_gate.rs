//! The retry gate: one caller's retry controls, composed. A caller — the
//! relay for its downstream calls, or a simulated client for its sends —
//! owns one gate (or shares one among many callers: where a budget lives is
//! itself a choice) and tells it about every send and every outcome.
//!
//! The gate holds up to three independent controls, each optional:
//! a retry budget ([`BudgetConfig`]), a retry breaker
//! ([`RetryBreakerConfig`]) and adaptive throttling ([`ThrottleConfig`]).
//! With none, it allows everything, as a caller without controls would.
//!
//! The protocol, per send:
//! 1. [`RetryGate::admit`] — throttling may reject any send, first try or
//!    retry, before it goes out;
//! 2. for a retry, [`RetryGate::allow_retry`] first — the breaker, then the
//!    budget (which is charged here);
//! 3. [`RetryGate::on_send`] when the send does go out;
//! 4. [`RetryGate::on_outcome`] when it ends, as the caller saw it.
//!
//! Every denial is counted by reason in [`RetryGate::denied`].

use super::adaptive_throttle::{AdaptiveThrottle, ThrottleConfig};
use super::config_error::ConfigError;
use super::retry_breaker::{RetryBreaker, RetryBreakerConfig};
use super::retry_budget::{Budget, BudgetConfig};
use crate::time::Time;
use enum_map::EnumMap;
use serde::{Deserialize, Serialize};

/// Which retry controls a caller has; all absent is today's behaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryGateConfig {
    pub budget: Option<BudgetConfig>,
    pub retry_breaker: Option<RetryBreakerConfig>,
    pub throttle: Option<ThrottleConfig>,
}

impl RetryGateConfig {
    /// Checks each control; an error names the field under its control.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(b) = &self.budget {
            b.check().map_err(|e| e.within("budget"))?;
        }
        if let Some(b) = &self.retry_breaker {
            b.check().map_err(|e| e.within("retry_breaker"))?;
        }
        if let Some(t) = &self.throttle {
            t.check().map_err(|e| e.within("throttle"))?;
        }
        Ok(())
    }
}

/// Why the send that would be retried failed; the AWS quota charges a
/// timeout more than an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryCause {
    Error,
    Timeout,
}

/// How a send ended, as its caller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendOutcome {
    /// A first try succeeded.
    Success,
    /// A retry succeeded; `cause` is what the retry was made for (the AWS
    /// quota refunds that retry's cost). A caller that cannot tell may
    /// report `Success`, and the quota then refunds `success_refund`.
    RetrySuccess { cause: RetryCause },
    /// An answer that is a failure (an error status, a reset connection).
    Failure,
    /// No answer before the caller's timeout.
    Timeout,
    /// A 429/503, or a local rejection by [`RetryGate::admit`].
    Throttled,
}

impl SendOutcome {
    pub fn is_success(self) -> bool {
        matches!(
            self,
            SendOutcome::Success | SendOutcome::RetrySuccess { .. }
        )
    }

    /// Did the downstream take the send (for adaptive throttling)? Refusals
    /// and timeouts say it is overloaded; an ordinary failure does not.
    fn accepted(self) -> bool {
        matches!(
            self,
            SendOutcome::Success | SendOutcome::RetrySuccess { .. } | SendOutcome::Failure
        )
    }
}

/// Why the gate said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(enum_map::Enum, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Denied {
    /// The retry budget had no room for the retry.
    Budget,
    /// The caller's failure ratio is above the retry breaker's threshold.
    RetryBreaker,
    /// Adaptive throttling rejected the send locally.
    Throttled,
}

impl Denied {
    /// The kebab-case name, as in TOML, JSON and traces.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Denials counted by reason.
pub type DeniedCounts = EnumMap<Denied, u64>;

/// The state of one caller's retry controls.
#[derive(Clone, Debug)]
pub struct RetryGate {
    budget: Option<Budget>,
    breaker: Option<RetryBreaker>,
    throttle: Option<AdaptiveThrottle>,
    denied: DeniedCounts,
}

impl RetryGate {
    /// A gate at rest: budgets full, no sends counted. `cfg` must have
    /// passed [`RetryGateConfig::check`] (a window of 0 s panics).
    pub fn new(cfg: &RetryGateConfig) -> RetryGate {
        RetryGate {
            budget: cfg.budget.as_ref().map(Budget::new),
            breaker: cfg.retry_breaker.as_ref().map(RetryBreaker::new),
            throttle: cfg.throttle.as_ref().map(AdaptiveThrottle::new),
            denied: DeniedCounts::default(),
        }
    }

    /// Adaptive throttling: may this send (first try or retry) go out at
    /// all? `draw` is a U[0,1) number the caller draws from its own stream.
    /// Without throttling, always yes (and `draw` is unused, so the caller
    /// may draw regardless and keep its stream aligned).
    pub fn admit(&mut self, now: Time, draw: f64) -> Result<(), Denied> {
        match self.throttle.as_mut().map(|t| t.admit(now, draw)) {
            Some(false) => Err(self.deny(Denied::Throttled)),
            _ => Ok(()),
        }
    }

    /// A send is going out (after admit and, for a retry, allow_retry).
    pub fn on_send(&mut self, now: Time, retry: bool) {
        if let Some(b) = &mut self.budget {
            b.on_send(now, retry);
        }
    }

    /// May a retry be made? Spends budget when it says yes. The breaker is
    /// asked first, so a retry it stops costs no budget.
    pub fn allow_retry(&mut self, now: Time, cause: RetryCause) -> Result<(), Denied> {
        if let Some(b) = &mut self.breaker {
            if !b.allows_retry(now) {
                return Err(self.deny(Denied::RetryBreaker));
            }
        }
        if let Some(b) = &mut self.budget {
            if !b.try_withdraw(now, cause) {
                return Err(self.deny(Denied::Budget));
            }
        }
        Ok(())
    }

    /// How a send ended, as its caller saw it.
    pub fn on_outcome(&mut self, now: Time, outcome: SendOutcome) {
        if let Some(b) = &mut self.budget {
            b.on_outcome(outcome);
        }
        if let Some(b) = &mut self.breaker {
            b.record(now, !outcome.is_success());
        }
        if let Some(t) = &mut self.throttle {
            if outcome.accepted() {
                t.on_accept(now);
            }
        }
    }

    /// Every send or retry refused so far, by reason.
    pub fn denied(&self) -> &DeniedCounts {
        &self.denied
    }

    /// Is adaptive throttling configured (so `admit` may say no)?
    pub fn throttles(&self) -> bool {
        self.throttle.is_some()
    }

    fn deny(&mut self, why: Denied) -> Denied {
        self.denied[why] += 1;
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::retry_budget::ClientBucketConfig;

    fn at(s: f64) -> Time {
        Time::from_secs_f64(s)
    }

    #[test]
    fn an_empty_gate_allows_everything() {
        let mut g = RetryGate::new(&RetryGateConfig::default());
        for _ in 0..1000 {
            assert_eq!(g.admit(at(0.0), 0.0), Ok(()));
            assert_eq!(g.allow_retry(at(0.0), RetryCause::Timeout), Ok(()));
            g.on_outcome(at(0.0), SendOutcome::Timeout);
        }
        assert_eq!(g.denied().values().sum::<u64>(), 0);
        assert!(!g.throttles());
    }

    #[test]
    fn the_breaker_denies_before_the_budget_is_charged() {
        let mut g = RetryGate::new(&RetryGateConfig {
            budget: Some(BudgetConfig::ClientBucket(ClientBucketConfig {
                size: 2.0,
                ..ClientBucketConfig::default()
            })),
            retry_breaker: Some(RetryBreakerConfig::default()),
            throttle: None,
        });
        g.on_send(at(0.0), false);
        g.on_outcome(at(0.0), SendOutcome::Failure);
        assert_eq!(
            g.allow_retry(at(0.0), RetryCause::Error),
            Err(Denied::RetryBreaker)
        );
        for _ in 0..20 {
            g.on_outcome(at(0.0), SendOutcome::Success);
        }
        // The breaker's denial spent nothing: 2 tokens allow one retry.
        assert_eq!(g.allow_retry(at(0.0), RetryCause::Error), Ok(()));
        assert_eq!(
            g.allow_retry(at(0.0), RetryCause::Error),
            Err(Denied::Budget)
        );
        assert_eq!(g.denied()[Denied::RetryBreaker], 1);
        assert_eq!(g.denied()[Denied::Budget], 1);
    }

    #[test]
    fn throttling_counts_its_rejections() {
        let mut g = RetryGate::new(&RetryGateConfig {
            throttle: Some(ThrottleConfig::default()),
            ..RetryGateConfig::default()
        });
        assert!(g.throttles());
        let mut rejected = 0;
        for _ in 0..100 {
            if g.admit(at(0.0), 0.5).is_err() {
                rejected += 1;
                g.on_outcome(at(0.0), SendOutcome::Throttled);
            } else {
                g.on_outcome(at(0.0), SendOutcome::Timeout);
            }
        }
        assert!(rejected > 0);
        assert_eq!(g.denied()[Denied::Throttled], rejected);
    }

    #[test]
    fn config_errors_name_the_control() {
        let cfg: RetryGateConfig = toml::from_str(
            r#"budget = { kind = "finagle", ttl_s = 61 }
throttle = { k = 2.0, window_s = 120 }"#,
        )
        .expect("parses");
        assert_eq!(
            cfg.check().map_err(|e| e.field),
            Err("budget.ttl_s".to_owned())
        );
        assert!(toml::from_str::<RetryGateConfig>("budgets = {}").is_err());
        let names: Vec<_> = [Denied::Budget, Denied::RetryBreaker, Denied::Throttled]
            .map(Denied::name)
            .into();
        assert_eq!(names, ["budget", "retry-breaker", "throttled"]);
    }
}
