//! A span per job over OTLP/HTTP, when `[telemetry]` asks for one.
//!
//! Logs say what happened to one job at a time; a trace shows a job whole:
//! from its acceptance to its outcome, each attempt a child with its result,
//! its latency and the breaker's state when it started. A collector
//! (Jaeger, Tempo, an OpenTelemetry Collector) then answers "why did this
//! job take 4 s" without grepping.
//!
//! The actor calls [`Telemetry`] at five points (accepted, attempt started,
//! attempt done, finished, retracted); without `[telemetry]` each call is
//! one branch and nothing else. Times come from the actor's clock: relay
//! time is mapped onto the wall clock once, at start, so a span's
//! timestamps are the relay's own instants, not the export thread's.
//!
//! Bounds: at most `relay.jobs_max` job spans are open (the relay holds no
//! more live jobs); a job beyond it is counted, not traced. Ended spans wait
//! in the exporter's queue of `queue_spans_max`; beyond it the SDK drops
//! them. Exports leave from the SDK's own thread, through a hyper client on
//! a one-thread runtime of its own, so a slow or absent collector never
//! holds the relay's task.

use super::clock::Clock;
use crate::relay::{
    ensure, BreakerState, CallError, CallId, ConfigError, Finished, JobId, Outcome,
};
use crate::time::{duration_ms, Time};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Where traces go, and the exporter's bounds (`[telemetry]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`;
    /// spans are posted (protobuf) to `<otlp_endpoint>/v1/traces`.
    pub otlp_endpoint: String,
    /// `service.name` of every span.
    #[serde(default = "service_name_default")]
    pub service_name: String,
    /// Ended spans waiting for export; more are dropped.
    #[serde(default = "queue_spans_max_default")]
    pub queue_spans_max: usize,
    /// Spans per export request.
    #[serde(default = "batch_spans_max_default")]
    pub batch_spans_max: usize,
    /// How long ended spans wait to be sent in a batch, in ms.
    #[serde(default = "export_delay_ms_default")]
    pub export_delay_ms: u64,
    /// Bound on one export request, in ms.
    #[serde(default = "export_timeout_ms_default")]
    pub export_timeout_ms: u64,
}

fn service_name_default() -> String {
    "resilient-relay".to_owned()
}
fn queue_spans_max_default() -> usize {
    4_096
}
fn batch_spans_max_default() -> usize {
    512
}
fn export_delay_ms_default() -> u64 {
    1_000
}
fn export_timeout_ms_default() -> u64 {
    5_000
}

/// Upper bound on the export queue (a span with its attributes is about 1 KB).
const QUEUE_SPANS_LIMIT: usize = 1_000_000;
const SERVICE_NAME_BYTES_MAX: usize = 255;
/// The path OTLP/HTTP appends for traces.
const TRACES_PATH: &str = "/v1/traces";
/// Largest collector answer read (an OTLP answer is a few bytes).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

impl TelemetryConfig {
    /// A section sending to `otlp_endpoint`, every other field at its default.
    pub fn to(otlp_endpoint: impl Into<String>) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: otlp_endpoint.into(),
            service_name: service_name_default(),
            queue_spans_max: queue_spans_max_default(),
            batch_spans_max: batch_spans_max_default(),
            export_delay_ms: export_delay_ms_default(),
            export_timeout_ms: export_timeout_ms_default(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        endpoint_uri(&self.otlp_endpoint).map_err(|why| {
            ConfigError::new(
                "otlp_endpoint",
                format!("{why}, got `{}`", self.otlp_endpoint),
            )
        })?;
        let name = &self.service_name;
        ensure(
            !name.trim().is_empty() && name.len() <= SERVICE_NAME_BYTES_MAX,
            "service_name",
            format!("must be 1 to {SERVICE_NAME_BYTES_MAX} bytes, not blank"),
        )?;
        ensure(
            (1..=QUEUE_SPANS_LIMIT).contains(&self.queue_spans_max),
            "queue_spans_max",
            format!(
                "must be between 1 and {QUEUE_SPANS_LIMIT}, got {}",
                self.queue_spans_max
            ),
        )?;
        ensure(
            (1..=self.queue_spans_max).contains(&self.batch_spans_max),
            "batch_spans_max",
            format!(
                "must be between 1 and queue_spans_max ({}), got {}",
                self.queue_spans_max, self.batch_spans_max
            ),
        )?;
        for (ms, field) in [
            (self.export_delay_ms, "export_delay_ms"),
            (self.export_timeout_ms, "export_timeout_ms"),
        ] {
            ensure(
                (1..=60_000).contains(&ms),
                field,
                format!("must be between 1 and 60000 ms, got {ms}"),
            )?;
        }
        Ok(())
    }

