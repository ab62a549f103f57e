//! Sweeps whose model is the simulator: one scenario per parameter set,
//! run through the real relay for every seed.
//!
//! The relay experiments write their base scenario inline in the
//! definition, in the same format as `experiments/scenarios/*.toml`, and
//! change one knob per parameter set. This module checks those scenarios
//! with the simulator's own validation (so a bad value gets the message a
//! scenario file would get, prefixed with where it sits in the definition),
//! and runs them on the sweep, turning an invariant violation into an error
//! that names the parameter set and the seed.

use super::definition::Checks;
use super::registry::{Context, ExperimentError};
use super::seeds::SeedSet;
use super::sweep::Trial;
use crate::sim::{simulate, Scenario, SimOptions, SimResult};
use std::fmt::Debug;
use std::ops::Range;
use toml::Spanned;

/// Validates a scenario written at `field` (e.g. `scenario`); a bad value is
/// reported as `field.<path>` at the line of the scenario's table.
pub fn check(raw: &Spanned<Scenario>, field: &str, checks: &mut Checks<'_>) -> Scenario {
    let scenario = raw.get_ref().clone();
    if let Err(e) = scenario.validate() {
        checks.fail(&format!("{field}.{}", e.field), raw.span(), e.reason);
    }
    scenario
}

/// Validates the scenario each parameter set will run; a failure is
/// reported at the swept knob (`field`, `span`), naming the parameter set.
pub fn check_points<P: Debug>(
    points: &[P],
    scenario: impl Fn(&P) -> Scenario,
    field: &str,
    span: Range<usize>,
    checks: &mut Checks<'_>,
) {
    for point in points {
        if let Err(e) = scenario(point).validate() {
            if checks.reported(&e) {
                continue; // the base scenario's own error, already said once
            }
            checks.fail(
                field,
                span.clone(),
                format!("with {point:?} the scenario is invalid: {e}"),
            );
        }
    }
}

/// Runs `scenario(point)` for every parameter set and each of `seeds`
/// (`label` names the sweep on the progress bar), counting
/// downstream calls per `calls_bucket_ms` if asked, and keeps what
/// `extract` takes from each result (results can be large; trials stay
/// small). The first violation, in (parameter set, seed) order, fails the
/// experiment with the command that reruns it.
pub fn run<P, R>(
    ctx: &Context<'_>,
    label: &str,
    seeds: &SeedSet,
    points: &[P],
    scenario: impl Fn(&P) -> Scenario + Sync,
    calls_bucket_ms: Option<f64>,
    extract: impl Fn(&P, SimResult) -> R + Sync,
) -> Result<Vec<Trial<R>>, ExperimentError>
where
    P: Sync + Debug,
    R: Send,
{
    let buckets = Buckets {
        calls_ms: calls_bucket_ms,
        series_ms: None,
    };
    run_counting(ctx, label, seeds, points, scenario, buckets, extract)
}

/// What a run counts per time bucket, and how long a bucket is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Buckets {
    /// Downstream calls per bucket of this many ms.
    pub calls_ms: Option<f64>,
    /// The simulator's [`crate::sim::Series`] per bucket of this many ms.
    pub series_ms: Option<f64>,
}

/// [`run`], also keeping the simulator's counters per bucket as `buckets`
/// asks.
pub fn run_counting<P, R>(
    ctx: &Context<'_>,
    label: &str,
    seeds: &SeedSet,
    points: &[P],
    scenario: impl Fn(&P) -> Scenario + Sync,
    buckets: Buckets,
    extract: impl Fn(&P, SimResult) -> R + Sync,
) -> Result<Vec<Trial<R>>, ExperimentError>
where
    P: Sync + Debug,
    R: Send,
{
    let trials = ctx.sweep().run(label, points, seeds, |point, seed| {
        let options = SimOptions {
            seed: seed.0,
            trace_records_max: 0,
            calls_bucket_ms: buckets.calls_ms,
            series_bucket_ms: buckets.series_ms,
        };
        simulate(&scenario(point), &options).map(|result| extract(point, result))
    });
    let mut kept = Vec::with_capacity(trials.len());
    for trial in trials {
        match trial.result {
            Ok(result) => kept.push(Trial {
                point: trial.point,
                seed: trial.seed,
                result,
            }),
            Err(failure) => {
                return Err(ExperimentError::Failed {
                    reason: format!(
                        "parameter set {:?}, seed {}: {failure}",
                        points[trial.point], trial.seed
                    ),
                    reproduce: format!(
                        "{} (the failing run is seed {} of {:?})",
                        ctx.rerun_command(),
                        trial.seed,
                        points[trial.point]
                    ),
                })
            }
        }
    }
    Ok(kept)
}

/// NaN when `count` is zero: a latency quantile of nothing is undefined,
/// not zero.
pub fn defined_if(count: u64, value: f64) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        value
    }
}
