//! The relay's patterns, one per module, and the [`Relay`] that composes them.
//!
//! Nothing here reads a clock, draws from an RNG it was not handed, spawns,
//! sleeps or does I/O: time arrives as `now`, inputs through `handle_*`, and
//! what the relay wants done comes back out of `poll_*`.

pub mod backoff;
pub mod config_error;

pub use config_error::ConfigError;
