//! The HTTP API over the relay's task.
//!
//! Handlers are thin: they check what only HTTP can get wrong (media type,
//! size, signature, JSON syntax, the idempotency key's shape), turn the
//! request into a relay [`Request`], ask the relay's task, and map its
//! [`Answer`] onto a status code. Everything about queues, keys, retries and
//! dead letters is the relay's; nothing here second-guesses it.

use super::actor::{Command, RelayHandle, Unavailable};
use super::auth::{self, OperatorAuth};
use super::config::Settings;
use super::correlation::{self, CorrelationId};
use super::job_handle::{self, HandleError};
use super::limit_log::ListenerStats;
use super::metrics;
use super::problem::Problem;
use super::replay_guard::{Refused, ReplayGuard};
use super::routes::RouteTable;
use super::signature::{self, Presented, SignatureError, Signed, Signer};
use super::store::postgres::claims::{Claim, Claims};
use super::store::StoreError;
use super::views::{body_json, status_url, HttpRejections, JobView, LetterView, StatsView};
use crate::relay::{Answer, JobId, Refusal, Request, RouteId, Routing};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Extension, Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-signature");
pub const SIGNATURE_TIMESTAMP: HeaderName = HeaderName::from_static("x-signature-timestamp");
pub const CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");

/// Dead letters listed per page, by default and at most.
const DLQ_PAGE_DEFAULT: usize = 100;
const DLQ_PAGE_MAX: usize = 1_000;
/// Ids accepted in one `POST /dlq/redrive`.
const REDRIVE_IDS_MAX: usize = 10_000;
/// Longest `X-Client-Id` honoured.
const CLIENT_ID_BYTES_MAX: usize = 128;

/// What the HTTP layer checks before the relay sees a request.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    pub body_bytes_max: usize,
    pub signer: Option<Signer>,
    pub key_bytes_max: usize,
    /// Seconds a signature's timestamp may be off, either way.
    pub signature_window_s: u64,
    /// Bound of the seen-signature cache.
    pub replay_cache_max: usize,
    pub operator: OperatorAuth,
    /// PostgreSQL replicas: idempotency keys claimed across replicas, and
    /// status look-ups of jobs this replica does not hold.
    pub claims: Option<Arc<Claims>>,
    /// `POST /relay/{name}`'s names, and each route's cache key.
    pub routes: RouteTable,
}

impl HttpPolicy {
    /// The policy `settings` ask for. Warns when operator endpoints or
    /// submissions are open on a non-loopback address.
    pub fn from_settings(settings: &Settings) -> HttpPolicy {
        let server = &settings.server;
        let policy = HttpPolicy {
            body_bytes_max: server.body_bytes_max,
            signer: server
                .hmac_secret
                .as_ref()
                .map(|s| Signer::new(s.0.as_bytes())),
            key_bytes_max: settings.relay.idempotency.key_bytes_max,
            signature_window_s: server.signature_window_s,
            replay_cache_max: server.replay_cache_max,
            operator: OperatorAuth::new(server.operator_token.as_ref().map(|t| t.0.as_str())),
            claims: None,
            routes: RouteTable::new(&settings.relay, &settings.routes),
        };
        if !server.listen.ip().is_loopback() {
            if !policy.operator.has_token() {
                tracing::warn!(listen = %server.listen, "no operator token: /dlq, /stats and /metrics answer only loopback peers (403 to others); set --operator-token-file");
            }
            if policy.signer.is_none() {
                tracing::warn!(listen = %server.listen, "no HMAC secret: anyone who reaches this address can submit jobs; set --hmac-secret-file");
            }
        }
        policy
    }
}

/// Counts of requests refused by the HTTP layer itself.
#[derive(Debug, Default)]
struct Rejections {
    malformed: AtomicU64,
    too_large: AtomicU64,
    unsupported_media_type: AtomicU64,
    bad_signature: AtomicU64,
    bad_key: AtomicU64,
    busy: AtomicU64,
    replay_cache_full: AtomicU64,
    /// Shared with the operator guard.
    operator_refused: Arc<AtomicU64>,
}

