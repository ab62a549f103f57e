//! Parameter sweeps over many seeds: CSVs, charts and summaries.
//!
//! Learning which retry strategy, queue size or timeout works needs numbers
//! from many runs, not one; and numbers are only worth keeping if anyone
//! can recreate them. So an experiment is a TOML definition under
//! `experiments/` plus a model that turns (parameter set, seed) into a row;
//! the shared plumbing here runs every pair on a thread pool, sorts the
//! rows, and writes raw and summary CSVs, charts, `summary.md` and
//! `meta.json` that are byte-identical for any thread count.
//!
//! | module | concept |
//! |---|---|
//! | [`registry`] | the [`Experiment`] trait, [`Outputs`], the built-in definitions |
//! | [`definition`] | loading definitions, the `[quick]` overlay, shared keys |
//! | [`checks`] | every bad value of a definition, with field and line |
//! | [`seeds`] | the seed set each parameter set runs with |
//! | [`sweep`] | running every (parameter set, seed) in parallel, sorted |
//! | [`stats`] | mean and Student-t 95 % confidence intervals |
//! | [`table`] | tables and their deterministic CSV form |
//! | [`knobs`] | the swept lists of a bespoke model, checked and sorted |
//! | [`catalogue`] | every number of a simulated run: name, unit, description |
//! | [`metrics`] | per-run numbers → raw and summary tables, chart lines |
//! | [`scenario_runs`] | running a scenario per parameter set and seed |
//! | [`scenario_sweep`] | a sweep of scenario fields declared in TOML alone |
//! | [`over_time`] | per-bucket counters averaged over seeds: table and chart lines |
//! | [`time_series`] | the simulator's counters per time bucket, by name |
//! | [`recovery`] | whether a run recovered after its trigger, and when |
//! | [`paired`] | paired differences against a baseline beside independent ones |
//! | [`chart`] | line charts as PNG and SVG with the embedded font |
//! | [`outputs`] | writing it all, `summary.md` and `meta.json` |
//! | [`runner`] | definition → sweep → files |
//! | [`cli`] | the `experiment` subcommand |
//! | [`breaker_tuning`] | circuit breaker settings during an outage: calls, 503s, dead letters |
//! | [`jitter_comparison`] | backoff and jitter strategies: contention, then a herd through the relay |

pub mod breaker_tuning;
pub mod catalogue;
pub mod chart;
pub mod checks;
pub mod cli;
pub mod definition;
pub mod heatmap;
pub mod jitter_comparison;
pub mod knobs;
pub mod metrics;
pub mod outputs;
pub mod over_time;
pub mod paired;
pub mod recovery;
pub mod registry;
pub mod runner;
pub mod scenario_runs;
pub mod scenario_sweep;
pub mod seeds;
pub mod stats;
pub mod sweep;
pub mod table;
pub mod time_series;

pub use cli::{run, ExperimentArgs};
pub use registry::{Context, Experiment, ExperimentError, Outputs};
pub use runner::{run_definition, run_named, RunReport, RunSettings};
