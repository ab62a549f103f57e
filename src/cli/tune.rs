//! `resilient-relay tune`: search a scenario's relay settings, write the
//! front, the recommendation and its margin to the cliff.

use crate::experiment::chart::Figure;
use crate::experiment::sweep::Sweep;
use crate::search::shard::{Manifest, Rows, Shard};
use crate::search::stages::{self, Halt, Params, Stages};
use crate::search::tune::spec::{CANDIDATES_MAX, SEEDS_MAX};
use crate::search::tune::{report, tune, Report, Tuning};
use anyhow::Context;
use std::collections::BTreeMap;
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
section `serve --config` loads as it is) and summary.md.

In shards: the search runs in stages (each halving round, then the margins), each
stage's runs independent. `--shard I/N` runs one shard of the next stage and stops;
`merge` of that stage's shards writes the state the next stage resumes from
(`--resume DIR`), or, after the last stage, the outputs above, byte for byte those
of an unsharded run. scripts/shard-parallel.sh runs the loop with GNU parallel.";

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
    /// Run one shard of the search's next stage, e.g. `2/3`, write it with
    /// a manifest to --out and stop; `merge` the stage's shards after.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// The state a `merge` of the previous stage wrote: its stages are
    /// replayed, not run [default: start at the first stage].
    #[arg(long, value_name = "DIR", requires = "shard")]
    pub resume: Option<PathBuf>,
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
    if let Some(shard) = args.shard {
        return run_shard(&t, &command, &sweep, shard, args.resume.as_deref(), &out);
    }
    #[allow(clippy::disallowed_methods)]
    // wall time is reported as the search's cost, never used by a run
    let started = std::time::Instant::now();
    let r = tune(&t, &mut Stages::whole(&sweep))?;
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

/// What decides a tune's runs, for the manifests of its stages.
fn params(t: &Tuning, command: &str) -> Params {
    BTreeMap::from([
        ("origin".into(), t.origin.clone()),
        ("text".into(), t.text.clone()),
        ("candidates".into(), t.spec.candidates.to_string()),
        ("seeds".into(), t.spec.seeds.to_string()),
        ("seed".into(), t.seed.to_string()),
        ("command".into(), command.to_string()),
    ])
}

/// The search a stage's manifest recorded, and its command.
fn tuning_of(params: &Params) -> anyhow::Result<(Tuning, String)> {
    let get = |key: &str| {
        params
            .get(key)
            .with_context(|| format!("the shards' manifest has no `{key}`"))
    };
    let number = |key: &str| -> anyhow::Result<u64> {
        get(key)?
            .parse()
            .with_context(|| format!("the shards' manifest: `{key}` is not a number"))
    };
    let mut t = Tuning::from_text(get("text")?.clone(), get("origin")?.clone())?;
    t.spec.candidates = u32::try_from(number("candidates")?)?;
    t.spec.seeds = u32::try_from(number("seeds")?)?;
    t.seed = number("seed")?;
    Ok((t, get("command")?.clone()))
}

/// Replays the stages recorded in `resume`, runs `shard`'s share of the
/// next one and writes it to `out`.
fn run_shard(
    t: &Tuning,
    command: &str,
    sweep: &Sweep,
    shard: Shard,
    resume: Option<&Path>,
    out: &Path,
) -> anyhow::Result<()> {
    let params = params(t, command);
    let recorded = match resume {
        Some(dir) => stages::read_state(dir, "tune", &params)?,
        None => Vec::new(),
    };
    let mut stages = Stages::resume(sweep, shard, recorded);
    match tune(t, &mut stages) {
        Ok(_) => {
            println!(
                "the search is complete in the state given: nothing left to run; \
                 `merge` of its last stage wrote the results"
            );
            Ok(())
        }
        Err(Halt::Paused { stage }) => {
            stages::write_shard(out, "tune", &params, shard, &stages)?;
            let ran = stages.ran().map_or(0, |r| r.2.len());
            println!(
                "tune stage {} shard {shard}: {ran} runs written to {}; when every shard \
                 of this stage is done: resilient-relay merge DIR… --out STATE",
                stage + 1,
                out.display()
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The shards of one stage: the next state, or, after the last stage,
/// the results the unsharded search writes. What `merge` does.
pub fn merge(dirs: &[PathBuf], manifest: &Manifest, rows: &Rows, out: &Path) -> anyhow::Result<()> {
    let (params, recorded) = stages::merge_stage("tune", dirs, manifest, rows)?;
    let (t, command) = tuning_of(&params)?;
    let sweep = Sweep::new(1, false).context("cannot start a thread")?;
    match tune(&t, &mut Stages::replay(&sweep, recorded.clone())) {
        Ok(r) => {
            write(out, &t, &r, &command)?;
            println!(
                "tune: {} candidates, {} simulations in {} stages; results in {}",
                r.candidates.len(),
                r.runs,
                recorded.len(),
                out.display()
            );
            verdict(&t, &r, out)
        }
        Err(Halt::Paused { stage }) => {
            stages::write_state(out, "tune", &params, &recorded)?;
            println!(
                "tune: stage {} of the search merged into {}; next, stage {}: \
                 {command} --shard I/N --resume {} --out DIR",
                stage,
                out.display(),
                stage + 1,
                out.display()
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
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
