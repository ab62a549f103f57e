//! `resilient-relay experiment …`: the command-line edge of the experiments.

use super::definition::Definition;
use super::registry;
use super::runner::{question, run_all, run_definition, run_named, RunReport, RunSettings};
use anyhow::Context as _;
use std::path::PathBuf;

/// Arguments of `resilient-relay experiment …`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Run experiments: sweep parameters over many seeds, write CSVs, charts and a summary",
    after_long_help = "\
Examples:
  resilient-relay experiment list
  resilient-relay experiment metrics                               # what a sweep may measure
  resilient-relay experiment jitter-comparison
  resilient-relay experiment jitter-comparison --quick --jobs 1
  resilient-relay experiment all --out /tmp/results
  cp experiments/jitter-comparison.toml experiments/my-copy.toml   # edit a knob, then:
  resilient-relay experiment run experiments/my-copy.toml          # writes results/my-copy/

Outputs land in DIR/<name>/ (see --out): a raw CSV (one row per parameter set and seed), a
summary CSV (mean and 95% CI), charts as PNG and SVG, summary.md and meta.json.
Every file but meta.json's `timing` is identical for any --jobs."
)]
pub struct ExperimentArgs {
    /// What to run: an experiment's name, `list` (show them and what they
    /// ask), `metrics` (what a sweep can measure), `all` (run them all), or
    /// `run` followed by a definition file.
    #[arg(value_name = "NAME|list|metrics|all|run")]
    pub target: String,

    /// With `run`: the experiment definition to run (TOML, e.g. an edited
    /// copy of experiments/jitter-comparison.toml).
    #[arg(value_name = "DEFINITION")]
    pub definition: Option<PathBuf>,

    /// Seeds per parameter set; overrides the definition's `[seeds] count`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub seeds: Option<u32>,

    /// Directory for results; each experiment writes to `DIR/<name>/`.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,

    /// Sweep threads [default: all cores]. Outputs do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,

    /// Fewer parameter points and seeds (the definition's `[quick]`
    /// section): a smoke run that finishes in well under a second.
    #[arg(long)]
    pub quick: bool,
}

/// Runs the `experiment` subcommand.
pub fn run(args: &ExperimentArgs) -> anyhow::Result<()> {
    match (args.target.as_str(), &args.definition) {
        ("list", None) => {
            use std::io::Write;
            let _ = write!(std::io::stdout().lock(), "{}", list_text());
        }
        ("metrics", None) => {
            use std::io::Write;
            let _ = write!(std::io::stdout().lock(), "{}", metrics_text());
        }
        ("all", None) => {
            for report in run_all(&settings(args))? {
                print_report(&report);
            }
            refresh_decision_log(args)?;
        }
        ("run", Some(path)) => {
            let definition = Definition::read(path)
                .with_context(|| format!("cannot read definition {}", path.display()))?;
            print_report(&run_definition(&definition, &settings(args))?);
        }
        ("run", None) => anyhow::bail!(
            "`experiment run` needs a definition file, e.g. `experiment run experiments/jitter-comparison.toml`"
        ),
        (_, Some(path)) => anyhow::bail!(
            "unexpected argument `{0}`: only `experiment run` takes a definition file (did you mean `experiment run {0}`?)",
            path.display()
        ),
        (name, None) => print_report(&run_named(name, &settings(args))?),
    }
    Ok(())
}

/// The text of `experiment metrics`: what a sweep's `metrics` may name.
pub fn metrics_text() -> String {
    let mut text = String::new();
    for e in super::catalogue::CATALOGUE {
        text.push_str(&format!(
            "{:<30} {:<20} {}\n",
            e.name, e.unit, e.description
        ));
    }
    text
}

/// The text of `experiment list`: each built-in definition and what it asks.
pub fn list_text() -> String {
    let mut text = String::new();
    for (name, source) in registry::BUILT_IN {
        let asks = question(&Definition::built_in(name, source)).unwrap_or_default();
        text.push_str(&format!(
            "{name:<24} {asks}\n{:<24} definition: experiments/{name}.toml\n",
            ""
        ));
    }
    text
}

fn settings(args: &ExperimentArgs) -> RunSettings {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    RunSettings {
        out_dir: args.out.clone(),
        jobs: args.jobs.map_or(cores, |j| j as usize),
        quick: args.quick,
        seeds: args.seeds,
        progress: true,
    }
}

/// The decision log quotes the default run: after `experiment all` with
/// default seeds into `results/`, its generated numbers are refreshed.
fn refresh_decision_log(args: &ExperimentArgs) -> anyhow::Result<()> {
    let log = std::path::Path::new(DECISION_LOG);
    if args.quick
        || args.seeds.is_some()
        || args.out != std::path::Path::new("results")
        || !log.exists()
    {
        return Ok(());
    }
    let doc =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {DECISION_LOG}"))?;
    let fresh = crate::decision_log::refresh(&doc, &args.out)
        .map_err(|e| anyhow::anyhow!("{DECISION_LOG}: {e}"))?;
    if fresh != doc {
        std::fs::write(log, fresh).with_context(|| format!("cannot write {DECISION_LOG}"))?;
        eprintln!("refreshed the numbers {DECISION_LOG} quotes");
    }
    Ok(())
}

const DECISION_LOG: &str = "LEARNING_PLAN.md";

fn print_report(report: &RunReport) {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth a panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}: wrote {} files to {} in {:.2} s",
        report.experiment,
        report.files.len(),
        report.dir.display(),
        report.wall.as_secs_f64()
    );
    for file in &report.files {
        let _ = writeln!(out, "  {file}");
    }
}
