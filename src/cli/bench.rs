//! `resilient-relay bench`: a standard workload through the real relay and
//! simulator, reported as one JSON line to stand beside the yardsticks.

use crate::sim::workload::{Workload, NAMES};
use crate::sim::{simulate, SimOptions};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Workload: relay-std, relay-ovl or relay-scale.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(NAMES))]
    pub workload: String,
    /// Seed of every random draw (arrivals, latencies, failures, jitter);
    /// the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Override the number of arrivals (default: the workload's 1,000,000).
    #[arg(long)]
    pub arrivals: Option<u64>,
    /// Idempotency keys the relay remembers (default: 100,000, or 1.1 × the
    /// workload's queue + workers if larger). Every arrival has a new key, so
    /// once full each one evicts the oldest: the store's size decides whether
    /// that eviction hits the cache or memory.
    #[arg(long)]
    pub keys_max: Option<usize>,
}

#[derive(Serialize)]
struct BenchLine {
    #[serde(rename = "impl")]
    implementation: &'static str,
    workload: String,
    seed: u64,
    arrivals: u64,
    wall_s: f64,
    model_events: u64,
    model_events_per_s: f64,
    scheduler_events: u64,
    peak_rss_kb: u64,
    rss_before_kb: u64,
    idempotency_keys_max: usize,
    live_jobs_max: u64,
    bytes_per_live_job: f64,
    shed_frac: f64,
    success_frac: f64,
    retry_amplification: f64,
    mean_sojourn_ms: f64,
    p99_ms: f64,
}

/// Peak and current resident set size in kB, from /proc (Linux); 0 elsewhere.
fn rss_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut workload = Workload::named(&args.workload).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown workload `{}`; choose one of {NAMES:?}",
            args.workload
        )
    })?;
    if let Some(n) = args.arrivals {
        anyhow::ensure!(n >= 1, "--arrivals must be ≥ 1");
        workload.arrivals = n;
    }
    let mut scenario = workload.scenario(&args.workload);
    if let Some(keys) = args.keys_max {
        scenario.relay.idempotency.keys_max = keys;
    }
    scenario.validate()?;
    let rss_before_kb = rss_kb("VmRSS:");
    #[allow(clippy::disallowed_methods)] // wall time of the run is what a benchmark measures
    let started = std::time::Instant::now();
    let result = simulate(&scenario, &SimOptions::seed(args.seed)).map_err(|f| {
        anyhow::anyhow!(
            "{f}\nreproduce with: cargo run --release -- bench {} --seed {}",
            args.workload,
            args.seed
        )
    })?;
    let wall_s = started.elapsed().as_secs_f64();
    let peak_rss_kb = rss_kb("VmHWM:");
    let s = &result.summary;
    let arrivals = s.arrivals.max(1) as f64;
    let line = BenchLine {
        implementation: "resilient-relay",
        workload: args.workload.clone(),
        seed: args.seed,
        arrivals: s.arrivals,
        wall_s,
        model_events: s.model_events,
        model_events_per_s: s.model_events as f64 / wall_s.max(1e-9),
        scheduler_events: s.scheduler_events,
        peak_rss_kb,
        rss_before_kb,
        idempotency_keys_max: scenario.relay.idempotency.keys_max,
        live_jobs_max: s.live_jobs_max,
        bytes_per_live_job: (peak_rss_kb.saturating_sub(rss_before_kb) * 1024) as f64
            / s.live_jobs_max.max(1) as f64,
        shed_frac: s.shed_429 as f64 / arrivals,
        success_frac: s.succeeded as f64 / arrivals,
        retry_amplification: s.retry_amplification,
        mean_sojourn_ms: s.latency.mean_ms,
        p99_ms: s.latency.p99_ms,
    };
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}
