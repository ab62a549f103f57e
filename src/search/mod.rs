//! Searching the space of scenarios for what breaks the relay.
//!
//! - [`draw`]: whole scenarios drawn from one seed;
//! - [`triggers`]: what pushes a scenario over, and its calm twin;
//! - [`verdict`]: one scenario judged: invariants, then liveness;
//! - [`shrink`]: a failure reduced to a small one that fails the same way;
//! - [`swarm`]: many drawn runs, in any order, each replayable alone;
//! - [`shard`]: a search split into shards that run anywhere, merged back;
//! - [`stages`]: a search whose stages depend on each other, sharded stage
//!   by stage;
//! - [`map`]: where a scenario stops recovering, by bisection over its axes;
//! - [`stress`]: a scenario's spike and outage variants, and its cliff;
//! - [`tune`]: settings searched for goodput with a margin to the cliff.

pub mod draw;
pub mod map;
pub mod shard;
pub mod shrink;
pub mod stages;
pub mod stress;
pub mod swarm;
pub mod triggers;
pub mod tune;
pub mod verdict;

pub use swarm::{ending, row, run_one, run_seed, shrink_run, tally, Outcome};
pub use verdict::{judge, Evidence, Unjudged, Verdict};
