//! `resilient-relay swarm`: draw scenarios, judge them, shrink the failures.

use crate::experiment::seeds::SeedSet;
use crate::experiment::sweep::Sweep;
use crate::search::{judge, run_one, shrink_run, tally, Outcome, Verdict};
use crate::sim::Scenario;
use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct SwarmArgs {
    /// Scenarios to draw and judge.
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub runs: u64,
    /// The swarm's seed: run i draws from a seed derived from (seed, i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads [default: all cores]. Results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Where failing scenarios are written, as TOML files `simulate` runs.
    #[arg(long, value_name = "DIR", default_value = "results/swarm")]
    pub out: PathBuf,
    /// Failures to shrink: violations first, then stuck runs, each in run
    /// order; the others are written as drawn.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub shrink_max: usize,
    /// Most reductions judged while shrinking one failure.
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub shrink_budget: u32,
    /// What a stuck run (goodput not back after the triggers) does to the
    /// exit status: `fail` it, or `report` it and fail on violations only
    /// (a stuck run is a finding about the drawn settings; a violation is
    /// a bug).
    #[arg(long, value_enum, default_value_t = OnStuck::Fail, value_name = "WHAT")]
    pub stuck: OnStuck,
    /// Judge this scenario file instead of drawing (liveness included),
    /// e.g. a failure an earlier swarm wrote.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["runs"])]
    pub check: Option<PathBuf>,
    /// With --check: the seed to run it on [default: the file's `seed`].
    #[arg(long = "check-seed", value_name = "SEED", requires = "check")]
    pub check_seed: Option<u64>,
    /// With --check: shrink the scenario if it fails, and write the result
    /// beside the file as `NAME.min.toml`.
    #[arg(long, requires = "check")]
    pub shrink: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnStuck {
    Fail,
    Report,
}

pub fn run(args: &SwarmArgs) -> anyhow::Result<()> {
    match &args.check {
        Some(path) => check(args, path),
        None => swarm(args),
    }
}

fn check(args: &SwarmArgs, path: &Path) -> anyhow::Result<()> {
    let scenario = Scenario::load(path)?;
    let seed = args.check_seed.unwrap_or(scenario.seed);
    let verdict = judge(&scenario, seed);
    println!("{} (seed {seed}): {verdict}", path.display());
    if !verdict.failed() {
        return Ok(());
    }
    if args.shrink {
        let shrunk = shrink_run(&scenario, seed, &verdict, args.shrink_budget);
        let min = path.with_extension("min.toml");
        write(&min, &shrunk.scenario)?;
        println!(
            "shrunk in {} steps ({} judged{}): {}\n{}",
            shrunk.steps,
            shrunk.tried,
            if shrunk.cut { ", budget spent" } else { "" },
            min.display(),
            shrunk.verdict
        );
    }
    anyhow::bail!("the scenario fails")
}

fn swarm(args: &SwarmArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.map_or(cores, |j| j as usize);
    let sweep = Sweep::new(jobs, true).context("cannot start the swarm's threads")?;
    // The sweep's "seeds" are run indices here; each run derives its own seed.
    let indices = SeedSet {
        first: 0,
        count: u32::try_from(args.runs).context("--runs is too large")?,
    };
    #[allow(clippy::disallowed_methods)]
    // wall time is reported as the swarm's speed, never used by a run
    let started = std::time::Instant::now();
    let outcomes: Vec<Outcome> = sweep
        .run("swarm", &[()], &indices, |_, index| {
            run_one(args.seed, index.0)
        })
        .into_iter()
        .map(|t| t.result)
        .collect();
    let wall_s = started.elapsed().as_secs_f64();
    println!(
        "swarm: {} runs from seed {} in {wall_s:.1} s ({:.0} scenarios/s on {jobs} threads)",
        args.runs,
        args.seed,
        args.runs as f64 / wall_s
    );
    for (name, n) in tally(&outcomes) {
        println!("  {name:<48} {n:>8}");
    }
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.verdict.failed()).collect();
    if failures.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // Violations (bugs) are shrunk before stuck runs (findings about the
    // drawn settings); within each kind, in run order.
    let mut order: Vec<&Outcome> = failures.clone();
    order.sort_by_key(|o| (!matches!(o.verdict, Verdict::Violation(_)), o.index));
    for (n, o) in order.iter().enumerate() {
        report(args, o, n < args.shrink_max)?;
    }
    let violations = failures
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Violation(_)))
        .count();
    if violations == 0 && args.stuck == OnStuck::Report {
        println!(
            "\n{} runs stuck, reported (--stuck report); no invariant violated",
            failures.len()
        );
        return Ok(());
    }
    anyhow::bail!(
        "{} of {} runs failed ({violations} violations); their scenarios are in {}",
        failures.len(),
        args.runs,
        args.out.display()
    )
}

/// Prints one failure, writes its scenario, and shrinks it if asked.
fn report(args: &SwarmArgs, o: &Outcome, shrink: bool) -> anyhow::Result<()> {
    let scenario = crate::search::draw::draw(o.seed);
    let path = args.out.join(format!("swarm-{}.toml", o.seed));
    write(&path, &scenario)?;
    println!(
        "\nrun {} (seed {}): {}\n  scenario: {}",
        o.index,
        o.seed,
        o.verdict,
        path.display()
    );
    replay_hint(&path, &o.verdict);
    if !shrink {
        return Ok(());
    }
    let shrunk = shrink_run(&scenario, o.seed, &o.verdict, args.shrink_budget);
    let min = args.out.join(format!("swarm-{}.min.toml", o.seed));
    let mut small = shrunk.scenario;
    small.name = format!("swarm-{}-min", o.seed);
    write(&min, &small)?;
    println!(
        "  shrunk in {} steps ({} judged{}): {}\n  {}",
        shrunk.steps,
        shrunk.tried,
        if shrunk.cut { ", budget spent" } else { "" },
        min.display(),
        shrunk.verdict
    );
    replay_hint(&min, &shrunk.verdict);
    Ok(())
}

fn replay_hint(path: &Path, verdict: &Verdict) {
    let how = match verdict {
        Verdict::Violation(_) => "simulate",
        _ => "swarm --check",
    };
    println!(
        "  reproduce with: cargo run --release -- {how} {}",
        path.display()
    );
}

fn write(path: &Path, scenario: &Scenario) -> anyhow::Result<()> {
    let text = toml::to_string(scenario).context("cannot write the scenario as TOML")?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
