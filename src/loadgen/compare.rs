//! One scenario in both worlds: simulated, and played live against a real
//! relay and downstream started for it.
//!
//! The services run in this process on 127.0.0.1 ephemeral ports, on a
//! runtime of their own: the downstream serves the scenario's
//! `[downstream]` (windows counted from its start, just before the clients
//! start), the relay runs the scenario's `[relay]` with an in-memory store
//! and a fresh operator token that only the load generator knows. The
//! same seed drives the simulated run and the live clients, so both worlds
//! see the same arrivals and the same backoff draws; what differs is the
//! world itself (real time, real sockets, the downstream's draws in the
//! order calls reach it).

use super::report::JsonReport;
use super::{Ending, LiveCounts, LoadgenOptions, LoadgenResult, Target};
use crate::experiment::chart::Figure;
use crate::fault::Switch;
use crate::server::config::{DownstreamConfig, Secret};
use crate::server::flaky::Flaky;
use crate::server::{DownstreamService, DownstreamSettings, RelayServer, Settings};
use crate::sim::{simulate, Scenario, Series, SimOptions, Summary};
use anyhow::Context;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Finished jobs the live relay remembers, so every status poll finds its job.
const HISTORY_MAX: usize = 100_000;
/// Calls the live downstream answers at once (a hang holds them all).
const DOWNSTREAM_IN_FLIGHT_MAX: usize = 1_000_000;
/// How long the services get to stop.
const STOP_MAX: Duration = Duration::from_millis(500);

/// How the comparison is run.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    pub seed: u64,
    pub bucket_ms: f64,
    pub duration_max_s: Option<f64>,
    pub progress: bool,
}

/// Whether a figure is a count (5 %) or a latency (10 % or the noise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Count,
    Ratio,
    LatencyMs,
}

/// One figure in both worlds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub metric: &'static str,
    pub kind: Kind,
    pub simulated: f64,
    pub live: f64,
    /// (live − simulated) / simulated; `None` when simulated is 0 and live is not.
    pub relative_diff: Option<f64>,
}

impl Row {
    fn new(metric: &'static str, kind: Kind, simulated: f64, live: f64) -> Row {
        let relative_diff = if simulated == 0.0 {
            (live == 0.0).then_some(0.0)
        } else {
            Some((live - simulated) / simulated)
        };
        Row {
            metric,
            kind,
            simulated,
            live,
            relative_diff,
        }
    }

    /// Within tolerance: counts and ratios within `count_tol` (or within
    /// the Poisson noise of a small count, 2√n), latencies within
    /// `latency_tol` or `noise_ms`, whichever is larger.
    pub fn agrees(&self, count_tol: f64, latency_tol: f64, noise_ms: f64) -> bool {
        let diff = (self.live - self.simulated).abs();
        match self.kind {
            Kind::Count => diff <= (count_tol * self.simulated).max(2.0 * self.simulated.sqrt()),
            Kind::Ratio => diff <= count_tol * self.simulated.abs(),
            Kind::LatencyMs => diff <= (latency_tol * self.simulated).max(noise_ms),
        }
    }
}

/// Both runs and their figures side by side.
pub struct Comparison {
    pub scenario: String,
    pub seed: u64,
    pub bucket_ms: f64,
    pub simulated: Summary,
    pub simulated_series: Series,
    pub live: LoadgenResult,
    pub rows: Vec<Row>,
}

/// The JSON `compare --json` prints.
#[derive(Serialize)]
pub struct ComparisonJson<'a> {
    pub scenario: &'a str,
    pub seed: u64,
    pub bucket_ms: f64,
    pub rows: &'a [Row],
    pub simulated: &'a Summary,
    pub live: JsonReport<'a>,
    pub timeline: Timeline<'a>,
}

/// Calls and goodput per bucket, in both worlds.
#[derive(Serialize)]
pub struct Timeline<'a> {
    pub simulated_calls: &'a [u32],
    pub live_calls: &'a [u32],
    pub simulated_goodput: &'a [u32],
    pub live_goodput: &'a [u32],
}

