//! Jitter comparison: which backoff strategy resolves contention with the
//! least work and the least waiting?
//!
//! Part (a), [`contention`], reproduces the AWS Architecture Blog study
//! "Exponential Backoff and Jitter" with a small self-contained model of
//! clients racing to update one record. Part (b), [`herd`], runs the same
//! strategies through the simulator and the real relay: thousands of
//! clients retrying through a downstream outage. Each part is one section
//! of the definition and adds its own tables and charts to the same
//! [`Outputs`].

pub mod contention;
mod contention_report;
pub mod herd;
mod herd_report;
pub mod options;
pub mod strategy;

use crate::experiment::registry::{Context, Experiment, ExperimentError, Outputs};
use crate::experiment::scenario_runs;
use crate::experiment::sweep::Trial;
use contention::{ContentionModel, Outcome};
use options::ContentionOptions;
use strategy::Strategy;

/// The `jitter-comparison` experiment.
#[derive(Clone, Copy, Debug, Default)]
pub struct JitterComparison;

impl Experiment for JitterComparison {
    fn name(&self) -> &'static str {
        "jitter-comparison"
    }

    fn description(&self) -> &'static str {
        "Backoff and jitter strategies. (a) Contention: N clients race to update one record \
         with optimistic concurrency (after the AWS Architecture Blog study \"Exponential Backoff \
         and Jitter\"); write calls and completion time per strategy and client count. (b) \
         Through the relay: thousands of clients retry through a downstream outage; calls, \
         peak calls per 100 ms, time to drain, p99 completion, 429s and duplicates."
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, ExperimentError> {
        let options = options::validate(ctx)?;
        let points = contention_points(&options.contention);
        let trials = run_contention(ctx, &options.contention, &points);
        let mut outputs = Outputs {
            options: serde_json::to_value(&options)?,
            ..Outputs::default()
        };
        contention_report::append(&mut outputs, &points, &trials);
        let relay = &options.relay;
        let herd_seeds = relay.seeds(ctx.seeds());
        let herd_trials = scenario_runs::run(
            ctx,
            "relay",
            &herd_seeds,
            &relay.strategies,
            |strategy| herd::scenario_for(*strategy, &relay.scenario),
            Some(herd::BUCKET_MS),
            |_, result| herd::outcome(result, relay.outage_end_s),
        )?;
        herd_report::append(&mut outputs, relay, &herd_seeds, &herd_trials);
        Ok(outputs)
    }
}

/// One parameter set of part (a).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentionPoint {
    pub strategy: Strategy,
    pub clients: u32,
}

/// Strategies in the definition's order, client counts ascending.
fn contention_points(options: &ContentionOptions) -> Vec<ContentionPoint> {
    options
        .strategies
        .iter()
        .flat_map(|&strategy| {
            options
                .clients
                .iter()
                .map(move |&clients| ContentionPoint { strategy, clients })
        })
        .collect()
}

/// Runs every point and seed; building a model is a few field copies, so
/// each run builds its own.
fn run_contention(
    ctx: &Context<'_>,
    options: &ContentionOptions,
    points: &[ContentionPoint],
) -> Vec<Trial<Outcome>> {
    ctx.sweep()
        .run("contention", points, ctx.seeds(), |point, seed| {
            ContentionModel::new(point.strategy, options).run(point.clients, seed)
        })
}
