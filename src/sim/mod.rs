//! The simulated world: a scheduler on virtual time, clients, a downstream
//! with faults, scenarios, traces and an outside invariant checker, driving
//! the real [`crate::relay::Relay`].

pub mod clients;
pub mod downstream;
pub mod invariants;
pub mod scenario;
pub mod scheduler;
pub mod simulation;
pub mod summary;
pub mod trace;
pub mod workload;

pub use scenario::Scenario;
pub use simulation::{simulate, SimFailure, SimOptions, SimResult, Stop, EVENTS_MAX};
pub use summary::Summary;
