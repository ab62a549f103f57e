//! The relay's patterns, one per module, and the [`Relay`] that composes them.
//!
//! Nothing here reads a clock, draws from an RNG it was not handed, spawns,
//! sleeps or does I/O: time arrives as `now`, inputs through `handle_*`, and
//! what the relay wants done comes back out of `poll_*`.
//!
//! The modules are private; this facade is the core's whole public surface,
//! so anything it does not name and the relay does not use is dead code the
//! compiler points out.

mod adaptive_throttle;
mod age_shedding;
mod answer;
mod backoff;
mod breaker;
mod concurrency_limit;
mod config;
mod config_error;
mod dlq;
mod fallback;
mod hedge;
mod idempotency;
mod job;
mod journal;
mod queue;
mod rate_limit;
mod recovery;
#[allow(clippy::module_inception)]
mod relay;
mod retry;
mod retry_breaker;
mod retry_budget;
mod retry_gate;
mod retry_lane;
mod route;
mod stats;
mod window;
mod workers;

pub use adaptive_throttle::ThrottleConfig;
pub use age_shedding::ShedTo;
pub use answer::{Answer, Refusal, Request};
pub use backoff::{Backoff, BackoffConfig, BackoffKind, BackoffState};
pub use breaker::{
    Breaker, BreakerConfig, BreakerSettings, BreakerState, TripConfig, COUNT_WINDOW_MAX,
};
pub use concurrency_limit::{AimdConfig, ConcurrencyLimitConfig, GradientConfig};
pub use config::{RelayConfig, RelaySettings, WORKERS_LIMIT};
pub use config_error::{ensure, ensure_ms, ensure_probability, parse_ms, ConfigError};
pub use dlq::{
    ByteSize, DeadLetter, DeadLetterQueue, DlqConfig, RedriveError, WhenFull, DLQ_BYTES_MAX_DEFAULT,
};
pub use fallback::{FallbackCacheConfig, FallbackConfig, FallbackFrom, FALLBACK_ENTRIES_MAX};
pub use hedge::{HedgeConfig, HedgeCounts, HEDGE_WINDOW_MAX};
pub use idempotency::{IdempotencyConfig, KeysWhenFull, ReplayWindow};
pub use job::{CallId, JobId, JobState, JobStatus, LateSuccess, Outcome};
pub use journal::Record;
pub use queue::QueueConfig;
pub use rate_limit::RateLimitConfig;
pub use recovery::{RecoverError, Stored, StoredJob, StoredReplay};
pub use relay::{Event, Finished, LateFate, Output, Relay, RouteState, Routing};

pub use retry::{CallError, GiveUp, RetryConfig, ATTEMPTS_LIMIT, RETRY_AFTER_MAX};
pub use retry_breaker::{RetryBreakerConfig, RetryBreakerWindow};
pub use retry_budget::{
    AwsStandardConfig, BudgetConfig, ClientBucketConfig, FinagleConfig, TokenBucketConfig,
};
pub use retry_gate::{Denied, DeniedCounts, RetryCause, RetryGate, RetryGateConfig, SendOutcome};
pub use route::{RouteConfig, RouteId, RouteSettings, RouteStats, ROUTES_MAX};
pub use stats::{named, LatencyHistogram, LatencySummary, Stats, StatsSnapshot};

/// Slots reserved up front at most in the job table, the idempotency store
/// and the simulator's per-slot records. Reserved room costs address space,
/// not memory, until it is used, while a table that doubles as it fills
/// holds its old and new copies at once.
pub const RESERVED_MAX: usize = 1 << 20;
