//! The accept-path benchmark: the relay's `POST /relay` beside a bare axum
//! handler, and the relay under a 10x overload. Loopback only, bounded in
//! time, one JSON line per measurement.
//!
//! Absolute numbers drift on a shared machine, so every figure that matters
//! is a ratio taken in one run: the same in-process load generator (a pooled
//! hyper client at fixed concurrency for a fixed time) drives first a bare
//! axum handler that reads the body and answers 202, then the full relay
//! (correlation id, checks, fingerprint, the relay's task, a zero-latency
//! built-in downstream so accepted jobs finish and the queue stays open).
//! The overload run paces requests open-loop at ten times what the
//! downstream can serve, so the queue is full and nearly every answer is a
//! 429; it reports their latency, memory before and after, and checks that
//! every accepted job ended. The store run measures the same accept path
//! with each store side by side, in alternating rounds (memory, then SQLite
//! at each sync setting, files in a temporary directory; with `--postgres
//! URL`, PostgreSQL with one replica and with two sharing the load), and
//! reports each store's requests per second and p99 with its ratio to memory.

use super::client::{signature_headers, uri, HttpClient, Reply};
use super::config::{DownstreamConfig, Settings};
use super::flaky::FaultConfig;
use super::signature::{unix_now, Signer};
use super::store::{StoreSpec, StoreSync};
use super::RelayServer;
use crate::relay::LatencyHistogram;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use hyper::Uri;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// `bench_http`'s command line.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "bench_http",
    about = "Accept-path and overload benchmark of the relay server (loopback only)"
)]
pub struct BenchArgs {
    /// Seconds per accept-path measurement (at most 10), split into rounds.
    #[arg(long, default_value_t = 6.0)]
    pub secs: f64,
    /// Alternating rounds of the bare handler and the relay.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Requests in flight at once in the accept-path measurements.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of overload (at most 30).
    #[arg(long, default_value_t = 10.0)]
    pub overload_secs: f64,
    /// Offered load as a multiple of what the downstream can serve.
    #[arg(long, default_value_t = 10.0)]
    pub overload_factor: f64,
    /// Run one measurement only (for profiling).
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Accept path with signed requests: the relay verifies each signature
    /// and admits it to the replay guard (both loops' clients sign, so the
    /// ratio is the server's cost).
    #[arg(long)]
    pub signed: bool,
    /// The stores' `commit_wait_ms` in the store measurement.
    #[arg(long, default_value_t = 0)]
    pub commit_wait_ms: u64,
    /// A PostgreSQL URL: the store measurement adds PostgreSQL with one
    /// replica and with two sharing it (`scripts/pg-cluster.sh start`
    /// prints one). Its relay tables are created there.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Leave SQLite out of the store measurement (memory stays, as the
    /// yardstick), e.g. to profile PostgreSQL alone.
    #[arg(long)]
    pub no_sqlite: bool,
}

/// The secret of `--signed` runs.
const BENCH_SECRET: &[u8] = b"bench-secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    Bare,
    Relay,
    Overload,
    /// The accept path with each store.
    Stores,
}

/// One closed-loop measurement.
#[derive(Debug, Serialize)]
struct Throughput {
    bench: &'static str,
    secs: f64,
    concurrency: usize,
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Answers other than 202.
    other: u64,
}

#[derive(Debug, Serialize)]
struct Overload {
    bench: &'static str,
    secs: f64,
    capacity_per_s: f64,
    offered_per_s: f64,
    sent: u64,
    /// Ticks skipped because the generator had too many requests open.
    skipped: u64,
    accepted: u64,
    shed: u64,
    other: u64,
    p50_429_ms: f64,
    p99_429_ms: f64,
    p999_429_ms: f64,
    max_429_ms: f64,
    p99_202_ms: f64,
    rss_kb_before: Option<u64>,
    rss_kb_after: Option<u64>,
    rss_kb_max: Option<u64>,
    /// Resident memory sampled once a second during the overload.
    rss_kb_per_s: Vec<u64>,
    /// Accepted jobs that neither succeeded nor were dead-lettered.
    lost: u64,
}

