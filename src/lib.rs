//! Resilient Relay: the patterns that keep a service correct under retries,
//! spikes and partial outages, written as sans-IO state machines, and a
//! deterministic discrete-event simulator that drives them.
//!
//! - [`relay`]: the patterns and the [`relay::Relay`] that composes them.
//!   Depends on nothing that does I/O.
//! - [`sim`]: scheduler, clients, downstream and faults on virtual time.
//! - [`experiment`]: parameter sweeps that write CSVs, charts and summaries.

pub mod rng;
pub mod time;

pub mod cli;
pub mod experiment;
pub mod relay;
pub mod server;
pub mod sim;