    /// Where spans are posted: the endpoint with `/v1/traces` appended.
    pub fn traces_url(&self) -> String {
        format!("{}{TRACES_PATH}", self.otlp_endpoint.trim_end_matches('/'))
    }
}

/// The endpoint as a URI, or what is wrong with it (and what to write).
fn endpoint_uri(endpoint: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = endpoint.parse().map_err(|e| {
        format!("is not a URL ({e}): write the collector's base URL, e.g. http://127.0.0.1:4318")
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "must be http://: the exporter has no TLS stack; send to a collector \
                        on this host or network and let it forward over TLS"
                    .to_owned(),
            )
        }
        _ => {
            return Err(
                "must start with http:// (OTLP/HTTP), e.g. http://127.0.0.1:4318".to_owned(),
            )
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must name a host, e.g. http://127.0.0.1:4318".to_owned());
    }
    if uri.query().is_some() {
        return Err("must not have a query string".to_owned());
    }
    if uri.path().trim_end_matches('/').ends_with(TRACES_PATH) {
        return Err(format!(
            "is the base URL: leave out {TRACES_PATH}, which the exporter appends"
        ));
    }
    Ok(uri)
}

/// The actor's side of tracing: nothing at all without `[telemetry]`.
#[derive(Default)]
pub struct Telemetry {
    on: Option<Box<JobSpans>>,
}

/// Open spans, by job, and the exporter they end into.
struct JobSpans {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// Wall time at relay time zero.
    epoch: SystemTime,
    open: FxHashMap<JobId, OpenJob>,
    open_max: usize,
    /// Spans not opened (a job's, or an attempt's of a job without one):
    /// `open_max` job spans were open. Possible with a durable store, whose
    /// finished jobs leave this map only once their commit is acknowledged.
    untraced: u64,
}

struct OpenJob {
    /// Holds the job's span; its attempts are children of it.
    cx: Context,
    /// Attempts started and not yet ended (several only with hedging).
    attempts: Vec<OpenAttempt>,
}

struct OpenAttempt {
    attempt: u32,
    started: Time,
    span: opentelemetry_sdk::trace::Span,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    Ok,
    Failed(CallError),
    /// Another attempt of the job won, or the job ended without its answer.
    Abandoned,
}

impl AttemptEnd {
    fn name(self) -> &'static str {
        match self {
            AttemptEnd::Ok => "ok",
            AttemptEnd::Failed(e) => e.name(),
            AttemptEnd::Abandoned => "abandoned",
        }
    }
}

fn breaker_name(state: Option<BreakerState>) -> &'static str {
    match state {
        None => "none",
        Some(BreakerState::Closed) => "closed",
        Some(BreakerState::Open) => "open",
        Some(BreakerState::HalfOpen) => "half-open",
    }
}

fn outcome_name<P>(outcome: &Outcome<P>) -> &'static str {
    match outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::DeadLettered { .. } => "dead-lettered",
        Outcome::Failed { .. } => "failed",
    }
}

impl Telemetry {
    /// No exporter: every call is a no-op.
    pub fn off() -> Telemetry {
        Telemetry { on: None }
    }

