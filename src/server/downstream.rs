//! A standalone flaky HTTP service to relay to, for demos and tests.
//!
//! `POST /work` answers after a drawn latency, failing as the shared fault
//! model says (503 for a server error, 429 with `Retry-After` when
//! throttled, 400 for a client error); each success is one side effect,
//! recorded in a [`Ledger`] under the request's `Idempotency-Key`. A call
//! whose caller hangs up is still finished, as a real service finishes the
//! work it started; with `--ledger FILE` every side effect is also appended
//! to a file (its key, or a hash of a keyless payload, and its count), so
//! duplicates across a crash of the caller can be counted afterwards. With
//! `--scenario FILE` it serves that scenario's `[downstream]`, exactly what
//! `simulate` models, its windows counted from the service's start. Faults
//! are also switched at runtime, so a demo can start an outage or a
//! brownout while load is running and end it later:
//!
//! - `GET /admin` — the model, the switch, seconds since start and call counts;
//! - `POST /admin` — change the switch or the base rate (`{"mode": "outage"}`, `{"failure_rate": 0}`);
//! - `GET /effects` — side effects and duplicates; `GET /effects/{key}` — one key;
//! - `GET /health`.

use super::flaky::{FaultConfig, FaultMode, Flaky, LatencyKind, SharedFlaky};
use crate::fault::{DownstreamConfig, FailureMix, LatencyConfig, Ledger, LedgerReport, Switch};
use crate::relay::CallError;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `downstream`'s command line.
#[derive(Clone, Debug, clap::Args)]
pub struct DownstreamArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "DOWNSTREAM_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Serve this scenario's `[downstream]` (windows count from start),
    /// e.g. experiments/scenarios/outage.toml.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["failure_rate", "latency_ms", "latency_kind"])]
    pub scenario: Option<PathBuf>,
    /// Probability that a call fails (503).
    #[arg(long, env = "DOWNSTREAM_FAILURE_RATE", default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Constant, mean or median latency, as `--latency-kind` says.
    #[arg(long, env = "DOWNSTREAM_LATENCY_MS", default_value_t = 10.0)]
    pub latency_ms: f64,
    /// How answer times spread around `--latency-ms`.
    #[arg(long, value_enum, default_value = "constant")]
    pub latency_kind: LatencyKind,
    /// Fault at start; change it at runtime with `POST /admin`.
    #[arg(long, value_enum, default_value = "normal")]
    pub mode: FaultMode,
    /// Seed of the latency and failure draws (default: the scenario's seed, else 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Distinct idempotency keys tracked for duplicates.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys_max: usize,
    /// Calls answered at once; beyond, a call is refused at once with 503
    /// `busy` (a hang window would otherwise hold every call for its length).
    #[arg(long, default_value_t = 10_000)]
    pub in_flight_max: usize,
    /// Append each side effect to this file, one line each:
    /// `<key or sha256:payload-hash>\t<count>` (created if missing).
    #[arg(long, env = "DOWNSTREAM_LEDGER", value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

/// A resolved downstream service configuration.
#[derive(Clone, Debug)]
pub struct DownstreamSettings {
    pub listen: SocketAddr,
    pub fault: Flaky,
    pub keys_max: usize,
    pub in_flight_max: usize,
    /// Where side effects are appended, if anywhere.
    pub ledger: Option<PathBuf>,
}

/// Most calls `--in-flight-max` may allow at once.
const IN_FLIGHT_LIMIT: usize = 1_000_000;

/// Largest `POST /work` body accepted.
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The parts of a scenario file the service reads; the rest is the
/// simulator's.
#[derive(Deserialize)]
struct ScenarioDownstream {
    #[serde(default)]
    downstream: DownstreamConfig,
    seed: Option<u64>,
}

impl DownstreamArgs {
    pub fn resolve(&self) -> anyhow::Result<DownstreamSettings> {
        let fault = match &self.scenario {
            Some(path) => {
                let (model, seed) = read_scenario(path)?;
                Flaky {
                    model,
                    switch: Switch {
                        mode: self.mode,
                        ..Switch::default()
                    },
                    seed: self.seed.or(seed).unwrap_or(1),
                }
            }
            None => Flaky::from(&FaultConfig {
                failure_rate: self.failure_rate,
                latency_ms: self.latency_ms,
                latency: self.latency_kind,
                mode: self.mode,
                seed: self.seed.unwrap_or(1),
                ..FaultConfig::default()
            }),
        };
        fault.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(self.keys_max >= 1, "`--keys-max`: must be ≥ 1");
        anyhow::ensure!(
            (1..=IN_FLIGHT_LIMIT).contains(&self.in_flight_max),
            "`--in-flight-max`: must be between 1 and {IN_FLIGHT_LIMIT}"
        );
        Ok(DownstreamSettings {
            listen: self.listen,
            fault,
            keys_max: self.keys_max,
            in_flight_max: self.in_flight_max,
            ledger: self.ledger.clone(),
        })
    }
}

