//! The relay's patterns, one per module, and the [`Relay`] that composes them.
//!
//! Nothing here reads a clock, draws from an RNG it was not handed, spawns,
//! sleeps or does I/O: time arrives as `now`, inputs through `handle_*`, and
//! what the relay wants done comes back out of `poll_*`.

pub mod backoff;
pub mod breaker;
pub mod config;
pub mod config_error;
pub mod dlq;
pub mod idempotency;
pub mod job;
pub mod queue;
pub mod rate_limit;
#[allow(clippy::module_inception)]
pub mod relay;
pub mod retry;
pub mod stats;
pub mod workers;

pub use config::RelayConfig;
pub use config_error::ConfigError;
pub use job::{CallId, JobId, Outcome};
pub use relay::{Answer, Event, Output, Relay, ReplayError, Request};
