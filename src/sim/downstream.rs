//! The simulated downstream: the shared [`FaultModel`] on virtual time, and
//! a ledger of side effects per request number.
//!
//! The scenario's `[downstream]` is [`DownstreamConfig`], the same table the
//! real-time `downstream` service serves.

use crate::fault::{CallPlan, DenseLedger, FaultModel};
use crate::rng::Stream;
use crate::time::{ms_to_nanos, Time};
use std::time::Duration;

pub use crate::fault::{
    BrownoutConfig, CapacityConfig, DownstreamConfig, FailureMix, LatencyConfig, OutageConfig,
    OutageMode,
};

pub struct Downstream {
    model: FaultModel,
    ledger: DenseLedger,
}

impl Downstream {
    pub fn new(cfg: &DownstreamConfig, rng: Stream) -> Downstream {
        Downstream {
            model: FaultModel::new(cfg, rng),
            ledger: DenseLedger::new(cfg.honours_idempotency_key),
        }
    }

    /// A call starts now: decide when it answers and how.
    pub fn start(&mut self, now: Time) -> CallPlan {
        self.model.start(now)
    }

    /// A call ends; a successful one lands its side effect on `key`.
    /// Returns whether that effect was a duplicate.
    pub fn finish(&mut self, key: Option<u64>, landed: bool) -> bool {
        self.model.finish();
        match (key, landed) {
            (Some(key), true) => self.ledger.record(key),
            _ => false,
        }
    }

    /// The `Retry-After` a throttled answer carries
    /// (`throttle_retry_after_ms`).
    pub fn throttle_retry_after(&self) -> Duration {
        Duration::from_nanos(ms_to_nanos(self.model.config().throttle_retry_after_ms))
    }

    pub fn calls(&self) -> u64 {
        self.model.calls()
    }

    pub fn duplicates(&self) -> u64 {
        self.ledger.duplicates()
    }

    pub fn effects_total(&self) -> u64 {
        self.ledger.total()
    }

    pub fn in_flight_max_seen(&self) -> u32 {
        self.model.in_flight_max_seen()
    }
}
