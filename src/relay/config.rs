//! Every setting of the relay in one struct, shared by the simulator's
//! scenarios and the real-time server.
//!
//! [`RelayConfig`] is what a user writes (milliseconds as numbers, optional
//! sections); [`RelayConfig::check`] parses it once into [`RelaySettings`]
//! (durations, checked bounds), the only thing [`Relay::new`] accepts, so a
//! relay cannot be built from options nobody checked.
//!
//! [`Relay::new`]: super::Relay::new

use super::breaker::{BreakerConfig, BreakerSettings};
use super::concurrency_limit::{ConcurrencyLimitConfig, ConcurrencyLimitSettings};
use super::config_error::{ensure, ConfigError};
use super::dlq::{DlqConfig, DlqSettings};
use super::hedge::{HedgeConfig, HedgeSettings};
use super::idempotency::{IdempotencyConfig, IdempotencySettings};
use super::queue::{QueueConfig, QueueSettings};
use super::rate_limit::{RateLimitConfig, RateLimitSettings};
use super::retry::{RetryConfig, RetrySettings};
use super::route::{Inherited, RouteConfig, RouteSettings, ROUTES_MAX};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Downstream calls in flight at once.
    pub workers: usize,
    /// Jobs alive at once (queued, in flight or waiting to retry); the hard
    /// bound on the job table. Must be ≥ queue capacity + workers.
    pub jobs_max: usize,
    pub queue: QueueConfig,
    pub retry: RetryConfig,
    /// Absent: no breaker.
    pub breaker: Option<BreakerConfig>,
    /// Absent: no rate limit.
    pub rate_limit: Option<RateLimitConfig>,
    pub idempotency: IdempotencyConfig,
    pub dlq: DlqConfig,
    /// Finished jobs remembered for status look-ups (0 in simulation).
    pub history_max: usize,
    /// Adaptive limit on downstream calls in flight; absent: only `workers`
    /// bounds them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<ConcurrencyLimitConfig>,
    /// Absent: no hedged requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeConfig>,
    /// Several downstreams, each with its own bulkhead, retry policy,
    /// breaker, rate limit and fallback (see [`super::route`]); empty: one
    /// route, `default`, made of the sections above.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            workers: 10,
            jobs_max: 10_000,
            queue: QueueConfig::default(),
            retry: RetryConfig::default(),
            breaker: None,
            rate_limit: None,
            idempotency: IdempotencyConfig::default(),
            dlq: DlqConfig::default(),
            history_max: 0,
            concurrency_limit: None,
            hedge: None,
            routes: Vec::new(),
        }
    }
}

/// Upper bound on workers: each is a concurrent downstream call.
pub const WORKERS_LIMIT: usize = 1_000_000;

/// A checked [`RelayConfig`]; built only by [`RelayConfig::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct RelaySettings {
    pub(super) workers: usize,
    pub(super) jobs_max: usize,
    pub(super) queue: QueueSettings,
    pub(super) retry: RetrySettings,
    pub(super) breaker: Option<BreakerSettings>,
    pub(super) rate_limit: Option<RateLimitSettings>,
    pub(super) idempotency: IdempotencySettings,
    pub(super) dlq: DlqSettings,
    pub(super) history_max: usize,
    pub(super) concurrency_limit: Option<ConcurrencyLimitSettings>,
    pub(super) hedge: Option<HedgeSettings>,
    /// At least one; the first is the default route.
    pub(super) routes: Vec<RouteSettings>,
}