impl Rejections {
    fn snapshot(&self) -> HttpRejections {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpRejections {
            malformed: get(&self.malformed),
            too_large: get(&self.too_large),
            unsupported_media_type: get(&self.unsupported_media_type),
            bad_signature: get(&self.bad_signature),
            bad_key: get(&self.bad_key),
            busy: get(&self.busy),
            replay_cache_full: get(&self.replay_cache_full),
            operator_refused: get(&self.operator_refused),
        }
    }

    fn count(&self, problem: &Problem) {
        let by_slug = match problem.slug() {
            "bad-idempotency-key" => Some(&self.bad_key),
            "replay-cache-full" => Some(&self.replay_cache_full),
            _ => None,
        };
        if let Some(counter) = by_slug {
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let counter = match problem.status() {
            StatusCode::BAD_REQUEST => &self.malformed,
            StatusCode::PAYLOAD_TOO_LARGE => &self.too_large,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => &self.unsupported_media_type,
            StatusCode::UNAUTHORIZED => &self.bad_signature,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct AppState {
    relay: RelayHandle,
    policy: HttpPolicy,
    rejections: Rejections,
    /// What the connection limits did, for `/stats` and `/metrics`.
    listener: Arc<ListenerStats>,
    replays: Mutex<ReplayGuard>,
}

/// Shared by every handler; one reference count per request.
type App = Arc<AppState>;

/// Every route, the 404 and 405 fallbacks, the body limit and the
/// correlation-id layer. `listener` is where the connection limits under
/// these routes count what they did.
pub fn router(relay: RelayHandle, policy: HttpPolicy, listener: Arc<ListenerStats>) -> Router {
    let limit = policy.body_bytes_max;
    job_handle::init();
    let guard = auth::Guard {
        auth: policy.operator.clone(),
        refused: Arc::default(),
    };
    let replays = ReplayGuard::new(policy.replay_cache_max, policy.signature_window_s);
    let state = Arc::new(AppState {
        relay,
        policy,
        rejections: Rejections {
            operator_refused: guard.refused.clone(),
            ..Rejections::default()
        },
        replays: Mutex::new(replays),
        listener,
    });
    // Other clients' payloads, redrives and the server's figures.
    let operator = Router::new()
        .route("/dlq", get(dlq_list))
        .route("/dlq/redrive", post(dlq_redrive))
        // The route's first name, kept for existing callers.
        .route("/dlq/replay", post(dlq_redrive))
        .route("/dlq/{id}", get(dlq_get))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(
            guard,
            auth::require_operator,
        ));
    Router::new()
        .route("/relay", post(submit))
        // A job's handle to look at, or a route's name to submit to.
        .route("/relay/{id}", get(job_status).post(submit_to))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(operator)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(correlation::layer))
        .with_state(state)
}

/// `POST /relay`: to the default route.
async fn submit(State(app): State<App>, request: axum::extract::Request) -> Response {
    submit_on(app, RouteId::DEFAULT, request).await
}

/// `POST /relay/{route}`; a name that is no route is 404, saying which are.
async fn submit_to(
    State(app): State<App>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Response {
    match app.policy.routes.resolve(&name) {
        Some(route) => submit_on(app, route, request).await,
        None => {
            let cid = match request.extensions().get::<CorrelationId>() {
                Some(CorrelationId(cid)) => cid.clone(),
                None => Arc::from("none"),
            };
            let names: Vec<&str> = app.policy.routes.names().iter().map(|n| &**n).collect();
            let problem = Problem::new(
                StatusCode::NOT_FOUND,
                "no-such-route",
                "Not found",
                format!(
                    "no route named `{}`: this relay's routes are {} (POST /relay reaches {})",
                    name.escape_debug(),
                    names.join(", "),
                    names.first().copied().unwrap_or("none"),
                ),
            );
            problem.correlation_id(&cid).into_response()
        }
    }
}

/// Takes the request whole: the headers are read in place rather than
/// copied, since this is the path every job comes through.
async fn submit_on(app: App, route: RouteId, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let cid = match parts.extensions.get::<CorrelationId>() {
        Some(CorrelationId(cid)) => cid.clone(),
        None => Arc::from("none"),
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let body = read_body(body, app.policy.body_bytes_max).await;
    let (request, routing) = match app.check(peer, route, &parts, body) {
        Ok(r) => r,
        Err(problem) => {
            let label = client_label(&parts.headers);
            tracing::debug!(status = problem.status().as_u16(), detail = %problem.detail, %peer, client_label = label, "refused by the HTTP layer");
            return app.refuse(problem, &cid);
        }
    };
    // Replicas: the key is claimed across them before this relay admits it.
    let claimed = match (&app.policy.claims, &request.key) {
        (Some(claims), Some(key)) => match claims.claim(key, request.fingerprint).await {
            Ok(Claim::Local { fresh }) => fresh.then(|| (claims.clone(), key.clone())),
            Ok(Claim::Known(answer)) => return answer_response(answer, &cid, false),
            Err(e) => {
                tracing::warn!(error = %e, "idempotency key not claimed");
                return store_unavailable().correlation_id(&cid).into_response();
            }
        },
        _ => None,
    };
    let submit = |cid, reply| Command::Submit {
        request,
        routing,
        cid,
        reply,
    };
    let answer = app.ask_for(&cid, submit).await;
    if let Some((claims, key)) = claimed {
        if !matches!(answer, Ok(Answer::Accepted { .. })) {
            claims.release(&key).await;
        }
    }
    match answer {
        Ok(a) => answer_response(a, &cid, app.relay.is_draining()),
        Err(busy) => busy,
    }
}

impl AppState {
    /// The HTTP-level checks, in order: media type, size, idempotency key
    /// (the signature covers it), signature, JSON.
    fn check(
        &self,
        peer: SocketAddr,
        route: RouteId,
        parts: &Parts,
        body: Result<Bytes, Problem>,
    ) -> Result<(Request<Arc<str>, Bytes>, Routing), Problem> {
        let headers = &parts.headers;
        require_json(headers)?;
        let body = body?;
        let key = idempotency_key(headers, self.policy.key_bytes_max)?;
        if let Some(signer) = &self.policy.signer {
            self.check_signature(signer, parts, key.as_deref(), &body)?;
        }
        if let Err(e) = super::json::validate(&body) {
            return Err(Problem::bad_request(
                "malformed-json",
                format!("the body is not valid JSON: {e}"),
            ));
        }
        let fingerprint = fingerprint(&body);
        let routing = Routing {
            route,
            cache_key: self
                .policy
                .routes
                .cache_key(route)
                .of(headers, &body, fingerprint),
        };
        let request = Request {
            client: client_id(peer),
            key,
            fingerprint,
            payload: body,
        };
        Ok((request, routing))
    }

    /// Verifies the request's signature, then admits it to the replay guard.
    fn check_signature(
        &self,
        signer: &Signer,
        parts: &Parts,
        key: Option<&str>,
        body: &[u8],
    ) -> Result<(), Problem> {
        let values = |name| -> Vec<&[u8]> {
            parts
                .headers
                .get_all(name)
                .iter()
                .map(HeaderValue::as_bytes)
                .take(2)
                .collect()
        };
        let (signatures, timestamps) = (values(SIGNATURE), values(SIGNATURE_TIMESTAMP));
        let presented = Presented {
            signatures: &signatures,
            timestamps: &timestamps,
        };
        let signed = Signed {
            method: parts.method.as_str(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or(parts.uri.path(), |p| p.as_str()),
            timestamp: 0,
            key,
            body,
        };
        let now = signature::unix_now();
        let verified = signer
            .verify(presented, signed, now, self.policy.signature_window_s)
            .map_err(signature_problem)?;
        let admitted = self
            .replays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(verified.mac, verified.timestamp, now);
        admitted.map_err(replay_problem)
    }

    /// Counts a problem the HTTP layer answers itself, and answers it.
    fn refuse(&self, problem: Problem, cid: &Arc<str>) -> Response {
        self.rejections.count(&problem);
        problem.correlation_id(cid).into_response()
    }

    /// Asks the relay's task on behalf of request `cid`: its reply, or the
    /// answer to give when the task cannot take the question.
    async fn ask_for<T>(
        &self,
        cid: &Arc<str>,
        make: impl FnOnce(Arc<str>, tokio::sync::oneshot::Sender<T>) -> Command,
    ) -> Result<T, Response> {
        let for_relay = cid.clone();
        self.relay
            .ask(|reply| make(for_relay, reply))
            .await
            .map_err(|e| self.busy(e, cid))
    }

    fn busy(&self, e: Unavailable, cid: &Arc<str>) -> Response {
        self.rejections.busy.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "relay task unavailable");
        let problem = match e {
            Unavailable::Store => store_unavailable(),
            _ => Problem::busy(e.to_string()),
        };
        problem.correlation_id(cid).into_response()
    }
}

/// Reads the whole body, up to `limit` bytes (413 beyond).
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            cause = c.source();
        }
        Problem::bad_request(
            "unreadable-body",
            format!("the body could not be read: {e}"),
        )
    })
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Content too large",
        "the body is over the server's limit",
    )
}

