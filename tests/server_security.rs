//! The server as a hostile client and a careful operator see it, over
//! 127.0.0.1: signatures that cannot be replayed, operator endpoints behind
//! a token, job status behind unguessable handles, a rate limit keyed on
//! what the client cannot choose, secrets kept off the command line and out
//! of printed settings, and payloads kept out of logs.

mod common;

use bytes::Bytes;
use common::{fault, job_of, problem, settings, status_path, Harness};
use hyper::Method;
use resilient_relay::relay::RateLimitConfig;
use resilient_relay::server::client::signature_headers;
use resilient_relay::server::config::Secret;
use resilient_relay::server::signature::{unix_now, Signer};
use std::process::Command;
use std::sync::{Arc, Mutex};

const JSON: (&str, &[u8]) = ("content-type", b"application/json");
const SECRET: &str = "test-secret";

fn signed_settings() -> resilient_relay::server::Settings {
    let mut s = settings();
    s.server.hmac_secret = Some(Secret(SECRET.into()));
    s
}

/// The signature headers of `POST /relay` with `key` and `body`, at `ts`.
fn sign(key: Option<&str>, body: &str, ts: u64) -> (String, String) {
    let [t, s] = signature_headers(
        &Signer::new(SECRET.as_bytes()),
        &Method::POST,
        "/relay",
        key,
        body.as_bytes(),
        ts,
    );
    let text = |v: hyper::header::HeaderValue| v.to_str().expect("ASCII").to_owned();
    (text(t.1), text(s.1))
}

/// `POST /relay` with exactly these headers besides the content type.
async fn post(
    h: &Harness,
    headers: &[(&str, &str)],
    body: &str,
) -> resilient_relay::server::client::Reply {
    let mut all: Vec<(&str, &[u8])> = vec![JSON];
    all.extend(headers.iter().map(|(k, v)| (*k, v.as_bytes())));
    h.send(Method::POST, "/relay", &all, body.to_owned()).await
}

fn kind(p: &serde_json::Value) -> &str {
    p["type"]
        .as_str()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_signed_request_runs_once_whatever_key_it_is_resent_with() {
    let h = Harness::with_downstream(signed_settings(), fault(0.0, 1.0)).await;
    let body = r#"{"transfer": 100}"#;
    let (ts, sig) = sign(Some("pay-1"), body, unix_now());
    let captured = [
        ("idempotency-key", "pay-1"),
        ("x-signature-timestamp", ts.as_str()),
        ("x-signature", sig.as_str()),
    ];
    let job = job_of(&post(&h, &captured, body).await);
    h.wait_state(&job, "succeeded").await;

    let again = problem(&post(&h, &captured, body).await, 401);
    assert_eq!(kind(&again), "signature-replayed", "{again}");
    for (i, key) in ["pay-2", "pay-3", "x"].iter().enumerate() {
        let mut other = captured;
        other[0].1 = key;
        let p = problem(&post(&h, &other, body).await, 401);
        assert_eq!(kind(&p), "bad-signature", "attempt {i}: {p}");
    }
    let keyless = problem(&post(&h, &captured[1..], body).await, 401);
    assert!(keyless["detail"]
        .as_str()
        .is_some_and(|d| d.contains("Idempotency-Key")));
    let effects = h.downstream_get("/effects").await;
    assert_eq!(
        effects["effects"], 1,
        "one signature, one side effect: {effects}"
    );
    assert_eq!(h.stats().await["accepted"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_timestamps_and_repeated_headers_are_refused_saying_why() {
    let h = Harness::start(signed_settings()).await;
    let body = "{}";
    for ts in [unix_now() - 400, unix_now() + 400] {
        let (t, s) = sign(None, body, ts);
        let p = problem(
            &post(
                &h,
                &[("x-signature-timestamp", &t), ("x-signature", &s)],
                body,
            )
            .await,
            401,
        );
        assert_eq!(kind(&p), "stale-signature", "{p}");
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("300 s window")),
            "{p}"
        );
    }
    let (t, good) = sign(Some("k-dup"), body, unix_now());
    let (_, other) = sign(Some("k-other"), body, unix_now());
    let key = ("idempotency-key", "k-dup");
    // Good first or last: never "first wins".
    for pair in [[&good, &other], [&other, &good]] {
        let p = problem(
            &post(
                &h,
                &[
                    key,
                    ("x-signature-timestamp", &t),
                    ("x-signature", pair[0]),
                    ("x-signature", pair[1]),
                ],
                body,
            )
            .await,
            401,
        );
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("one X-Signature header")),
            "{p}"
        );
    }
    let p = problem(
        &post(
            &h,
            &[
                key,
                ("x-signature-timestamp", &t),
                ("x-signature-timestamp", &t),
                ("x-signature", &good),
            ],
            body,
        )
        .await,
        401,
    );
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("one X-Signature-Timestamp")),
        "{p}"
    );
    let old = format!("sha256={}", &good[3..]);
    let p = problem(
        &post(
            &h,
            &[key, ("x-signature-timestamp", &t), ("x-signature", &old)],
            body,
        )
        .await,
        401,
    );
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("retired")),
        "{p}"
    );
    let p = problem(&post(&h, &[key, ("x-signature", &good)], body).await, 401);
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("X-Signature-Timestamp")),
        "{p}"
    );
    // None of these used up the good signature.
    job_of(
        &post(
            &h,
            &[key, ("x-signature-timestamp", &t), ("x-signature", &good)],
            body,
        )
        .await,
    );
    assert_eq!(h.stats().await["http_rejected"]["bad_signature"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replay_cache_refuses_with_503_and_counts() {
    let mut s = signed_settings();
    s.server.replay_cache_max = 2;
    let h = Harness::start(s).await;
    job_of(&h.relay(Some("a"), "{}").await);
    job_of(&h.relay(Some("b"), "{}").await);
    let full = h.relay(Some("c"), "{}").await;
    let p = problem(&full, 503);
    assert_eq!(kind(&p), "replay-cache-full", "{p}");
    let wait: u64 = full
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=601).contains(&wait), "{wait}");
    assert_eq!(h.stats().await["http_rejected"]["replay_cache_full"], 1);
}

