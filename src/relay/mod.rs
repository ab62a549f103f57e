//! The relay's patterns, one per module, and the [`Relay`] that composes them.
//!
//! Nothing here reads a clock, draws from an RNG it was not handed, spawns,
//! sleeps or does I/O: time arrives as `now`, inputs through `handle_*`, and
//! what the relay wants done comes back out of `poll_*`.
//!
//! The modules are private; this facade is the core's whole public surface,
//! so anything it does not name and the relay does not use is dead code the
//! compiler points out.

mod answer;
mod backoff;
mod breaker;
mod config;
mod config_error;
mod dlq;
mod hedge;
mod idempotency;
mod job;
mod queue;
mod rate_limit;
#[allow(clippy::module_inception)]
mod relay;
mod retry;
mod retry_lane;
mod stats;
mod workers;

pub use answer::{Answer, Refusal, Request};
pub use backoff::{Backoff, BackoffConfig, BackoffKind, BackoffState};
pub use breaker::{
    Breaker, BreakerConfig, BreakerSettings, BreakerState, TripConfig, COUNT_WINDOW_MAX,
};
pub use config::{RelayConfig, RelaySettings, WORKERS_LIMIT};
pub use config_error::{ensure, ensure_ms, ensure_probability, parse_ms, ConfigError};
pub use dlq::{
    ByteSize, DeadLetter, DeadLetterQueue, DlqConfig, RedriveError, WhenFull, DLQ_BYTES_MAX_DEFAULT,
};
pub use hedge::{HedgeConfig, HedgeCounts, HEDGE_WINDOW_MAX};
pub use idempotency::{IdempotencyConfig, KeysWhenFull, ReplayWindow};
pub use job::{CallId, JobId, JobState, JobStatus, LateSuccess, Outcome};
pub use queue::QueueConfig;
pub use rate_limit::RateLimitConfig;
pub use relay::{Event, Finished, LateFate, Output, Relay};
pub use retry::{CallError, GiveUp, RetryBudgetConfig, RetryConfig, ATTEMPTS_LIMIT};
pub use stats::{LatencyHistogram, LatencySummary, Stats, StatsSnapshot};
