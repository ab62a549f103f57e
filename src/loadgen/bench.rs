//! `cargo run --bin compare_bench`: how well the simulator agrees with the
//! real thing, on the standard scenarios.
//!
//! Each scenario runs once simulated and once live ([`compare`]), and each
//! figure is judged: counts within 5 % (or, for a count too small for a
//! percentage to mean anything, within its Poisson noise, 2√n), latency
//! percentiles within 10 % or the machine's scheduling noise, whichever is
//! larger. The noise is measured in the same run: the p99 of how late the
//! load generator's timers fired, twice (a live request waits on two such
//! timers, the client's send and the downstream's answer). A figure that
//! misses its tolerance but falls inside the simulator's own spread over
//! [`SPREAD_SEEDS`] seeds is noise, not a disagreement (a p99.9 of 2,000
//! samples is the second-largest of them). Which scenarios run, and how
//! they are shortened, is data ([`RUNS`]). Each scenario's timeline chart
//! and figures go to `--out`/<scenario>/.

use super::compare::{compare, rows, write_files, CompareOptions, Comparison, TIMELINE_SVG};
use crate::sim::{simulate, Scenario, SimOptions};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// Counts agree within this share.
pub const COUNT_TOLERANCE: f64 = 0.05;
/// Latency percentiles agree within this share (or the noise).
pub const LATENCY_TOLERANCE: f64 = 0.10;

/// Seeds the simulator runs (the scenario's and the next ones) for its
/// seed-to-seed spread.
pub const SPREAD_SEEDS: u64 = 10;

/// One benchmark run: a scenario file and what is changed in it.
pub struct Run {
    pub file: &'static str,
    pub sets: &'static [&'static str],
    /// Why it is changed.
    pub note: &'static str,
}

/// The runs, in order. The retry storm is cut at 40 s (the spike is at
/// 20–25 s and goodput has collapsed by about 35 s): the same shape in half
/// the time; the others run whole.
pub const RUNS: &[Run] = &[
    Run {
        file: "experiments/scenarios/steady.toml",
        sets: &[],
        note: "as written",
    },
    Run {
        file: "experiments/scenarios/spike.toml",
        sets: &[],
        note: "as written",
    },
    Run {
        file: "experiments/scenarios/outage.toml",
        sets: &[],
        note: "as written",
    },
    Run {
        file: "experiments/scenarios/flaky.toml",
        sets: &[],
        note: "as written",
    },
    Run {
        file: "experiments/scenarios/retry-storm.toml",
        sets: &["horizon_s=40"],
        note: "horizon 40 s (of 80): the spike and the collapse, not the long tail",
    },
];

#[derive(Debug, clap::Parser)]
#[command(
    name = "compare_bench",
    about = "compare on the standard scenarios: simulated against live, judged"
)]
pub struct BenchArgs {
    /// Run only the scenarios whose file name contains this (repeatable).
    #[arg(long)]
    pub only: Vec<String>,
    /// Seed of every run (default: each scenario's own).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also print one JSON line per scenario.
    #[arg(long)]
    pub json: bool,
    /// Each scenario's timeline chart and figures go to DIR/<scenario>/.
    #[arg(long, value_name = "DIR", default_value = "target/compare_bench")]
    pub out: PathBuf,
}

/// One scenario's verdict.
#[derive(Serialize)]
struct Verdict<'a> {
    scenario: &'a str,
    seed: u64,
    note: &'a str,
    noise_ms: f64,
    agree: usize,
    figures: usize,
    disagree: Vec<&'static str>,
    rows: &'a [super::compare::Row],
    /// Per row: the simulator's least and greatest value over the seeds.
    spread: Vec<(f64, f64)>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "compare_bench: counts within {:.0} % (or 2√n), latencies within {:.0} % or the measured noise",
        COUNT_TOLERANCE * 100.0,
        LATENCY_TOLERANCE * 100.0
    )?;
    let runs = RUNS
        .iter()
        .filter(|r| args.only.is_empty() || args.only.iter().any(|o| r.file.contains(o.as_str())));
    for run in runs {
        let sets: Vec<String> = run.sets.iter().map(|s| (*s).to_owned()).collect();
        let scenario = Scenario::load_with(&PathBuf::from(run.file), &sets)?;
        let seed = args.seed.unwrap_or(scenario.seed);
        let opts = CompareOptions {
            seed,
            bucket_ms: 100.0,
            duration_max_s: None,
            progress: true,
        };
        let c = compare(&scenario, &opts)?;
        let dir = args.out.join(&scenario.name);
        write_files(&c, &scenario, &dir, &command(run, seed, &args.out))?;
        let spread = spread(&scenario, seed)?;
        let verdict = judge(&c, run.note, spread);
        write!(out, "{}", table(&c, &verdict))?;
        writeln!(
            out,
            "  timeline chart: {}",
            dir.join(TIMELINE_SVG).display()
        )?;
        if args.json {
            serde_json::to_writer(&mut out, &verdict)?;
            writeln!(out)?;
        }
        out.flush()?;
    }
    Ok(())
}