/// The README's curl + openssl example, run as written (only the address
/// and the secret file's place change) against a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_signing_example_works_as_written() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("```sh\nsecret=$(cat relay-secret)")
        .expect("the example is in the README");
    let script = &readme[start + 6..];
    let script = &script[..script.find("```").expect("the block ends")];
    let mut s = settings();
    s.server.hmac_secret = Some(Secret("s3cret".into()));
    let h = Harness::start(s).await;
    let dir = std::env::temp_dir().join(format!("relay-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("relay-secret"), "s3cret\n").expect("secret file");
    let script = script.replace("localhost:3000", h.base.trim_start_matches("http://"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&dir)
            .output()
    })
    .await
    .expect("joined")
    .expect("bash runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 202"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_endpoints_want_the_operator_token() {
    let mut s = settings();
    s.server.operator_token = Some(Secret("op-token-1".into()));
    let h = Harness::start(s).await;
    let gets = ["/dlq", "/dlq/0-0", "/stats", "/metrics"];
    let posts = ["/dlq/redrive", "/dlq/replay"];
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("op-token-1"),
        Some("Basic op-token-1"),
    ] {
        let headers: Vec<(&str, &[u8])> = auth
            .iter()
            .map(|a| ("authorization", a.as_bytes()))
            .collect();
        for (method, path) in gets
            .iter()
            .map(|p| (Method::GET, *p))
            .chain(posts.iter().map(|p| (Method::POST, *p)))
        {
            let r = h.send(method.clone(), path, &headers, Bytes::new()).await;
            let p = problem(&r, 401);
            assert!(kind(&p).contains("operator-token"), "{method} {path}: {p}");
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"relay-operator\"")
            );
        }
    }
    let bearer: &[(&str, &[u8])] = &[("authorization", b"Bearer op-token-1")];
    for path in ["/dlq", "/stats", "/metrics"] {
        assert_eq!(
            h.send(Method::GET, path, bearer, Bytes::new()).await.status,
            200,
            "{path}"
        );
    }
    problem(
        &h.send(Method::GET, "/dlq/0-0", bearer, Bytes::new()).await,
        404,
    );
    for path in posts {
        assert_eq!(
            h.send(Method::POST, path, bearer, Bytes::new())
                .await
                .status,
            200,
            "{path}"
        );
    }
    assert_eq!(h.get("/health").await.status, 200, "health needs nothing");
    assert_eq!(h.stats().await["http_rejected"]["operator_refused"], 24);
}