impl RelaySettings {
    pub fn routes(&self) -> &[RouteSettings] {
        &self.routes
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<super::RouteId> {
        let i = self.routes.iter().position(|r| r.name == name)?;
        Some(super::RouteId(i as u16))
    }
}

impl RelayConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map(drop)
    }

    /// Parses the options into the settings a [`super::Relay`] is built from.
    pub fn check(&self) -> Result<RelaySettings, ConfigError> {
        ensure(
            (1..=WORKERS_LIMIT).contains(&self.workers),
            "workers",
            format!(
                "must be between 1 and {WORKERS_LIMIT}, got {}",
                self.workers
            ),
        )?;
        let queue = self.queue.check().map_err(|e| e.within("queue"))?;
        ensure(
            self.routes.len() <= ROUTES_MAX,
            "routes",
            format!("at most {ROUTES_MAX} routes"),
        )?;
        // Each route has a queue of `queue.capacity`.
        let queues = self.queue.capacity * self.routes.len().max(1);
        ensure(
            self.jobs_max >= queues + self.workers,
            "jobs_max",
            format!(
                "must be ≥ queue.capacity × routes + workers = {}, got {}",
                queues + self.workers,
                self.jobs_max
            ),
        )?;
        ensure(
            self.jobs_max <= 100_000_000,
            "jobs_max",
            "must be ≤ 100,000,000",
        )?;
        let retry = self.retry.check().map_err(|e| e.within("retry"))?;
        let breaker = self
            .breaker
            .map(|b| b.check().map_err(|e| e.within("breaker")))
            .transpose()?;
        let rate_limit = self
            .rate_limit
            .map(|r| r.check().map_err(|e| e.within("rate_limit")))
            .transpose()?;
        let idempotency = self
            .idempotency
            .check()
            .map_err(|e| e.within("idempotency"))?;
        let dlq = self.dlq.check().map_err(|e| e.within("dlq"))?;
        ensure(
            self.history_max <= 10_000_000,
            "history_max",
            "must be ≤ 10,000,000",
        )?;
        let concurrency_limit = self
            .concurrency_limit
            .map(|c| c.check().map_err(|e| e.within("concurrency_limit")))
            .transpose()?;
        let hedge = self
            .hedge
            .map(|h| h.check().map_err(|e| e.within("hedge")))
            .transpose()?;
        let routes = self.check_routes()?;
        Ok(RelaySettings {
            routes,
            hedge,
            workers: self.workers,
            jobs_max: self.jobs_max,
            queue,
            retry,
            breaker,
            rate_limit,
            idempotency,
            dlq,
            history_max: self.history_max,
            concurrency_limit,
        })
    }
}

