//! `resilient-relay compare`: one scenario simulated and live, side by side.

use crate::loadgen::compare::{compare, write_files, CompareOptions, Comparison, Row};
use crate::sim::Scenario;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Scenario file (TOML), e.g. experiments/scenarios/steady.toml
    pub scenario: PathBuf,
    /// Seed of both runs (default: the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Change any scenario value by its path, e.g. `horizon_s=20` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Print the figures, both summaries and both timelines as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Width of the timeline's buckets.
    #[arg(long, default_value_t = 100.0, value_name = "MS")]
    pub bucket_ms: f64,
    /// Stop the live run after this long (default: the horizon + 10 s).
    #[arg(long, value_name = "SECONDS")]
    pub duration_max_s: Option<f64>,
    /// Also write the timeline chart (timeline.png, timeline.svg: calls
    /// and goodput per bucket, simulated and live) and figures.json here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load_with(&args.scenario, &args.set)?;
    anyhow::ensure!(
        args.bucket_ms >= 1.0 && args.bucket_ms.is_finite(),
        "--bucket-ms: must be ≥ 1"
    );
    let opts = CompareOptions {
        seed: args.seed.unwrap_or(scenario.seed),
        bucket_ms: args.bucket_ms,
        duration_max_s: args.duration_max_s,
        progress: !args.json,
    };
    let c = compare(&scenario, &opts)?;
    if let Some(dir) = &args.out {
        write_files(&c, &scenario, dir, &command(args, opts.seed))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &c.json())?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report(&c))?;
        if let Some(dir) = &args.out {
            writeln!(out, "  chart and figures written to {}", dir.display())?;
        }
    }
    Ok(())
}

/// The command that reruns this comparison (the live half differs run to run).
fn command(args: &CompareArgs, seed: u64) -> String {
    let mut c = format!(
        "resilient-relay compare {} --seed {seed} --bucket-ms {}",
        args.scenario.display(),
        args.bucket_ms
    );
    for set in &args.set {
        c += &format!(" --set {set}");
    }
    if let Some(s) = args.duration_max_s {
        c += &format!(" --duration-max-s {s}");
    }
    if let Some(dir) = &args.out {
        c += &format!(" --out {}", dir.display());
    }
    c
}

/// The side-by-side table, the live run's health and both timelines.
pub fn report(c: &Comparison) -> String {
    let mut s = format!(
        "scenario {}  seed {}  (live: {:.1} s, ended {:?})\n",
        c.scenario, c.seed, c.live.summary.simulated_s, c.live.ending
    );
    s += &format!(
        "  {:<24} {:>12} {:>12} {:>9}\n",
        "", "simulated", "live", "diff"
    );
    for r in &c.rows {
        s += &format!(
            "  {:<24} {:>12} {:>12} {:>9}\n",
            r.metric,
            figure(r.simulated),
            figure(r.live),
            diff(r)
        );
    }
    let l = c.live_counts();
    s += &format!(
        "  live: {} status polls, {} sends unanswered, {} not sent (bound), timers late p50 {:.3} / p99 {:.3} / max {:.3} ms\n",
        l.polls,
        l.transport_errors + l.other.values().sum::<u64>(),
        l.overloaded,
        l.timer_lateness.p50_ms,
        l.timer_lateness.p99_ms,
        l.timer_lateness.max_ms
    );
    let bucket_s = c.bucket_ms / 1e3;
    let sim = &c.simulated_series;
    let live = &c.live.series;
    s += &chart("downstream calls", &sim.calls, &live.calls, bucket_s);
    s += &chart("goodput", &sim.successes, &live.successes, bucket_s);
    s
}

fn figure(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

fn diff(r: &Row) -> String {
    match r.relative_diff {
        Some(d) => format!("{:+.1} %", 100.0 * d),
        None => "new".into(),
    }
}

/// Columns of a timeline chart, at most.
const CHART_COLUMNS_MAX: usize = 60;
const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Two rows of bars on one scale: the simulated timeline above the live
/// one, each column a sum of buckets.
fn chart(title: &str, sim: &[u32], live: &[u32], bucket_s: f64) -> String {
    let buckets = sim.len().max(live.len()).max(1);
    let per_column = buckets.div_ceil(CHART_COLUMNS_MAX);
    let columns = |v: &[u32]| -> Vec<u64> {
        (0..buckets.div_ceil(per_column))
            .map(|c| {
                let from = c * per_column;
                (from..(from + per_column).min(v.len()))
                    .map(|i| u64::from(v[i]))
                    .sum()
            })
            .collect()
    };
    let (a, b) = (columns(sim), columns(live));
    let top = a.iter().chain(&b).copied().max().unwrap_or(0).max(1);
    let bars = |v: &[u64]| -> String {
        v.iter()
            .map(|&x| BARS[((x * 8).div_ceil(top) as usize).min(8)])
            .collect()
    };
    let per_s = top as f64 / (per_column as f64 * bucket_s);
    format!(
        "  {title} per {} ms (a column is {:.1} s; full height {:.0}/s)\n    simulated |{}|\n    live      |{}|\n",
        (bucket_s * 1e3).round(),
        per_column as f64 * bucket_s,
        per_s,
        bars(&a),
        bars(&b)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_puts_both_timelines_on_one_scale() {
        let text = chart("calls", &[0, 4, 8], &[8, 8, 0], 0.1);
        assert!(text.contains("simulated | ▄█|"), "{text}");
        assert!(text.contains("live      |██ |"), "{text}");
        let long: Vec<u32> = vec![1; 600];
        let text = chart("calls", &long, &long, 0.1);
        assert!(text.contains(&format!("|{}|", "█".repeat(60))), "{text}");
    }
}
