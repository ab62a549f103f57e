//! Shared harness for the HTTP end-to-end tests: a relay server and,
//! when asked, a real `downstream` service, both on 127.0.0.1 with
//! ephemeral ports. Waits poll with a deadline; nothing sleeps blindly.

#![allow(dead_code)]

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Method;
use resilient_relay::relay::JobId;
use resilient_relay::server::client::{signature_headers, uri, HttpClient, Reply};
use resilient_relay::server::config::DownstreamConfig;
use resilient_relay::server::flaky::FaultConfig;
use resilient_relay::server::signature::{unix_now, Signer};
use resilient_relay::server::views::status_url;
use resilient_relay::server::{DownstreamService, DownstreamSettings, RelayServer, Settings};
use std::time::Duration;

/// Longest any test waits for a condition.
pub const PATIENCE: Duration = Duration::from_secs(15);
/// Pause between two polls.
const POLL_EVERY: Duration = Duration::from_millis(10);

pub struct Harness {
    pub server: Option<RelayServer>,
    pub downstream: Option<DownstreamService>,
    pub client: HttpClient,
    pub base: String,
    /// Signs every `POST /relay` when the server has a secret.
    pub signer: Option<Signer>,
    /// Sent as `Authorization: Bearer` on every GET when the server has one.
    pub operator_token: Option<String>,
}

/// Settings for tests: ephemeral port, small and quick.
pub fn settings() -> Settings {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().expect("address");
    s.server.drain_deadline_ms = 5_000.0;
    s.relay.workers = 4;
    s.relay.queue.capacity = 50;
    s.relay.retry.attempt_timeout_ms = 2_000.0;
    s.relay.retry.backoff.base_ms = 5.0;
    s.relay.retry.backoff.cap_ms = 20.0;
    s.downstream = DownstreamConfig::Flaky(FaultConfig {
        latency_ms: 1.0,
        ..FaultConfig::default()
    });
    s
}

/// A fault config for the standalone downstream.
pub fn fault(failure_rate: f64, latency_ms: f64) -> FaultConfig {
    FaultConfig {
        failure_rate,
        latency_ms,
        ..FaultConfig::default()
    }
}

impl Harness {
    /// Starts the relay with the built-in downstream that `settings` names.
    pub async fn start(settings: Settings) -> Harness {
        settings.validate().expect("test settings are valid");
        let server = RelayServer::start(&settings).await.expect("server starts");
        let base = server.base_url();
        let secret = settings.server.hmac_secret.as_ref();
        Harness {
            server: Some(server),
            downstream: None,
            client: HttpClient::new(4 * 1024 * 1024),
            base,
            signer: secret.map(|s| Signer::new(s.0.as_bytes())),
            operator_token: settings.server.operator_token.as_ref().map(|t| t.0.clone()),
        }
    }

