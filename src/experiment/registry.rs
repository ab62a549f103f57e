//! The [`Experiment`] trait and the list of built-in experiments.
//!
//! An experiment is a model plus the sweep over its knobs. It receives its
//! validated definition and a parallel [`Sweep`], and returns everything it
//! wants written as plain data ([`Outputs`]): tables, charts and the
//! headline text of `summary.md`. It never touches the file system or a
//! clock, so it can be tested in memory, and the shared plumbing alone
//! decides where and how results land.

use super::chart::LineChart;
use super::definition::{Checks, Definition, DefinitionErrors, Origin, Resolved};
use super::seeds::SeedSet;
use super::sweep::Sweep;
use super::table::Table;
use serde::de::DeserializeOwned;

/// A model that is more than a scenario sweep (a sweep needs only its TOML
/// file; see [`super::scenario_sweep`]).
///
/// To add one: implement this trait in `src/experiment/<name>/`, list it in
/// [`registry`], and its definition in [`BUILT_IN`].
pub trait Experiment: Sync {
    /// Command-line name and output directory, e.g. `jitter-comparison`.
    fn name(&self) -> &'static str;
    /// One line for `experiment list` and the top of `summary.md`.
    fn description(&self) -> &'static str;
    /// Validates the definition's own sections, runs the sweep and returns
    /// what to write.
    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, ExperimentError>;
}

impl std::fmt::Debug for dyn Experiment + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Experiment")
            .field("name", &self.name())
            .finish()
    }
}

/// What an experiment is handed: its definition and the sweep to run on.
#[derive(Debug)]
pub struct Context<'a> {
    definition: &'a Resolved<'a>,
    sweep: &'a Sweep,
}

impl<'a> Context<'a> {
    pub fn new(definition: &'a Resolved<'a>, sweep: &'a Sweep) -> Context<'a> {
        Context { definition, sweep }
    }

    /// Seeds every parameter set runs with (definition, `--quick` and
    /// `--seeds` applied).
    pub fn seeds(&self) -> &SeedSet {
        &self.definition.seeds
    }

    /// Whether this is a `--quick` run (already applied to the definition).
    pub fn quick(&self) -> bool {
        self.definition.quick
    }

    /// Parses the experiment's sections into `Raw` and lets `build` check
    /// them into typed options; see [`Resolved::options`]. This is the only
    /// way to the options, so bad shared values (seeds, …) always stop the
    /// run, reported together with the experiment's own.
    pub fn options<Raw, O>(
        &self,
        build: impl FnMut(Raw, &mut Checks<'a>) -> O,
    ) -> Result<O, DefinitionErrors>
    where
        Raw: DeserializeOwned,
    {
        self.definition.options(build)
    }

    pub fn sweep(&self) -> &Sweep {
        self.sweep
    }

    /// The command that reruns this definition with these seeds, for
    /// messages about a run that went wrong.
    pub fn rerun_command(&self) -> String {
        let mut command = String::from("cargo run --release -- experiment ");
        match self.definition.definition().origin() {
            Origin::BuiltIn(name) => command.push_str(name),
            Origin::File(path) => command.push_str(&format!("run {}", path.display())),
        }
        if self.quick() {
            command.push_str(" --quick");
        }
        command.push_str(&format!(" --seeds {}", self.seeds().count));
        command
    }
}

/// Everything an experiment wants written, as data.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    /// Every resolved option, as it goes into `meta.json`.
    pub options: serde_json::Value,
    /// Each becomes `<name>.csv`; the first should be the raw table (one
    /// row per parameter set and seed).
    pub tables: Vec<Table>,
    /// Each becomes `<name>.png` and `<name>.svg`.
    pub charts: Vec<LineChart>,
    /// The experiment's part of `summary.md` (Markdown, generated from the
    /// results: headline numbers and what they show).
    pub summary_markdown: String,
}

/// Why an experiment produced no outputs.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Definition(#[from] DefinitionErrors),
    /// A run broke one of the model's own invariants: a bug, reported with
    /// the one command that replays it.
    #[error("{reason}\n  reproduce with: {reproduce}")]
    Failed { reason: String, reproduce: String },
    /// The resolved options could not be turned into JSON for `meta.json`.
    #[error("cannot record the resolved options: {0}")]
    Options(#[from] serde_json::Error),
}

/// The models that are more than a scenario sweep, by the name a
/// definition's `experiment = "…"` gives.
pub fn registry() -> &'static [&'static dyn Experiment] {
    static MODELS: [&dyn Experiment; 2] = [
        &super::breaker_tuning::BreakerTuning,
        &super::jitter_comparison::JitterComparison,
    ];
    &MODELS
}

/// The model called `name`.
pub fn find(name: &str) -> Option<&'static dyn Experiment> {
    registry().iter().copied().find(|e| e.name() == name)
}

/// Names of the models, for error messages.
pub fn names() -> Vec<&'static str> {
    registry().iter().map(|e| e.name()).collect()
}

macro_rules! built_in {
    ($($name:literal),* $(,)?) => {
        /// Every definition under `experiments/`, built into the binary: the
        /// order `list` and `all` use. A scenario sweep needs nothing else.
        pub const BUILT_IN: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../experiments/", $name, ".toml")))),*
        ];
    };
}

built_in![
    "breaker-tuning",
    "bulkheads",
    "crash-recovery",
    "dlq-sizing",
    "jitter-comparison",
    "queue-sizing",
    "rate-limit-sizing",
    "retry-policies",
    "retry-policies-clients",
    "retry-storm",
    "timeout-tuning",
    "worker-pool-sizing",
];

/// The built-in definition called `name`.
pub fn built_in(name: &str) -> Option<Definition> {
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(n, source)| Definition::built_in(n, source))
}

/// Names of the built-in definitions, for error messages.
pub fn built_in_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A definition dropped into `experiments/` but not listed above would
    /// silently not be built in (nor run by `all`, nor its results checked).
    #[test]
    fn every_definition_under_experiments_is_built_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("experiments/ exists")
            .filter_map(|entry| {
                let path = entry.expect("readable").path();
                let toml = path.extension().is_some_and(|e| e == "toml");
                toml.then(|| path.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect();
        on_disk.sort();
        let listed: Vec<String> = built_in_names().into_iter().map(str::to_owned).collect();
        assert_eq!(
            on_disk, listed,
            "list each experiments/*.toml in `built_in!`, in order"
        );
    }
}