/// `Content-Type` must be JSON: `application/json` or `application/*+json`
/// (any case, parameters ignored).
fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim());
    let ok = media.is_some_and(|m| {
        let starts = |p: &str| m.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
        let ends = |p: &str| {
            m.len() >= p.len()
                && m.get(m.len() - p.len()..)
                    .is_some_and(|t| t.eq_ignore_ascii_case(p))
        };
        m.eq_ignore_ascii_case("application/json")
            || (starts("application/") && ends("+json") && m.len() > "application/+json".len())
    });
    if ok {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        format!(
            "the body must be application/json, got {}",
            media.unwrap_or("no Content-Type")
        ),
    ))
}

fn body_problem(rejection: BytesRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        Problem::bad_request("unreadable-body", rejection.body_text())
    }
}

fn signature_problem(e: SignatureError) -> Problem {
    let slug = match e {
        SignatureError::Stale { .. } => "stale-signature",
        _ => "bad-signature",
    };
    Problem::new(
        StatusCode::UNAUTHORIZED,
        slug,
        "Unauthorized",
        e.to_string(),
    )
}

fn replay_problem(refused: Refused) -> Problem {
    match refused {
        Refused::Replayed => Problem::new(
            StatusCode::UNAUTHORIZED,
            "signature-replayed",
            "Unauthorized",
            "this signature was already used: sign every request anew with the current \
             timestamp (a retry too; its Idempotency-Key keeps it from running twice)",
        ),
        Refused::Full { retry_after_s } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "replay-cache-full",
            "Service unavailable",
            "the server remembers as many recent signatures as it can hold: try again \
             after Retry-After (an operator can raise server.replay_cache_max or \
             shorten server.signature_window_s)",
        )
        .retry_after(Duration::from_secs(retry_after_s)),
    }
}