impl RelayConfig {
    /// The routes, or the one `default` route the top level makes.
    fn check_routes(&self) -> Result<Vec<RouteSettings>, ConfigError> {
        let top = Inherited {
            workers: self.workers,
            retry: &self.retry,
            breaker: self.breaker,
            rate_limit: self.rate_limit,
        };
        if self.routes.is_empty() {
            let default = RouteConfig {
                name: "default".into(),
                ..RouteConfig::default()
            };
            return Ok(vec![default.check(&top)?]);
        }
        let mut names = std::collections::BTreeSet::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            routes.push(r.check(&top).map_err(|e| e.within(&at))?);
            ensure(
                names.insert(r.name.as_str()),
                &format!("{at}.name"),
                format!("route {:?} is named twice", r.name),
            )?;
        }
        Ok(routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn default_is_valid() {
        RelayConfig::default()
            .validate()
            .expect("defaults are valid");
    }

    #[test]
    fn errors_name_the_nested_field() {
        let mut cfg = RelayConfig::default();
        cfg.retry.backoff.cap_ms = 1.0;
        assert_eq!(cfg.validate().unwrap_err().field, "retry.backoff.cap_ms");
        let cfg = RelayConfig {
            jobs_max: 5,
            ..RelayConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "jobs_max");
    }

    /// Each bad value, set alone on a default config, and the field the
    /// refusal must name.
    fn bad_configs() -> Vec<(RelayConfig, &'static str)> {
        let base = RelayConfig::default;
        let with = |f: fn(&mut RelayConfig), field| {
            let mut cfg = base();
            f(&mut cfg);
            (cfg, field)
        };
        vec![
            with(|c| c.workers = 0, "workers"),
            with(|c| c.jobs_max = 100_000_001, "jobs_max"),
            with(|c| c.queue.capacity = 0, "queue.capacity"),
            with(|c| c.queue.retry_after_ms = -1.0, "queue.retry_after_ms"),
            with(|c| c.retry.attempts_max = 0, "retry.attempts_max"),
            with(
                |c| c.retry.attempt_timeout_ms = f64::NAN,
                "retry.attempt_timeout_ms",
            ),
            with(
                |c| c.retry.backoff.multiplier = 0.5,
                "retry.backoff.multiplier",
            ),
            with(
                |c| {
                    c.retry.budget = Some(crate::relay::BudgetConfig::TokenBucket(
                        crate::relay::TokenBucketConfig {
                            tokens_max: 0.5,
                            tokens_per_success: 0.1,
                        },
                    ))
                },
                "retry.budget.tokens_max",
            ),
            with(
                |c| {
                    c.breaker = Some(BreakerConfig {
                        open_ms: f64::INFINITY,
                        ..BreakerConfig::default()
                    })
                },
                "breaker.open_ms",
            ),
            with(
                |c| {
                    c.rate_limit = Some(RateLimitConfig {
                        window_ms: 0.0,
                        ..RateLimitConfig::default()
                    })
                },
                "rate_limit.window_ms",
            ),
            with(|c| c.idempotency.ttl_ms = -5.0, "idempotency.ttl_ms"),
            with(|c| c.idempotency.keys_max = 0, "idempotency.keys_max"),
            with(|c| c.dlq.capacity = 0, "dlq.capacity"),
            with(|c| c.dlq.bytes_max = 0, "dlq.bytes_max"),
            with(|c| c.history_max = 10_000_001, "history_max"),
            with(|c| c.queue.shed_after_ms = f64::NAN, "queue.shed_after_ms"),
            with(
                |c| {
                    c.concurrency_limit =
                        Some(ConcurrencyLimitConfig::Aimd(crate::relay::AimdConfig {
                            min: 0,
                            ..crate::relay::AimdConfig::default()
                        }))
                },
                "concurrency_limit.min",
            ),
        ]
    }

    #[test]
    fn a_bad_config_cannot_become_settings() {
        for (cfg, field) in bad_configs() {
            let err = cfg.check().expect_err(field);
            assert_eq!(err.field, field);
            assert_eq!(cfg.validate(), Err(err), "validate and check agree");
        }
    }

    #[test]
    fn milliseconds_become_exact_durations() {
        let mut cfg = RelayConfig {
            breaker: Some(BreakerConfig {
                open_ms: 5_000.0,
                ..BreakerConfig::default()
            }),
            rate_limit: Some(RateLimitConfig {
                window_ms: 1.5,
                ..RateLimitConfig::default()
            }),
            ..RelayConfig::default()
        };
        cfg.queue.retry_after_ms = 250.5;
        cfg.retry.attempt_timeout_ms = 0.001;
        let s = cfg.check().expect("valid");
        assert_eq!(s.queue.retry_after, Duration::from_nanos(250_500_000));
        assert_eq!(s.retry.attempt_timeout, Some(Duration::from_micros(1)));
        assert_eq!(s.idempotency.ttl, Duration::from_secs(24 * 3600));
        assert_eq!(
            s.rate_limit.map(|r| r.window),
            Some(Duration::from_micros(1500))
        );
        assert_eq!(
            s.breaker.map(|b| b.open_for()),
            Some(Duration::from_secs(5))
        );
        assert_eq!(s.retry.backoff.bounds_ns(1), (0, 100_000_000));
    }

    #[test]
    fn a_zero_attempt_timeout_means_none() {
        let mut cfg = RelayConfig::default();
        cfg.retry.attempt_timeout_ms = 0.0;
        assert_eq!(cfg.check().expect("valid").retry.attempt_timeout, None);
    }
}