/// A scenario's `[downstream]` and seed, read by the same reader as
/// `simulate`, so an error names the file, line, column and field.
fn read_scenario(path: &std::path::Path) -> anyhow::Result<(DownstreamConfig, Option<u64>)> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the scenario file {origin}: {e}"))?;
    let doc = crate::toml_doc::TomlDoc::parse(origin, &text)?;
    let s: ScenarioDownstream = doc.read(|s: &ScenarioDownstream| {
        s.downstream.validate().map_err(|e| e.within("downstream"))
    })?;
    Ok((s.downstream, s.seed))
}

/// What the service counts beside the model.
struct Books {
    ledger: Ledger,
    calls: u64,
    failed: u64,
    /// The side-effect file, if one was asked for.
    file: Option<LedgerFile>,
}

/// Side effects appended to a file, one line each, written as they happen
/// (no buffer to lose when the service stops).
struct LedgerFile {
    path: PathBuf,
    file: std::fs::File,
    /// Set after a failed write: logged once, the service goes on.
    failed: bool,
}

impl LedgerFile {
    fn open(path: &std::path::Path) -> anyhow::Result<LedgerFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "`--ledger`: cannot open {} for appending: {e}",
                    path.display()
                )
            })?;
        Ok(LedgerFile {
            path: path.to_owned(),
            file,
            failed: false,
        })
    }

    /// One line: the key (or the payload's hash) and its count.
    fn append(&mut self, name: &str, count: u32) {
        use std::io::Write;
        let line = format!("{name}\t{count}\n");
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            if !self.failed {
                tracing::error!(path = %self.path.display(), error = %e, "cannot append to the ledger file: side effects are no longer written there");
            }
            self.failed = true;
        }
    }
}

/// How a keyless call is named in the ledger file: its payload's hash.
fn payload_name(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    format!("sha256:{}", hex::encode(&digest[..16]))
}

#[derive(Clone)]
struct Shared {
    flaky: SharedFlaky,
    books: Arc<Mutex<Books>>,
    /// One permit per call being answered: the bound on calls in flight.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// The counters; a panic elsewhere while they were held leaves plain
    /// numbers, still usable, so a poisoned lock is taken over.
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The service's routes over fresh state; the model's clock starts now.
/// Fails only when the ledger file cannot be opened.
pub fn router(settings: &DownstreamSettings) -> anyhow::Result<Router> {
    let books = Books {
        ledger: Ledger::new(
            settings.keys_max,
            settings.fault.model.honours_idempotency_key,
        ),
        calls: 0,
        failed: 0,
        file: settings
            .ledger
            .as_deref()
            .map(LedgerFile::open)
            .transpose()?,
    };
    let shared = Shared {
        flaky: SharedFlaky::start(&settings.fault),
        books: Arc::new(Mutex::new(books)),
        slots: Arc::new(tokio::sync::Semaphore::new(settings.in_flight_max)),
    };
    Ok(Router::new()
        .route("/work", post(work))
        .route("/admin", get(admin).post(change))
        .route("/effects", get(effects))
        .route("/effects/{key}", get(effects_of))
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "alive"})) }),
        )
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(shared))
}

