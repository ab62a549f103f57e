//! A standalone flaky HTTP service to relay to, for demos and tests.
//!
//! `POST /work` answers after a drawn latency, failing at the configured
//! rate (or as the current fault mode says); each success is one side
//! effect, recorded in a [`Ledger`] under the request's `Idempotency-Key`.
//! Faults are switched at runtime, so a demo can start an outage or a
//! brownout while load is running and end it later:
//!
//! - `GET /admin` — current fault settings and call counts;
//! - `POST /admin` — change any of them (`{"mode": "outage"}`, `{"failure_rate": 0}`);
//! - `GET /effects` — side effects and duplicates; `GET /effects/{key}` — one key;
//! - `GET /health`.

use super::flaky::{FaultConfig, FaultMode, LatencyKind};
use super::ledger::{Ledger, LedgerReport};
use crate::rng::{Domain, Seed, Stream};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `downstream`'s command line.
#[derive(Clone, Debug, clap::Args)]
pub struct DownstreamArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "DOWNSTREAM_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Probability that a call fails (503).
    #[arg(long, env = "DOWNSTREAM_FAILURE_RATE", default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Constant or mean latency.
    #[arg(long, env = "DOWNSTREAM_LATENCY_MS", default_value_t = 10.0)]
    pub latency_ms: f64,
    #[arg(long, value_enum, default_value = "constant")]
    pub latency_kind: LatencyKind,
    /// Fault at start; change it at runtime with `POST /admin`.
    #[arg(long, value_enum, default_value = "normal")]
    pub mode: FaultMode,
    /// Seed of the latency and failure draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Distinct idempotency keys tracked for duplicates.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys_max: usize,
}

/// A resolved downstream service configuration.
#[derive(Clone, Debug)]
pub struct DownstreamSettings {
    pub listen: SocketAddr,
    pub fault: FaultConfig,
    pub keys_max: usize,
}

/// Largest `POST /work` body accepted.
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

impl DownstreamArgs {
    pub fn resolve(&self) -> anyhow::Result<DownstreamSettings> {
        let fault = FaultConfig {
            failure_rate: self.failure_rate,
            latency_ms: self.latency_ms,
            latency: self.latency_kind,
            mode: self.mode,
            seed: self.seed,
            ..FaultConfig::default()
        };
        fault.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(self.keys_max >= 1, "`keys_max`: must be ≥ 1");
        Ok(DownstreamSettings {
            listen: self.listen,
            fault,
            keys_max: self.keys_max,
        })
    }
}

struct Inner {
    fault: FaultConfig,
    rng: Stream,
    ledger: Ledger,
    calls: u64,
    failed: u64,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    /// The state; a panic elsewhere while it was held leaves plain counters,
    /// still usable, so a poisoned lock is taken over rather than spread.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The service's routes over fresh state.
pub fn router(settings: &DownstreamSettings) -> Router {
    let inner = Inner {
        fault: settings.fault.clone(),
        rng: Seed(settings.fault.seed).stream(Domain::Downstream, 0),
        ledger: Ledger::new(settings.keys_max),
        calls: 0,
        failed: 0,
    };
    Router::new()
        .route("/work", post(work))
        .route("/admin", get(admin).post(change))
        .route("/effects", get(effects))
        .route("/effects/{key}", get(effects_of))
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "alive"})) }),
        )
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(Shared(Arc::new(Mutex::new(inner))))
}

async fn work(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fate = {
        let mut s = shared.lock();
        s.calls += 1;
        let Inner { fault, rng, .. } = &mut *s;
        fault.draw(rng)
    };
    tokio::time::sleep(fate.delay).await;
    if !fate.ok {
        shared.lock().failed += 1;
        let body = serde_json::json!({"ok": false, "error": "injected failure"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let effect = shared.lock().ledger.record(key.as_deref());
    let body = serde_json::json!({
        "ok": true,
        "key": key,
        "effect": effect,
        "payload_bytes": body.len(),
    });
    Json(body).into_response()
}

#[derive(Serialize)]
struct AdminView {
    fault: FaultConfig,
    calls: u64,
    failed: u64,
}

async fn admin(State(shared): State<Shared>) -> Json<AdminView> {
    let s = shared.lock();
    Json(AdminView {
        fault: s.fault.clone(),
        calls: s.calls,
        failed: s.failed,
    })
}

/// A partial change of the fault settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultPatch {
    failure_rate: Option<f64>,
    latency_ms: Option<f64>,
    latency: Option<LatencyKind>,
    mode: Option<FaultMode>,
    brownout_latency_factor: Option<f64>,
    brownout_failure_rate: Option<f64>,
    hang_ms: Option<f64>,
}

impl FaultPatch {
    fn apply(self, f: &mut FaultConfig) {
        let FaultPatch {
            failure_rate,
            latency_ms,
            latency,
            mode,
            brownout_latency_factor,
            brownout_failure_rate,
            hang_ms,
        } = self;
        f.failure_rate = failure_rate.unwrap_or(f.failure_rate);
        f.latency_ms = latency_ms.unwrap_or(f.latency_ms);
        f.latency = latency.unwrap_or(f.latency);
        f.mode = mode.unwrap_or(f.mode);
        f.brownout_latency_factor = brownout_latency_factor.unwrap_or(f.brownout_latency_factor);
        f.brownout_failure_rate = brownout_failure_rate.unwrap_or(f.brownout_failure_rate);
        f.hang_ms = hang_ms.unwrap_or(f.hang_ms);
    }
}

async fn change(State(shared): State<Shared>, body: Bytes) -> Response {
    let patch: FaultPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("not a fault change: {e}")),
    };
    let mut s = shared.lock();
    let mut next = s.fault.clone();
    patch.apply(&mut next);
    if let Err(e) = next.validate() {
        return bad_request(e.to_string());
    }
    tracing::info!(fault = ?next, "downstream fault changed");
    s.fault = next.clone();
    Json(next).into_response()
}

fn bad_request(detail: String) -> Response {
    let body = serde_json::json!({"status": 400, "title": "Bad request", "detail": detail});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn effects(State(shared): State<Shared>) -> Json<LedgerReport> {
    Json(shared.lock().ledger.report())
}

async fn effects_of(State(shared): State<Shared>, Path(key): Path<String>) -> Response {
    let count = shared.lock().ledger.count(&key);
    Json(serde_json::json!({"key": key, "effects": count})).into_response()
}

/// A running downstream service.
pub struct DownstreamService {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl DownstreamService {
    /// Binds and serves in the background on the current runtime.
    pub async fn spawn(settings: &DownstreamSettings) -> std::io::Result<DownstreamService> {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(settings);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(DownstreamService {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// `http://addr`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits for calls in progress to end.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

impl Drop for DownstreamService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `downstream`: runs the service until Ctrl-C or SIGTERM.
pub fn run_downstream(args: &DownstreamArgs) -> anyhow::Result<()> {
    super::logging::init();
    let settings = args.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let service = DownstreamService::spawn(&settings).await?;
        tracing::info!(addr = %service.addr, fault = ?settings.fault, "downstream listening");
        super::shutdown::signal().await;
        tracing::info!("downstream stopping");
        service.stop().await?;
        Ok(())
    })
}