/// The `Idempotency-Key`, if any: one header, 1 to `bytes_max` visible ASCII characters.
fn idempotency_key(headers: &HeaderMap, bytes_max: usize) -> Result<Option<Arc<str>>, Problem> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |detail: String| Problem::bad_request("bad-idempotency-key", detail);
    if values.next().is_some() {
        return Err(bad("send one Idempotency-Key header, not several".into()));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > bytes_max {
        return Err(bad(format!(
            "the Idempotency-Key must be 1 to {bytes_max} bytes, got {}",
            bytes.len()
        )));
    }
    if !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(bad(
            "the Idempotency-Key must be visible ASCII characters".into()
        ));
    }
    Ok(Some(Arc::from(String::from_utf8_lossy(bytes))))
}

/// Who is asking, for the per-client rate limit: something the client
/// cannot choose. The peer's IPv4 address, or its IPv6 /64 (one host
/// usually holds a whole /64), not its port; hashed with a fixed key so a
/// client keeps its bucket across connections and restarts.
fn client_id(peer: SocketAddr) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    match peer.ip().to_canonical() {
        IpAddr::V4(ip) => {
            h.write_u8(4);
            h.write(&ip.octets());
        }
        IpAddr::V6(ip) => {
            h.write_u8(6);
            h.write(&ip.octets()[..8]);
        }
    }
    h.finish()
}

/// `X-Client-Id`, when usable: a label for log lines, never a key.
fn client_label(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(CLIENT_ID)
        .filter(|v| !v.is_empty() && v.len() <= CLIENT_ID_BYTES_MAX)
        .and_then(|v| v.to_str().ok())
}

