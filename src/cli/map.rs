//! `resilient-relay map`: where a scenario recovers from its trigger and
//! where it stays down, over a few axes.

use crate::experiment::chart::Figure;
use crate::experiment::seeds::{SeedSet, SEEDS_PER_POINT_MAX};
use crate::experiment::sweep::Sweep;
use crate::search::map::axis::AxisSpec;
use crate::search::map::bisect::Boundary;
use crate::search::map::{self, rows, Map, Plan, Variant};
use crate::search::shard::{self, Manifest, Rows, Shard};
use crate::search::verdict::{judge_with, CalmTwins};
use crate::sim::Scenario;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(after_help = AXES_HELP)]
pub struct MapArgs {
    /// Scenario file (TOML), or the name of one under experiments/scenarios/
    /// (e.g. `retry-storm`).
    pub scenario: String,
    /// An axis, NAME=LO..HI: a numeric path of the scenario
    /// (`relay.workers`, `clients[0].schedule[1].per_s`), or `spike`,
    /// `duration` or `load` (see below). 1 to 3 axes; repeat the flag.
    #[arg(long = "axis", value_name = "NAME=LO..HI", required = true,
          value_parser = |s: &str| s.parse::<AxisSpec>())]
    pub axes: Vec<AxisSpec>,
    /// The axis to bisect [default: the last one]; the others form a grid.
    #[arg(long, value_name = "NAME")]
    pub bisect: Option<String>,
    /// Grid values of each axis not bisected, both ends included.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub steps: usize,
    /// Seeds run at every point (the same seeds at every point).
    #[arg(long, default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(SEEDS_PER_POINT_MAX)))]
    pub seeds: u32,
    /// The first of the seeds.
    #[arg(long, default_value_t = 1, value_name = "SEED")]
    pub first_seed: u64,
    /// Stop bisecting at a bracket this wide, in the bisected axis's unit
    /// [default: 1/32 of its range].
    #[arg(long, value_name = "X")]
    pub tolerance: Option<f64>,
    /// A version of the scenario to map beside the others, as
    /// NAME or NAME:PATH=VALUE;PATH=VALUE (repeat the flag; each is a
    /// panel of the heatmap) [default: the scenario as written].
    #[arg(long = "variant", value_name = "NAME[:SETS]",
          value_parser = |s: &str| s.parse::<Variant>())]
    pub variants: Vec<Variant>,
    /// Change any scenario value by its path for every variant, e.g.
    /// `horizon_s=120` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Threads [default: all cores]. Results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Where map.csv, boundary.csv, map.png/.svg and summary.md go
    /// [default: results/map-<scenario>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Bisect one shard of the map's lines, e.g. `2/3`: lines 1, 4, 7, …
    /// (counting from 0), written with a manifest to --out; `merge` then
    /// gives the outputs of the whole map.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

const AXES_HELP: &str = "\
Named axes (the scenario must have exactly one spike or outage):
  spike     peak rate of the spike phase (req/s); `trigger` is the same
  duration  length of the spike or outage window (s), from its start
  load      rate the run settles at (req/s); the trigger population's other
            phases scale with it, the spike keeps its own rate
Each point runs --seeds seeds; a seed recovers when goodput from 30 s after
the trigger's end to the horizon is at least 70% of the calm twin's (the same
scenario and seed without the trigger). A map reports, per point, the share
that recover with a 95% Wilson interval, and per grid line where that share
crosses 1/2. An invariant violation is a bug: the map prints its seed and the
`simulate` command that replays it, and exits 1.

Example (the retry storm, a budget beside none):
  cargo run --release -- map retry-storm --axis spike=60..140 --axis duration=1..40 \\
    --set horizon_s=120 --set 'clients[0].schedule[2].until_s=120' \\
    --variant no-budget \\
    --variant 'budget:clients[0].retry.budget.kind=token-bucket;clients[0].retry.budget.tokens_max=10;clients[0].retry.budget.tokens_per_success=0.1'";

/// The scenario file `name` means: itself if it is a file, else
/// experiments/scenarios/NAME.toml.
fn scenario_path(name: &str) -> anyhow::Result<PathBuf> {
    let direct = PathBuf::from(name);
    if direct.is_file() {
        return Ok(direct);
    }
    let named = Path::new("experiments/scenarios").join(format!("{name}.toml"));
    if named.is_file() {
        return Ok(named);
    }
    anyhow::bail!(
        "no scenario `{name}`: give a TOML file, or a name under experiments/scenarios/ \
         (e.g. retry-storm, outage)"
    )
}

