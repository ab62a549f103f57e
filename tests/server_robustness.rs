//! The server against slow, idle, oversized and malformed clients, and the
//! bound on how long it takes to exit. Raw TCP on 127.0.0.1 with ephemeral
//! ports, so every byte the server sends is seen; the limits are set short
//! through the settings, and every wait has a deadline.

#[path = "common/process.rs"]
mod process;

use process::Process;
use resilient_relay::server::config::DownstreamConfig;
use resilient_relay::server::flaky::FaultConfig;
use resilient_relay::server::{RelayServer, Settings};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
// tokio's clock (the runtime's, or the system's outside one): std's is kept for drivers.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest any single wait in these tests.
const PATIENCE: Duration = Duration::from_secs(5);

fn settings() -> Settings {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().expect("address");
    s.downstream = DownstreamConfig::Flaky(FaultConfig {
        latency_ms: 1.0,
        ..FaultConfig::default()
    });
    s
}

async fn start(s: Settings) -> RelayServer {
    s.validate().expect("valid test settings");
    RelayServer::start(&s).await.expect("server starts")
}

/// A response as bytes on the wire.
struct Wire {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Wire {
    fn parse(bytes: &[u8]) -> Wire {
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(bytes)));
        let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        Wire {
            status,
            head,
            body: bytes[split + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    }

    fn problem(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.head
        );
        serde_json::from_slice(&self.body).expect("a JSON problem body")
    }
}

/// Reads until the server closes (or `PATIENCE` passes: a test failure).
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the server did not close the connection: {:?}",
        String::from_utf8_lossy(&out)
    );
    out
}

/// Sends `request` on a new connection and reads the answer to the close.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Wire {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    Wire::parse(&read_to_close(&mut stream).await)
}

