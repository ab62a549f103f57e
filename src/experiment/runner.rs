//! From a definition to files on disk: resolve, sweep, write.

use super::definition::{Definition, DefinitionErrors, Resolved};
use super::outputs::{write_meta, write_outputs, Provenance, Timing, WriteError};
use super::registry::{self, Context, ExperimentError, Outputs};
use super::scenario_sweep;
use super::sweep::Sweep;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How to run, as given on the command line.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Results go to `<out_dir>/<name>/`.
    pub out_dir: PathBuf,
    /// Sweep threads (at least 1).
    pub jobs: usize,
    /// Apply the definition's `[quick]` overlay.
    pub quick: bool,
    /// Replace the definition's seed count.
    pub seeds: Option<u32>,
    /// Show a progress bar (only ever on a terminal's stderr).
    pub progress: bool,
}

/// What one experiment run wrote.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub experiment: String,
    pub dir: PathBuf,
    /// File names inside `dir`, in the order written.
    pub files: Vec<String>,
    pub wall: Duration,
}

/// Why a run wrote nothing, or not everything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no experiment named `{name}`; known: {known} (or `list`, `all`, `run <file>`)")]
    UnknownExperiment { name: String, known: String },
    #[error(transparent)]
    Definition(#[from] DefinitionErrors),
    #[error("{experiment}: {source}")]
    Experiment {
        experiment: String,
        source: ExperimentError,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot start {jobs} sweep threads: {source}")]
    Pool {
        jobs: usize,
        source: rayon::ThreadPoolBuildError,
    },
}

/// Runs the built-in definition `name`.
pub fn run_named(name: &str, settings: &RunSettings) -> Result<RunReport, RunError> {
    let definition = registry::built_in(name).ok_or_else(|| RunError::UnknownExperiment {
        name: name.to_string(),
        known: registry::built_in_names().join(", "),
    })?;
    run_definition(&definition, settings)
}

/// Runs every built-in definition in order; stops at the first error.
pub fn run_all(settings: &RunSettings) -> Result<Vec<RunReport>, RunError> {
    registry::built_in_names()
        .into_iter()
        .map(|name| run_named(name, settings))
        .collect()
}

/// What a definition asks, in one line: a model's description or a
/// sweep's `question`.
pub fn question(definition: &Definition) -> Option<String> {
    let resolved = definition.resolve(false, None).ok()?;
    match registry::find(&resolved.experiment) {
        Some(model) => Some(model.description().to_string()),
        None => scenario_sweep::question(&resolved),
    }
}

/// Runs the experiment a definition names and writes its outputs.
pub fn run_definition(
    definition: &Definition,
    settings: &RunSettings,
) -> Result<RunReport, RunError> {
    #[allow(clippy::disallowed_methods)]
    // wall time is recorded in meta.json only, never in results
    let started = Instant::now();
    let resolved = definition.resolve(settings.quick, settings.seeds)?;
    let sweep = Sweep::new(settings.jobs, settings.progress).map_err(|source| RunError::Pool {
        jobs: settings.jobs,
        source,
    })?;
    let (description, outputs) = run_model(&resolved, &sweep)?;
    resolved.ensure_valid()?;
    let name = resolved.experiment.clone();
    let provenance = Provenance {
        name: &name,
        description: &description,
        definition,
        seeds: resolved.seeds,
        quick: settings.quick,
        seeds_override: settings.seeds,
    };
    let dir = settings.out_dir.join(definition.output_name());
    let files = write_outputs(&dir, &outputs, &provenance)?;
    let wall = started.elapsed();
    let timing = Timing {
        jobs: sweep.jobs(),
        wall_s: wall.as_secs_f64(),
    };
    write_meta(&dir, &outputs, &provenance, &files, timing)?;
    Ok(RunReport {
        experiment: name,
        dir,
        files,
        wall,
    })
}

/// Runs the bespoke model the definition names, or else its scenario
/// sweep; returns the one-line description and the outputs.
fn run_model(resolved: &Resolved<'_>, sweep: &Sweep) -> Result<(String, Outputs), RunError> {
    let ctx = Context::new(resolved, sweep);
    let name = &resolved.experiment;
    let (description, result) = match registry::find(name) {
        Some(model) => (model.description().to_string(), model.run(&ctx)),
        None => match scenario_sweep::question(resolved) {
            Some(question) => (question, scenario_sweep::run(&ctx, name)),
            None => {
                let mut known = registry::names();
                known.push("or a scenario sweep (a `question` and [[axes]])");
                return Err(resolved.unknown_experiment(&known).into());
            }
        },
    };
    let outputs = result.map_err(|source| match source {
        ExperimentError::Definition(errors) => RunError::Definition(errors),
        source => RunError::Experiment {
            experiment: name.clone(),
            source,
        },
    })?;
    Ok((description, outputs))
}