pub fn run(args: &MapArgs) -> anyhow::Result<()> {
    let path = scenario_path(&args.scenario)?;
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {origin}"))?;
    let out = args.out.clone().unwrap_or_else(|| default_out(&origin));
    let bisect = match &args.bisect {
        None => args.axes.len().saturating_sub(1),
        Some(name) => args
            .axes
            .iter()
            .position(|a| &a.name == name)
            .with_context(|| format!("--bisect {name}: not one of the axes given with --axis"))?,
    };
    let variants = if args.variants.is_empty() {
        vec![Variant {
            name: stem(&origin),
            sets: Vec::new(),
        }]
    } else {
        args.variants.clone()
    };
    let base_command = command(args, &origin);
    let plan = Plan {
        origin,
        text,
        sets: args.set.clone(),
        variants,
        axes: args.axes.clone(),
        bisect,
        steps: args.steps,
        seeds: SeedSet {
            first: args.first_seed,
            count: args.seeds,
        },
        tolerance: args.tolerance,
        command: with_out(&base_command, &out),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.map_or(cores, |j| j as usize);
    let sweep = Sweep::new(jobs, true).context("cannot start the map's threads")?;
    #[allow(clippy::disallowed_methods)]
    // wall time is reported as the map's cost, never used by a run
    let started = std::time::Instant::now();
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let twins = CalmTwins::default();
    let judge = |s: &Scenario, seed: u64| judge_with(s, seed, Some(&twins));
    let lines = map::run_lines(&plan, &sweep, judge, shard).map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "calm twins: {} run, {} reused (the calm run is the same along a trigger's axis)",
        twins.ran(),
        twins.reused()
    );
    if shard != Shard::WHOLE {
        return write_shard(&plan, &base_command, shard, &lines, &out);
    }
    let result =
        map::assemble(&plan, &lines.into_iter().collect()).map_err(|e| anyhow::anyhow!(e))?;
    let timing = Timing {
        jobs,
        wall_s: started.elapsed().as_secs_f64(),
    };
    finish(&result, &out, Some(timing))
}

/// How long a map took, on how many threads (a merge has none).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub jobs: usize,
    pub wall_s: f64,
}

/// Where a map of the scenario at `origin` goes unless told.
pub fn default_out(origin: &str) -> PathBuf {
    PathBuf::from(format!("results/map-{}", stem(origin)))
}

/// The scenario's name: its file name without `.toml`.
fn stem(origin: &str) -> String {
    Path::new(origin)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario")
        .to_string()
}

/// Writes and prints a finished map; fails if a run broke an invariant.
pub fn finish(result: &Map, out: &Path, timing: Option<Timing>) -> anyhow::Result<()> {
    let stem = stem(&result.plan.origin);
    write(result, out, &stem, timing)?;
    print(result, timing, out);
    if result.violations.is_empty() {
        return Ok(());
    }
    for v in &result.violations {
        let sets: String = v
            .sets
            .iter()
            .map(|s| format!(" --set {}", quote(s)))
            .collect();
        println!(
            "\nvariant {} (seed {}): violation: {}\n  reproduce with: cargo run --release -- simulate {} --seed {}{sets}",
            v.variant, v.seed, v.what, quote(&result.plan.origin), v.seed
        );
    }
    anyhow::bail!(
        "{} runs broke an invariant (a bug in the relay or the simulator); see above",
        result.violations.len()
    )
}

