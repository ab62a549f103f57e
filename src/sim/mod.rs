//! The simulated world: a scheduler on virtual time, clients, a downstream
//! with faults, scenarios, traces and an outside invariant checker, driving
//! the real [`crate::relay::Relay`].

pub mod chrome_trace;
pub mod clients;
pub mod downstream;
pub mod invariants;
pub mod network;
mod origins;
pub mod routes;
pub mod scenario;
pub mod scheduler;
pub mod series;
pub mod simulation;
pub mod store;
pub mod summary;
pub mod trace;
pub mod workload;

pub use network::NetworkConfig;
pub use scenario::Scenario;
pub use series::Series;
pub use simulation::{simulate, SimFailure, SimOptions, SimResult, Stop, EVENTS_MAX};
pub use store::{CrashConfig, FaultsConfig, StoreConfig, StoreKind};
pub use summary::Summary;
