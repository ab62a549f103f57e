//! `resilient-relay swarm`: draw scenarios, judge them, shrink the failures.

use crate::experiment::seeds::SeedSet;
use crate::experiment::sweep::Sweep;
use crate::search::shard::{Manifest, Rows, Shard};
use crate::search::shrink::Shrunk;
use crate::search::swarm::ROW_HEADER;
use crate::search::{ending, judge, row, run_one, shrink_run, tally, Outcome, Verdict};
use crate::sim::Scenario;
use anyhow::Context;
use std::collections::BTreeMap;
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
    /// Run one shard of the swarm, e.g. `2/3`: runs 1, 4, 7, … (counting
    /// from 0), written with a manifest to --out; `merge` then gives the
    /// outputs of the whole run, byte for byte.
    #[arg(long, value_name = "I/N", conflicts_with = "check")]
    pub shard: Option<Shard>,
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

/// What decides a swarm's outputs beyond its rows: kept in a shard's
/// manifest so that `merge` finishes the search as the whole run would.
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    pub seed: u64,
    pub runs: u64,
    pub shrink_max: usize,
    pub shrink_budget: u32,
    pub stuck: OnStuck,
}

impl Finish {
    fn of(args: &SwarmArgs) -> Finish {
        Finish {
            seed: args.seed,
            runs: args.runs,
            shrink_max: args.shrink_max,
            shrink_budget: args.shrink_budget,
            stuck: args.stuck,
        }
    }

    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("seed".into(), self.seed.to_string()),
            ("runs".into(), self.runs.to_string()),
            ("shrink_max".into(), self.shrink_max.to_string()),
            ("shrink_budget".into(), self.shrink_budget.to_string()),
            ("stuck".into(), format!("{:?}", self.stuck).to_lowercase()),
        ])
    }

    /// The settings a shard's manifest recorded.
    pub fn from_params(params: &BTreeMap<String, String>) -> anyhow::Result<Finish> {
        fn get<T: std::str::FromStr>(p: &BTreeMap<String, String>, key: &str) -> anyhow::Result<T> {
            p.get(key)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("the manifest has no valid `{key}`"))
        }
        let stuck = match params.get("stuck").map(String::as_str) {
            Some("fail") => OnStuck::Fail,
            Some("report") => OnStuck::Report,
            _ => anyhow::bail!("the manifest has no valid `stuck`"),
        };
        Ok(Finish {
            seed: get(params, "seed")?,
            runs: get(params, "runs")?,
            shrink_max: get(params, "shrink_max")?,
            shrink_budget: get(params, "shrink_budget")?,
            stuck,
        })
    }
}

fn swarm(args: &SwarmArgs) -> anyhow::Result<()> {
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.map_or(cores, |j| j as usize);
    let sweep = Sweep::new(jobs, true).context("cannot start the swarm's threads")?;
    // The shard's runs are first, first + count, …; the sweep's "seeds" are
    // their positions here, and each run derives its own seed.
    let (first, stride) = (u64::from(shard.index - 1), u64::from(shard.count));
    let mine = args.runs.saturating_sub(first).div_ceil(stride);
    let positions = SeedSet {
        first: 0,
        count: u32::try_from(mine).context("--runs is too large")?,
    };
    #[allow(clippy::disallowed_methods)]
    // wall time is reported as the swarm's speed, never used by a run
    let started = std::time::Instant::now();
    let records: Vec<Vec<String>> = sweep
        .run("swarm", &[()], &positions, |_, k| {
            run_one(args.seed, first + k.0 * stride)
        })
        .iter()
        .map(|t| row(&t.result))
        .collect();
    let wall_s = started.elapsed().as_secs_f64();
    println!(
        "swarm{}: {mine} runs from seed {} in {wall_s:.1} s ({:.0} scenarios/s on {jobs} threads)",
        if shard == Shard::WHOLE {
            String::new()
        } else {
            format!(" shard {shard}")
        },
        args.seed,
        mine as f64 / wall_s
    );
    let finish = Finish::of(args);
    if shard == Shard::WHOLE {
        return finish_search(&finish, &records, &args.out);
    }
    let manifest = Manifest {
        search: "swarm".into(),
        params: finish.params(),
        runs: args.runs,
        shard: shard.index,
        shards: shard.count,
        rows: mine,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let rows = Rows {
        header: ROW_HEADER.iter().map(|h| h.to_string()).collect(),
        records,
    };
    crate::search::shard::write(&args.out, &manifest, &rows)?;
    for (name, n) in tally(rows.records.iter().map(|r| r[2].as_str())) {
        println!("  {name:<48} {n:>8}");
    }
    println!(
        "shard {shard} written to {}; when every shard is done: resilient-relay merge DIR…",
        args.out.display()
    );
    Ok(())
}

/// What the whole search writes from its rows, whether it ran at once or
/// in shards: `runs.csv`, `summary.md` and the failing scenarios, shrunk.
pub fn finish_search(finish: &Finish, records: &[Vec<String>], out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_rows(&out.join("runs.csv"), records)?;
    let mut summary = format!(
        "# swarm: {} runs from seed {}\n\n| ending | runs |\n|---|---:|\n",
        finish.runs, finish.seed
    );
    for (name, n) in tally(records.iter().map(|r| r[2].as_str())) {
        println!("  {name:<48} {n:>8}");
        summary += &format!("| {name} | {n} |\n");
    }
    let failures = replay_failures(finish, records)?;
    // Violations (bugs) are shrunk before stuck runs (findings about the
    // drawn settings); within each kind, in run order.
    let mut order: Vec<&Outcome> = failures.iter().collect();
    order.sort_by_key(|o| (!matches!(o.verdict, Verdict::Violation(_)), o.index));
    if !order.is_empty() {
        summary += "\n## Failures\n\nTheir scenario files are beside this summary.\n";
    }
    for (n, o) in order.iter().enumerate() {
        let report = report(finish, out, o, n < finish.shrink_max)?;
        print!("{}", report.render(out));
        summary += &format!("\n```text{}```\n", report.render(Path::new("")));
    }
    let summary_path = out.join("summary.md");
    std::fs::write(&summary_path, summary)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    let violations = failures
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Violation(_)))
        .count();
    if failures.is_empty() {
        return Ok(());
    }
    if violations == 0 && finish.stuck == OnStuck::Report {
        println!(
            "\n{} runs stuck, reported (--stuck report); no invariant violated",
            failures.len()
        );
        return Ok(());
    }
    anyhow::bail!(
        "{} of {} runs failed ({violations} violations); their scenarios are in {}",
        failures.len(),
        finish.runs,
        out.display()
    )
}

