//! `resilient-relay tune`: search a scenario's relay settings, write the
//! front, the recommendation and its margin to the cliff.

use crate::experiment::sweep::Sweep;
use crate::search::tune::spec::{CANDIDATES_MAX, SEEDS_MAX};
use crate::search::tune::{report, tune, Report, Tuning};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// `tune --help`'s last paragraph.
const AFTER_HELP: &str = "\
The scenario file's [tune] section names the knobs ([[tune.knobs]]: `path`, and
`min`/`max` or `values`), the constraints ([tune.constraints]), the stress variants
([tune.stress]) and the budget; README's `### tune` shows one.

Each candidate runs the scenario as written (goodput, client p99, amplification,
duplicate side effects), and, when `recover` is a constraint, each stress variant
(the calm scenario with a spike, an outage), judged like `swarm` does. Candidate 0 is
the scenario as written and stays to the last round as the yardstick.

Recommendation: among the feasible candidates of the last round that no other
dominates, those within recommend_within_pct of the best goodput are bisected for the
largest spike and outage they still recover from; the one with the largest margin (the
smaller of the two, each as a share of its searched range) wins; ties go to more
goodput, then to the lower p99.

Writes candidates.csv, pareto.csv, pareto.png/.svg, recommended.toml (a [relay]
section `serve --config` loads as it is) and summary.md.";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct TuneArgs {
    /// Scenario file with a [tune] section, e.g. experiments/scenarios/steady.toml.
    #[arg(value_name = "SCENARIO")]
    pub scenario: PathBuf,
    /// Candidates to sample (the scenario as written comes on top)
    /// [default: the section's `candidates`].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(CANDIDATES_MAX)))]
    pub candidates: Option<u32>,
    /// Seeds of the last round; halving runs every candidate on 2, the
    /// better half on 4, … up to this [default: the section's `seeds`].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(SEEDS_MAX)))]
    pub seeds: Option<u32>,
    /// First seed of the search; seed i is SEED + i [default: the scenario's].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads [default: all cores]. Results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Where the results go [default: results/tune-<scenario name>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &TuneArgs) -> anyhow::Result<()> {
    let mut t = Tuning::load(&args.scenario)?;
    if let Some(n) = args.candidates {
        t.spec.candidates = n;
    }
    if let Some(n) = args.seeds {
        t.spec.seeds = n;
    }
    if let Some(s) = args.seed {
        t.seed = s;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("results/tune-{}", t.base.name)));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.map_or(cores, |j| j as usize);
    let sweep = Sweep::new(jobs, true).context("cannot start the search's threads")?;
    let command = command(args, &t);
    println!("{command}");
    #[allow(clippy::disallowed_methods)]
    // wall time is reported as the search's cost, never used by a run
    let started = std::time::Instant::now();
    let r = tune(&t, &sweep);
    let wall_s = started.elapsed().as_secs_f64();
    write(&out, &t, &r, &command)?;
    println!(
        "tune: {} candidates, {} simulations in {wall_s:.1} s on {jobs} threads; results in {}",
        r.candidates.len(),
        r.runs,
        out.display()
    );
    verdict(&t, &r, &out)
}

/// The command that remakes these results (threads and place aside).
fn command(args: &TuneArgs, t: &Tuning) -> String {
    format!(
        "resilient-relay tune {} --candidates {} --seeds {} --seed {}",
        args.scenario.display(),
        t.spec.candidates,
        t.spec.seeds,
        t.seed
    )
}

fn write(out: &Path, t: &Tuning, r: &Report, command: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let put = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    for table in [report::candidates_table(t, r), report::pareto_table(t, r)] {
        put(&table.file_name(), &table.to_csv_string())?;
    }
    let chart = report::pareto_chart(t, r);
    chart.write_png(&out.join("pareto.png"))?;
    put("pareto.svg", &chart.to_svg()?)?;
    let recommended = out.join("recommended.toml");
    match report::recommended_toml(t, r, command) {
        Some(text) => put("recommended.toml", &text)?,
        None if recommended.exists() => std::fs::remove_file(&recommended)
            .with_context(|| format!("cannot remove the stale {}", recommended.display()))?,
        None => {}
    }
    put("summary.md", &report::summary(t, r, command))
}

/// Prints the outcome; fails on a broken invariant or no recommendation.
fn verdict(t: &Tuning, r: &Report, out: &Path) -> anyhow::Result<()> {
    for (id, seed, what) in &r.broken {
        let sets: String = t
            .sets(&r.candidates[*id].values)
            .iter()
            .map(|s| format!(" --set '{s}'"))
            .collect();
        eprintln!(
            "candidate {id}, seed {seed}: {what}\n  reproduce with: cargo run --release -- simulate {} --seed {seed}{sets}",
            t.origin
        );
    }
    if !r.broken.is_empty() {
        anyhow::bail!(
            "{} runs broke an invariant (a bug in the relay or the simulator)",
            r.broken.len()
        );
    }
    let Some(id) = r.recommended else {
        anyhow::bail!(
            "no candidate met every constraint; see {}/candidates.csv (column why_not)",
            out.display()
        );
    };
    println!(
        "recommended: candidate {id}: {}",
        t.sets(&r.candidates[id].values).join(" ")
    );
    println!(
        "  serve it with: resilient-relay serve --config {}",
        out.join("recommended.toml").display()
    );
    Ok(())
}