/// The command that reruns one scenario of the benchmark.
fn command(run: &Run, seed: u64, out: &std::path::Path) -> String {
    let stem = std::path::Path::new(run.file)
        .file_stem()
        .map_or(run.file.into(), |s| s.to_string_lossy());
    format!(
        "cargo run --bin compare_bench -- --only {stem} --seed {seed} --out {}",
        out.display()
    )
}

/// The simulator's least and greatest value of each figure over
/// [`SPREAD_SEEDS`] seeds from `seed` on.
fn spread(scenario: &Scenario, seed: u64) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut range: Vec<(f64, f64)> = Vec::new();
    for s in seed..seed.saturating_add(SPREAD_SEEDS) {
        let sim = simulate(scenario, &SimOptions::seed(s))
            .map_err(|f| anyhow::anyhow!("the simulated run failed: {f}"))?;
        let figures = rows(&sim.summary, &sim.summary);
        if range.is_empty() {
            range = figures.iter().map(|r| (r.simulated, r.simulated)).collect();
        }
        for (r, f) in range.iter_mut().zip(&figures) {
            *r = (r.0.min(f.simulated), r.1.max(f.simulated));
        }
    }
    Ok(range)
}

/// Within tolerance, or within the simulator's own seed-to-seed spread.
fn agrees(r: &super::compare::Row, noise_ms: f64, spread: (f64, f64)) -> bool {
    r.agrees(COUNT_TOLERANCE, LATENCY_TOLERANCE, noise_ms)
        || (spread.0..=spread.1).contains(&r.live)
}

fn judge<'a>(c: &'a Comparison, note: &'a str, spread: Vec<(f64, f64)>) -> Verdict<'a> {
    let noise_ms = 2.0 * c.noise_ms();
    let disagree: Vec<&'static str> = c
        .rows
        .iter()
        .zip(&spread)
        .filter(|(r, s)| !agrees(r, noise_ms, **s))
        .map(|(r, _)| r.metric)
        .collect();
    Verdict {
        scenario: &c.scenario,
        seed: c.seed,
        note,
        noise_ms,
        agree: c.rows.len() - disagree.len(),
        figures: c.rows.len(),
        disagree,
        rows: &c.rows,
        spread,
    }
}

fn table(c: &Comparison, v: &Verdict<'_>) -> String {
    let mut s = format!(
        "\n{} (seed {}, {}; noise {:.2} ms)\n  {:<24} {:>12} {:>12} {:>9}  {:>23}  agrees\n",
        c.scenario,
        c.seed,
        v.note,
        v.noise_ms,
        "",
        "simulated",
        "live",
        "diff",
        format!("sim over {SPREAD_SEEDS} seeds")
    );
    for (r, spread) in c.rows.iter().zip(&v.spread) {
        let diff = r
            .relative_diff
            .map_or("new".to_owned(), |d| format!("{:+.1} %", 100.0 * d));
        let verdict = if r.agrees(COUNT_TOLERANCE, LATENCY_TOLERANCE, v.noise_ms) {
            "yes"
        } else if agrees(r, v.noise_ms, *spread) {
            "spread"
        } else {
            "NO"
        };
        s += &format!(
            "  {:<24} {:>12.3} {:>12.3} {:>9}  {:>23}  {verdict}\n",
            r.metric,
            r.simulated,
            r.live,
            diff,
            format!("{:.3} – {:.3}", spread.0, spread.1),
        );
    }
    s += &format!("  {} of {} figures agree\n", v.agree, v.figures);
    s
}