    /// An exporter to `config`'s collector, with at most `open_max` job
    /// spans open; relay time `clock.now()` is taken to be the wall clock's
    /// now. Starts the SDK's export thread; connects to nothing until the
    /// first export.
    pub fn start(
        config: &TelemetryConfig,
        open_max: usize,
        clock: &mut Clock,
    ) -> anyhow::Result<Telemetry> {
        let timeout = Duration::from_millis(config.export_timeout_ms);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.traces_url())
            .with_timeout(timeout)
            .with_http_client(Poster::new(timeout))
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry: cannot build the OTLP exporter: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(config.queue_spans_max)
            .with_max_export_batch_size(config.batch_spans_max)
            .with_scheduled_delay(Duration::from_millis(config.export_delay_ms))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("resilient-relay");
        let now = clock.now();
        #[allow(clippy::disallowed_methods)] // spans carry wall time: read once, here
        let wall = SystemTime::now();
        let since_zero = now.since(Time::ZERO);
        let epoch = wall
            .checked_sub(since_zero)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(Telemetry {
            on: Some(Box::new(JobSpans {
                provider,
                tracer,
                epoch,
                open: FxHashMap::default(),
                open_max: open_max.max(1),
                untraced: 0,
            })),
        })
    }

    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// A job was accepted at `now` on `route`: its span starts.
    pub fn job_accepted(&mut self, now: Time, job: JobId, key: Option<&str>, route: &str) {
        if let Some(spans) = &mut self.on {
            spans.open_job(now, job, key, route);
        }
    }

    /// Attempt `call` starts now on `route`, whose breaker is in state
    /// `breaker`. A job not seen accepted (recovered, adopted, redriven)
    /// gets its span now.
    pub fn attempt_started(
        &mut self,
        clock: &mut Clock,
        call: CallId,
        route: &str,
        breaker: Option<BreakerState>,
    ) {
        if let Some(spans) = &mut self.on {
            spans.start_attempt(clock.now(), call, route, breaker);
        }
    }

    /// Attempt `attempt` of `job` ended; the first end reported wins (an
    /// answer and the relay's own verdict may both arrive).
    pub fn attempt_done(&mut self, clock: &mut Clock, job: JobId, attempt: u32, end: AttemptEnd) {
        if let Some(spans) = &mut self.on {
            spans.end_attempt(clock.now(), job, attempt, end);
        }
    }

    /// The job ended: its span ends with the outcome.
    pub fn job_finished<K, P>(&mut self, clock: &mut Clock, done: &Finished<K, P>) {
        if let Some(spans) = &mut self.on {
            let mut attrs = vec![
                KeyValue::new("job.outcome", outcome_name(&done.outcome)),
                KeyValue::new("job.attempts", i64::from(done.attempts)),
                KeyValue::new("job.latency_ms", duration_ms(done.latency)),
            ];
            if let Some(reason) = done.outcome.reason() {
                attrs.push(KeyValue::new("job.reason", reason.name()));
            }
            if let Outcome::DeadLettered { last_error, .. } = &done.outcome {
                attrs.push(KeyValue::new("job.last_error", last_error.name()));
            }
            let status = if done.outcome.is_success() {
                Status::Ok
            } else {
                Status::error(outcome_name(&done.outcome))
            };
            spans.end_job(clock.now(), done.job, attrs, status);
        }
    }

    /// The job was taken back (its commit failed): its span ends so.
    pub fn job_retracted(&mut self, now: Time, job: JobId) {
        if let Some(spans) = &mut self.on {
            let attrs = vec![KeyValue::new("job.outcome", "retracted")];
            spans.end_job(now, job, attrs, Status::error("retracted"));
        }
    }

    /// Ends every open span as `unfinished` and hands what is queued to the
    /// exporter, waiting up to `flush_max` (blocking: call it off the
    /// runtime's threads, e.g. in `spawn_blocking`).
    pub fn close(mut self, now: Time, flush_max: Duration) {
        let Some(mut spans) = self.on.take() else {
            return;
        };
        let jobs: Vec<JobId> = spans.open.keys().copied().collect();
        for job in jobs {
            let attrs = vec![KeyValue::new("job.outcome", "unfinished")];
            spans.end_job(now, job, attrs, Status::Unset);
        }
        if spans.untraced > 0 {
            tracing::warn!(
                spans = spans.untraced,
                open_max = spans.open_max,
                "telemetry: spans not opened (as many job spans were open as the relay has live jobs)"
            );
        }
        if let Err(e) = spans.provider.shutdown_with_timeout(flush_max) {
            tracing::warn!(error = %e, "telemetry: spans not all exported at shutdown");
        }
    }
}