fn write_rows(path: &Path, records: &[Vec<String>]) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    out.write_record(ROW_HEADER)?;
    for r in records {
        out.write_record(r)?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The failed runs, replayed from their seeds: a row names the ending, the
/// replay gives the whole verdict (and shows a shard of another build).
fn replay_failures(finish: &Finish, records: &[Vec<String>]) -> anyhow::Result<Vec<Outcome>> {
    let mut failures = Vec::new();
    for r in records {
        if r.get(2).is_none_or(|e| e != "stuck" && e != "violation") {
            continue;
        }
        let index: u64 = r[0].parse().context("a row's run index is not a number")?;
        let again = run_one(finish.seed, index);
        anyhow::ensure!(
            ending(&again.verdict) == r[2] && again.seed.to_string() == r[1],
            "run {index}: its row says {} (seed {}) but it replays as {} (seed {}); \
             were the shards run by another version?",
            r[2],
            r[1],
            ending(&again.verdict),
            again.seed
        );
        failures.push(again);
    }
    Ok(failures)
}

/// One failure as written: its scenario, and its shrunk form if asked.
struct Report<'a> {
    outcome: &'a Outcome,
    file: String,
    shrunk: Option<(Shrunk, String)>,
}

impl Report<'_> {
    /// The report with its files under `dir` (empty: beside the summary).
    fn render(&self, dir: &Path) -> String {
        let o = self.outcome;
        let at = |file: &str| dir.join(file).display().to_string();
        let mut text = format!(
            "\nrun {} (seed {}): {}\n  scenario: {}\n{}",
            o.index,
            o.seed,
            o.verdict,
            at(&self.file),
            replay_hint(&at(&self.file), &o.verdict)
        );
        if let Some((shrunk, min)) = &self.shrunk {
            text += &format!(
                "  shrunk in {} steps ({} judged{}): {}\n  {}\n{}",
                shrunk.steps,
                shrunk.tried,
                if shrunk.cut { ", budget spent" } else { "" },
                at(min),
                shrunk.verdict,
                replay_hint(&at(min), &shrunk.verdict)
            );
        }
        text
    }
}

/// Writes one failure's scenario into `out`, and shrinks it if asked.
fn report<'a>(
    finish: &Finish,
    out: &Path,
    o: &'a Outcome,
    shrink: bool,
) -> anyhow::Result<Report<'a>> {
    let scenario = crate::search::draw::draw(o.seed);
    let file = format!("swarm-{}.toml", o.seed);
    write(&out.join(&file), &scenario)?;
    let shrunk = if shrink {
        let mut shrunk = shrink_run(&scenario, o.seed, &o.verdict, finish.shrink_budget);
        let min = format!("swarm-{}.min.toml", o.seed);
        shrunk.scenario.name = format!("swarm-{}-min", o.seed);
        write(&out.join(&min), &shrunk.scenario)?;
        Some((shrunk, min))
    } else {
        None
    };
    Ok(Report {
        outcome: o,
        file,
        shrunk,
    })
}

fn write(path: &Path, scenario: &Scenario) -> anyhow::Result<()> {
    let text = toml::to_string(scenario).context("cannot write the scenario as TOML")?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn replay_hint(path: &str, verdict: &Verdict) -> String {
    let how = match verdict {
        Verdict::Violation(_) => "simulate",
        _ => "swarm --check",
    };
    format!("  reproduce with: cargo run --release -- {how} {path}\n")
}