/// Runs every measurement and prints one JSON line each.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.secs > 0.0 && args.secs <= 10.0,
        "--secs must be in (0, 10]"
    );
    anyhow::ensure!(
        args.overload_secs > 0.0 && args.overload_secs <= 30.0,
        "--overload-secs must be in (0, 30]"
    );
    anyhow::ensure!(
        (1..=1024).contains(&args.concurrency),
        "--concurrency must be 1 to 1024"
    );
    anyhow::ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds must be 1 to 100"
    );
    anyhow::ensure!(
        args.overload_factor >= 1.0 && args.overload_factor <= 100.0,
        "--overload-factor must be 1 to 100"
    );
    super::logging::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Overload first, so its memory figures start from a fresh process.
        if args.only.is_none() || args.only == Some(Only::Overload) {
            print_line(&overload(args).await?);
        }
        if args.only.is_none() || matches!(args.only, Some(Only::Bare | Only::Relay)) {
            accept_paths(args).await?;
        }
        if args.only.is_none() || args.only == Some(Only::Stores) {
            stores(args).await?;
        }
        Ok(())
    })
}

fn print_line(v: &impl Serialize) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

/// The bare handler and the relay, in alternating rounds so that a change
/// in background load hits both alike; prints both and their ratio.
async fn accept_paths(args: &BenchArgs) -> anyhow::Result<()> {
    let client = HttpClient::new(64 * 1024);
    let (bare_addr, bare_task) = start_bare().await?;
    let signer = args.signed.then(|| Signer::new(BENCH_SECRET));
    let relay = start_relay(args.signed).await?;
    let bare_uri = uri(&format!("http://{bare_addr}"), "/relay")?;
    let relay_uri = uri(&relay.base_url(), "/relay")?;
    warm_up(&client, &bare_uri, "bare-axum", signer.as_ref()).await?;
    warm_up(&client, &relay_uri, "relay-accept", signer.as_ref()).await?;
    let per_round = Duration::from_secs_f64(args.secs / args.rounds as f64);
    let (mut bare, mut accept) = (Loop::default(), Loop::default());
    let mut ratios = Vec::with_capacity(args.rounds);
    let round_of = |run: bool, target: &'static str, uri: &Uri, round: usize| {
        let (client, uri, signer) = (&client, uri.clone(), signer.clone());
        async move {
            if !run {
                return Loop::default();
            }
            let label = format!("{target}-{round}");
            let shape = (per_round, args.concurrency);
            closed_loop(client, &uri, &label, shape, signer).await
        }
    };
    for round in 0..args.rounds {
        let b = round_of(args.only != Some(Only::Relay), "bare", &bare_uri, round).await;
        let r = round_of(args.only != Some(Only::Bare), "relay", &relay_uri, round).await;
        ratios.push(r.rps() / b.rps().max(1e-9));
        bare.add(b);
        accept.add(r);
    }
    bare_task.abort();
    drop(relay);
    let (bare_name, accept_name) = if args.signed {
        ("bare-axum-signed", "relay-accept-signed")
    } else {
        ("bare-axum", "relay-accept")
    };
    let bare = bare.report(bare_name, args.concurrency);
    let accept = accept.report(accept_name, args.concurrency);
    if args.only != Some(Only::Relay) {
        print_line(&bare);
    }
    if args.only != Some(Only::Bare) {
        print_line(&accept);
    }
    if args.only.is_none() {
        ratios.sort_by(f64::total_cmp);
        print_line(&serde_json::json!({
            "bench": if args.signed { "accept-ratio-signed" } else { "accept-ratio" },
            "rounds": args.rounds,
            "relay_over_bare_rps": accept.rps / bare.rps.max(1e-9),
            "median_round_ratio": ratios[ratios.len() / 2],
            "relay_p50_ms": accept.p50_ms,
            "relay_p99_ms": accept.p99_ms,
            "bare_p50_ms": bare.p50_ms,
            "bare_p99_ms": bare.p99_ms,
        }));
    }
    Ok(())
}

/// The stores measured side by side: a name, the store and its sync setting.
fn store_kinds(dir: &std::path::Path) -> Vec<(&'static str, StoreSpec, StoreSync)> {
    let sqlite = |name: &str| StoreSpec::Sqlite(dir.join(format!("{name}.db")));
    vec![
        ("memory", StoreSpec::Memory, StoreSync::Full),
        ("sqlite-full", sqlite("full"), StoreSync::Full),
        ("sqlite-normal", sqlite("normal"), StoreSync::Normal),
        ("sqlite-off", sqlite("off"), StoreSync::Off),
    ]
}