fn post_relay(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /relay HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Polls `cond` every 10 ms until it holds; false after `PATIENCE`.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + PATIENCE;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

// --- timeouts and the connection cap ---------------------------------------

#[tokio::test]
async fn slowloris_is_closed_after_the_header_read_timeout() {
    let mut s = settings();
    s.server.limits.header_read_timeout_ms = 300.0;
    let server = start(s).await;
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let (mut rx, mut tx) = stream.into_split();
    let started = Instant::now();
    // One byte of a never-ending header every 20 ms, for up to 5 s.
    let trickle = tokio::spawn(async move {
        let _ = tx.write_all(b"GET /health HTTP/1.1\r\nx-slow: ").await;
        for _ in 0..250 {
            if tx.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, rx.read_to_end(&mut sink)).await;
    let closed_after = started.elapsed();
    trickle.abort();
    assert!(sink.is_empty(), "no answer, just a close: {sink:?}");
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(2_000)).contains(&closed_after),
        "closed after {closed_after:?}, the header timeout is 300 ms"
    );
    assert!(eventually(|| server.listener_stats().header_timeouts == 1).await);
    // The operator sees it too, in /stats and /metrics.
    let stats = exchange(
        server.addr,
        b"GET /stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(stats.status, 200, "{}", stats.head);
    let stats: serde_json::Value = serde_json::from_slice(&stats.body).expect("stats JSON");
    assert_eq!(stats["connections"]["header_timeouts"], 1);
    let metrics = exchange(
        server.addr,
        b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("relay_connection_limits_total{limit=\"header_timeouts\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_after_the_body_read_timeout() {
    let mut s = settings();
    s.server.limits.body_read_timeout_ms = 300.0;
    let server = start(s).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"POST /relay HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"a\":")
        .await
        .expect("send");
    let wire = Wire::parse(&read_to_close(&mut stream).await);
    let answered_after = started.elapsed();
    assert_eq!(wire.status, 408, "{}", wire.head);
    assert_eq!(
        wire.problem()["type"],
        "tag:resilient-relay,2025:body-timeout"
    );
    assert_eq!(wire.header("connection"), Some("close"));
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(2_000)).contains(&answered_after),
        "answered after {answered_after:?}, the body timeout is 300 ms"
    );
    assert_eq!(server.listener_stats().body_timeouts, 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_counted() {
    let mut s = settings();
    s.server.limits.header_read_timeout_ms = 300.0;
    let server = start(s).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send");
    let answered = Instant::now();
    let bytes = read_to_close(&mut stream).await;
    let idle = answered.elapsed();
    assert_eq!(Wire::parse(&bytes).status, 200);
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(2_000)).contains(&idle),
        "closed {idle:?} after the answer"
    );
    let counted = eventually(|| server.listener_stats().idle_timeouts == 1).await;
    assert!(counted, "{:?}", server.listener_stats());
    assert_eq!(server.listener_stats().header_timeouts, 0);
}

/// With the cap at 4, four clients that connect and send nothing hold every
/// slot: a fifth is closed at once, and `/health` answers again on a fresh
/// connection as soon as the header timeout has closed the idle ones.
#[tokio::test]
async fn the_connection_cap_refuses_the_next_one_and_health_recovers() {
    let mut s = settings();
    s.server.limits.connections_max = Some(4);
    s.server.limits.header_read_timeout_ms = 1_000.0;
    let server = start(s).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    assert!(
        eventually(|| server.listener_stats().open == 4).await,
        "4 served"
    );
    let refused_at = Instant::now();
    let mut fifth = TcpStream::connect(server.addr)
        .await
        .expect("the kernel accepts");
    let _ = fifth
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, fifth.read_to_end(&mut got)).await;
    assert!(got.is_empty(), "no answer over the cap: {got:?}");
    assert!(
        refused_at.elapsed() < Duration::from_millis(800),
        "closed at once, not by the 1 s header timeout: {:?}",
        refused_at.elapsed()
    );
    assert_eq!(server.listener_stats().refused, 1);
    // Recovery: a fresh connection is answered once the idle ones time out.
    let until = Instant::now() + PATIENCE;
    let recovered = loop {
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        let _ = c
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, c.read_to_end(&mut bytes)).await;
        if !bytes.is_empty() {
            break Some((Wire::parse(&bytes).status, refused_at.elapsed()));
        }
        if Instant::now() > until {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, after) = recovered.expect("/health answers again");
    assert_eq!(status, 200);
    assert!(
        after < Duration::from_millis(3_000),
        "recovered after {after:?}"
    );
    for mut c in idle {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, c.read_to_end(&mut rest)).await;
        assert!(
            rest.is_empty(),
            "idle connections are closed without an answer"
        );
    }
    assert!(server.listener_stats().header_timeouts >= 4);
}

// --- errors before a handler runs ------------------------------------------