/// The first 8 bytes of the body's SHA-256: stable across runs and
/// machines, and no client can make two payloads collide on purpose.
pub fn fingerprint(body: &[u8]) -> u64 {
    let digest = Sha256::digest(body);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Maps the relay's answer onto HTTP.
fn answer_response(answer: Answer<Bytes>, cid: &Arc<str>, draining: bool) -> Response {
    match answer {
        Answer::Accepted { job } => {
            // Written by hand: this answer is the hot path, and its shape is fixed.
            let url = status_url(job);
            let body = format!(r#"{{"job":"{job}","status_url":"{url}","state":"queued"}}"#);
            let mut r = (StatusCode::ACCEPTED, body).into_response();
            let headers = r.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Ok(v) = HeaderValue::from_str(&url) {
                headers.insert(LOCATION, v);
            }
            r
        }
        Answer::Replayed { job, response } => {
            let body = serde_json::json!({
                "job": job,
                "status_url": status_url(job),
                "state": "succeeded",
                "response": body_json(&response),
            });
            let mut r = (StatusCode::OK, Json(body)).into_response();
            r.headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            r
        }
        Answer::Fallback { response, from } => {
            let body = serde_json::json!({
                "state": "fallback",
                "fallback": from.name(),
                "response": body_json(&response),
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        Answer::Refused {
            why,
            retry_after,
            job,
        } => refusal(why, retry_after, job, draining)
            .correlation_id(cid)
            .into_response(),
    }
}

fn refusal(
    why: Refusal,
    retry_after: Option<Duration>,
    job: Option<JobId>,
    draining: bool,
) -> Problem {
    use StatusCode as S;
    let p = match why {
        Refusal::RateLimited => Problem::new(S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests", "this client is over its rate limit"),
        Refusal::Shed => Problem::new(S::TOO_MANY_REQUESTS, "queue-full", "Too many requests", "the queue is full"),
        Refusal::Unavailable if draining => Problem::new(S::SERVICE_UNAVAILABLE, "draining", "Service unavailable", "the relay is shutting down and takes no new work"),
        Refusal::Unavailable => Problem::new(S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", "the downstream is failing (breaker open) and the queue is full, or the dead-letter queue is full"),
        Refusal::Conflict => Problem::new(S::CONFLICT, "in-flight", "Conflict", "a request with this Idempotency-Key is still being processed"),
        Refusal::Mismatch => Problem::new(S::UNPROCESSABLE_ENTITY, "key-reused", "Unprocessable content", "this Idempotency-Key was used with a different body"),
        Refusal::KeysFull => Problem::new(S::SERVICE_UNAVAILABLE, "keys-full", "Service unavailable", "every idempotency record is in use"),
        Refusal::BadKey => Problem::bad_request("idempotency-key-required", "this server requires an Idempotency-Key header"),
    };
    let p = match retry_after {
        Some(wait) => p.retry_after(wait),
        None => p,
    };
    match job {
        Some(j) => p.job(j),
        None => p,
    }
}

fn parse_job(raw: &str) -> Result<JobId, Problem> {
    raw.parse::<JobId>()
        .map_err(|e| Problem::bad_request("bad-job-id", e))
}

/// A status handle: 400 when it cannot be one, 404 when it is not this
/// server's (like an unknown job, so a scan learns nothing).
fn parse_handle(raw: &str) -> Result<JobId, Problem> {
    job_handle::parse(raw).map_err(|e| match e {
        HandleError::Malformed(_) => Problem::bad_request("bad-job-handle", e.to_string()),
        HandleError::Unknown(_) => Problem::not_found(e.to_string()),
    })
}

/// Runs `ask` and answers its result as JSON, or a problem.
async fn reply<T: serde::Serialize>(
    app: &App,
    cid: &Arc<str>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Command,
) -> Response {
    match app.relay.ask(make).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => app.busy(e, cid),
    }
}

/// `GET …/{id}`: parses the id, asks the relay's task, answers the view,
/// or 404 with `missing(id)`.
async fn look_up<V: serde::Serialize>(
    app: &App,
    cid: &Arc<str>,
    job: Result<JobId, Problem>,
    make: impl FnOnce(JobId, tokio::sync::oneshot::Sender<Option<V>>) -> Command,
    missing: impl FnOnce(JobId) -> String,
) -> Response {
    let job = match job {
        Ok(j) => j,
        Err(p) => return p.correlation_id(cid).into_response(),
    };
    match app.relay.ask(|reply| make(job, reply)).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => Problem::not_found(missing(job))
            .correlation_id(cid)
            .into_response(),
        Err(e) => app.busy(e, cid),
    }
}

/// A job this replica does not hold, looked up in the shared database.
async fn look_up_shared(app: &App, job: JobId) -> Option<JobView> {
    let claims = app.policy.claims.as_ref()?;
    match claims.status(job).await {
        // Under its route's name, which this replica may not have.
        Ok(shared) => shared.map(|s| JobView {
            route: s.route,
            ..JobView::new(&s.status, &app.policy.routes)
        }),
        Err(e) => {
            tracing::debug!(error = %e, "shared status look-up failed");
            None
        }
    }
}

async fn job_status(
    State(app): State<App>,
    Extension(CorrelationId(cid)): Extension<CorrelationId>,
    Path(raw): Path<String>,
) -> Response {
    let job = match parse_handle(&raw) {
        Ok(j) => j,
        Err(p) => return p.correlation_id(&cid).into_response(),
    };
    match app.relay.ask(|reply| Command::Status { job, reply }).await {
        Ok(Some(view)) => Json(view).into_response(),
        // Replicas: another one's job, or one adopted here under a new slot.
        Ok(None) => match look_up_shared(&app, job).await {
            Some(view) => Json(view).into_response(),
            None => Problem::not_found(format!("no job {raw} (never accepted, or forgotten)"))
                .correlation_id(&cid)
                .into_response(),
        },
        Err(e) => app.busy(e, &cid),
    }
}

/// `?after=<job>&limit=<n>` of `GET /dlq`.
fn dlq_query(raw: Option<&str>) -> Result<(Option<JobId>, usize), Problem> {
    let (mut after, mut limit) = (None, DLQ_PAGE_DEFAULT);
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "after" => after = Some(parse_job(value)?),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=DLQ_PAGE_MAX).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "bad-query",
                            format!("limit must be 1 to {DLQ_PAGE_MAX}"),
                        )
                    })?;
            }
            other => {
                return Err(Problem::bad_request(
                    "bad-query",
                    format!("unknown query parameter `{other}` (after, limit)"),
                ))
            }
        }
    }
    Ok((after, limit))
}

