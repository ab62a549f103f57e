//! End to end over 127.0.0.1: every endpoint of the relay server, and every
//! kind of bad input answered with the right problem.

mod common;

use common::{fault, job_of, problem, settings, status_path, Harness};
use hyper::Method;
use resilient_relay::relay::{
    BreakerConfig, BudgetConfig, HedgeConfig, RateLimitConfig, TokenBucketConfig, TripConfig,
};
use resilient_relay::server::client::signature_headers;
use resilient_relay::server::config::Secret;
use resilient_relay::server::signature::{unix_now, Signer};

const JSON: (&str, &[u8]) = ("content-type", b"application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_job_succeeds_and_its_key_replays_the_stored_answer() {
    let h = Harness::with_downstream(settings(), fault(0.0, 5.0)).await;
    let cid: &[u8] = b"client-chosen-id-1";
    let first = h
        .send(
            Method::POST,
            "/relay",
            &[
                JSON,
                ("idempotency-key", b"order-1"),
                ("x-correlation-id", cid),
            ],
            r#"{"amount": 5}"#,
        )
        .await;
    let job = job_of(&first);
    assert_eq!(first.header("x-correlation-id"), Some("client-chosen-id-1"));
    let url = status_path(&job);
    assert_eq!(first.header("location"), Some(url.as_str()));
    assert_eq!(first.json()["status_url"], url.as_str());

    let done = h.wait_state(&job, "succeeded").await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(
        done["response"]["key"], "order-1",
        "the downstream's answer"
    );
    assert!(done["finished_at_ms"].as_f64() >= done["accepted_at_ms"].as_f64());

    let again = h.relay(Some("order-1"), r#"{"amount": 5}"#).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["job"], job);
    assert_eq!(again.json()["response"], done["response"]);

    let other = h.relay(Some("order-1"), r#"{"amount": 6}"#).await;
    let p = problem(&other, 422);
    assert!(p["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("key-reused")));
    assert_eq!(h.downstream_get("/effects/order-1").await["effects"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_while_in_flight_is_a_conflict_naming_the_job() {
    let h = Harness::with_downstream(settings(), fault(0.0, 400.0)).await;
    let job = job_of(&h.relay(Some("slow-1"), "{}").await);
    let second = h.relay(Some("slow-1"), "{}").await;
    let p = problem(&second, 409);
    assert_eq!(p["job"], job);
    assert_eq!(p["status_url"], status_path(&job));
    h.wait_state(&job, "succeeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_the_right_problem() {
    let mut s = settings();
    s.server.body_bytes_max = 64;
    s.relay.idempotency.key_bytes_max = 16;
    let h = Harness::start(s).await;
    let post = |headers: Vec<(&'static str, &'static [u8])>, body: &'static str| {
        let h = &h;
        async move { h.send(Method::POST, "/relay", &headers, body).await }
    };
    let malformed = post(vec![JSON], r#"{"a": "#).await;
    assert!(problem(&malformed, 400)["detail"]
        .as_str()
        .is_some_and(|d| d.contains("JSON")));
    problem(&post(vec![JSON], "").await, 400);
    let big = "[".to_owned() + &"1,".repeat(40) + "1]";
    let too_large = h.send(Method::POST, "/relay", &[JSON], big).await;
    problem(&too_large, 413);
    problem(
        &post(vec![("content-type", b"text/plain")], "{}").await,
        415,
    );
    problem(&post(vec![], "{}").await, 415);
    for key in [&b"0123456789abcdefX"[..], b"has space", b"", b"caf\xc3\xa9"] {
        let bad = h
            .send(
                Method::POST,
                "/relay",
                &[JSON, ("idempotency-key", key)],
                "{}",
            )
            .await;
        let p = problem(&bad, 400);
        assert!(p["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("bad-idempotency-key")));
    }
    let twice = post(
        vec![JSON, ("idempotency-key", b"a"), ("idempotency-key", b"b")],
        "{}",
    )
    .await;
    problem(&twice, 400);
    problem(&h.get("/nowhere").await, 404);
    problem(&h.get("/relay/not-a-number").await, 400);
    // axum's own rejection (not UTF-8 after decoding) comes out as a problem too.
    problem(&h.get("/relay/%FF").await, 400);
    problem(&h.get(&status_path("123456789-0")).await, 404);
    problem(&h.get("/relay/123456789").await, 400);
    problem(&h.get("/dlq?limit=0").await, 400);
    problem(&h.get("/dlq/77-0").await, 404);
    let wrong = h.send(Method::DELETE, "/relay", &[], "").await;
    problem(&wrong, 405);
    assert_eq!(wrong.header("allow"), Some("POST"));
    problem(&h.send(Method::POST, "/health", &[], "").await, 405);
    let stats = h.stats().await;
    // A Content-Length over the limit is answered before the route runs.
    assert_eq!(stats["http_rejected"]["too_large"], 0);
    let listener = h.server.as_ref().expect("running").listener_stats();
    assert_eq!(listener.body_too_large, 1);
    assert_eq!(stats["http_rejected"]["bad_key"], 5);
    assert_eq!(stats["requests"], 0, "none of these reached the relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_required_when_a_secret_is_set() {
    let mut s = settings();
    s.server.hmac_secret = Some(Secret("test-secret".into()));
    let h = Harness::start(s).await;
    let body = r#"{"signed": true}"#;
    let sign = |secret: &[u8]| {
        let [ts, sig] = signature_headers(
            &Signer::new(secret),
            &Method::POST,
            "/relay",
            None,
            body.as_bytes(),
            unix_now(),
        );
        (ts.1.as_bytes().to_vec(), sig.1.as_bytes().to_vec())
    };
    let (ts, good) = sign(b"test-secret");
    let (_, forged) = sign(b"other-secret");
    let with = |sig: Option<Vec<u8>>| {
        let h = &h;
        let ts = ts.clone();
        async move {
            let sig = sig.as_deref();
            let mut headers: Vec<(&str, &[u8])> = vec![JSON, ("x-signature-timestamp", &ts)];
            if let Some(sig) = sig {
                headers.push(("x-signature", sig));
            }
            h.send(Method::POST, "/relay", &headers, body).await
        }
    };
    problem(&with(None).await, 401);
    problem(&with(Some(forged)).await, 401);
    problem(&with(Some(b"v1=nothex".to_vec())).await, 401);
    job_of(&with(Some(good.clone())).await);
    let replayed = problem(&with(Some(good)).await, 401);
    assert!(replayed["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("signature-replayed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_key_is_enforced_by_the_relay() {
    let mut s = settings();
    s.relay.idempotency.required = true;
    let h = Harness::start(s).await;
    let p = problem(&h.relay(None, "{}").await, 400);
    assert!(p["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("idempotency-key-required")));
    job_of(&h.relay(Some("k"), "{}").await);
    assert_eq!(h.stats().await["refused"]["bad-key"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let mut s = settings();
    s.relay.rate_limit = Some(RateLimitConfig {
        requests_max: 2,
        window_ms: 60_000.0,
        clients_max: 100,
    });
    let h = Harness::start(s).await;
    job_of(&h.relay(None, "{}").await);
    job_of(&h.relay(None, "{}").await);
    let limited = h.relay(None, "{}").await;
    let p = problem(&limited, 429);
    assert!(p["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("rate-limited")));
    let secs: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&secs), "{secs}");
    // Another peer address is another client.
    job_of(&h.api_from("127.0.0.2").relay(None, "{}").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_with_a_full_queue_answers_503() {
    let mut s = settings();
    s.relay.workers = 1;
    s.relay.queue.capacity = 1;
    s.relay.jobs_max = 2;
    s.relay.retry.attempts_max = 1;
    s.relay.breaker = Some(BreakerConfig {
        trip: TripConfig::ConsecutiveFailures { failures: 1 },
        open_ms: 60_000.0,
        ..BreakerConfig::default()
    });
    let h = Harness::with_downstream(s, fault(1.0, 1.0)).await;
    let first = job_of(&h.relay(None, r#"{"n": 1}"#).await);
    h.wait_state(&first, "dead-lettered").await;
    assert_eq!(h.stats().await["breaker"], "open");
    job_of(&h.relay(None, r#"{"n": 2}"#).await);
    let refused = h.relay(None, r#"{"n": 3}"#).await;
    let p = problem(&refused, 503);
    assert!(p["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("unavailable")));
    assert!(refused.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_stats_and_metrics_answer() {
    let h = Harness::start(settings()).await;
    let job = job_of(&h.relay(None, "{}").await);
    h.wait_state(&job, "succeeded").await;
    let health = h.get("/health").await;
    assert_eq!(
        (health.status.as_u16(), health.json()["status"].clone()),
        (200, "alive".into())
    );
    assert_eq!(h.get("/ready").await.status, 200);
    let generated = health.header("x-correlation-id").expect("a generated id");
    assert!(!generated.is_empty());

    let stats = h.stats().await;
    for field in [
        "requests",
        "accepted",
        "succeeded",
        "queue_depth",
        "in_flight",
        "dlq_size",
        "breaker",
        "refused",
        "attempt_errors",
        "job_latency",
    ] {
        assert!(stats.get(field).is_some(), "/stats has {field}");
    }
    assert_eq!(
        (stats["accepted"].clone(), stats["succeeded"].clone()),
        (1.into(), 1.into())
    );
    assert!(stats["job_latency"]["p99_ms"].as_f64() > Some(0.0));

    let metrics = h.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain")));
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("relay_accepted_total{route=\"default\"} 1"),
        "{text}"
    );
    assert!(text.contains("relay_job_latency_seconds{route=\"default\",quantile=\"0.99\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_inspected_and_redriven_by_id() {
    let mut s = settings();
    s.relay.retry.attempts_max = 2;
    let h = Harness::with_downstream(s, fault(1.0, 1.0)).await;
    let a = job_of(&h.relay(Some("dl-a"), r#"{"n": "a"}"#).await);
    let b = job_of(&h.relay(Some("dl-b"), r#"{"n": "b"}"#).await);
    let dead = h.wait_state(&a, "dead-lettered").await;
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["last_error"], "server-error");
    h.wait_state(&b, "dead-lettered").await;

    let list = h.get("/dlq?limit=1").await.json();
    assert_eq!(list["size"], 2);
    assert_eq!(list["letters"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["next_after"], a);
    let rest = h.get(&format!("/dlq?after={a}")).await.json();
    assert_eq!(rest["letters"][0]["job"], b);
    let letter = h.get(&format!("/dlq/{a}")).await.json();
    assert_eq!(letter["payload"]["n"], "a");
    assert_eq!(letter["key"], "dl-a");
    assert_eq!(letter["reason"], "attempts-exhausted");

    h.downstream_admin(serde_json::json!({"failure_rate": 0.0}))
        .await;
    let redrive = h
        .send(
            Method::POST,
            "/dlq/redrive",
            &[JSON],
            format!(r#"{{"ids": ["{a}", "424242-0"]}}"#),
        )
        .await;
    assert_eq!(redrive.status, 200);
    let redrive = redrive.json();
    assert_eq!(redrive["redriven"], 1);
    assert_eq!(redrive["not_redriven"], 1);
    assert_eq!(redrive["results"][1]["error"], "not-found");
    let new_job = redrive["results"][0]["job"]
        .as_str()
        .expect("a new job")
        .to_owned();
    h.wait_state(&new_job, "succeeded").await;
    assert_eq!(h.get("/dlq").await.json()["size"], 1);
    // The route's first name still works.
    let alias = h
        .send(
            Method::POST,
            "/dlq/replay",
            &[JSON],
            format!(r#"{{"ids": ["{b}"]}}"#),
        )
        .await;
    assert_eq!(alias.status, 200);
    assert_eq!(alias.json()["redriven"], 1);
    assert_eq!(h.get("/dlq").await.json()["size"], 0);
    problem(
        &h.send(Method::POST, "/dlq/redrive", &[JSON], "{\"ids\": 3}")
            .await,
        400,
    );
    problem(
        &h.send(
            Method::POST,
            "/dlq/redrive",
            &[("content-type", b"text/plain")],
            "x",
        )
        .await,
        415,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_refused_naming_the_address() {
    let first = Harness::start(settings()).await;
    let taken: std::net::SocketAddr = first
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the base URL is an address");
    let mut again = settings();
    again.server.listen = taken;
    let error = match resilient_relay::server::RelayServer::start(&again).await {
        Ok(_) => panic!("a second server cannot listen on {taken}"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(&taken.to_string()), "{error}");
    assert!(error.contains("--listen"), "says how to fix it: {error}");
}

/// Hedges and refused retries are shown: one job on a slow downstream that
/// always fails is hedged after 20 ms, both attempts fail, and a retry
/// budget of one token refuses the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedges_and_denied_retries_show_in_stats_and_metrics() {
    let mut s = settings();
    s.relay.hedge = Some(HedgeConfig {
        after_ms: Some(20.0),
        budget_pct: 100.0,
        ..HedgeConfig::default()
    });
    s.relay.retry.budget = Some(BudgetConfig::TokenBucket(TokenBucketConfig {
        tokens_max: 1.0,
        tokens_per_success: 0.1,
    }));
    let h = Harness::with_downstream(s, fault(1.0, 200.0)).await;
    let job = job_of(&h.relay(None, "{}").await);
    let done = h.wait_state(&job, "dead-lettered").await;
    assert_eq!(done["attempts"], 2, "the first attempt and its hedge");
    let stats = h.stats().await;
    let hedges = &stats["hedges"];
    assert_eq!(
        (&hedges["sent"], &hedges["won"], &hedges["first_attempts"]),
        (&1.into(), &0.into(), &1.into()),
        "{stats}"
    );
    assert_eq!(stats["retries_denied"]["budget"], 1, "{stats}");
    let text = String::from_utf8_lossy(&h.get("/metrics").await.body).into_owned();
    for line in [
        "relay_hedges_sent_total 1\n",
        "relay_hedges_won_total 0\n",
        "relay_hedges_not_sent_total{reason=\"budget\"} 0\n",
        "relay_retries_denied_total{reason=\"budget\"} 1\n",
        "relay_retries_denied_total{reason=\"retry-breaker\"} 0\n",
    ] {
        assert!(text.contains(line), "/metrics lacks {line:?}:\n{text}");
    }
    assert!(text.contains("# HELP relay_hedges_not_sent_total "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hedging_stats_and_metrics_say_nothing_of_hedges() {
    let h = Harness::start(settings()).await;
    job_of(&h.relay(None, "{}").await);
    assert!(h.stats().await.get("hedges").is_none());
    let text = String::from_utf8_lossy(&h.get("/metrics").await.body).into_owned();
    assert!(!text.contains("relay_hedges_"), "{text}");
    assert!(text.contains("relay_retries_denied_total{reason=\"budget\"} 0\n"));
}