impl Drop for Telemetry {
    /// Dropped without [`Telemetry::close`] (the task was aborted): the
    /// SDK's shutdown waits for the export thread, so it happens on a
    /// thread of its own rather than on the runtime's.
    fn drop(&mut self) {
        if let Some(spans) = self.on.take() {
            let provider = spans.provider.clone();
            drop(spans);
            let _ = std::thread::Builder::new()
                .name("telemetry-shutdown".to_owned())
                .spawn(move || provider.shutdown());
        }
    }
}

impl JobSpans {
    fn wall(&self, t: Time) -> SystemTime {
        self.epoch + t.since(Time::ZERO)
    }

    /// Opens the job's span unless it is open, or too many are.
    fn open_job(
        &mut self,
        now: Time,
        job: JobId,
        key: Option<&str>,
        route: &str,
    ) -> Option<&mut OpenJob> {
        if !self.open.contains_key(&job) {
            if self.open.len() >= self.open_max {
                if self.untraced == 0 {
                    tracing::warn!(
                        open_max = self.open_max,
                        "telemetry: as many job spans open as the relay has live jobs: \
                         new ones are not traced (counted, the total logged at shutdown)"
                    );
                }
                self.untraced += 1;
                return None;
            }
            let mut attrs = vec![
                KeyValue::new("job.id", job.to_string()),
                KeyValue::new("job.route", route.to_owned()),
            ];
            if let Some(key) = key {
                attrs.push(KeyValue::new("job.idempotency_key", key.to_owned()));
            }
            let span = self
                .tracer
                .span_builder("job")
                .with_kind(SpanKind::Internal)
                .with_start_time(self.wall(now))
                .with_attributes(attrs)
                .start(&self.tracer);
            let open = OpenJob {
                cx: Context::new().with_span(span),
                attempts: Vec::new(),
            };
            self.open.insert(job, open);
        }
        debug_assert!(self.open.len() <= self.open_max);
        self.open.get_mut(&job)
    }

    fn start_attempt(
        &mut self,
        now: Time,
        call: CallId,
        route: &str,
        breaker: Option<BreakerState>,
    ) {
        let start = self.wall(now);
        let tracer = self.tracer.clone();
        let Some(job) = self.open_job(now, call.job, None, route) else {
            return;
        };
        let span = tracer
            .span_builder("attempt")
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("attempt.number", i64::from(call.attempt)),
                KeyValue::new("breaker.state", breaker_name(breaker)),
            ])
            .start_with_context(&tracer, &job.cx);
        job.attempts.push(OpenAttempt {
            attempt: call.attempt,
            started: now,
            span,
        });
    }

    fn end_attempt(&mut self, now: Time, job: JobId, attempt: u32, end: AttemptEnd) {
        let end_at = self.wall(now);
        let Some(open) = self.open.get_mut(&job) else {
            return;
        };
        let Some(i) = open.attempts.iter().position(|a| a.attempt == attempt) else {
            return;
        };
        let a = open.attempts.swap_remove(i);
        finish_attempt(a, now, end_at, end);
    }

    fn end_job(&mut self, now: Time, job: JobId, attrs: Vec<KeyValue>, status: Status) {
        let end_at = self.wall(now);
        let Some(open) = self.open.remove(&job) else {
            return;
        };
        for a in open.attempts {
            finish_attempt(a, now, end_at, AttemptEnd::Abandoned);
        }
        let span = open.cx.span();
        for kv in attrs {
            span.set_attribute(kv);
        }
        span.set_status(status);
        span.end_with_timestamp(end_at);
    }
}

