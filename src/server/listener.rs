//! Listening sockets and the HTTP service on them, for both servers.
//!
//! The relay and the standalone downstream bind the same way (a busy
//! address is named, with the flag that changes it) and serve the same way:
//! in a background task that stops accepting when told and finishes the
//! requests it already has.

use anyhow::Context as _;
use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Binds `addr`; an error names the address and how to pick another.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: pick another address with --listen (port 0 takes any free one)")
    })
}

/// Serves `app` on `listener` in a background task, with each handler told
/// its peer's address, until the returned sender is used or dropped.
pub fn serve(
    listener: TcpListener,
    app: Router,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}