#[tokio::test]
async fn too_many_header_fields_get_a_431_problem() {
    let server = start(settings()).await;
    let mut request = String::from("GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for i in 0..80 {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let wire = exchange(server.addr, request.as_bytes()).await;
    assert_eq!(wire.status, 431);
    assert_eq!(
        wire.problem()["type"],
        "tag:resilient-relay,2025:header-fields-too-large"
    );
    assert_eq!(server.listener_stats().head_too_large, 1);
}

#[tokio::test]
async fn a_header_field_too_large_gets_a_431_problem() {
    let server = start(settings()).await;
    let big = "v".repeat(20 * 1024);
    let request =
        format!("GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {big}\r\n\r\n");
    let wire = exchange(server.addr, request.as_bytes()).await;
    assert_eq!(wire.status, 431);
    assert_eq!(wire.problem()["status"], 431);
}

#[tokio::test]
async fn a_long_request_target_gets_a_414_problem() {
    let server = start(settings()).await;
    let pad = "p".repeat(9 * 1024);
    let request = format!("GET /health?pad={pad} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let wire = exchange(server.addr, request.as_bytes()).await;
    assert_eq!(wire.status, 414);
    assert_eq!(
        wire.problem()["type"],
        "tag:resilient-relay,2025:uri-too-long"
    );
    assert_eq!(server.listener_stats().uri_too_long, 1);
}

#[tokio::test]
async fn a_terabyte_content_length_is_answered_413_without_a_body() {
    let server = start(settings()).await;
    let started = Instant::now();
    let wire = exchange(
        server.addr,
        b"POST /relay HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1099511627776\r\n\r\n",
    )
    .await;
    assert_eq!(wire.status, 413);
    assert_eq!(
        wire.problem()["type"],
        "tag:resilient-relay,2025:body-too-large"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "at once");
    assert_eq!(server.listener_stats().body_too_large, 1);
}

#[tokio::test]
async fn expect_100_continue_over_the_limit_gets_413_not_100() {
    let server = start(settings()).await;
    let wire = exchange(
        server.addr,
        b"POST /relay HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 104857600\r\n\r\n",
    )
    .await;
    assert_eq!(wire.status, 413, "the first answer: {}", wire.head);
    assert_eq!(wire.problem()["status"], 413);
}

/// Above hyper's own ceilings (more than 100 fields; a head over four
/// times `head_bytes_max`), hyper answers 431 itself, with no body.
#[tokio::test]
async fn heads_beyond_hyper_s_ceilings_get_its_bare_431() {
    let server = start(settings()).await;
    let mut many = String::from("GET /health HTTP/1.1\r\nhost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let huge = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "v".repeat(70 * 1024)
    );
    for request in [many, huge] {
        let wire = exchange(server.addr, request.as_bytes()).await;
        assert_eq!(wire.status, 431);
        assert!(wire.body.is_empty(), "hyper sends no body");
    }
}

/// What hyper answers itself, before any layer runs, as the README says:
/// a bare 400 with no body, and the connection closed.
#[tokio::test]
async fn malformed_heads_get_hyper_s_bare_400() {
    let server = start(settings()).await;
    for request in [
        &b"GET /health HTTP/9.9 extra\r\n\r\n"[..],
        b"GET\x01 / HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST /relay HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
        b"POST /relay HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
    ] {
        let wire = exchange(server.addr, request).await;
        assert_eq!(wire.status, 400, "{:?}", String::from_utf8_lossy(request));
        assert!(wire.body.is_empty(), "hyper sends no body");
        assert_eq!(wire.header("content-length"), Some("0"), "{}", wire.head);
    }
}

// --- what valid JSON is ----------------------------------------------------

#[tokio::test]
async fn json_outside_i_json_is_refused_with_400() {
    let server = start(settings()).await;
    for body in [
        &b"{\"a\":\"\xff\xfe\"}"[..],
        b"{\"a\":\"\xc0\xaf\"}",
        br#"{"a":"\ud800"}"#,
        br#"{"a":1e999999}"#,
        br#"{"a":1,"a":2}"#,
    ] {
        let wire = exchange(server.addr, &post_relay(body)).await;
        assert_eq!(wire.status, 400, "{:?}", String::from_utf8_lossy(body));
        assert_eq!(
            wire.problem()["type"],
            "tag:resilient-relay,2025:malformed-json"
        );
    }
    let fine = exchange(
        server.addr,
        &post_relay(br#"{"a":"\ud83d\ude00","n":1e300}"#),
    )
    .await;
    assert_eq!(fine.status, 202, "{}", String::from_utf8_lossy(&fine.body));
}

// --- the exit ----------------------------------------------------------------

/// A `serve` process on an ephemeral port with the memory store.
fn serve(args: &[&str]) -> Process {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--store", "memory"];
    all.extend(args);
    Process::spawn(&all, "relay listening")
}

/// How long a SIGTERM'd `serve` may take before the test gives up.
const EXIT_PATIENCE: Duration = Duration::from_secs(20);

/// A request whose head is sent and whose body never completes.
fn half_sent(addr: SocketAddr) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"POST /relay HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":")
        .expect("send");
    s
}

fn accepted(addr: SocketAddr) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(&post_relay(b"{}")).expect("send");
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).expect("read");
    Wire::parse(&bytes).status
}