/// The accept path with each store, in alternating rounds; one line per
/// store, then their ratios to memory.
async fn stores(args: &BenchArgs) -> anyhow::Result<()> {
    let client = HttpClient::new(64 * 1024);
    let dir = std::env::temp_dir().join(format!("relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut kinds = store_kinds(&dir);
    if args.no_sqlite {
        kinds.retain(|(_, store, _)| !matches!(store, StoreSpec::Sqlite(_)));
    }
    let mut replicas = vec![1; kinds.len()];
    match &args.postgres {
        Some(url) => {
            for (name, n) in [("postgres", 1), ("postgres-2-replicas", 2)] {
                kinds.push((name, StoreSpec::Postgres(url.clone()), StoreSync::Full));
                replicas.push(n);
            }
        }
        None => print_line(&serde_json::json!({
            "bench": "accept-store-postgres",
            "skipped": "give --postgres URL (scripts/pg-cluster.sh start prints one)",
        })),
    }
    let run = std::process::id();
    let mut targets = Vec::with_capacity(kinds.len());
    for ((name, store, sync), n) in kinds.iter().zip(&replicas) {
        let mut group = Vec::with_capacity(*n);
        for r in 0..*n {
            let server = start_relay_with(false, store.clone(), *sync, args.commit_wait_ms).await?;
            let target = uri(&server.base_url(), "/relay")?;
            // Keys of their own: a shared database replays keys already used.
            let label = format!("{name}-{run}-r{r}");
            warm_up(&client, &target, &label, None).await?;
            group.push((server, target));
        }
        targets.push(group);
    }
    let per_round = Duration::from_secs_f64(args.secs / args.rounds as f64);
    let mut loops: Vec<Loop> = kinds.iter().map(|_| Loop::default()).collect();
    for round in 0..args.rounds {
        for (i, group) in targets.iter().enumerate() {
            let label = format!("{}-{run}-{round}", kinds[i].0);
            // Replicas share the load: the same concurrency in all, split.
            let shape = (per_round, (args.concurrency / group.len()).max(1));
            let runs = group.iter().enumerate().map(|(r, (_, target))| {
                let label = format!("{label}-r{r}");
                let client = &client;
                async move { closed_loop(client, target, &label, shape, None).await }
            });
            let side_by_side = futures_util::future::join_all(runs).await;
            loops[i].add(Loop::concurrent(side_by_side));
        }
    }
    drop(targets);
    let _ = std::fs::remove_dir_all(&dir);
    let memory_rps = loops[0].rps().max(1e-9);
    let mut summary = serde_json::Map::new();
    for ((name, _, _), l) in kinds.iter().zip(&loops) {
        let report = l.report(name, args.concurrency);
        print_line(&serde_json::json!({
            "bench": format!("accept-store-{name}"),
            "report": report,
        }));
        summary.insert(
            (*name).to_owned(),
            serde_json::json!({
                "rps": report.rps,
                "p99_ms": report.p99_ms,
                "rps_over_memory": report.rps / memory_rps,
            }),
        );
    }
    print_line(&serde_json::json!({
        "bench": "accept-stores",
        "commit_wait_ms": args.commit_wait_ms,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "stores": summary,
    }));
    Ok(())
}

/// A bare axum handler on loopback: reads the body, answers 202 with JSON.
async fn start_bare() -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)>
{
    let app = Router::new().route(
        "/relay",
        post(|body: Bytes| async move {
            let answer = format!(
                r#"{{"job":"0-{}","status_url":"/relay/0-0","state":"queued"}}"#,
                body.len()
            );
            (
                StatusCode::ACCEPTED,
                [("content-type", "application/json")],
                answer,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    Ok((
        addr,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    ))
}

/// The relay, its jobs finishing at once behind it (zero-latency built-in
/// downstream), so the queue never fills and every answer is a 202.
async fn start_relay(signed: bool) -> anyhow::Result<RelayServer> {
    start_relay_with(signed, StoreSpec::Memory, StoreSync::Full, 0).await
}

/// The same relay on `store`.
async fn start_relay_with(
    signed: bool,
    store: StoreSpec,
    sync: StoreSync,
    commit_wait_ms: u64,
) -> anyhow::Result<RelayServer> {
    let mut s = Settings::default();
    s.server.store = store;
    s.server.store_sync = sync;
    s.server.commit_wait_ms = commit_wait_ms;
    if signed {
        let secret = String::from_utf8_lossy(BENCH_SECRET).into_owned();
        s.server.hmac_secret = Some(super::config::Secret(secret));
    }
    s.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    s.relay.workers = 64;
    s.relay.queue.capacity = 10_000;
    s.relay.jobs_max = 20_000;
    s.downstream = DownstreamConfig::Flaky(FaultConfig {
        latency_ms: 0.0,
        ..FaultConfig::default()
    });
    s.validate()?;
    RelayServer::start(&s).await
}

/// The request every measurement sends: a small JSON body with a fresh
/// key, signed when `signer` is given.
async fn post_relay(
    client: &HttpClient,
    target: &axum::http::Uri,
    key: String,
    signer: Option<&Signer>,
) -> Result<Reply, super::client::CallFailed> {
    const BODY: &[u8] = br#"{"order":42,"amount_cents":1999,"currency":"EUR"}"#;
    let mut headers = Vec::with_capacity(3);
    headers.push((
        HeaderName::from_static("idempotency-key"),
        HeaderValue::from_str(&key).unwrap_or(HeaderValue::from_static("k")),
    ));
    if let Some(signer) = signer {
        let path = target.path_and_query().map_or("/", |p| p.as_str());
        let now = unix_now();
        headers.extend(signature_headers(
            signer,
            &axum::http::Method::POST,
            path,
            Some(&key),
            BODY,
            now,
        ));
    }
    client
        .post_json(target, &headers, Bytes::from_static(BODY))
        .await
}

/// What closed loops measured, summed over rounds.
#[derive(Default)]
struct Loop {
    latency: LatencyHistogram,
    requests: u64,
    other: u64,
    secs: f64,
}

impl Loop {
    /// Loops that ran at the same time, as one: their requests add up over
    /// the longest one's time.
    fn concurrent(loops: Vec<Loop>) -> Loop {
        let mut all = Loop::default();
        for l in loops {
            all.latency.add(&l.latency);
            all.requests += l.requests;
            all.other += l.other;
            all.secs = all.secs.max(l.secs);
        }
        all
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs.max(1e-9)
    }

    fn add(&mut self, other: Loop) {
        self.latency.add(&other.latency);
        self.requests += other.requests;
        self.other += other.other;
        self.secs += other.secs;
    }

    fn report(&self, bench: &'static str, concurrency: usize) -> Throughput {
        let s = self.latency.summary();
        Throughput {
            bench,
            secs: self.secs,
            concurrency,
            requests: self.requests,
            rps: self.rps(),
            p50_ms: s.p50_ms,
            p90_ms: s.p90_ms,
            p99_ms: s.p99_ms,
            p999_ms: s.p999_ms,
            other: self.other,
        }
    }
}

/// `concurrency` loops, each sending the next request when the last one is answered.
async fn closed_loop(
    client: &HttpClient,
    target: &axum::http::Uri,
    keys: &str,
    (duration, concurrency): (Duration, usize),
    signer: Option<Signer>,
) -> Loop {
    let started = now();
    let until = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (client, target, signer) = (client.clone(), target.clone(), signer.clone());
        let prefix = format!("{keys}-{worker}");
        tasks.spawn(async move {
            let mut latency = LatencyHistogram::new();
            let (mut n, mut other) = (0u64, 0u64);
            while now() < until {
                let sent = now();
                let key = format!("{prefix}-{n}");
                let reply = post_relay(&client, &target, key, signer.as_ref()).await;
                latency.record(sent.elapsed());
                n += 1;
                if !reply.is_ok_and(|r| r.status == StatusCode::ACCEPTED) {
                    other += 1;
                }
            }
            (latency, n, other)
        });
    }
    let mut total = Loop::default();
    for (latency, requests, other) in tasks.join_all().await {
        total.latency.add(&latency);
        total.requests += requests;
        total.other += other;
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

/// One request first, so connection set-up is not measured and a broken
/// target fails loudly instead of producing a table of errors.
async fn warm_up(
    client: &HttpClient,
    target: &axum::http::Uri,
    bench: &str,
    signer: Option<&Signer>,
) -> anyhow::Result<()> {
    let reply = post_relay(client, target, format!("{bench}-warm-up"), signer).await?;
    anyhow::ensure!(
        reply.status == StatusCode::ACCEPTED,
        "{bench}: warm-up answered {}",
        reply.status
    );
    Ok(())
}

/// The load generator's clock (the server's one monotonic clock).
fn now() -> Instant {
    super::clock::read_monotonic()
}

/// Requests the overload generator keeps open at most. Each open request
/// holds a connection; a small bound keeps the generator's own connection
/// pool (and its buffers) from growing during a stall, so the memory series
/// shows the server, not the client.
const OPEN_MAX: usize = 64;

/// Open-loop overload at `factor` × the downstream's capacity.
async fn overload(args: &BenchArgs) -> anyhow::Result<Overload> {
    let (workers, latency_ms) = (4usize, 20.0);
    let capacity_per_s = workers as f64 * 1000.0 / latency_ms;
    let offered_per_s = capacity_per_s * args.overload_factor;
    let mut s = Settings::default();
    s.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    s.relay.workers = workers;
    s.relay.queue.capacity = 100;
    s.relay.queue.retry_after_ms = 500.0;
    // Accepted jobs leave records behind (idempotency answers, job history),
    // bounded by these; small bounds reach their plateau within seconds, so
    // what the memory series shows after that is the cost of refusing.
    s.relay.idempotency.keys_max = 2_000;
    s.relay.history_max = 1_000;
    s.downstream = DownstreamConfig::Flaky(FaultConfig {
        latency_ms,
        ..FaultConfig::default()
    });
    s.validate()?;
    let server = RelayServer::start(&s).await?;
    let client = HttpClient::new(64 * 1024);
    let target = uri(&server.base_url(), "/relay")?;
    warm_up(&client, &target, "overload", None).await?;
    let rss_kb_before = rss_kb();
    let run = drive_open_loop(
        &client,
        &target,
        offered_per_s,
        Duration::from_secs_f64(args.overload_secs),
    )
    .await;
    let rss_kb_after = rss_kb();
    let lost = wait_and_count_lost(&server, &client).await?;
    let t = &run.tally;
    Ok(Overload {
        bench: "overload-429",
        secs: args.overload_secs,
        capacity_per_s,
        offered_per_s,
        sent: run.sent,
        skipped: run.skipped,
        accepted: t.accepted.count(),
        shed: t.shed.count(),
        other: t.other,
        p50_429_ms: t.shed.quantile_ms(0.5),
        p99_429_ms: t.shed.quantile_ms(0.99),
        p999_429_ms: t.shed.quantile_ms(0.999),
        max_429_ms: t.shed.max_ms(),
        p99_202_ms: t.accepted.quantile_ms(0.99),
        rss_kb_before,
        rss_kb_after,
        rss_kb_max: run.rss_kb_per_s.iter().copied().max(),
        rss_kb_per_s: run.rss_kb_per_s,
        lost,
    })
}

/// Answers of the overload run, by kind.
#[derive(Clone, Debug, Default)]
struct Tally {
    shed: LatencyHistogram,
    accepted: LatencyHistogram,
    other: u64,
}

struct OpenLoopRun {
    tally: Tally,
    sent: u64,
    skipped: u64,
    rss_kb_per_s: Vec<u64>,
}

/// Sends at a fixed rate for `duration`, whatever the answers, each request
/// in its own task; samples memory once a second.
async fn drive_open_loop(
    client: &HttpClient,
    target: &axum::http::Uri,
    per_s: f64,
    duration: Duration,
) -> OpenLoopRun {
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let open = Arc::new(tokio::sync::Semaphore::new(OPEN_MAX));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (started, mut next_sample) = (now(), now());
    let (mut sent, mut skipped, mut rss_kb_per_s) = (0u64, 0u64, Vec::new());
    while started.elapsed() < duration {
        ticks.tick().await;
        if now() >= next_sample {
            rss_kb_per_s.extend(rss_kb());
            next_sample += Duration::from_secs(1);
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let (client, target, tally) = (client.clone(), target.clone(), tally.clone());
        let key = format!("overload-{sent}");
        sent += 1;
        tokio::spawn(async move {
            let t0 = now();
            let reply = post_relay(&client, &target, key, None).await;
            let took = t0.elapsed();
            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
            match reply.map(|r| r.status) {
                Ok(StatusCode::TOO_MANY_REQUESTS) => t.shed.record(took),
                Ok(StatusCode::ACCEPTED) => t.accepted.record(took),
                _ => t.other += 1,
            }
            drop(permit);
        });
    }
    // Every permit back means every request answered.
    let all = u32::try_from(OPEN_MAX).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(30), open.acquire_many(all)).await;
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    OpenLoopRun {
        tally,
        sent,
        skipped,
        rss_kb_per_s,
    }
}

/// Waits for every accepted job to end, then counts those that vanished.
async fn wait_and_count_lost(server: &RelayServer, client: &HttpClient) -> anyhow::Result<u64> {
    let idle = tokio::time::timeout(Duration::from_secs(30), server.relay().idle()).await;
    anyhow::ensure!(
        idle.is_ok(),
        "accepted jobs still running 30 s after the overload"
    );
    let stats = client
        .get(&uri(&server.base_url(), "/stats")?)
        .await?
        .json();
    let count = |field: &str| stats[field].as_u64().unwrap_or(0);
    Ok(count("accepted").saturating_sub(count("succeeded") + count("dead_lettered")))
}

/// Resident memory of this process, from `/proc/self/status` (Linux only).
fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
