//! `resilient-relay map`: where a scenario recovers from its trigger and
//! where it stays down, over a few axes.

use crate::experiment::seeds::{SeedSet, SEEDS_PER_POINT_MAX};
use crate::experiment::sweep::Sweep;
use crate::search::map::axis::AxisSpec;
use crate::search::map::bisect::Boundary;
use crate::search::map::{self, Map, Plan, Variant};
use anyhow::Context;
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
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario")
        .to_string();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("results/map-{stem}")));
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
            name: stem.clone(),
            sets: Vec::new(),
        }]
    } else {
        args.variants.clone()
    };
    let plan = Plan {
        origin: origin.clone(),
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
        command: command(args, &origin, &out),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.map_or(cores, |j| j as usize);
    let sweep = Sweep::new(jobs, true).context("cannot start the map's threads")?;
    #[allow(clippy::disallowed_methods)]
    // wall time is reported as the map's cost, never used by a run
    let started = std::time::Instant::now();
    let result = map::run(&plan, &sweep).map_err(|e| anyhow::anyhow!("{e}"))?;
    let wall_s = started.elapsed().as_secs_f64();
    write(&result, &out, &stem, wall_s, jobs)?;
    print(&result, wall_s, jobs, &out);
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
            v.variant, v.seed, v.what, quote(&origin), v.seed
        );
    }
    anyhow::bail!(
        "{} runs broke an invariant (a bug in the relay or the simulator); see above",
        result.violations.len()
    )
}

fn write(m: &Map, out: &Path, stem: &str, wall_s: f64, jobs: usize) -> anyhow::Result<()> {
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
        "timing": { "jobs": jobs, "wall_s": (wall_s * 10.0).round() / 10.0 },
    });
    put("meta.json", format!("{meta:#}\n").as_bytes())
}

fn print(m: &Map, wall_s: f64, jobs: usize, out: &Path) {
    println!(
        "map: {} runs at {} points in {} rounds, {wall_s:.1} s on {jobs} threads \
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
fn command(args: &MapArgs, origin: &str, out: &Path) -> String {
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
    c.push_str(&format!(" --out {}", quote(&out.display().to_string())));
    c
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