impl Comparison {
    pub fn json(&self) -> ComparisonJson<'_> {
        ComparisonJson {
            scenario: &self.scenario,
            seed: self.seed,
            bucket_ms: self.bucket_ms,
            rows: &self.rows,
            simulated: &self.simulated,
            live: JsonReport {
                summary: &self.live.summary,
                ending: self.live.ending,
                live: &self.live.live,
            },
            timeline: Timeline {
                simulated_calls: &self.simulated_series.calls,
                live_calls: &self.live.series.calls,
                simulated_goodput: &self.simulated_series.successes,
                live_goodput: &self.live.series.successes,
            },
        }
    }

    /// The live run's own health: what it could not do.
    pub fn live_counts(&self) -> &LiveCounts {
        &self.live.live
    }

    /// The machine's scheduling noise, as the live run's timers measured it.
    pub fn noise_ms(&self) -> f64 {
        self.live.live.timer_lateness.p99_ms
    }
}

/// The figures `compare` sets side by side.
pub fn rows(sim: &Summary, live: &Summary) -> Vec<Row> {
    use Kind::{Count, LatencyMs, Ratio};
    let n = |x: u64| x as f64;
    let c = |m, f: fn(&Summary) -> u64| Row::new(m, Count, n(f(sim)), n(f(live)));
    let l = |m, f: fn(&Summary) -> f64| Row::new(m, LatencyMs, f(sim), f(live));
    vec![
        c("sends", |s| s.sends),
        c("accepted", |s| s.accepted),
        c("429", |s| s.shed_429 + s.rate_limited_429),
        c("503", |s| s.unavailable_503),
        c("succeeded", |s| s.succeeded),
        c("dead-lettered", |s| s.dead_lettered),
        c("client succeeded", |s| s.client_succeeded),
        c("client abandoned", |s| s.client_abandoned),
        c("downstream calls", |s| s.downstream_calls),
        Row::new(
            "retry amplification",
            Ratio,
            sim.retry_amplification,
            live.retry_amplification,
        ),
        c("duplicate side effects", |s| s.duplicate_side_effects),
        l("client p50 ms", |s| s.client_latency.p50_ms),
        l("client p99 ms", |s| s.client_latency.p99_ms),
        l("client p99.9 ms", |s| s.client_latency.p999_ms),
        l("job p50 ms", |s| s.latency.p50_ms),
        l("job p99 ms", |s| s.latency.p99_ms),
        l("job p99.9 ms", |s| s.latency.p999_ms),
    ]
}

/// The files a comparison writes into `dir`.
pub const TIMELINE_PNG: &str = "timeline.png";
pub const TIMELINE_SVG: &str = "timeline.svg";
pub const FIGURES_JSON: &str = "figures.json";

/// Writes the timeline chart (PNG and SVG) and, beside it, the figures
/// `--json` prints with the command that produced them.
pub fn write_files(
    c: &Comparison,
    scenario: &Scenario,
    dir: &Path,
    command: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let put = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    let chart = super::timeline_chart::timeline(c, scenario);
    chart.write_png(&dir.join(TIMELINE_PNG))?;
    put(TIMELINE_SVG, chart.to_svg()?.as_bytes())?;
    let mut figures = serde_json::to_value(c.json())?;
    figures["command"] = command.into();
    figures["crate_version"] = env!("CARGO_PKG_VERSION").into();
    put(FIGURES_JSON, format!("{figures:#}\n").as_bytes())
}

/// What a scenario asks for that the live world here does not have.
pub fn not_live(scenario: &Scenario) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !scenario.routes.is_empty() {
        missing.push("[[routes]] (requests spread over several downstreams)");
    }
    if scenario.network.relay_downstream.is_some() {
        missing.push("[network] relay_downstream (the relay's calls go over loopback)");
    }
    if !scenario.faults.crash.is_empty() {
        missing.push("[[faults.crash]] (the live relay is not crashed)");
    }
    if !scenario.store.is_default() {
        missing.push("[store] (the live relay keeps its work in memory)");
    }
    missing
}

/// Runs `scenario` simulated and live, and sets the figures side by side.
pub fn compare(scenario: &Scenario, opts: &CompareOptions) -> anyhow::Result<Comparison> {
    let missing = not_live(scenario);
    anyhow::ensure!(
        missing.is_empty(),
        "scenario `{}` has what the live world here cannot play: {}; remove it (or use `simulate`)",
        scenario.name,
        missing.join(", ")
    );
    let sim = simulate(
        scenario,
        &SimOptions {
            seed: opts.seed,
            trace_records_max: 0,
            calls_bucket_ms: None,
            series_bucket_ms: Some(opts.bucket_ms),
        },
    )
    .map_err(|f| anyhow::anyhow!("the simulated run failed: {f}"))?;
    let live = run_live(scenario, opts)?;
    let rows = rows(&sim.summary, &live.summary);
    Ok(Comparison {
        scenario: scenario.name.clone(),
        seed: opts.seed,
        bucket_ms: opts.bucket_ms,
        simulated: sim.summary,
        simulated_series: sim.series.unwrap_or_default(),
        live,
        rows,
    })
}

