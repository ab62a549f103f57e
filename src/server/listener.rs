//! Listening sockets and the HTTP service on them, for both servers.
//!
//! The relay and the standalone downstream bind the same way (a busy
//! address is named, with the flag that changes it) and serve the same way:
//! an accept loop in a background task, one hyper connection per client
//! with the [`ConnectionLimits`] applied (header-read and idle timeouts from
//! hyper's timer, the [`request_guard`](super::request_guard) in front of
//! the routes), at most `connections` clients at once (and, when set, at
//! most `connections_per_peer_max` from one address: [`PeerCap`]), and on stop a
//! graceful close: idle connections end at once, requests in progress
//! finish. Whoever stops it bounds the wait and aborts the task, which
//! drops every connection still open.

use super::limit_log::{Limit, ListenerSnapshot, ListenerStats};
use super::limits::ConnectionLimits;
use super::peer_cap::PeerCap;
use super::request_guard::{GuardPolicy, Guarded};
use anyhow::Context as _;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// Pause after a failed `accept` (out of descriptors, most often), so the
/// loop does not spin while connections close and free some.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Binds `addr`; an error names the address and how to pick another.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: pick another address with --listen (port 0 takes any free one)")
    })
}

/// How a listener serves.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    pub limits: ConnectionLimits,
    /// A `Content-Length` above this is answered 413 before the body is
    /// read; `None` leaves bodies to the routes.
    pub body_bytes_max: Option<usize>,
    /// Where the limits count what they did (shared with `/stats`).
    pub stats: Arc<ListenerStats>,
}

/// A listener being served.
pub struct Serving {
    /// Send (or drop) to stop accepting and close connections gracefully.
    pub stop: oneshot::Sender<()>,
    /// Ends when every connection has closed.
    pub task: JoinHandle<std::io::Result<()>>,
    pub stats: Arc<ListenerStats>,
}

impl Serving {
    pub fn snapshot(&self) -> ListenerSnapshot {
        self.stats.snapshot()
    }
}

/// Serves `app` on `listener` with the default limits and no body limit
/// of its own, until the returned sender is used or dropped.
pub fn serve(
    listener: TcpListener,
    app: Router,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let serving = serve_with(listener, app, &ServeOptions::default());
    (serving.stop, serving.task)
}

/// Serves `app` on `listener` under `options`, each handler told its
/// peer's address.
pub fn serve_with(listener: TcpListener, app: Router, options: &ServeOptions) -> Serving {
    let (stop, stopped) = oneshot::channel::<()>();
    let stats = options.stats.clone();
    let server = Server {
        http: builder(&options.limits),
        policy: Arc::new(GuardPolicy::new(&options.limits, options.body_bytes_max)),
        connections_max: options.limits.connections(),
        peers: PeerCap::new(options.limits.connections_per_peer_max),
        router: app,
        stats: stats.clone(),
    };
    let task = tokio::spawn(server.run(listener, stopped));
    Serving { stop, task, stats }
}

/// hyper's HTTP/1 settings: its timer closes heads that are late and
/// connections that idle; its ceilings sit above the guard's limits.
fn builder(limits: &ConnectionLimits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout())
        .keep_alive(limits.keep_alive)
        .max_header_size(limits.hyper_head_bytes_max())
        .max_buf_size(limits.hyper_head_bytes_max().max(8192));
    if let Some(n) = limits.hyper_headers_max() {
        b.max_headers(n);
    }
    b
}

struct Server {
    http: http1::Builder,
    policy: Arc<GuardPolicy>,
    connections_max: usize,
    peers: Arc<PeerCap>,
    router: Router,
    stats: Arc<ListenerStats>,
}

impl Server {
    async fn run(
        self,
        listener: TcpListener,
        mut stopped: oneshot::Receiver<()>,
    ) -> std::io::Result<()> {
        let graceful = GracefulShutdown::new();
        // Owns every connection: aborting this task drops them all.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer, &graceful, &mut connections),
                    Err(e) => {
                        self.stats.note(Limit::AcceptError, &e);
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
            }
        }
        drop(listener);
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Serves a new connection, or closes it at once when the cap, or its
    /// peer's cap, is reached.
    fn admit(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        graceful: &GracefulShutdown,
        connections: &mut JoinSet<()>,
    ) {
        while connections.try_join_next().is_some() {}
        if connections.len() >= self.connections_max {
            drop(stream);
            let detail = format!("{peer}, {} connections open", connections.len());
            self.stats.note(Limit::Refused, &detail);
            return;
        }
        let slot = match self.peers.try_open(peer.ip()) {
            Ok(slot) => slot,
            Err(open) => {
                drop(stream);
                let detail = format!("{peer}, {open} connections open from it");
                self.stats.note(Limit::PeerRefused, &detail);
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let answered = Arc::new(AtomicBool::new(false));
        let service = Guarded {
            router: self.router.clone(),
            policy: self.policy.clone(),
            stats: self.stats.clone(),
            peer,
            answered: answered.clone(),
        };
        let connection = graceful.watch(self.http.serve_connection(TokioIo::new(stream), service));
        let stats = self.stats.clone();
        stats.open.fetch_add(1, Ordering::Relaxed);
        connections.spawn(async move {
            let ended = connection.await;
            drop(slot);
            stats.open.fetch_sub(1, Ordering::Relaxed);
            match ended {
                // hyper's one timer covers the wait for every head: before
                // the first answer it is a late (or absent) first request,
                // after one it is a keep-alive connection left idle (or a
                // later head sent too slowly: hyper does not tell them apart).
                Err(e) if e.is_timeout() => {
                    let limit = if answered.load(Ordering::Relaxed) {
                        Limit::IdleTimeout
                    } else {
                        Limit::HeaderTimeout
                    };
                    stats.note(limit, &peer);
                }
                Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                Ok(()) => {}
            }
        });
    }
}
