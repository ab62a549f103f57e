//! A span per job over OTLP/HTTP: the relay exports to a fake collector on
//! loopback, which decodes what it receives; without `[telemetry]` nothing
//! is sent.

mod common;
#[path = "common/process.rs"]
mod process;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{settings, Harness};
use hyper::header::{HeaderName, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use process::Process;
use prost::Message;
use resilient_relay::relay::BreakerConfig;
use resilient_relay::server::client::{uri, HttpClient};
use resilient_relay::server::config::DownstreamConfig;
use resilient_relay::server::routes::DEFAULT_ROUTE;
use resilient_relay::server::telemetry::TelemetryConfig;
use resilient_relay::server::ServeArgs;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a test waits for an export.
const EXPORT_PATIENCE: Duration = Duration::from_secs(5);

/// Serves `router` on 127.0.0.1 at an ephemeral port; its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// A collector that keeps every `POST /v1/traces` body.
async fn collector() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let router = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("bodies").push(body);
                // An empty ExportTraceServiceResponse encodes as no bytes.
                (
                    StatusCode::OK,
                    [("content-type", "application/x-protobuf")],
                    Bytes::new(),
                )
            }
        }),
    );
    (serve(router).await, bodies)
}

/// A downstream whose first call fails (503) and every later one succeeds.
async fn fails_once() -> String {
    let calls = Arc::new(AtomicU32::new(0));
    let router = Router::new().route(
        "/work",
        post(move || {
            let calls = calls.clone();
            async move {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => (StatusCode::SERVICE_UNAVAILABLE, "down"),
                    _ => (StatusCode::OK, r#"{"ok":true}"#),
                }
            }
        }),
    );
    format!("{}/work", serve(router).await)
}

/// Every span in the bodies received so far.
fn spans(bodies: &Mutex<Vec<Bytes>>) -> Vec<Span> {
    let bodies = bodies.lock().expect("bodies");
    bodies
        .iter()
        .flat_map(|b| {
            ExportTraceServiceRequest::decode(b.clone())
                .expect("an OTLP protobuf body")
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(span, key) {
        Some(Value::StringValue(s)) => s,
        other => panic!("{key}: not a string attribute on {}: {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::IntValue(i)) => *i,
        other => panic!(
            "{key}: not an integer attribute on {}: {other:?}",
            span.name
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_job_is_exported_as_one_span_with_an_attempt_child_each() {
    let (endpoint, bodies) = collector().await;
    let mut s = settings();
    s.downstream = DownstreamConfig::Url {
        url: fails_once().await,
    };
    s.relay.breaker = Some(BreakerConfig::default());
    let mut telemetry = TelemetryConfig::to(endpoint);
    telemetry.service_name = "relay-under-test".into();
    telemetry.export_delay_ms = 20;
    s.telemetry = Some(telemetry);
    let h = Harness::start(s).await;

    let reply = h.relay(Some("order-7"), r#"{"n":1}"#).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);

    let deadline = tokio::time::Instant::now() + EXPORT_PATIENCE;
    let spans = loop {
        let spans = spans(&bodies);
        if spans.iter().any(|s| s.name == "job") {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no job span exported within {EXPORT_PATIENCE:?}; spans so far: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let jobs: Vec<&Span> = spans.iter().filter(|s| s.name == "job").collect();
    assert_eq!(jobs.len(), 1, "one job span: {jobs:?}");
    let job = jobs[0];
    assert_eq!(text(job, "job.idempotency_key"), "order-7");
    assert_eq!(text(job, "job.route"), DEFAULT_ROUTE);
    assert_eq!(text(job, "job.outcome"), "succeeded");
    assert_eq!(int(job, "job.attempts"), 2);
    assert!(!text(job, "job.id").is_empty());
    assert!(job.parent_span_id.is_empty(), "the job span is a root");
    assert!(job.end_time_unix_nano > job.start_time_unix_nano);

    // Attempts end before their job, so they were in the same or an earlier export.
    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "attempt" && s.parent_span_id == job.span_id)
        .collect();
    attempts.sort_by_key(|a| int(a, "attempt.number"));
    assert_eq!(attempts.len(), 2, "two attempts under the job: {spans:?}");
    let results: Vec<(i64, &str)> = attempts
        .iter()
        .map(|a| (int(a, "attempt.number"), text(a, "attempt.result")))
        .collect();
    assert_eq!(results, [(1, "server-error"), (2, "ok")]);
    for a in &attempts {
        assert_eq!(a.trace_id, job.trace_id);
        assert_eq!(text(a, "breaker.state"), "closed", "one failure of five");
        assert!(matches!(
            attr(a, "attempt.latency_ms"),
            Some(Value::DoubleValue(ms)) if *ms >= 0.0
        ));
        assert!(a.start_time_unix_nano >= job.start_time_unix_nano);
        assert!(a.end_time_unix_nano <= job.end_time_unix_nano);
    }
    assert!(
        attempts[0].end_time_unix_nano <= attempts[1].start_time_unix_nano,
        "the retry starts after the first attempt failed"
    );

    let bodies = bodies.lock().expect("bodies").clone();
    let resource = ExportTraceServiceRequest::decode(bodies[0].clone())
        .expect("decodes")
        .resource_spans
        .into_iter()
        .find_map(|r| r.resource)
        .expect("a resource");
    let service = resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref());
    assert_eq!(
        service,
        Some(&Value::StringValue("relay-under-test".into()))
    );
}

/// Threads of process `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// The binary, with the standard OTLP variables pointing at a collector
/// but no `[telemetry]`: it starts no exporter and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_telemetry_section_nothing_is_exported() {
    let resolved = ServeArgs::default().resolve().expect("defaults resolve");
    assert_eq!(resolved.telemetry, None, "off by default");
    let (endpoint, bodies) = collector().await;
    let args = ["serve", "--listen", "127.0.0.1:0", "--store", "memory"];
    let args = [&args[..], &["--downstream", "flaky", "--latency-ms", "1"]].concat();
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_TRACES_EXPORTER", "otlp"),
    ];
    let relay = Process::spawn_with_env(&args, &vars, "relay listening");
    let client = HttpClient::new(1024 * 1024);
    let headers = [(
        HeaderName::from_static("idempotency-key"),
        HeaderValue::from_static("order-8"),
    )];
    let target = uri(&relay.url(), "/relay").expect("uri");
    let reply = client
        .post_json(&target, &headers, Bytes::from_static(br#"{"n":1}"#))
        .await
        .expect("the relay answers");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let status = reply.json()["status_url"]
        .as_str()
        .expect("a status URL")
        .to_owned();
    let status = uri(&relay.url(), &status).expect("uri");
    let deadline = tokio::time::Instant::now() + EXPORT_PATIENCE;
    while client.get(&status).await.expect("status").json()["state"] != "succeeded" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not succeed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The SDK's export thread is "OpenTelemetry.Traces.BatchProcessor",
    // cut to 15 bytes by the kernel.
    assert_eq!(threads_named(relay.child.id(), "OpenTelemetry"), 0);
    // Anything an exporter had queued would be sent as the relay stops.
    let (code, _) = relay.terminate(EXPORT_PATIENCE);
    assert_eq!(code, Some(0));
    assert!(bodies.lock().expect("bodies").is_empty());
}
