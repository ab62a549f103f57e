//! A small HTTP/1 client over loopback: downstream calls, tests, the load generator.
//!
//! One pooled hyper client with plain HTTP (the relay talks to services
//! next to it; TLS belongs to a proxy in front). Answers are read whole, up
//! to a byte limit, so a misbehaving peer cannot make the caller buffer
//! without bound.

use super::signature::{Signed, Signer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Idle connections kept per peer.
const IDLE_PER_HOST_MAX: usize = 256;

/// A whole answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallFailed {
    #[error("bad request: {0}")]
    Build(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("answer body: {0}")]
    Body(String),
}

/// A cloneable pooled client; clones share connections.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    body_bytes_max: usize,
}

impl HttpClient {
    /// A client that reads answers of at most `body_bytes_max` bytes.
    pub fn new(body_bytes_max: usize) -> HttpClient {
        HttpClient::from_address(None, IDLE_PER_HOST_MAX, body_bytes_max)
    }

    /// A client whose connections leave from `local` (say `127.0.0.2`, to
    /// be another peer on loopback).
    pub fn bound_to(local: std::net::IpAddr, body_bytes_max: usize) -> HttpClient {
        HttpClient::from_address(Some(local), IDLE_PER_HOST_MAX, body_bytes_max)
    }

    /// [`HttpClient::bound_to`] keeping at most `idle_max` idle connections:
    /// one of many peers, whose pools together must stay small.
    pub fn peer(local: std::net::IpAddr, idle_max: usize, body_bytes_max: usize) -> HttpClient {
        HttpClient::from_address(Some(local), idle_max, body_bytes_max)
    }

    fn from_address(
        local: Option<std::net::IpAddr>,
        idle_max: usize,
        body_bytes_max: usize,
    ) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(local);
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(idle_max)
            .build(connector);
        HttpClient {
            inner,
            body_bytes_max,
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, CallFailed> {
        let mut builder = Request::builder().method(method).uri(uri.clone());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| CallFailed::Build(e.to_string()))?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| CallFailed::Transport(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.body_bytes_max)
            .collect()
            .await
            .map_err(|e| CallFailed::Body(e.to_string()))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &Uri) -> Result<Reply, CallFailed> {
        self.send(Method::GET, uri, &[], Bytes::new()).await
    }

    /// `POST uri` with a JSON body and extra headers.
    pub async fn post_json(
        &self,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, CallFailed> {
        let mut all = Vec::with_capacity(headers.len() + 1);
        all.push((
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        all.extend_from_slice(headers);
        self.send(Method::POST, uri, &all, body.into()).await
    }
}

/// The two headers that sign a request (`X-Signature-Timestamp`,
/// `X-Signature`), signed at unix second `now`.
pub fn signature_headers(
    signer: &Signer,
    method: &Method,
    path_and_query: &str,
    key: Option<&str>,
    body: &[u8],
    now: u64,
) -> [(HeaderName, HeaderValue); 2] {
    let signature = signer.sign(&Signed {
        method: method.as_str(),
        path_and_query,
        timestamp: now,
        key,
        body,
    });
    [
        (
            HeaderName::from_static("x-signature-timestamp"),
            HeaderValue::from(now),
        ),
        (
            HeaderName::from_static("x-signature"),
            // Cannot fail: `v1=` and hex digits are valid header bytes.
            HeaderValue::from_str(&signature).unwrap_or(HeaderValue::from_static("")),
        ),
    ]
}

/// Parses `base` + `path` into a URI (`base` like `http://127.0.0.1:3000`).
pub fn uri(base: &str, path: &str) -> Result<Uri, CallFailed> {
    format!("{base}{path}")
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| CallFailed::Build(e.to_string()))
}