async fn dlq_list(
    State(app): State<App>,
    Extension(CorrelationId(cid)): Extension<CorrelationId>,
    RawQuery(query): RawQuery,
) -> Response {
    let (after, limit) = match dlq_query(query.as_deref()) {
        Ok(q) => q,
        Err(p) => return p.correlation_id(&cid).into_response(),
    };
    let page = |reply| Command::DeadLetters {
        after,
        limit,
        reply,
    };
    let Some(claims) = &app.policy.claims else {
        return reply(&app, &cid, page).await;
    };
    // Shared: this replica's bounds and counts (no letters: the page comes
    // from the database), every replica's letters.
    let counts = |reply| Command::DeadLetters {
        after: None,
        limit: 0,
        reply,
    };
    let mut local = match app.relay.ask(counts).await {
        Ok(p) => p,
        Err(e) => return app.busy(e, &cid),
    };
    match claims.letters(after, limit + 1).await {
        Ok(mut letters) => {
            local.next_after = (letters.len() > limit).then(|| letters[limit - 1].letter.job);
            letters.truncate(limit);
            local.letters = letters
                .iter()
                .map(|l| LetterView::shared(l, false, &app.policy.routes))
                .collect();
            Json(local).into_response()
        }
        Err(e) => shared_dlq_unavailable(&e, &cid),
    }
}

/// 503 for a shared dead-letter queue the database cannot show now.
fn shared_dlq_unavailable(e: &StoreError, cid: &Arc<str>) -> Response {
    tracing::warn!(error = %e, "the shared dead-letter queue is unreachable");
    store_unavailable().correlation_id(cid).into_response()
}

