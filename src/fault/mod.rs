//! One fault model for both drivers: the simulator on virtual time and the
//! real-time downstream services.
//!
//! A comparison of simulator and server on one scenario is only honest if
//! both serve the same misbehaviour: the same latency shapes, failure kinds,
//! outage and brownout windows, capacity and side-effect counting. This
//! module is that model; `sim` and `server` each drive it with their clock
//! and never depend on each other.

mod config;
mod latency;
mod ledger;
mod model;

pub use config::{
    BrownoutConfig, CapacityConfig, DownstreamConfig, FailureMix, OutageConfig, OutageMode,
};
pub use latency::{Latency, LatencyConfig};
pub use ledger::{DenseLedger, Ledger, LedgerReport, DUPLICATES_LISTED_MAX};
pub use model::{CallPlan, FaultMode, FaultModel, Switch, HANG_MS_MAX};