/// Without a token, a browser on the relay's host must not be able to
/// operate it: a cross-site request carries `Origin`, a DNS-rebound one
/// names a foreign `Host`; both are loopback peers, both are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_browser_on_the_host_cannot_operate_the_relay() {
    let h = Harness::start(settings()).await;
    assert_eq!(
        h.get("/stats").await.status,
        200,
        "curl on the host may look"
    );
    let from_page: &[(&str, &[u8])] = &[
        ("origin", b"http://evil.example"),
        ("content-type", b"text/plain"),
    ];
    let rebound: &[(&str, &[u8])] = &[("host", b"evil.example:8080")];
    for headers in [from_page, rebound] {
        for (method, path) in [
            (Method::POST, "/dlq/redrive"),
            (Method::GET, "/dlq"),
            (Method::GET, "/stats"),
        ] {
            let r = h.send(method.clone(), path, headers, Bytes::new()).await;
            let p = problem(&r, 403);
            assert!(
                kind(&p).ends_with("operator-browser-refused"),
                "{method} {path}: {p}"
            );
        }
    }
    assert_eq!(h.stats().await["http_rejected"]["operator_refused"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_status_answers_only_its_handle_and_a_scan_finds_nothing() {
    let h = Harness::start(settings()).await;
    let mut urls = Vec::new();
    for i in 0..20 {
        let r = h.relay(None, &format!(r#"{{"n": {i}}}"#)).await;
        let job = job_of(&r);
        let url = r.json()["status_url"]
            .as_str()
            .expect("a status URL")
            .to_owned();
        assert_eq!(url, status_path(&job));
        assert!(url.len() > format!("/relay/{job}.").len() + 16, "{url}");
        urls.push((job, url));
    }
    for (job, url) in &urls {
        h.wait_state(job, "succeeded").await;
        assert_eq!(h.get(url).await.json()["response"]["ok"], true, "{url}");
    }
    let mut found = 0;
    for serial in 0..24 {
        for slot in 0..24 {
            let tries = [
                format!("/relay/{serial}-{slot}"),
                format!("/relay/{serial}-{slot}.{}", "0".repeat(32)),
            ];
            for path in tries {
                let r = h.get(&path).await;
                assert!(r.status == 400 || r.status == 404, "{path}: {}", r.status);
                found += usize::from(r.status == 200);
            }
        }
    }
    assert_eq!(found, 0);
    // One job's tag does not open another.
    let (_, first) = &urls[0];
    let tag = first.rsplit('.').next().expect("a tag");
    let (second, _) = &urls[1];
    problem(&h.get(&format!("/relay/{second}.{tag}")).await, 404);
}

fn limited(requests_max: u32) -> resilient_relay::server::Settings {
    let mut s = settings();
    s.relay.rate_limit = Some(RateLimitConfig {
        requests_max,
        window_ms: 60_000.0,
        clients_max: 100,
    });
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_x_client_id_does_not_bypass_the_rate_limit() {
    let h = Harness::start(limited(3)).await;
    let api = h.api();
    for i in 0..3 {
        let id = format!("rotated-{i}");
        job_of(&api.relay_with(None, "{}", &[("x-client-id", &id)]).await);
    }
    for i in 3..8 {
        let id = format!("rotated-{i}");
        let p = problem(
            &api.relay_with(None, "{}", &[("x-client-id", &id)]).await,
            429,
        );
        assert_eq!(kind(&p), "rate-limited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_x_client_id_does_not_lock_out_its_victim() {
    let h = Harness::start(limited(2)).await;
    let attacker = h.api();
    let victim = h.api_from("127.0.0.2");
    let as_victim = [("x-client-id", "victim")];
    for _ in 0..2 {
        job_of(&attacker.relay_with(None, "{}", &as_victim).await);
    }
    problem(&attacker.relay_with(None, "{}", &as_victim).await, 429);
    job_of(&victim.relay_with(None, "{}", &as_victim).await);
    job_of(&victim.relay_with(None, "{}", &as_victim).await);
    problem(&victim.relay_with(None, "{}", &as_victim).await, 429);
}

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_resilient-relay"));
    for var in [
        "RELAY_HMAC_SECRET",
        "RELAY_HMAC_SECRET_FILE",
        "RELAY_OPERATOR_TOKEN",
        "RELAY_OPERATOR_TOKEN_FILE",
        "RELAY_SET",
    ] {
        c.env_remove(var);
    }
    c
}

fn secret_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("relay-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("writes");
    path
}

#[test]
fn print_config_redacts_every_secret_from_files_and_the_environment() {
    let hmac = secret_file("hmac", "hmac-from-file-123\n");
    let token = secret_file("token", "token-from-file-456\n");
    let runs = [
        binary()
            .args(["serve", "--print-config", "--hmac-secret-file"])
            .arg(&hmac)
            .arg("--operator-token-file")
            .arg(&token)
            .output(),
        binary()
            .args(["serve", "--print-config"])
            .env("RELAY_HMAC_SECRET", "hmac-from-env-789")
            .env("RELAY_OPERATOR_TOKEN", "token-from-env-012")
            .output(),
    ];
    for out in runs {
        let out = out.expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("hmac_secret = \"<redacted>\""), "{text}");
        assert!(text.contains("operator_token = \"<redacted>\""), "{text}");
        for secret in ["-from-file-", "-from-env-"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

#[test]
fn secrets_stay_off_the_command_line() {
    let out = binary()
        .args(["serve", "--print-config", "--hmac-secret", "on-the-line"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--hmac-secret is deprecated"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("on-the-line"));
    let out = binary()
        .args([
            "serve",
            "--print-config",
            "--set",
            "server.operator_token=\"x\"",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("secrets are not taken from --set"),
        "{stderr}"
    );
    let empty = secret_file("empty", "\n");
    let out = binary()
        .args(["serve", "--print-config", "--hmac-secret-file"])
        .arg(&empty)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty"));
    let help = binary().args(["serve", "--help"]).output().expect("runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for hint in [
        "--hmac-secret-file",
        "RELAY_HMAC_SECRET",
        "--operator-token-file",
        "RELAY_OPERATOR_TOKEN",
        "Deprecated",
    ] {
        assert!(help.contains(hint), "--help names {hint}: {help}");
    }
}

/// Log lines written while `f` runs on this thread, as plain text.
fn captured(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().expect("lock").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn one_record_per_line(text: &str) {
    for line in text.lines() {
        let level = line.trim_start();
        assert!(
            ["INFO", "WARN"].iter().any(|l| level.starts_with(l)),
            "a record was split: {line:?} in\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_logs_name_jobs_and_sizes_and_payloads_only_when_asked() {
    let mut s = settings();
    s.relay.retry.attempts_max = 1;
    s.relay.retry.attempt_timeout_ms = 30_000.0;
    s.server.drain_deadline_ms = 100.0;
    let mut h = Harness::with_downstream(s, fault(1.0, 1.0)).await;
    let letter = job_of(
        &h.relay(Some("pii-0"), r#"{"email": "bob@example.com"}"#)
            .await,
    );
    h.wait_state(&letter, "dead-lettered").await;
    h.downstream_admin(serde_json::json!({
        "failure_rate": 0.0,
        "latency": {"kind": "constant", "ms": 20_000}
    }))
    .await;
    let payload = "{\"email\":\n\"alice@example.com\"}";
    let job = job_of(&h.relay(Some("pii-1"), payload).await);
    h.wait_state(&job, "in-flight").await;
    let report = h.server.take().expect("running").shutdown().await;
    assert_eq!(report.left.live.len(), 1, "{report:?}");
    assert_eq!(report.left.dead_letters.len(), 1, "{report:?}");

    let quiet = captured(|| resilient_relay::server::app::log_report(&report));
    assert!(quiet.contains("unfinished at shutdown"), "{quiet}");
    assert!(
        quiet.contains(&format!("payload_bytes={}", payload.len())),
        "{quiet}"
    );
    assert!(quiet.contains("dead letter left at shutdown"), "{quiet}");
    assert!(quiet.contains("key=\"pii-0\""), "{quiet}");
    assert!(
        !quiet.contains("alice") && !quiet.contains("bob"),
        "no payload by default: {quiet}"
    );
    one_record_per_line(&quiet);

    resilient_relay::server::payload_log::enable();
    let loud = captured(|| resilient_relay::server::app::log_report(&report));
    assert!(
        loud.contains("alice@example.com") && loud.contains("bob@example.com"),
        "{loud}"
    );
    assert!(loud.contains(r#"{\"email\":\n\"alice"#), "escaped: {loud}");
    one_record_per_line(&loud);
}
