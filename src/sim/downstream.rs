//! The simulated downstream: the shared [`FaultModel`] on virtual time, and
//! a ledger of side effects per request number.
//!
//! Each call draws its latency and failure from a stream keyed by the call's
//! identity (logical request, send, relay attempt), not from one stream in
//! call order: two strategies run on one seed then see the same first-try
//! latency and failure for the same logical request, whatever else they do.
//!
//! The scenario's `[downstream]` is [`DownstreamConfig`], the same table the
//! real-time `downstream` service serves.

use crate::fault::{CallPlan, DenseLedger, FaultModel};
use crate::rng::{Domain, Seed, Streams};
use crate::time::{ms_to_nanos, Time};
use std::time::Duration;

pub use crate::fault::{
    BrownoutConfig, CapacityConfig, DownstreamConfig, FailureMix, LatencyConfig, OutageConfig,
    OutageMode,
};

pub struct Downstream {
    /// The run seed's key, expanded once: every call makes a stream.
    streams: Streams,
    model: FaultModel,
    ledger: DenseLedger,
    duplicates_keyless: u64,
}

impl Downstream {
    pub fn new(cfg: &DownstreamConfig, seed: Seed) -> Downstream {
        Downstream::of_route(cfg, seed, 0)
    }

    /// The downstream of relay route `route` (0: the default route). Calls
    /// draw from streams keyed by their logical request, which goes to one
    /// route only, so the routes' draws never coincide.
    pub fn of_route(cfg: &DownstreamConfig, seed: Seed, route: u64) -> Downstream {
        Downstream {
            streams: seed.streams(),
            model: FaultModel::new(cfg, seed.stream(Domain::Downstream, route)),
            ledger: DenseLedger::new(cfg.honours_idempotency_key),
            duplicates_keyless: 0,
        }
    }

    /// Call `step` (see [`super::network::call_step`]) of logical request
    /// `request` starts now: decide when it answers and how.
    pub fn start(&mut self, now: Time, request: u64, step: u64) -> CallPlan {
        let mut rng = self.streams.step_stream(Domain::Call, request, step);
        self.model.start_drawing(now, &mut rng)
    }

    /// A call for logical request `request` ends; a successful one lands
    /// its side effect there, whether or not the call carried the key
    /// (`keyed`). Returns whether that effect was a duplicate.
    pub fn finish(&mut self, request: Option<u64>, keyed: bool, landed: bool) -> bool {
        self.model.finish();
        let duplicate = match (request, landed) {
            (Some(r), true) => self.ledger.record_as(r, keyed),
            _ => false,
        };
        self.duplicates_keyless += u64::from(duplicate && !keyed);
        duplicate
    }

    /// Calls in progress at the downstream now, whether or not their caller waits.
    pub fn in_progress(&self) -> u32 {
        self.model.in_flight()
    }

    /// Duplicate effects of calls that carried no idempotency key.
    pub fn duplicates_keyless(&self) -> u64 {
        self.duplicates_keyless
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