/// Deadline 500 ms; the exit may take the stated margin (about 0.5 s) more,
/// and the test allows a second of scheduling noise beyond that.
const EXIT_BOUND: Duration = Duration::from_millis(2_000);

#[test]
fn a_half_sent_request_does_not_hold_the_exit_past_the_deadline() {
    let served = serve(&["--drain-deadline-ms", "500"]);
    let _open = half_sent(served.addr);
    std::thread::sleep(Duration::from_millis(100));
    let (code, took) = served.terminate(EXIT_PATIENCE);
    assert_eq!(code, Some(0), "nothing was accepted, nothing left");
    assert!(took < EXIT_BOUND, "exit took {took:?}");
}

#[test]
fn work_left_at_the_deadline_exits_3_on_time() {
    let served = serve(&[
        "--drain-deadline-ms",
        "500",
        "--latency-ms",
        "60000",
        "--set",
        "relay.retry.attempt_timeout_ms=0",
    ]);
    assert_eq!(accepted(served.addr), 202);
    let _open = half_sent(served.addr);
    std::thread::sleep(Duration::from_millis(100));
    let (code, took) = served.terminate(EXIT_PATIENCE);
    assert_eq!(code, Some(3), "an accepted job was left unfinished");
    assert!(
        (Duration::from_millis(450)..EXIT_BOUND).contains(&took),
        "exit took {took:?}: the deadline, then at most the margin"
    );
}

#[test]
fn dead_letters_left_exit_4() {
    let served = serve(&[
        "--drain-deadline-ms",
        "2000",
        "--failure-rate",
        "1",
        "--set",
        "relay.retry.attempts_max=1",
    ]);
    assert_eq!(accepted(served.addr), 202);
    std::thread::sleep(Duration::from_millis(300));
    let (code, took) = served.terminate(EXIT_PATIENCE);
    assert_eq!(
        code,
        Some(4),
        "the job was dead-lettered and its letter left"
    );
    assert!(
        took < Duration::from_millis(1_500),
        "drained at once: {took:?}"
    );
}

/// The guard's answers carry a correlation id like every other problem:
/// the client's own when it sent one, echoed in the header and the body.
#[tokio::test]
async fn guard_problems_carry_the_correlation_id() {
    let mut s = settings();
    s.server.limits.body_read_timeout_ms = 200.0;
    let server = start(s).await;
    let pad = "p".repeat(9 * 1024);
    let request = format!(
        "GET /health?pad={pad} HTTP/1.1\r\nhost: x\r\nx-correlation-id: trace-414\r\nconnection: close\r\n\r\n"
    );
    let wire = exchange(server.addr, request.as_bytes()).await;
    assert_eq!(wire.status, 414);
    assert_eq!(wire.header("x-correlation-id"), Some("trace-414"));
    assert_eq!(wire.problem()["correlation_id"], "trace-414");

    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /relay HTTP/1.1\r\nhost: x\r\nx-correlation-id: trace-408\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"a\":")
        .await
        .expect("send");
    let wire = Wire::parse(&read_to_close(&mut stream).await);
    assert_eq!(wire.status, 408, "{}", wire.head);
    assert_eq!(wire.header("x-correlation-id"), Some("trace-408"));
    assert_eq!(wire.problem()["correlation_id"], "trace-408");

    let request = "GET /health HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\nconnection: close\r\n\r\n";
    let wire = exchange(server.addr, request.as_bytes()).await;
    assert!(
        wire.header("x-correlation-id")
            .is_some_and(|c| !c.is_empty()),
        "a generated id when the client sent none: {}",
        wire.head
    );
}
