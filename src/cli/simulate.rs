//! `resilient-relay simulate`: run one scenario, print its summary.

use crate::sim::chrome_trace::{chrome_trace, RunInfo};
use crate::sim::trace::Trace;
use crate::sim::{simulate, Scenario, SimOptions};
use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Scenario file (TOML), e.g. experiments/scenarios/outage.toml
    pub scenario: PathBuf,
    /// Seed for every random draw (default: the scenario's own `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Change any scenario value by its path, e.g. `relay.workers=4`
    /// (repeatable; the file as written is validated first).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

/// Where and how a run's timeline is written (`simulate`, `loadgen`).
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Write the timeline to this file, in the format `--trace-format` names.
    #[arg(long = "trace", value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// How `--trace` is written: `jsonl`, one JSON object per record, or
    /// `chrome`, the Chrome trace-event format that ui.perfetto.dev and
    /// chrome://tracing open (a track per job, per worker lane and per
    /// request).
    #[arg(long = "trace-format", value_enum, default_value_t = TraceFormat::Jsonl, value_name = "FORMAT")]
    pub format: TraceFormat,
    /// Most trace records to keep; the trace says when it was cut.
    #[arg(long = "trace-max", default_value_t = 5_000_000, value_name = "N")]
    pub max: usize,
}

impl TraceArgs {
    /// Records the run keeps: none without `--trace`.
    pub fn records_max(&self) -> usize {
        if self.path.is_some() {
            self.max
        } else {
            0
        }
    }
}

/// The file formats of `--trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    /// One JSON object per record, as the simulator saw them.
    Jsonl,
    /// The Chrome trace-event format (Perfetto, chrome://tracing).
    Chrome,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    summary: &'a crate::sim::Summary,
    wall_s: f64,
}

/// Writes `trace` to `path` in `format` (`simulate` and `loadgen` alike).
pub fn write_trace(
    path: &std::path::Path,
    format: TraceFormat,
    trace: &Trace,
    scenario: &str,
    seed: u64,
) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create trace file {}", path.display()))?;
    let out = std::io::BufWriter::new(file);
    match format {
        TraceFormat::Jsonl => trace.write_jsonl(out),
        TraceFormat::Chrome => {
            let run = RunInfo {
                scenario: scenario.to_owned(),
                seed,
            };
            chrome_trace(trace, &run).write(out)
        }
    }
    .with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load_with(&args.scenario, &args.set)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let opts = SimOptions {
        seed,
        trace_records_max: args.trace.records_max(),
        calls_bucket_ms: None,
        series_bucket_ms: None,
    };
    #[allow(clippy::disallowed_methods)]
    // wall time is reported beside the virtual time, never used by the run
    let started = std::time::Instant::now();
    let mut result = simulate(&scenario, &opts).map_err(|failure| {
        anyhow::anyhow!(
            "{failure}\nreproduce with: cargo run --release -- simulate {} --seed {seed}",
            args.scenario.display()
        )
    })?;
    let wall_s = started.elapsed().as_secs_f64();
    if args.trace.path.is_some() && result.trace.is_none() {
        // `--trace-max 0`: the run kept nothing, and the file says so.
        result.trace = Some(Trace::nothing_kept());
        result.summary.trace_cut_at = Some(0);
    }
    if let (Some(path), Some(trace)) = (&args.trace.path, &result.trace) {
        write_trace(path, args.trace.format, trace, &scenario.name, seed)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(
            &mut out,
            &JsonReport {
                summary: &result.summary,
                wall_s,
            },
        )?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", result.summary)?;
        writeln!(out, "  wall clock              {:>12.3} s", wall_s)?;
        if let Some(path) = &args.trace.path {
            writeln!(out, "  trace                   {}", path.display())?;
        }
    }
    Ok(())
}
