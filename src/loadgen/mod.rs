//! The load generator: a scenario's clients, played in real time against a
//! live relay.
//!
//! The simulator's clients are a sans-IO machine; here the real clock
//! drives it ([`player`]), each send becomes `POST /relay` and each answer
//! is read back into the relay's own answer kinds ([`wire`]), and a job's
//! end, learnt by polling its status, is dated on the relay's clock moved
//! onto ours ([`offset`]). What comes out is what `simulate` prints, in the
//! same formats ([`report`]): the summary from what the clients heard and
//! what the relay's `/stats` and the downstream's `/effects` say at the
//! horizon, and the clients' side of the trace.
//!
//! - [`timeline_chart`]: `compare`'s timelines drawn, both worlds on one
//!   scale.
//! - [`peers`]: a loopback source address per client, so the relay's
//!   per-peer rate limit sees the scenario's clients.
//! - [`target`]: where the load goes (loopback unless told otherwise) and
//!   the operator's token for `/stats`.

pub mod bench;
pub mod compare;
pub mod offset;
pub mod peers;
pub mod player;
pub mod report;
pub mod target;
pub mod timeline_chart;
pub mod wire;

use crate::relay::{LatencySummary, Refusal};
use crate::sim::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use wire::Heard;

pub use player::{Ending, PlayOptions, Played};
pub use report::{LoadgenResult, Observed};
pub use target::Target;

/// What only the live run counts: every answer by kind as heard (the
/// relay's own counts of them are in `/stats`), what never got one, and
/// the player's own health.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveCounts {
    pub accepted: u64,
    pub replayed: u64,
    pub fallback: u64,
    pub shed_429: u64,
    pub rate_limited_429: u64,
    pub unavailable_503: u64,
    pub conflicts_409: u64,
    pub mismatches_422: u64,
    pub keys_full: u64,
    pub bad_key: u64,
    /// Answers that are no relay answer (by status): HTTP-level refusals,
    /// a busy relay task. The client treats them as a 503.
    pub other: BTreeMap<u16, u64>,
    /// Sends that got no answer (connection refused or reset).
    pub transport_errors: u64,
    /// Sends not made: the bound on sends and polls in progress was full.
    pub overloaded: u64,
    /// Status polls made, those that failed, and jobs the relay had forgotten.
    pub polls: u64,
    pub poll_errors: u64,
    pub jobs_gone: u64,
    /// Sends and polls still in progress when the run ended.
    pub in_flight_at_end: u64,
    /// The relay's clock on ours (ms), and how well it is known.
    pub clock_offset_ms: Option<f64>,
    pub clock_offset_uncertainty_ms: Option<f64>,
    /// How late the player's timers fired: the machine's scheduling noise.
    pub timer_lateness: LatencySummary,
    /// Timers handed to the clients later than their instant (0 unless
    /// the clock went back): each would shift what follows it.
    pub timers_shifted: u64,
    /// Jobs of keyless requests that succeeded after another job of the
    /// same request had: repeated side effects no key could stop (the
    /// relay names each keyless call by its job, so the downstream cannot
    /// tell them; the statuses can).
    pub keyless_repeats: u64,
}

impl LiveCounts {
    fn count(&mut self, heard: &Heard) {
        let n = match heard {
            Heard::Accepted { .. } => &mut self.accepted,
            Heard::Replayed => &mut self.replayed,
            Heard::Fallback => &mut self.fallback,
            Heard::Refused { why, .. } => match why {
                Refusal::Shed => &mut self.shed_429,
                Refusal::RateLimited => &mut self.rate_limited_429,
                Refusal::Unavailable => &mut self.unavailable_503,
                Refusal::Conflict => &mut self.conflicts_409,
                Refusal::Mismatch => &mut self.mismatches_422,
                Refusal::KeysFull => &mut self.keys_full,
                Refusal::BadKey => &mut self.bad_key,
            },
            Heard::Other { status } => self.other.entry(*status).or_default(),
            Heard::Transport => &mut self.transport_errors,
        };
        *n += 1;
    }

    /// Sends that were answered, whatever the answer (no answer excluded).
    pub fn answered(&self) -> u64 {
        self.accepted
            + self.replayed
            + self.fallback
            + self.shed_429
            + self.rate_limited_429
            + self.unavailable_503
            + self.conflicts_409
            + self.mismatches_422
            + self.keys_full
            + self.bad_key
            + self.other.values().sum::<u64>()
    }
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct LoadgenOptions {
    pub target: Target,
    /// The downstream's base URL, for its side effects and calls per bucket.
    pub downstream: Option<Target>,
    pub seed: u64,
    pub sends_max: u64,
    pub in_flight_max: usize,
    pub duration_max: Duration,
    pub trace_records_max: usize,
    pub bucket_ms: f64,
    pub progress: bool,
}

/// Longest run allowed at all: an hour.
const DURATION_S_LIMIT: f64 = 3_600.0;

impl LoadgenOptions {
    /// A run of `scenario` against `target` with the default bounds: the
    /// horizon + 10 s (600 s without one) unless `duration_max_s` says.
    pub fn for_scenario(
        scenario: &Scenario,
        target: Target,
        downstream: Option<Target>,
        seed: u64,
        duration_max_s: Option<f64>,
    ) -> anyhow::Result<LoadgenOptions> {
        let duration_s = duration_max_s.unwrap_or(if scenario.horizon_s > 0.0 {
            scenario.horizon_s + 10.0
        } else {
            600.0
        });
        anyhow::ensure!(
            duration_s > 0.0 && duration_s <= DURATION_S_LIMIT,
            "--duration-max-s: must be > 0 and at most {DURATION_S_LIMIT} s, got {duration_s}"
        );
        Ok(LoadgenOptions {
            target,
            downstream,
            seed,
            sends_max: 1_000_000,
            in_flight_max: 20_000,
            duration_max: Duration::from_secs_f64(duration_s),
            trace_records_max: 0,
            bucket_ms: 100.0,
            progress: true,
        })
    }
}

/// Plays `scenario` on a runtime of its own and reports it.
pub fn run(scenario: &Scenario, opts: &LoadgenOptions) -> anyhow::Result<LoadgenResult> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(report::play_and_observe(scenario, opts));
    // Polls of jobs still running and sends still waiting are dropped here.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}
