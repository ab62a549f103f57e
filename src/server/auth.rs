//! The operator token: who may read dead letters, redrive them, and read
//! `/stats` and `/metrics`.
//!
//! Dead letters hold other clients' payloads and a redrive runs work again,
//! so these endpoints are the operator's. With a token configured they want
//! `Authorization: Bearer <token>`, compared in constant time (over SHA-256
//! digests, so the token's length does not leak either). With no token they
//! answer only peers on a loopback address: fail closed, yet a local
//! operator can still look. (Behind a reverse proxy on the same host every
//! peer is loopback: set a token there.)

use super::correlation::CorrelationId;
use super::problem::Problem;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// How operator endpoints are guarded.
#[derive(Clone)]
pub struct OperatorAuth {
    /// SHA-256 of the token, when one is configured.
    token: Option<[u8; 32]>,
}

impl std::fmt::Debug for OperatorAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = if self.token.is_some() {
            "token"
        } else {
            "loopback-only"
        };
        write!(f, "OperatorAuth({mode})")
    }
}

/// Why an operator request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (or not one).
    NoToken,
    WrongToken,
    /// No token is configured and the peer is not on loopback.
    NotLoopback,
}

impl OperatorAuth {
    pub fn new(token: Option<&str>) -> OperatorAuth {
        OperatorAuth {
            token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks one request's `Authorization` values and peer.
    pub fn check(&self, authorization: &[&[u8]], peer: Option<SocketAddr>) -> Result<(), Denied> {
        let Some(expected) = &self.token else {
            return match peer {
                Some(p) if p.ip().to_canonical().is_loopback() => Ok(()),
                _ => Err(Denied::NotLoopback),
            };
        };
        let [value] = authorization else {
            return Err(Denied::NoToken);
        };
        let given = bearer(value).ok_or(Denied::NoToken)?;
        let digest: [u8; 32] = Sha256::digest(given).into();
        if bool::from(digest.ct_eq(expected)) {
            Ok(())
        } else {
            Err(Denied::WrongToken)
        }
    }
}

/// The credentials of `Bearer <credentials>` (scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
        .filter(|t| !t.is_empty())
}

fn problem(denied: Denied) -> Problem {
    let (status, slug, title, detail) = match denied {
        Denied::NoToken => (
            StatusCode::UNAUTHORIZED,
            "operator-token-required",
            "Unauthorized",
            "this endpoint is for operators: send `Authorization: Bearer <operator token>`",
        ),
        Denied::WrongToken => (
            StatusCode::UNAUTHORIZED,
            "bad-operator-token",
            "Unauthorized",
            "the operator token does not match: use the one the server reads from --operator-token-file or RELAY_OPERATOR_TOKEN",
        ),
        Denied::NotLoopback => (
            StatusCode::FORBIDDEN,
            "operator-loopback-only",
            "Forbidden",
            "no operator token is configured, so this endpoint answers only on loopback: \
             ask from the server's host, or start it with --operator-token-file",
        ),
    };
    Problem::new(status, slug, title, detail)
}

/// What the middleware needs: the policy and a refusal counter.
#[derive(Clone, Debug)]
pub struct Guard {
    pub auth: OperatorAuth,
    pub refused: Arc<AtomicU64>,
}

/// Middleware for operator routes: lets the request through or answers
/// 401 (with `WWW-Authenticate`) or 403 as a problem.
pub async fn require_operator(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    let values: Vec<&[u8]> = request
        .headers()
        .get_all(AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .take(2)
        .collect();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let Err(denied) = guard.auth.check(&values, peer) else {
        return next.run(request).await;
    };
    guard.refused.fetch_add(1, Ordering::Relaxed);
    tracing::info!(?denied, peer = ?peer, path = %request.uri().path(), "operator endpoint refused");
    let mut p = problem(denied);
    if let Some(CorrelationId(cid)) = request.extensions().get::<CorrelationId>() {
        p = p.correlation_id(cid);
    }
    let mut response = p.into_response();
    if denied != Denied::NotLoopback {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"relay-operator\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    #[test]
    fn without_a_token_only_loopback_peers_pass() {
        let a = OperatorAuth::new(None);
        assert_eq!(a.check(&[], peer("127.0.0.1:5")), Ok(()));
        assert_eq!(a.check(&[], peer("[::1]:5")), Ok(()));
        assert_eq!(a.check(&[], peer("[::ffff:127.0.0.1]:5")), Ok(()));
        assert_eq!(a.check(&[], peer("10.0.0.1:5")), Err(Denied::NotLoopback));
        assert_eq!(a.check(&[], None), Err(Denied::NotLoopback));
    }

    #[test]
    fn with_a_token_only_the_token_passes_from_anywhere() {
        let a = OperatorAuth::new(Some("tok"));
        let remote = peer("10.0.0.1:5");
        assert_eq!(a.check(&[b"Bearer tok"], remote), Ok(()));
        assert_eq!(a.check(&[b"bearer tok"], remote), Ok(()));
        assert_eq!(a.check(&[b"Bearer tok2"], remote), Err(Denied::WrongToken));
        assert_eq!(a.check(&[b"Basic tok"], remote), Err(Denied::NoToken));
        assert_eq!(a.check(&[b"Bearer "], remote), Err(Denied::NoToken));
        assert_eq!(a.check(&[], peer("127.0.0.1:5")), Err(Denied::NoToken));
        assert_eq!(
            a.check(&[b"Bearer tok", b"Bearer tok"], remote),
            Err(Denied::NoToken)
        );
    }
}