/// A call runs in a task of its own: when the caller hangs up, the handler
/// is dropped but the work is finished (and its side effect recorded).
async fn work(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
        let body = serde_json::json!({"ok": false, "error": "busy"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let task = tokio::spawn(async move {
        let _slot = slot;
        finish_work(&shared, key, body).await
    });
    match task.await {
        Ok(response) => response,
        Err(e) => {
            let body = serde_json::json!({"ok": false, "error": format!("the call failed: {e}")});
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

async fn finish_work(shared: &Shared, key: Option<String>, body: Bytes) -> Response {
    shared.books().calls += 1;
    let (fate, in_flight) = shared.flaky.call();
    tokio::time::sleep(fate.delay).await;
    drop(in_flight);
    if let Err(kind) = fate.result {
        shared.books().failed += 1;
        let retry_after = shared.flaky.lock().retry_after();
        return failure(kind, retry_after);
    }
    let effect = {
        let mut books = shared.books();
        let before = key.as_deref().map_or(0, |k| books.ledger.count(k));
        let effect = books.ledger.record(key.as_deref());
        // A key the service honours and already served takes no new effect.
        let landed = key.is_none() || effect == 0 || effect != before;
        if let (Some(file), true) = (&mut books.file, landed) {
            let name = key.clone().unwrap_or_else(|| payload_name(&body));
            file.append(&name, effect);
        }
        effect
    };
    let body = serde_json::json!({
        "ok": true,
        "key": key,
        "effect": effect,
        "payload_bytes": body.len(),
    });
    Json(body).into_response()
}

/// An injected failure as HTTP: the status the relay classifies back into `kind`.
fn failure(kind: CallError, retry_after: Duration) -> Response {
    let status = match kind {
        CallError::Throttled => StatusCode::TOO_MANY_REQUESTS,
        CallError::ClientError => StatusCode::BAD_REQUEST,
        CallError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        CallError::ServerError => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::json!({"ok": false, "error": kind.name()});
    let mut response = (status, Json(body)).into_response();
    if kind == CallError::Throttled {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[derive(Serialize)]
struct AdminView {
    /// The runtime switch.
    fault: Switch,
    model: DownstreamConfig,
    elapsed_s: f64,
    calls: u64,
    failed: u64,
}

async fn admin(State(shared): State<Shared>) -> Json<AdminView> {
    let (fault, model, elapsed_s) = {
        let mut f = shared.flaky.lock();
        let elapsed_s = f.elapsed_s();
        (f.model().switch(), f.model().config().clone(), elapsed_s)
    };
    let b = shared.books();
    Json(AdminView {
        fault,
        model,
        elapsed_s,
        calls: b.calls,
        failed: b.failed,
    })
}

/// A partial change of the switch and the base behaviour; windows stay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultPatch {
    failure_rate: Option<f64>,
    failure_mix: Option<FailureMix>,
    latency: Option<LatencyConfig>,
    mode: Option<FaultMode>,
    brownout_latency_factor: Option<f64>,
    brownout_failure_rate: Option<f64>,
    hang_ms: Option<f64>,
}

impl FaultPatch {
    fn apply(self, model: &mut DownstreamConfig, switch: &mut Switch) {
        let FaultPatch {
            failure_rate,
            failure_mix,
            latency,
            mode,
            brownout_latency_factor,
            brownout_failure_rate,
            hang_ms,
        } = self;
        model.failure_rate = failure_rate.unwrap_or(model.failure_rate);
        model.failure_mix = failure_mix.unwrap_or(model.failure_mix);
        model.latency = latency.unwrap_or(model.latency);
        switch.mode = mode.unwrap_or(switch.mode);
        switch.brownout_latency_factor =
            brownout_latency_factor.unwrap_or(switch.brownout_latency_factor);
        switch.brownout_failure_rate =
            brownout_failure_rate.unwrap_or(switch.brownout_failure_rate);
        switch.hang_ms = hang_ms.unwrap_or(switch.hang_ms);
    }
}

async fn change(State(shared): State<Shared>, body: Bytes) -> Response {
    let patch: FaultPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("not a fault change: {e}")),
    };
    let mut f = shared.flaky.lock();
    let (mut model, mut switch) = (f.model().config().clone(), f.model().switch());
    patch.apply(&mut model, &mut switch);
    if let Err(e) = model.validate().and_then(|()| switch.validate()) {
        return bad_request(e.to_string());
    }
    tracing::info!(?switch, ?model, "downstream fault changed");
    f.model_mut().reconfigure(&model);
    f.model_mut().set_switch(switch);
    Json(switch).into_response()
}

fn bad_request(detail: String) -> Response {
    let body = serde_json::json!({"status": 400, "title": "Bad request", "detail": detail});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn effects(State(shared): State<Shared>) -> Json<LedgerReport> {
    Json(shared.books().ledger.report())
}

async fn effects_of(State(shared): State<Shared>, Path(key): Path<String>) -> Response {
    let count = shared.books().ledger.count(&key);
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
    pub async fn spawn(settings: &DownstreamSettings) -> anyhow::Result<DownstreamService> {
        let listener = super::listener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, task) = super::listener::serve(listener, router(settings)?);
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
