//! Searching the space of scenarios for what breaks the relay.
//!
//! - [`draw`]: whole scenarios drawn from one seed;
//! - [`triggers`]: what pushes a scenario over, and its calm twin;
//! - [`verdict`]: one scenario judged: invariants, then liveness;
//! - [`shrink`]: a failure reduced to a small one that fails the same way;
//! - [`swarm`]: many drawn runs, in any order, each replayable alone;
//! - [`shard`]: a search split into shards that run anywhere, merged back.

pub mod draw;
pub mod map;
pub mod shard;
pub mod shrink;
pub mod swarm;
pub mod triggers;
pub mod verdict;

pub use swarm::{ending, row, run_one, run_seed, shrink_run, tally, Outcome};
pub use verdict::{judge, Evidence, Unjudged, Verdict};
