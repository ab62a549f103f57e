//! Correlation ids: one id follows a request through every log line.
//!
//! A client may name its request with `X-Correlation-Id` (kept if it is
//! short, visible ASCII); otherwise the server makes one. The id is echoed
//! on the response, carried by the request's tracing span (so every log
//! line of the request shows it), handed to the relay's task for the lines
//! about the job, and forwarded to the downstream. Error responses that did
//! not come out as problem details (axum's own rejections) are turned into
//! problems here, so every error the server sends has the same shape.

use super::problem::{Problem, PROBLEM_JSON};
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::fmt::Write;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// Longest correlation id kept from a client.
pub const CHARS_MAX: usize = 128;

/// A request's correlation id, found in its extensions.
#[derive(Clone, Debug)]
pub struct CorrelationId(pub Arc<str>);

/// Process-unique ids: a per-process random prefix (std's hash keys are
/// seeded from the OS) and a counter. No clock, no seeded stream needed.
fn generate() -> Arc<str> {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = IdBuf::default();
    // Cannot fail: 16 + 1 + at most 16 hex digits fit the buffer.
    let _ = write!(id, "{prefix:016x}-{n:x}");
    Arc::from(id.as_str())
}

/// Room for a generated id on the stack (one allocation per id, the `Arc`).
struct IdBuf {
    bytes: [u8; 40],
    len: usize,
}

impl Default for IdBuf {
    fn default() -> Self {
        IdBuf {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl IdBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for IdBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The client's id if it is usable, else a fresh one.
/// The client's id when usable, else a new one. Also used by the request
/// guard, whose answers leave before this layer runs.
pub fn pick(header: Option<&HeaderValue>) -> Arc<str> {
    let usable = header
        .map(HeaderValue::as_bytes)
        .filter(|b| !b.is_empty() && b.len() <= CHARS_MAX)
        .filter(|b| b.iter().all(|c| c.is_ascii_graphic()))
        .and_then(|b| std::str::from_utf8(b).ok());
    match usable {
        Some(s) => Arc::from(s),
        None => generate(),
    }
}

/// Middleware: picks the id, runs the request in its span, echoes it, and
/// makes sure an error answer is a problem body.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let cid = pick(request.headers().get(HEADER));
    request.extensions_mut().insert(CorrelationId(cid.clone()));
    // One field keeps the span cheap to open on every request.
    let span = tracing::info_span!("request", cid = %cid);
    tracing::debug!(parent: &span, method = %request.method(), path = %request.uri().path(), "request");
    let mut handled = std::pin::pin!(next.run(request).instrument(span));
    let mut response = handled.as_mut().await;
    if needs_problem_body(&response) {
        let span = handled.span().clone();
        response = ensure_problem(response, &cid).instrument(span).await;
    }
    echo(&mut response, &cid);
    response
}

/// Puts the id on the response, as every answer carries it.
pub fn echo(response: &mut Response, cid: &str) {
    if let Ok(v) = HeaderValue::from_str(cid) {
        response.headers_mut().insert(HEADER, v);
    }
}

/// An error answer whose body is not a problem yet.
fn needs_problem_body(response: &Response) -> bool {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    (status.is_client_error() || status.is_server_error()) && !is_problem
}

/// Bytes of a non-problem error body quoted in the problem's detail.
const DETAIL_BYTES_MAX: usize = 512;

/// Rewrites an error response without a problem body (an axum rejection,
/// a bare status) into one, keeping its status and headers (`Allow`).
async fn ensure_problem(response: Response, cid: &Arc<str>) -> Response {
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => bytes::Bytes::new(),
    };
    let detail = String::from_utf8_lossy(&text[..text.len().min(DETAIL_BYTES_MAX)]).into_owned();
    let title = status.canonical_reason().unwrap_or("Error");
    let slug = title.to_ascii_lowercase().replace(' ', "-");
    let problem = Problem::new(status, slug, title, detail).correlation_id(cid);
    let fresh = problem.into_response();
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let (_, body) = fresh.into_parts();
    tracing::debug!(status = status.as_u16(), "error answered as a problem");
    Response::from_parts(parts, Body::new(body))
}
