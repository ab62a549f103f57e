//! From a definition to files on disk: resolve, sweep, write.

use super::definition::{Definition, DefinitionErrors};
use super::outputs::{write_meta, write_outputs, Provenance, Timing, WriteError};
use super::registry::{self, Context, Experiment, ExperimentError};
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
    pub experiment: &'static str,
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
        experiment: &'static str,
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

/// Runs the built-in experiment `name` from its embedded definition.
pub fn run_named(name: &str, settings: &RunSettings) -> Result<RunReport, RunError> {
    let experiment = registry::find(name).ok_or_else(|| RunError::UnknownExperiment {
        name: name.to_string(),
        known: registry::names().join(", "),
    })?;
    let definition = Definition::built_in(experiment.name(), experiment.default_definition());
    run_definition(&definition, settings)
}

/// Runs every built-in experiment in registry order; stops at the first error.
pub fn run_all(settings: &RunSettings) -> Result<Vec<RunReport>, RunError> {
    registry::registry()
        .iter()
        .map(|e| run_named(e.name(), settings))
        .collect()
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
    let experiment = registry::find(&resolved.experiment)
        .ok_or_else(|| resolved.unknown_experiment(&registry::names()))?;
    let sweep = Sweep::new(settings.jobs, settings.progress).map_err(|source| RunError::Pool {
        jobs: settings.jobs,
        source,
    })?;
    let outputs = experiment
        .run(&Context::new(&resolved, &sweep))
        .map_err(|source| failed(experiment, source))?;
    resolved.ensure_valid()?;
    let provenance = Provenance {
        experiment,
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
        experiment: experiment.name(),
        dir,
        files,
        wall,
    })
}

fn failed(experiment: &dyn Experiment, source: ExperimentError) -> RunError {
    match source {
        ExperimentError::Definition(errors) => RunError::Definition(errors),
        source => RunError::Experiment {
            experiment: experiment.name(),
            source,
        },
    }
}