fn finish_attempt(mut a: OpenAttempt, now: Time, end_at: SystemTime, end: AttemptEnd) {
    a.span
        .set_attribute(KeyValue::new("attempt.result", end.name()));
    a.span.set_attribute(KeyValue::new(
        "attempt.latency_ms",
        duration_ms(now.since(a.started)),
    ));
    match end {
        AttemptEnd::Ok => a.span.set_status(Status::Ok),
        AttemptEnd::Failed(e) => a.span.set_status(Status::error(e.name())),
        AttemptEnd::Abandoned => {}
    }
    a.span.end_with_timestamp(end_at);
}

/// Posts the exporter's requests with hyper. The SDK exports from a thread
/// of its own with a plain `block_on`, outside any tokio runtime, so the
/// client runs on a one-thread runtime of its own, made on that thread at
/// the first export (and dropped there); no connection is kept between
/// exports (one every `export_delay_ms` at most).
struct Poster {
    runtime: OnceLock<tokio::runtime::Runtime>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    timeout: Duration,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Poster {
    fn new(timeout: Duration) -> Poster {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http();
        Poster {
            runtime: OnceLock::new(),
            client,
            timeout,
        }
    }

    async fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let answer = self.client.request(request).await?;
        let (parts, body) = answer.into_parts();
        let body = Limited::new(body, ANSWER_BYTES_MAX)
            .collect()
            .await?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

#[async_trait::async_trait]
impl HttpClient for Poster {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = match self.runtime.get() {
            Some(r) => r,
            None => {
                let made = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                self.runtime.get_or_init(|| made)
            }
        };
        // The timer is made inside `block_on`: it needs the runtime's context.
        let bounded = async { tokio::time::timeout(self.timeout, self.post(request)).await };
        match runtime.block_on(bounded) {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {:?}", self.timeout).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_with_a_way_out() {
        let check = |url: &str| {
            TelemetryConfig::to(url)
                .validate()
                .map_err(|e| e.to_string())
        };
        assert!(check("http://127.0.0.1:4318").is_ok());
        assert!(check("http://collector:4318/prefix/").is_ok());
        for (url, says) in [
            ("https://collector:4318", "no TLS stack"),
            ("grpc://collector:4317", "must start with http://"),
            ("127.0.0.1:4318", "must start with http://"),
            ("http://collector:4318/v1/traces", "leave out /v1/traces"),
            ("http://collector:4318/?x=1", "query"),
            ("not a url", "is not a URL"),
        ] {
            let err = check(url).expect_err(url);
            assert!(
                err.contains("otlp_endpoint") && err.contains(says),
                "{url}: {err}"
            );
        }
        assert_eq!(
            TelemetryConfig::to("http://c:4318/").traces_url(),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn bounds_are_checked() {
        let mut c = TelemetryConfig::to("http://127.0.0.1:4318");
        c.batch_spans_max = c.queue_spans_max + 1;
        assert_eq!(c.validate().unwrap_err().field, "batch_spans_max");
        c.batch_spans_max = 1;
        c.queue_spans_max = 0;
        assert_eq!(c.validate().unwrap_err().field, "queue_spans_max");
        c.queue_spans_max = 10;
        c.service_name = " ".into();
        assert_eq!(c.validate().unwrap_err().field, "service_name");
        c.service_name = "relay".into();
        c.export_timeout_ms = 0;
        assert_eq!(c.validate().unwrap_err().field, "export_timeout_ms");
    }
}
