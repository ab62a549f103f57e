//! End to end over 127.0.0.1 under faults: a spike that fills the queue, a
//! downstream that always fails and then recovers, the same key sent
//! twice, and shutdown with work in flight.

mod common;

use common::{fault, job_of, problem, settings, Harness};
use resilient_relay::server::flaky::FaultMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_that_fills_the_queue_gets_429s_while_accepted_jobs_complete() {
    let mut s = settings();
    s.relay.workers = 2;
    s.relay.queue.capacity = 4;
    s.relay.queue.retry_after_ms = 1_500.0;
    let h = Harness::with_downstream(s, fault(0.0, 200.0)).await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..30 {
        let api = h.api();
        sends.spawn(async move {
            api.relay(Some(&format!("spike-{i}")), &format!(r#"{{"i": {i}}}"#))
                .await
        });
    }
    let replies = sends.join_all().await;
    let accepted: Vec<String> = replies
        .iter()
        .filter(|r| r.status == 202)
        .map(job_of)
        .collect();
    let shed: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(accepted.len() + shed.len(), 30, "only 202 or 429");
    assert!(accepted.len() >= 2, "at least the workers' worth is taken");
    assert!(!shed.is_empty(), "a queue of 4 cannot take 30 at once");
    for r in &shed {
        let p = problem(r, 429);
        assert!(p["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("queue-full")));
        assert_eq!(r.header("retry-after"), Some("2"), "1.5 s rounds up");
    }
    for job in &accepted {
        h.wait_state(job, "succeeded").await;
    }
    let stats = h.stats().await;
    assert_eq!(stats["accepted"], accepted.len());
    assert_eq!(
        stats["succeeded"],
        accepted.len(),
        "nothing accepted is lost"
    );
    assert_eq!(stats["refused"]["shed"], shed.len());
    assert!(stats["queue_depth_max_seen"].as_u64() <= Some(4));
    let effects = h.downstream_get("/effects").await;
    assert_eq!(effects["effects"], accepted.len());
    assert_eq!(effects["duplicate_effects"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_downstream_fills_the_dlq_and_redrive_after_recovery_succeeds() {
    let mut s = settings();
    s.relay.retry.attempts_max = 3;
    let h = Harness::with_downstream(s, fault(1.0, 2.0)).await;
    let jobs: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(job_of(
                &h.relay(Some(&format!("dlq-{i}")), &format!(r#"{{"i": {i}}}"#))
                    .await,
            ));
        }
        v
    };
    for job in &jobs {
        let dead = h.wait_state(job, "dead-lettered").await;
        assert_eq!(dead["attempts"], 3);
    }
    let dlq = h.get("/dlq").await.json();
    assert_eq!(dlq["size"], 5);
    assert_eq!(h.downstream_get("/effects").await["effects"], 0);

    h.downstream_admin(serde_json::json!({"failure_rate": 0.0}))
        .await;
    let redrive = h
        .send(hyper::Method::POST, "/dlq/redrive", &[], "")
        .await
        .json();
    assert_eq!(redrive["redriven"], 5, "{redrive}");
    for r in redrive["results"].as_array().expect("results") {
        let job = r["job"]
            .as_str()
            .expect("each letter became a job")
            .to_owned();
        h.wait_state(&job, "succeeded").await;
    }
    assert_eq!(h.get("/dlq").await.json()["size"], 0);
    let effects = h.downstream_get("/effects").await;
    assert_eq!(
        (
            effects["effects"].clone(),
            effects["duplicate_effects"].clone()
        ),
        (5.into(), 0.into())
    );
    let stats = h.stats().await;
    assert_eq!(stats["dead_lettered"], 5);
    assert_eq!(stats["succeeded"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_twice_has_one_downstream_side_effect() {
    let h = Harness::with_downstream(settings(), fault(0.0, 500.0)).await;
    let body = r#"{"transfer": 100}"#;
    let (a, b) = tokio::join!(h.relay(Some("pay-1"), body), h.relay(Some("pay-1"), body));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [202, 409],
        "one accepted, one told it is in flight"
    );
    let job = job_of(if a.status == 202 { &a } else { &b });
    h.wait_state(&job, "succeeded").await;
    let replayed = h.relay(Some("pay-1"), body).await;
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(h.downstream_get("/effects/pay-1").await["effects"], 1);
    assert_eq!(h.downstream_get("/effects").await["duplicate_effects"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_admitting_and_drains_accepted_work() {
    let mut s = settings();
    s.relay.workers = 2;
    let mut h = Harness::with_downstream(s, fault(0.0, 500.0)).await;
    let jobs: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..6 {
            v.push(job_of(&h.relay(Some(&format!("drain-{i}")), "{}").await));
        }
        v
    };
    let server = h.server.take().expect("running");
    let shutdown = tokio::spawn(server.shutdown());
    let not_ready = h.wait_for("/ready", "not ready", |r| r.status == 503).await;
    let p = problem(&not_ready, 503);
    assert!(p["type"].as_str().is_some_and(|t| t.ends_with("draining")));
    let refused = h.relay(Some("too-late"), "{}").await;
    let p = problem(&refused, 503);
    assert!(p["type"].as_str().is_some_and(|t| t.ends_with("draining")));
    let status = h.get(&common::status_path(&jobs[0])).await;
    assert_eq!(status.status, 200, "look-ups still work while draining");

    let report = shutdown.await.expect("shutdown task");
    assert!(report.drained, "{report:?}");
    assert!(report.left.live.is_empty());
    assert_eq!(report.left.succeeded, 6);
    let effects = h.downstream_get("/effects").await;
    assert_eq!(effects["effects"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_deadline_reports_the_work_left_unfinished() {
    let mut s = settings();
    s.server.drain_deadline_ms = 100.0;
    s.relay.retry.attempt_timeout_ms = 30_000.0;
    let mut h = Harness::with_downstream(s, fault(0.0, 1.0)).await;
    h.downstream_admin(serde_json::json!({"mode": FaultMode::Hang, "hang_ms": 20_000.0}))
        .await;
    let job = job_of(&h.relay(Some("stuck"), "{}").await);
    h.wait_state(&job, "in-flight").await;
    let report = h.server.take().expect("running").shutdown().await;
    assert!(!report.drained);
    assert_eq!(report.left.live.len(), 1);
    assert_eq!(report.left.live[0].0.job.to_string(), job);
    assert!(report.left.live[0].1.is_some(), "with its correlation id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_downstream_switches_outage_and_brownout_at_runtime() {
    let mut s = settings();
    s.relay.retry.attempts_max = 1;
    let h = Harness::with_downstream(s, fault(0.0, 1.0)).await;
    let ok = job_of(&h.relay(Some("before"), "{}").await);
    h.wait_state(&ok, "succeeded").await;

    h.downstream_admin(serde_json::json!({"mode": FaultMode::Outage}))
        .await;
    let down = job_of(&h.relay(Some("during-outage"), "{}").await);
    h.wait_state(&down, "dead-lettered").await;
    let letter = h.get(&format!("/dlq/{down}")).await.json();
    assert_eq!(letter["last_error"], "server-error");

    h.downstream_admin(serde_json::json!({
        "mode": FaultMode::Brownout,
        "brownout_failure_rate": 1.0,
        "brownout_latency_factor": 2.0,
    }))
    .await;
    let admin = h.downstream_get("/admin").await;
    assert_eq!(admin["fault"]["mode"], "brownout");
    let slow = job_of(&h.relay(Some("during-brownout"), "{}").await);
    h.wait_state(&slow, "dead-lettered").await;

    let target = h.downstream_url("/admin").parse().expect("uri");
    let refused = h
        .client
        .post_json(&target, &[], r#"{"failure_rate": 7}"#)
        .await
        .expect("downstream answers");
    assert_eq!(refused.status, 400, "invalid fault settings are refused");
    h.downstream_admin(serde_json::json!({"mode": FaultMode::Normal}))
        .await;
    let after = job_of(&h.relay(Some("after"), "{}").await);
    h.wait_state(&after, "succeeded").await;
    let effects = h.downstream_get("/effects").await;
    assert_eq!(
        effects["effects"], 2,
        "only the calls in normal mode took effect"
    );
    assert!(admin["failed"].as_u64() >= Some(1));
}

mod one_fault_model {
    //! The same `[downstream]` in the simulator and through the real
    //! `downstream` service: the same windows, the same failure kinds.

    use resilient_relay::fault::{
        DownstreamConfig, FailureMix, LatencyConfig, OutageConfig, OutageMode, Switch,
    };
    use resilient_relay::relay::CallError;
    use resilient_relay::rng::Seed;
    use resilient_relay::server::client::{uri, HttpClient};
    use resilient_relay::server::flaky::Flaky;
    use resilient_relay::server::{DownstreamArgs, DownstreamService, DownstreamSettings};
    use resilient_relay::sim::downstream::Downstream;
    use resilient_relay::sim::Scenario;
    use resilient_relay::time::Time;
    use std::time::Duration;

    const SEED: u64 = 9;

    /// How the simulator's downstream answers a call starting at `at_s`.
    fn simulated(cfg: &DownstreamConfig, at_s: f64) -> Result<(), CallError> {
        let mut d = Downstream::new(cfg, Seed(SEED));
        d.start(Time::from_secs_f64(at_s), 0, 0).result
    }

    /// The HTTP status the service gives a kind (what the relay classifies back).
    fn status_of(r: Result<(), CallError>) -> u16 {
        match r {
            Ok(()) => 200,
            Err(CallError::ServerError) => 503,
            Err(CallError::Throttled) => 429,
            Err(CallError::ClientError) => 400,
            Err(CallError::Timeout) => 504,
        }
    }

    async fn serve(model: DownstreamConfig) -> DownstreamService {
        serve_with(model, 1_000).await
    }

    async fn serve_with(model: DownstreamConfig, in_flight_max: usize) -> DownstreamService {
        model.validate().expect("valid model");
        let settings = DownstreamSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            fault: Flaky {
                model,
                switch: Switch::default(),
                seed: SEED,
            },
            keys_max: 100,
            in_flight_max,
            ledger: None,
        };
        DownstreamService::spawn(&settings).await.expect("starts")
    }

    /// One `POST /work`: status, `Retry-After`, and the service's clock then.
    async fn work(ds: &DownstreamService, client: &HttpClient) -> (u16, Option<String>, f64) {
        let base = ds.base_url();
        let reply = client
            .post_json(&uri(&base, "/work").expect("uri"), &[], "{}")
            .await
            .expect("answers");
        let admin = client
            .get(&uri(&base, "/admin").expect("uri"))
            .await
            .expect("answers")
            .json();
        let elapsed_s = admin["elapsed_s"].as_f64().expect("elapsed_s");
        let retry_after = reply.header("retry-after").map(str::to_owned);
        (reply.status.as_u16(), retry_after, elapsed_s)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fail_fast_window_answers_503_inside_and_succeeds_outside() {
        // Long enough that the first call lands inside it on a loaded machine.
        const WINDOW_S: f64 = 2.0;
        let model = DownstreamConfig {
            latency: LatencyConfig::Constant { ms: 1.0 },
            fail_fast_ms: 0.0,
            outages: vec![OutageConfig {
                start_s: 0.0,
                end_s: WINDOW_S,
                mode: OutageMode::FailFast,
            }],
            ..DownstreamConfig::default()
        };
        let ds = serve(model.clone()).await;
        let client = HttpClient::new(1 << 20);
        let (inside, _, at) = work(&ds, &client).await;
        assert!(at < WINDOW_S, "the first call came {at} s after start");
        assert_eq!(inside, status_of(simulated(&model, at)));
        assert_eq!(inside, 503);
        // Past the window by the service's own clock, however slow the machine.
        tokio::time::sleep(Duration::from_secs_f64(WINDOW_S - at + 0.05)).await;
        let (outside, _, at) = work(&ds, &client).await;
        assert!(at >= WINDOW_S, "{at}");
        assert_eq!(outside, status_of(simulated(&model, at)));
        assert_eq!(outside, 200);
        ds.stop().await.expect("stops");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn throttled_and_client_error_kinds_are_429_with_retry_after_and_400() {
        let throttled = DownstreamConfig {
            latency: LatencyConfig::Constant { ms: 1.0 },
            failure_rate: 1.0,
            failure_mix: FailureMix {
                server_error: 0.0,
                throttled: 1.0,
                client_error: 0.0,
            },
            throttle_retry_after_ms: 1_500.0,
            ..DownstreamConfig::default()
        };
        assert_eq!(simulated(&throttled, 0.0), Err(CallError::Throttled));
        let ds = serve(throttled.clone()).await;
        let client = HttpClient::new(1 << 20);
        let (status, retry_after, _) = work(&ds, &client).await;
        assert_eq!(
            (status, retry_after.as_deref()),
            (429, Some("2")),
            "1.5 s rounds up"
        );
        ds.stop().await.expect("stops");

        let refused = DownstreamConfig {
            failure_mix: FailureMix {
                server_error: 0.0,
                throttled: 0.0,
                client_error: 1.0,
            },
            ..throttled
        };
        assert_eq!(simulated(&refused, 0.0), Err(CallError::ClientError));
        let ds = serve(refused).await;
        let (status, retry_after, _) = work(&ds, &client).await;
        assert_eq!((status, retry_after), (400, None));
        ds.stop().await.expect("stops");
    }

    #[test]
    fn downstream_scenario_serves_exactly_the_simulated_downstream() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: DownstreamArgs,
        }
        let path = "experiments/scenarios/outage.toml";
        let cli = Cli::try_parse_from(["downstream", "--scenario", path]).expect("parses");
        let settings = cli.args.resolve().expect("resolves");
        let scenario = Scenario::load(path.as_ref()).expect("loads");
        assert_eq!(settings.fault.model, scenario.downstream);
        assert_eq!(settings.fault.seed, scenario.seed);
        let mixed = Cli::try_parse_from(["downstream", "--scenario", path, "--failure-rate", "1"]);
        assert!(mixed.is_err(), "a scenario and fault flags conflict");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_beyond_the_in_flight_bound_are_refused_at_once() {
        let slow = DownstreamConfig {
            latency: LatencyConfig::Constant { ms: 1_000.0 },
            ..DownstreamConfig::default()
        };
        let ds = serve_with(slow, 1).await;
        let client = HttpClient::new(1 << 20);
        let url = uri(&ds.base_url(), "/work").expect("url");
        // Two calls at once against one slot held for a second each: whichever
        // comes second is refused at once, and the other is served.
        let call = || {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.post_json(&url, &[], "{}").await })
        };
        let (a, b) = (call(), call());
        let mut replies = Vec::new();
        for reply in [a, b] {
            replies.push(reply.await.expect("no panic").expect("answers"));
        }
        let mut statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 503], "one served, one refused");
        let refused = replies
            .iter()
            .find(|r| r.status.as_u16() == 503)
            .expect("the refused one");
        assert!(String::from_utf8_lossy(&refused.body).contains("busy"));
        ds.stop().await.expect("stops");
    }
}