/// A shard's lines and manifest, for `merge`.
fn write_shard(
    plan: &Plan,
    base_command: &str,
    shard: Shard,
    lines: &[(usize, map::Points)],
    out: &Path,
) -> anyhow::Result<()> {
    let points: usize = lines.iter().map(|(_, p)| p.len()).sum();
    let manifest = Manifest {
        search: "map".into(),
        params: rows::params(plan, base_command),
        runs: plan.line_count().map_err(|e| anyhow::anyhow!(e))? as u64,
        shard: shard.index,
        shards: shard.count,
        rows: lines.len() as u64,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let rows = Rows {
        header: rows::HEADER.iter().map(|h| h.to_string()).collect(),
        records: lines.iter().map(|(i, p)| rows::row(*i, p)).collect(),
    };
    shard::write(out, &manifest, &rows)?;
    println!(
        "map shard {shard}: {} of {} lines, {points} points, {} runs; written to {}; \
         when every shard is done: resilient-relay merge DIR…",
        lines.len(),
        manifest.runs,
        points as u64 * u64::from(plan.seeds.count),
        out.display()
    );
    Ok(())
}

/// The shards' lines, finished as the whole map: what `merge` does.
pub fn merge(
    params: &BTreeMap<String, String>,
    records: &[Vec<String>],
    out: &Path,
) -> anyhow::Result<()> {
    let (mut plan, base_command) =
        rows::plan_of(params).map_err(|e| anyhow::anyhow!("the shards' manifest: {e}"))?;
    plan.command = with_out(&base_command, out);
    let mut recorded = BTreeMap::new();
    for r in records {
        let (i, points) = rows::parse(r).map_err(|e| anyhow::anyhow!("the shards' rows: {e}"))?;
        recorded.insert(i, points);
    }
    let result = map::assemble(&plan, &recorded).map_err(|e| anyhow::anyhow!(e))?;
    finish(&result, out, None)
}

fn write(m: &Map, out: &Path, stem: &str, timing: Option<Timing>) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let put = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    put("map.csv", m.points_table().to_csv_string().as_bytes())?;
    put(
        "boundary.csv",
        m.boundary_table().to_csv_string().as_bytes(),
    )?;
    let title = format!("Where {stem} recovers: share of seeds, by variant");
    let heatmap = m.heatmap(&title);
    heatmap.write_png(&out.join("map.png"))?;
    put("map.svg", heatmap.to_svg()?.as_bytes())?;
    let description = crate::sim::Scenario::from_toml(&m.plan.text, &m.plan.origin)
        .map(|s| s.description)
        .unwrap_or_default();
    put(
        "summary.md",
        m.summary(&format!("Map: {stem}"), &description).as_bytes(),
    )?;
    let meta = serde_json::json!({
        "command": m.plan.command,
        "runs": m.runs,
        "points": m.points(),
        "rounds": m.rounds,
        "crate_version": env!("CARGO_PKG_VERSION"),
        // A merge of shards has no one wall time: null.
        "timing": timing.map(|t| serde_json::json!({
            "jobs": t.jobs,
            "wall_s": (t.wall_s * 10.0).round() / 10.0,
        })),
    });
    put("meta.json", format!("{meta:#}\n").as_bytes())
}

fn print(m: &Map, timing: Option<Timing>, out: &Path) {
    let took = timing.map_or(" (merged from shards)".to_string(), |t| {
        format!(", {:.1} s on {} threads", t.wall_s, t.jobs)
    });
    println!(
        "map: {} runs at {} points in {} rounds{took} \
         (a full grid at this resolution: {} runs)",
        m.runs,
        m.points(),
        m.rounds,
        m.full_grid_runs()
    );
    let b = &m.axes[m.plan.bisect];
    for l in &m.lines {
        let grid: Vec<String> = m
            .axes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != m.plan.bisect)
            .map(|(i, a)| format!("{} = {}", a.name, map::axis::number(l.grid[i])))
            .collect();
        let at = match l.line.boundary() {
            Some(Boundary::Between { low, high, .. }) => format!(
                "{} crosses 1/2 between {} and {}",
                b.name,
                map::axis::number(*low),
                map::axis::number(*high)
            ),
            Some(Boundary::Unjudged { at }) => format!(
                "unjudged: no seed's liveness could be judged at {} = {} (see summary.md; \
                 narrow the range)",
                b.name,
                map::axis::number(*at)
            ),
            Some(other) => other.name().to_string(),
            None => "unfinished".to_string(),
        };
        println!(
            "  {:<16} {:<32} {at}",
            m.plan.variants[l.variant].name,
            grid.join(", ")
        );
    }
    println!("written to {}", out.display());
}

/// The command that reruns this map (without `--jobs`: it changes nothing).
fn command(args: &MapArgs, origin: &str) -> String {
    let mut c = format!("cargo run --release -- map {}", quote(origin));
    for a in &args.axes {
        c.push_str(&format!(
            " --axis {}={}..{}",
            a.name,
            map::axis::number(a.lo),
            map::axis::number(a.hi)
        ));
    }
    if let Some(b) = &args.bisect {
        c.push_str(&format!(" --bisect {b}"));
    }
    c.push_str(&format!(" --steps {} --seeds {}", args.steps, args.seeds));
    if args.first_seed != 1 {
        c.push_str(&format!(" --first-seed {}", args.first_seed));
    }
    if let Some(t) = args.tolerance {
        c.push_str(&format!(" --tolerance {}", map::axis::number(t)));
    }
    for s in &args.set {
        c.push_str(&format!(" --set {}", quote(s)));
    }
    for v in &args.variants {
        let text = if v.sets.is_empty() {
            v.name.clone()
        } else {
            format!("{}:{}", v.name, v.sets.join(";"))
        };
        c.push_str(&format!(" --variant {}", quote(&text)));
    }
    c
}

/// `command` writing to `out`.
fn with_out(command: &str, out: &Path) -> String {
    format!("{command} --out {}", quote(&out.display().to_string()))
}

/// `text` as one shell word: as is when plain, else in single quotes.
fn quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