async fn dlq_get(
    State(app): State<App>,
    Extension(CorrelationId(cid)): Extension<CorrelationId>,
    Path(raw): Path<String>,
) -> Response {
    let letter = |job, reply| Command::DeadLetter { job, reply };
    let missing = |job| format!("no dead letter {job}");
    let (Some(claims), Ok(job)) = (&app.policy.claims, parse_job(&raw)) else {
        return look_up(&app, &cid, parse_job(&raw), letter, missing).await;
    };
    match app.relay.ask(|reply| letter(job, reply)).await {
        Ok(Some(view)) => return Json(view).into_response(),
        Ok(None) => {}
        Err(e) => return app.busy(e, &cid),
    }
    match claims.letter(job).await {
        Ok(Some(l)) => Json(LetterView::shared(&l, true, &app.policy.routes)).into_response(),
        Ok(None) => Problem::not_found(missing(job))
            .correlation_id(&cid)
            .into_response(),
        Err(e) => shared_dlq_unavailable(&e, &cid),
    }
}

/// The body of `POST /dlq/redrive`: empty or `{}` redrives all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    ids: Option<Vec<JobId>>,
}

fn redrive_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<Vec<JobId>>, Problem> {
    let body = body.map_err(body_problem)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    require_json(headers)?;
    let parsed: RedriveBody = serde_json::from_slice(&body).map_err(|e| {
        Problem::bad_request(
            "malformed-json",
            format!("expected {{\"ids\": [job, …]}}: {e}"),
        )
    })?;
    match parsed.ids {
        Some(ids) if ids.len() > REDRIVE_IDS_MAX => Err(Problem::bad_request(
            "too-many-ids",
            format!("at most {REDRIVE_IDS_MAX} ids per redrive"),
        )),
        Some(ids) => Ok(Some(ids)),
        None => Ok(None),
    }
}

async fn dlq_redrive(
    State(app): State<App>,
    Extension(CorrelationId(cid)): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut letters = match redrive_body(&headers, body) {
        Ok(l) => l,
        Err(p) => return app.refuse(p, &cid),
    };
    // Shared: the other replicas' letters are marked for their holders;
    // this replica redrives its own.
    let mut asked = Vec::new();
    if let Some(claims) = &app.policy.claims {
        asked = match claims.ask_redrive(letters.as_deref()).await {
            Ok(marked) => marked,
            Err(e) => return shared_dlq_unavailable(&e, &cid),
        };
        if let Some(ids) = &mut letters {
            ids.retain(|id| !asked.contains(id));
        }
    }
    let redrive = |cid, reply| Command::Redrive {
        letters,
        cid,
        reply,
    };
    match app.ask_for(&cid, redrive).await {
        Ok(mut report) => {
            report.asked_of_other_replicas = asked.len();
            Json(report).into_response()
        }
        Err(busy) => busy,
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "alive"}))
}

async fn ready(
    State(app): State<App>,
    Extension(CorrelationId(cid)): Extension<CorrelationId>,
) -> Response {
    if app.relay.is_draining() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "Service unavailable",
            "draining: finishing accepted work, taking no new work",
        )
        .correlation_id(&cid)
        .into_response();
    }
    if app.relay.gauges.store_failing.load(Ordering::Relaxed) {
        return store_unavailable().correlation_id(&cid).into_response();
    }
    super::views::ready(&app.relay.gauges.dlq, &cid)
}

/// The store cannot commit: nothing new can be promised.
fn store_unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store-unavailable",
        "Service unavailable",
        "the store cannot commit (see the server's log): new work is refused until it can",
    )
    .retry_after(std::time::Duration::from_secs(1))
}

impl AppState {
    async fn stats_view(&self) -> Result<StatsView, Unavailable> {
        let mut view = self.relay.ask(|reply| Command::Stats { reply }).await?;
        view.http_rejected = self.rejections.snapshot();
        view.connections = self.listener.snapshot();
        Ok(view)
    }
}

async fn stats(
    State(app): State<App>,
    Extension(CorrelationId(cid)): Extension<CorrelationId>,
) -> Response {
    match app.stats_view().await {
        Ok(view) => Json(view).into_response(),
        Err(e) => app.busy(e, &cid),
    }
}

async fn metrics_text(
    State(app): State<App>,
    Extension(CorrelationId(cid)): Extension<CorrelationId>,
) -> Response {
    match app.stats_view().await {
        Ok(view) => (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            )],
            metrics::render(&view),
        )
            .into_response(),
        Err(e) => app.busy(e, &cid),
    }
}

