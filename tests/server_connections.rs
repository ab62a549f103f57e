//! The per-peer connection cap, over raw TCP on loopback: one address that
//! holds its share is refused at once, another address is still served,
//! and a closed connection gives its slot back. Clients bind 127.0.0.1 and
//! 127.0.0.2 (both loopback on Linux) to be two peers; every wait has a
//! deadline.

use resilient_relay::server::config::DownstreamConfig;
use resilient_relay::server::flaky::FaultConfig;
use resilient_relay::server::{RelayServer, Settings};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(5);
const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

async fn start(per_peer: usize) -> RelayServer {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().expect("address");
    s.downstream = DownstreamConfig::Flaky(FaultConfig {
        latency_ms: 1.0,
        ..FaultConfig::default()
    });
    s.server.limits.connections_per_peer_max = Some(per_peer);
    // Long enough that no idle connection here times out during a test.
    s.server.limits.header_read_timeout_ms = 10_000.0;
    s.validate().expect("valid test settings");
    RelayServer::start(&s).await.expect("server starts")
}

/// A connection to `server` from the loopback address `from`.
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(local).expect("bind a loopback address");
    socket.connect(server).await.expect("connect")
}

/// Sends `/health` and reads to the close: the bytes answered (none when
/// the server closed the connection without an answer) and how long it took.
async fn health(mut stream: TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let _ = stream.write_all(HEALTH).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    (got, started.elapsed())
}

fn status(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes.get(9..12)?).ok()
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

#[tokio::test]
async fn a_peer_over_its_cap_is_closed_at_once_and_others_are_served() {
    let server = start(2).await;
    let held = [
        connect_from("127.0.0.1", server.addr).await,
        connect_from("127.0.0.1", server.addr).await,
    ];
    assert!(eventually(|| server.listener_stats().open == 2).await);
    let (got, took) = health(connect_from("127.0.0.1", server.addr).await).await;
    assert!(got.is_empty(), "no answer over the peer's cap: {got:?}");
    assert!(
        took < Duration::from_millis(2_000),
        "closed at once, not by the 10 s header timeout: {took:?}"
    );
    assert_eq!(server.listener_stats().peer_refused, 1);
    assert_eq!(server.listener_stats().refused, 0, "not the global cap");

    let (got, _) = health(connect_from("127.0.0.2", server.addr).await).await;
    assert_eq!(status(&got), Some("200"), "another peer is served");

    drop(held);
    assert!(eventually(|| server.listener_stats().open == 0).await);
    let (got, _) = health(connect_from("127.0.0.1", server.addr).await).await;
    assert_eq!(
        status(&got),
        Some("200"),
        "closed connections give slots back"
    );
    let text = metrics_text(&server).await;
    assert!(
        text.contains("relay_connection_limits_total{limit=\"peer_refused\"} 1\n"),
        "{text}"
    );
}

async fn metrics_text(server: &RelayServer) -> String {
    let mut stream = connect_from("127.0.0.3", server.addr).await;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "no answer to /metrics");
    String::from_utf8_lossy(&got).into_owned()
}

/// Without the setting, one peer may hold many connections (today's
/// behaviour: only the global cap applies).
#[tokio::test]
async fn without_a_per_peer_cap_one_peer_may_hold_many_connections() {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().expect("address");
    s.validate().expect("valid");
    let server = RelayServer::start(&s).await.expect("server starts");
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from("127.0.0.1", server.addr).await);
    }
    assert!(eventually(|| server.listener_stats().open == 20).await);
    let (got, _) = health(connect_from("127.0.0.1", server.addr).await).await;
    assert_eq!(status(&got), Some("200"));
    assert_eq!(server.listener_stats().peer_refused, 0);
}
