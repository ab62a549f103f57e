//! The request guard: what is checked about a request before any route
//! sees it, and answered as a problem when it fails.
//!
//! hyper refuses some requests itself (a head over its buffer, too many
//! fields) with a bare status and no body; the README promises a problem
//! body for every error. So hyper's own ceilings are set well above the
//! server's, and the server's limits are enforced here, where the answer
//! can be a problem: 431 for too many or too large header fields, 414 for
//! a long request target, 413 for a `Content-Length` over the body limit —
//! answered before the body is polled, so an `Expect: 100-continue` client
//! gets 413 instead of `100 Continue`, and a client that announces a
//! terabyte and sends nothing gets its answer at once. The body is given a
//! deadline ([`DeadlineBody`]) and a body that misses it is answered 408.
//! Each refusal closes the connection: the rest of the request is unread.

use super::body_deadline::DeadlineBody;
use super::correlation;
use super::limit_log::{Limit, ListenerStats};
use super::limits::ConnectionLimits;
use super::problem::Problem;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body::Body as _;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service as _;

/// The checks, resolved once per listener.
#[derive(Clone, Debug)]
pub struct GuardPolicy {
    pub headers_max: usize,
    pub head_bytes_max: usize,
    pub uri_bytes_max: usize,
    /// Largest `Content-Length` taken; `None`: the routes decide.
    pub body_bytes_max: Option<usize>,
    pub body_read_timeout: Duration,
}

impl GuardPolicy {
    pub fn new(limits: &ConnectionLimits, body_bytes_max: Option<usize>) -> Self {
        GuardPolicy {
            headers_max: limits.headers_max,
            head_bytes_max: limits.head_bytes_max,
            uri_bytes_max: limits.uri_bytes_max,
            body_bytes_max,
            body_read_timeout: limits.body_read_timeout(),
        }
    }

    /// The first limit `request` breaks, with its answer.
    fn refusal<B: http_body::Body>(&self, request: &Request<B>) -> Option<(Limit, Problem)> {
        let uri = request.uri();
        let uri_bytes = uri.path_and_query().map_or(0, |p| p.as_str().len())
            + uri.authority().map_or(0, |a| a.as_str().len());
        if uri_bytes > self.uri_bytes_max {
            return Some((
                Limit::UriTooLong,
                uri_too_long(uri_bytes, self.uri_bytes_max),
            ));
        }
        let headers = request.headers();
        if headers.len() > self.headers_max {
            let detail = format!(
                "{} header fields, at most {} are taken",
                headers.len(),
                self.headers_max
            );
            return Some((Limit::HeadTooLarge, head_too_large(detail)));
        }
        // The request line as sent, less a few bytes of spacing; ": " and CRLF per field.
        let head_bytes = request.method().as_str().len()
            + uri_bytes
            + 10
            + headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if head_bytes > self.head_bytes_max {
            let detail = format!(
                "the request head is about {head_bytes} bytes, at most {} are taken",
                self.head_bytes_max
            );
            return Some((Limit::HeadTooLarge, head_too_large(detail)));
        }
        if let (Some(max), Some(announced)) =
            (self.body_bytes_max, request.body().size_hint().exact())
        {
            if announced > max as u64 {
                return Some((Limit::BodyTooLarge, body_too_large(announced, max)));
            }
        }
        None
    }
}

fn uri_too_long(bytes: usize, max: usize) -> Problem {
    Problem::new(
        StatusCode::URI_TOO_LONG,
        "uri-too-long",
        "URI too long",
        format!("the request target is {bytes} bytes, at most {max} are taken"),
    )
}

fn head_too_large(detail: String) -> Problem {
    Problem::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "header-fields-too-large",
        "Request header fields too large",
        detail,
    )
}

fn body_too_large(announced: u64, max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Content too large",
        format!("Content-Length is {announced} bytes, the body limit is {max}"),
    )
}