    /// Starts a standalone downstream with `fault`, then the relay calling it.
    pub async fn with_downstream(mut settings: Settings, fault: FaultConfig) -> Harness {
        let ds = DownstreamService::spawn(&DownstreamSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            fault: (&fault).into(),
            keys_max: 100_000,
            in_flight_max: 1_000,
            ledger: None,
        })
        .await
        .expect("downstream starts");
        settings.downstream = DownstreamConfig::Url {
            url: format!("{}/work", ds.base_url()),
        };
        let mut h = Harness::start(settings).await;
        h.downstream = Some(ds);
        h
    }

    pub fn downstream_url(&self, path: &str) -> String {
        let ds = self.downstream.as_ref().expect("a downstream was started");
        format!("{}{path}", ds.base_url())
    }

    /// Any request to the relay.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: impl Into<Bytes>,
    ) -> Reply {
        let headers: Vec<(HeaderName, HeaderValue)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_bytes(v).expect("header value"),
                )
            })
            .collect();
        let target = uri(&self.base, path).expect("uri");
        self.client
            .send(method, &target, &headers, body.into())
            .await
            .expect("the server answers")
    }

    /// `GET path`, with the operator token when the server has one.
    pub async fn get(&self, path: &str) -> Reply {
        let bearer = self.operator_token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &[u8])> = bearer
            .iter()
            .map(|b| ("authorization", b.as_bytes()))
            .collect();
        self.send(Method::GET, path, &headers, Bytes::new()).await
    }

    /// `POST /relay` with a JSON body and an optional idempotency key.
    pub async fn relay(&self, key: Option<&str>, body: &str) -> Reply {
        self.api().relay(key, body).await
    }

    /// A cloneable way to post, for spawned tasks.
    pub fn api(&self) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            signer: self.signer.clone(),
        }
    }

    /// Posts from another loopback address (`127.0.0.2`…): another peer.
    pub fn api_from(&self, local: &str) -> Api {
        Api {
            client: HttpClient::bound_to(local.parse().expect("an IP"), 4 * 1024 * 1024),
            ..self.api()
        }
    }

    /// GET on the standalone downstream.
    pub async fn downstream_get(&self, path: &str) -> serde_json::Value {
        let target = self.downstream_url(path).parse().expect("uri");
        self.client
            .get(&target)
            .await
            .expect("downstream answers")
            .json()
    }

    /// POST /admin on the standalone downstream.
    pub async fn downstream_admin(&self, change: serde_json::Value) {
        let target = self.downstream_url("/admin").parse().expect("uri");
        let reply = self
            .client
            .post_json(&target, &[], change.to_string())
            .await
            .expect("downstream answers");
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }

    /// Polls `GET path` until `done` holds, or panics after [`PATIENCE`].
    pub async fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Reply) -> bool) -> Reply {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let reply = self.get(path).await;
            if done(&reply) {
                return reply;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what} on {path}: last answer {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Waits until job `id` is in `state` and returns its view.
    pub async fn wait_state(&self, id: &str, state: &str) -> serde_json::Value {
        let path = status_path(id);
        self.wait_for(&path, state, |r| r.json()["state"] == state)
            .await
            .json()
    }

    pub async fn stats(&self) -> serde_json::Value {
        let r = self.get("/stats").await;
        assert_eq!(r.status, 200);
        r.json()
    }
}

/// Posts to the relay from any task.
#[derive(Clone)]
pub struct Api {
    client: HttpClient,
    base: String,
    signer: Option<Signer>,
}

impl Api {
    pub async fn relay(&self, key: Option<&str>, body: &str) -> Reply {
        self.relay_with(key, body, &[]).await
    }

    /// `POST /relay` with extra headers (`name`, value).
    pub async fn relay_with(
        &self,
        key: Option<&str>,
        body: &str,
        extra: &[(&'static str, &str)],
    ) -> Reply {
        self.post_to("/relay", key, body, extra).await
    }

    /// `POST path` (`/relay` or `/relay/{route}`), signed when the server
    /// has a secret, with extra headers.
    pub async fn post_to(
        &self,
        path: &str,
        key: Option<&str>,
        body: &str,
        extra: &[(&'static str, &str)],
    ) -> Reply {
        let mut headers = vec![(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        if let Some(k) = key {
            let v = HeaderValue::from_str(k).expect("test keys are valid header values");
            headers.push((HeaderName::from_static("idempotency-key"), v));
        }
        if let Some(signer) = &self.signer {
            let signed = signature_headers(
                signer,
                &Method::POST,
                path,
                key,
                body.as_bytes(),
                unix_now(),
            );
            headers.extend(signed);
        }
        for (name, value) in extra {
            let v = HeaderValue::from_str(value).expect("a header value");
            headers.push((HeaderName::from_static(name), v));
        }
        let target = uri(&self.base, path).expect("uri");
        self.client
            .send(
                Method::POST,
                &target,
                &headers,
                Bytes::from(body.to_owned()),
            )
            .await
            .expect("the server answers")
    }
}

/// The status path of job `id` (`/relay/<handle>`), as its 202 answer gives it.
pub fn status_path(id: &str) -> String {
    status_url(id.parse::<JobId>().expect("a job id"))
}

/// The job id of a 202 answer.
pub fn job_of(reply: &Reply) -> String {
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["job"].as_str().expect("a job id").to_owned()
}

/// Checks that `reply` is a problem with `status` and returns its body.
pub fn problem(reply: &Reply, status: u16) -> serde_json::Value {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "an error is a problem body"
    );
    let body = reply.json();
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert_eq!(
        body["correlation_id"].as_str(),
        reply.header("x-correlation-id"),
        "the problem names the request's correlation id"
    );
    body
}
