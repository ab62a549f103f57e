//! Every setting of the relay in one struct, shared by the simulator's
//! scenarios and the real-time server.

use super::breaker::BreakerConfig;
use super::config_error::{ensure, ConfigError};
use super::dlq::DlqConfig;
use super::idempotency::IdempotencyConfig;
use super::queue::QueueConfig;
use super::rate_limit::RateLimitConfig;
use super::retry::RetryConfig;
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
        }
    }
}

/// Upper bound on workers: each is a concurrent downstream call.
pub const WORKERS_LIMIT: usize = 1_000_000;

impl RelayConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (1..=WORKERS_LIMIT).contains(&self.workers),
            "workers",
            format!(
                "must be between 1 and {WORKERS_LIMIT}, got {}",
                self.workers
            ),
        )?;
        self.queue.validate().map_err(|e| e.within("queue"))?;
        ensure(
            self.jobs_max >= self.queue.capacity + self.workers,
            "jobs_max",
            format!(
                "must be ≥ queue.capacity + workers = {}, got {}",
                self.queue.capacity + self.workers,
                self.jobs_max
            ),
        )?;
        ensure(
            self.jobs_max <= 100_000_000,
            "jobs_max",
            "must be ≤ 100,000,000",
        )?;
        self.retry.validate().map_err(|e| e.within("retry"))?;
        if let Some(b) = &self.breaker {
            b.validate().map_err(|e| e.within("breaker"))?;
        }
        if let Some(r) = &self.rate_limit {
            r.validate().map_err(|e| e.within("rate_limit"))?;
        }
        self.idempotency
            .validate()
            .map_err(|e| e.within("idempotency"))?;
        self.dlq.validate().map_err(|e| e.within("dlq"))?;
        ensure(
            self.history_max <= 10_000_000,
            "history_max",
            "must be ≤ 10,000,000",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