fn body_timeout(timeout: Duration) -> Problem {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        "Request timeout",
        format!(
            "the body did not arrive within {} ms of the request head",
            timeout.as_millis()
        ),
    )
}

/// A refusal that ends the connection (the rest of the request is unread),
/// under the request's correlation id like every other problem.
fn closing(problem: Problem, cid: &Arc<str>) -> Response {
    let mut response = problem.correlation_id(cid).into_response();
    correlation::echo(&mut response, cid);
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    headers.remove(CONTENT_LENGTH);
    response
}

/// One connection's service: the guard in front of the routes.
#[derive(Clone)]
pub struct Guarded {
    pub router: Router,
    pub policy: Arc<GuardPolicy>,
    pub stats: Arc<ListenerStats>,
    pub peer: SocketAddr,
    /// Set once this connection has answered a request: tells an idle
    /// keep-alive timeout from a late first head.
    pub answered: Arc<AtomicBool>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Guarded {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        if let Some((limit, problem)) = self.policy.refusal(&request) {
            self.stats.note(limit, &problem.detail);
            self.mark_answer();
            let cid = correlation::pick(request.headers().get(correlation::HEADER));
            return Box::pin(std::future::ready(Ok(closing(problem, &cid))));
        }
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let expired = (!body.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let body = match &expired {
            Some(flag) => {
                let deadline = Instant::now() + self.policy.body_read_timeout;
                Body::new(DeadlineBody::new(body, deadline, flag.clone()))
            }
            None => Body::new(body),
        };
        let answer = self.router.clone().call(Request::from_parts(parts, body));
        let this = self.clone();
        Box::pin(async move {
            let Ok(response) = answer.await;
            this.mark_answer();
            match expired {
                Some(flag) if flag.load(Ordering::Relaxed) => {
                    let problem = body_timeout(this.policy.body_read_timeout);
                    this.stats.note(Limit::BodyTimeout, &this.peer);
                    // The routes ran under an id; the 408 keeps it.
                    let cid = correlation::pick(response.headers().get(correlation::HEADER));
                    Ok(closing(problem, &cid))
                }
                _ => Ok(response),
            }
        })
    }
}

impl Guarded {
    fn mark_answer(&self) {
        self.answered.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GuardPolicy {
        GuardPolicy {
            headers_max: 4,
            head_bytes_max: 300,
            uri_bytes_max: 50,
            body_bytes_max: Some(100),
            body_read_timeout: Duration::from_secs(1),
        }
    }

    fn request(uri: &str, headers: &[(&str, &str)], body: &'static str) -> Request<String> {
        let mut b = Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(body.to_owned()).expect("request")
    }

    fn refused(r: &Request<String>) -> Option<Limit> {
        policy().refusal(r).map(|(limit, _)| limit)
    }

    #[test]
    fn requests_within_the_limits_pass() {
        let r = request("/relay?a=1", &[("content-type", "application/json")], "{}");
        assert_eq!(refused(&r), None);
    }

    #[test]
    fn each_limit_is_enforced_with_its_own_status() {
        let long = format!("/{}", "a".repeat(60));
        assert_eq!(refused(&request(&long, &[], "")), Some(Limit::UriTooLong));
        let five = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")];
        assert_eq!(refused(&request("/", &five, "")), Some(Limit::HeadTooLarge));
        let big = "v".repeat(300);
        assert_eq!(
            refused(&request("/", &[("x", &big)], "")),
            Some(Limit::HeadTooLarge)
        );
        let body = "x".repeat(101).leak();
        assert_eq!(refused(&request("/", &[], body)), Some(Limit::BodyTooLarge));
        let statuses: Vec<u16> = [
            uri_too_long(1, 0),
            head_too_large(String::new()),
            body_too_large(1, 0),
            body_timeout(Duration::ZERO),
        ]
        .iter()
        .map(|p| p.status().as_u16())
        .collect();
        assert_eq!(statuses, [414, 431, 413, 408]);
    }
}
