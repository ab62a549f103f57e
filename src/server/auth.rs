//! The operator token: who may read dead letters, redrive them, and read
//! `/stats` and `/metrics`.
//!
//! Dead letters hold other clients' payloads and a redrive runs work again,
//! so these endpoints are the operator's. With a token configured they want
//! `Authorization: Bearer <token>`, compared in constant time (over SHA-256
//! digests, so the token's length does not leak either). With no token they
//! answer only peers on a loopback address: fail closed, yet a local
//! operator can still look. (Behind a reverse proxy on the same host every
//! peer is loopback: set a token there.) A loopback peer is not enough on
//! its own: a web page open in a browser on the same host can send requests
//! to loopback too (cross-site, or through DNS rebinding under its own host
//! name). So without a token a request must also name a loopback host in
//! `Host` and carry no `Origin` header, which browsers add to every such
//! request and command-line tools do not.

use super::correlation::CorrelationId;
use super::problem::Problem;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, WWW_AUTHENTICATE};
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
    /// No token is configured and the request came from a browser (it
    /// carries `Origin`) or names a host that is not loopback (`Host`).
    FromBrowser,
}

/// What besides the peer a token-less check looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    /// The `Host` header, if any.
    pub host: Option<&'a [u8]>,
    /// Whether an `Origin` header was sent.
    pub has_origin: bool,
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
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
    pub fn check(
        &self,
        authorization: &[&[u8]],
        peer: Option<SocketAddr>,
        origin: Origin<'_>,
    ) -> Result<(), Denied> {
        let Some(expected) = &self.token else {
            return match peer {
                Some(p) if !p.ip().to_canonical().is_loopback() => Err(Denied::NotLoopback),
                None => Err(Denied::NotLoopback),
                Some(_) if origin.has_origin || !origin.host.is_some_and(is_loopback_host) => {
                    Err(Denied::FromBrowser)
                }
                Some(_) => Ok(()),
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
        Denied::FromBrowser => (
            StatusCode::FORBIDDEN,
            "operator-browser-refused",
            "Forbidden",
            "no operator token is configured, so this endpoint takes only requests that name a \
             loopback Host and carry no Origin header (not from a browser): use curl on the \
             server's host, or start it with --operator-token-file",
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
    let origin = Origin {
        host: request.headers().get(HOST).map(HeaderValue::as_bytes),
        has_origin: request.headers().contains_key(ORIGIN),
    };
    let Err(denied) = guard.auth.check(&values, peer, origin) else {
        return next.run(request).await;
    };
    guard.refused.fetch_add(1, Ordering::Relaxed);
    tracing::info!(?denied, peer = ?peer, path = %request.uri().path(), "operator endpoint refused");
    let mut p = problem(denied);
    if let Some(CorrelationId(cid)) = request.extensions().get::<CorrelationId>() {
        p = p.correlation_id(cid);
    }
    let mut response = p.into_response();
    if !matches!(denied, Denied::NotLoopback | Denied::FromBrowser) {
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

    const LOCAL: Origin<'static> = Origin {
        host: Some(b"127.0.0.1:8080"),
        has_origin: false,
    };

    fn peer(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    #[test]
    fn without_a_token_only_loopback_peers_pass() {
        let a = OperatorAuth::new(None);
        assert_eq!(a.check(&[], peer("127.0.0.1:5"), LOCAL), Ok(()));
        assert_eq!(a.check(&[], peer("[::1]:5"), LOCAL), Ok(()));
        assert_eq!(a.check(&[], peer("[::ffff:127.0.0.1]:5"), LOCAL), Ok(()));
        assert_eq!(
            a.check(&[], peer("10.0.0.1:5"), LOCAL),
            Err(Denied::NotLoopback)
        );
        assert_eq!(a.check(&[], None, LOCAL), Err(Denied::NotLoopback));
    }

    #[test]
    fn without_a_token_browser_requests_and_foreign_hosts_are_refused() {
        let a = OperatorAuth::new(None);
        let local = peer("127.0.0.1:5");
        let with = |host: &'static [u8], has_origin| Origin {
            host: Some(host),
            has_origin,
        };
        for host in [
            &b"localhost"[..],
            b"LOCALHOST:3000",
            b"127.0.0.1",
            b"[::1]:9",
            b"127.1.2.3:80",
        ] {
            assert_eq!(a.check(&[], local, with(host, false)), Ok(()), "{host:?}");
        }
        // A cross-site form or fetch carries Origin; a rebound name is not loopback.
        assert_eq!(
            a.check(&[], local, with(b"127.0.0.1:8080", true)),
            Err(Denied::FromBrowser)
        );
        for host in [
            &b"evil.example:8080"[..],
            b"localhost.evil.example",
            b"10.0.0.1",
            b"",
        ] {
            assert_eq!(
                a.check(&[], local, with(host, false)),
                Err(Denied::FromBrowser),
                "{host:?}"
            );
        }
        assert_eq!(
            a.check(&[], local, Origin::default()),
            Err(Denied::FromBrowser)
        );
        // With a token, Origin and Host do not matter: a browser cannot add the header cross-site.
        let t = OperatorAuth::new(Some("tok"));
        assert_eq!(
            t.check(&[b"Bearer tok"], local, with(b"evil.example", true)),
            Ok(())
        );
    }

    #[test]
    fn with_a_token_only_the_token_passes_from_anywhere() {
        let a = OperatorAuth::new(Some("tok"));
        let remote = peer("10.0.0.1:5");
        assert_eq!(a.check(&[b"Bearer tok"], remote, LOCAL), Ok(()));
        assert_eq!(a.check(&[b"bearer tok"], remote, LOCAL), Ok(()));
        assert_eq!(
            a.check(&[b"Bearer tok2"], remote, LOCAL),
            Err(Denied::WrongToken)
        );
        assert_eq!(
            a.check(&[b"Basic tok"], remote, LOCAL),
            Err(Denied::NoToken)
        );
        assert_eq!(a.check(&[b"Bearer "], remote, LOCAL), Err(Denied::NoToken));
        assert_eq!(
            a.check(&[], peer("127.0.0.1:5"), LOCAL),
            Err(Denied::NoToken)
        );
        assert_eq!(
            a.check(&[b"Bearer tok", b"Bearer tok"], remote, LOCAL),
            Err(Denied::NoToken)
        );
    }
}