async fn not_found(uri: Uri, Extension(CorrelationId(cid)): Extension<CorrelationId>) -> Response {
    Problem::not_found(format!("no route for {}", uri.path()))
        .correlation_id(&cid)
        .into_response()
}

async fn method_not_allowed(
    method: Method,
    uri: Uri,
    Extension(CorrelationId(cid)): Extension<CorrelationId>,
) -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .correlation_id(&cid)
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn json_media_types_are_recognised() {
        assert!(require_json(&headers(&[("content-type", "application/json")])).is_ok());
        assert!(require_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )]))
        .is_ok());
        assert!(require_json(&headers(&[("content-type", "application/vnd.x+json")])).is_ok());
        assert!(require_json(&headers(&[("content-type", "text/plain")])).is_err());
        assert!(require_json(&headers(&[])).is_err());
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert_eq!(idempotency_key(&headers(&[]), 8).ok(), Some(None));
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", "abc")]), 8).ok(),
            Some(Some("abc".into()))
        );
        assert!(idempotency_key(&headers(&[("idempotency-key", "123456789")]), 8).is_err());
        assert!(idempotency_key(&headers(&[("idempotency-key", "a b")]), 8).is_err());
        assert!(idempotency_key(
            &headers(&[("idempotency-key", "a"), ("idempotency-key", "b")]),
            8
        )
        .is_err());
    }

    #[test]
    fn fingerprints_are_stable_and_clients_are_per_ip() {
        assert_eq!(fingerprint(b"{}"), fingerprint(b"{}"));
        assert_ne!(fingerprint(b"{}"), fingerprint(b"[]"));
        assert_eq!(fingerprint(b"abc"), 0xba78_16bf_8f01_cfea, "SHA-256 prefix");
        let a: SocketAddr = "127.0.0.1:1000".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:2000".parse().expect("addr");
        let c: SocketAddr = "127.0.0.2:1000".parse().expect("addr");
        assert_eq!(client_id(a), client_id(b));
        assert_ne!(client_id(a), client_id(c));
        let v6 = |s: &str| client_id(s.parse().expect("addr"));
        assert_eq!(
            v6("[2001:db8:1:2::1]:1"),
            v6("[2001:db8:1:2:ffff::9]:2"),
            "one /64"
        );
        assert_ne!(v6("[2001:db8:1:2::1]:1"), v6("[2001:db8:1:3::1]:1"));
        assert_eq!(
            v6("[::ffff:127.0.0.2]:1"),
            client_id(c),
            "IPv4-mapped is IPv4"
        );
        let named = headers(&[("x-client-id", "tenant-7")]);
        assert_eq!(client_label(&named), Some("tenant-7"));
    }

    /// Log lines written while `f` runs on this thread.
    fn logged(f: impl FnOnce()) -> String {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_exposed_address_without_token_or_secret_is_warned_about() {
        let mut s = Settings::default();
        let quiet = logged(|| {
            HttpPolicy::from_settings(&s);
        });
        assert!(quiet.is_empty(), "loopback: {quiet}");
        s.server.listen = "0.0.0.0:3000".parse().expect("addr");
        let loud = logged(|| {
            HttpPolicy::from_settings(&s);
        });
        assert!(loud.contains("no operator token"), "{loud}");
        assert!(loud.contains("no HMAC secret"), "{loud}");
        s.server.operator_token = Some(super::super::config::Secret("t".into()));
        s.server.hmac_secret = Some(super::super::config::Secret("h".into()));
        let set = logged(|| {
            HttpPolicy::from_settings(&s);
        });
        assert!(set.is_empty(), "both set: {set}");
    }

    #[test]
    fn dlq_query_parses_and_refuses() {
        assert_eq!(dlq_query(None).ok(), Some((None, DLQ_PAGE_DEFAULT)));
        assert_eq!(
            dlq_query(Some("after=0-5&limit=2")).ok(),
            Some((Some(JobId::new(0, 5)), 2))
        );
        assert!(dlq_query(Some("limit=0")).is_err());
        assert!(dlq_query(Some("after=x")).is_err());
        assert!(dlq_query(Some("foo=1")).is_err());
    }
}