/// The services of a live run, on a runtime of their own.
struct Services {
    runtime: tokio::runtime::Runtime,
    downstream: Option<DownstreamService>,
    relay: Option<RelayServer>,
}

impl Services {
    fn start(scenario: &Scenario, seed: u64, token: &str) -> anyhow::Result<Services> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let ds = DownstreamSettings {
            listen: loopback,
            fault: Flaky {
                model: scenario.downstream.clone(),
                switch: Switch::default(),
                seed,
            },
            keys_max: 1_000_000,
            in_flight_max: DOWNSTREAM_IN_FLIGHT_MAX,
            ledger: None,
        };
        let downstream = runtime.block_on(DownstreamService::spawn(&ds))?;
        let mut settings = Settings {
            relay: scenario.relay.clone(),
            downstream: DownstreamConfig::Url {
                url: format!("{}/work", downstream.base_url()),
            },
            ..Settings::default()
        };
        settings.relay.history_max = settings.relay.history_max.max(HISTORY_MAX);
        settings.server.listen = loopback;
        settings.server.seed = seed;
        settings.server.operator_token = Some(Secret(token.to_owned()));
        settings.server.drain_deadline_ms = 0.0;
        settings
            .validate()
            .map_err(|e| anyhow::anyhow!("the scenario's [relay] cannot be served: {e}"))?;
        let relay = runtime.block_on(RelayServer::start(&settings))?;
        Ok(Services {
            runtime,
            downstream: Some(downstream),
            relay: Some(relay),
        })
    }

    /// Stops both services within a bounded time.
    fn stop(mut self) {
        let (relay, downstream) = (self.relay.take(), self.downstream.take());
        self.runtime.block_on(async move {
            if let Some(r) = relay {
                let _ = tokio::time::timeout(STOP_MAX, r.shutdown()).await;
            }
            if let Some(d) = downstream {
                let _ = tokio::time::timeout(STOP_MAX, d.stop()).await;
            }
        });
        self.runtime.shutdown_timeout(STOP_MAX);
    }
}

fn run_live(scenario: &Scenario, opts: &CompareOptions) -> anyhow::Result<LoadgenResult> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token)
        .map_err(|e| anyhow::anyhow!("no OS randomness for the operator token: {e}"))?;
    let token = hex::encode(token);
    let services = Services::start(scenario, opts.seed, &token)?;
    let urls = (
        services.relay.as_ref().map(RelayServer::base_url),
        services
            .downstream
            .as_ref()
            .map(DownstreamService::base_url),
    );
    let result = (|| {
        let (Some(relay), Some(downstream)) = urls else {
            anyhow::bail!("the services did not start");
        };
        let target = Target::parse(&relay, false)?.with_token(Some(token));
        let downstream = Target::parse(&downstream, false)?;
        let mut lg = LoadgenOptions::for_scenario(
            scenario,
            target,
            Some(downstream),
            opts.seed,
            opts.duration_max_s,
        )?;
        lg.bucket_ms = opts.bucket_ms;
        lg.progress = opts.progress;
        super::run(scenario, &lg)
    })();
    services.stop();
    let result = result?;
    if result.ending == Ending::Interrupted {
        eprintln!("interrupted: the live figures cover only the time it ran");
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_within_five_percent_or_their_poisson_noise() {
        let row = |s, l| Row::new("x", Kind::Count, s, l);
        assert!(row(1000.0, 1049.0).agrees(0.05, 0.1, 1.0));
        assert!(!row(1000.0, 1070.0).agrees(0.05, 0.1, 1.0));
        assert!(row(9.0, 14.0).agrees(0.05, 0.1, 1.0), "2√9 = 6");
        assert!(!row(9.0, 16.0).agrees(0.05, 0.1, 1.0));
        assert_eq!(row(0.0, 3.0).relative_diff, None);
        assert_eq!(row(0.0, 0.0).relative_diff, Some(0.0));
        let lat = |s, l| Row::new("p99", Kind::LatencyMs, s, l);
        assert!(lat(20.0, 21.9).agrees(0.05, 0.1, 1.0));
        assert!(!lat(20.0, 22.5).agrees(0.05, 0.1, 1.0));
        assert!(lat(2.0, 4.5).agrees(0.05, 0.1, 3.0), "within the noise");
    }
}
