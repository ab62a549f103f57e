//! `resilient-relay loadgen`: play a scenario's clients against a live relay.

use super::simulate::{write_trace, TraceArgs};
use crate::loadgen::{self, LoadgenOptions, Target};
use crate::sim::Scenario;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct LoadgenArgs {
    /// Scenario file (TOML) whose `[[clients]]` to play, e.g. experiments/scenarios/steady.toml
    pub scenario: PathBuf,
    /// The relay's base URL; loopback only unless --allow-remote.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// The downstream's base URL (`downstream --scenario …`), for side
    /// effects, duplicates and calls per bucket.
    #[arg(long, value_name = "URL")]
    pub downstream: Option<String>,
    /// Send to hosts other than loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// File holding the relay's operator token, for `/stats` (without one
    /// the relay answers its operator endpoints only on loopback).
    #[arg(long, value_name = "FILE", env = "RELAY_OPERATOR_TOKEN_FILE")]
    pub operator_token_file: Option<PathBuf>,
    /// Seed of the arrivals and backoff draws (default: the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Change any scenario value by its path, e.g. `horizon_s=10` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// The clients' timeline, in `simulate`'s formats.
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Most sends (first tries and retries); the run stops there.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub sends_max: u64,
    /// Most sends and status polls in progress at once; a send past it is
    /// not made and counts as `overloaded`.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub in_flight_max: usize,
    /// Stop after this long whatever is left (default: the horizon + 10 s,
    /// or 600 s for a scenario without one).
    #[arg(long, value_name = "SECONDS")]
    pub duration_max_s: Option<f64>,
    /// Width of the timeline's buckets.
    #[arg(long, default_value_t = 100.0, value_name = "MS")]
    pub bucket_ms: f64,
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--operator-token-file {}: {e}", path.display()))?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

pub fn run(args: &LoadgenArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load_with(&args.scenario, &args.set)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let token = args
        .operator_token_file
        .as_deref()
        .map(read_token)
        .transpose()?;
    let target = Target::parse(&args.target, args.allow_remote)?.with_token(token);
    let downstream = args
        .downstream
        .as_deref()
        .map(|d| Target::parse(d, args.allow_remote))
        .transpose()?;
    anyhow::ensure!(args.sends_max >= 1, "--sends-max: must be ≥ 1");
    anyhow::ensure!(args.in_flight_max >= 1, "--in-flight-max: must be ≥ 1");
    anyhow::ensure!(
        args.bucket_ms >= 1.0 && args.bucket_ms.is_finite(),
        "--bucket-ms: must be ≥ 1"
    );
    let mut opts =
        LoadgenOptions::for_scenario(&scenario, target, downstream, seed, args.duration_max_s)?;
    opts.sends_max = args.sends_max;
    opts.in_flight_max = args.in_flight_max;
    opts.bucket_ms = args.bucket_ms;
    opts.trace_records_max = args.trace.records_max();
    #[allow(clippy::disallowed_methods)] // wall time reported beside the run
    let started = std::time::Instant::now();
    let result = loadgen::run(&scenario, &opts)?;
    let wall_s = started.elapsed().as_secs_f64();
    if let (Some(path), Some(trace)) = (&args.trace.path, &result.trace) {
        write_trace(path, args.trace.format, trace, &scenario.name, seed)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = loadgen::report::JsonReport {
            summary: &result.summary,
            ending: result.ending,
            live: &result.live,
        };
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", result.summary)?;
        print_live(&mut out, &result)?;
        writeln!(out, "  wall clock              {wall_s:>12.3} s")?;
        if let Some(path) = &args.trace.path {
            writeln!(out, "  trace                   {}", path.display())?;
        }
    }
    Ok(())
}

/// The lines only a live run has.
fn print_live(out: &mut impl Write, r: &loadgen::LoadgenResult) -> std::io::Result<()> {
    let l = &r.live;
    writeln!(
        out,
        "  run ended               {:>12}",
        format!("{:?}", r.ending).to_lowercase()
    )?;
    writeln!(
        out,
        "  no relay answer         {:>12}   (transport errors {}, not sent: in-flight bound {}, other statuses {:?})",
        l.transport_errors + l.overloaded + l.other.values().sum::<u64>(),
        l.transport_errors,
        l.overloaded,
        l.other
    )?;
    writeln!(
        out,
        "  status polls            {:>12}   (failed {}, jobs forgotten {}; relay clock offset {} ± {} ms)",
        l.polls,
        l.poll_errors,
        l.jobs_gone,
        l.clock_offset_ms.map_or("?".into(), |o| format!("{o:.3}")),
        l.clock_offset_uncertainty_ms.map_or("?".into(), |o| format!("{o:.3}")),
    )?;
    let t = &l.timer_lateness;
    writeln!(
        out,
        "  timer lateness (ms)     p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}   (this machine's scheduling noise)",
        t.p50_ms, t.p99_ms, t.p999_ms, t.max_ms
    )
}
