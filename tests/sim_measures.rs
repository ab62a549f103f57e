//! The two measures the experiments read from a run's summary: the most
//! bytes the queue held, and when the last logical request was answered.

use resilient_relay::relay::{Relay, RelayConfig, Request};
use resilient_relay::rng::{Domain, Seed};
use resilient_relay::sim::{simulate, Scenario, SimOptions};
use resilient_relay::time::Time;

/// One worker, a queue of three, constant 10 ms calls; a closed-loop
/// population of five sends at once, so three wait and one is shed.
const BURST: &str = r#"
name = "burst"
[relay]
workers = 1
jobs_max = 10
[relay.queue]
capacity = 3
[downstream]
latency = { kind = "constant", ms = 10 }
[[clients]]
kind = "closed-loop"
population = 5
requests_per_client = 1
[clients.retry]
attempts_max = 1
"#;

fn run(toml: &str) -> resilient_relay::sim::Summary {
    let scenario = Scenario::from_toml(toml, "inline").expect("valid scenario");
    simulate(&scenario, &SimOptions::seed(1))
        .expect("no violation")
        .summary
}

/// Bytes one queued job costs, read from a relay holding two queued jobs.
fn bytes_per_queued_job() -> u64 {
    let cfg = RelayConfig {
        workers: 1,
        ..RelayConfig::default()
    };
    let mut relay: Relay<u64, ()> = Relay::new(
        &cfg.check().expect("valid"),
        Seed(1).stream(Domain::Relay, 0),
    );
    for key in 0..3 {
        let request = Request {
            client: 0,
            key: Some(key),
            fingerprint: key,
            payload: (),
        };
        relay.handle_request(Time::ZERO, request);
    }
    assert_eq!(relay.queue_len(), 2, "one in flight, two queued");
    relay.queue_bytes() as u64 / 2
}

#[test]
fn queue_bytes_max_is_the_fullest_queue_measured_in_bytes() {
    let summary = run(BURST);
    assert_eq!(summary.shed_429, 1);
    assert_eq!(summary.queue_depth_max, 3);
    let per_job = bytes_per_queued_job();
    assert!(per_job > 0);
    assert_eq!(summary.queue_bytes_max, 3 * per_job);
}

#[test]
fn client_done_last_is_when_the_last_request_was_answered() {
    let summary = run(BURST);
    // The shed request gives up at once; the four accepted ones finish one
    // after another, 10 ms each, the last at 40 ms.
    assert_eq!(summary.client_succeeded, 4);
    assert_eq!(summary.client_abandoned, 1);
    assert!(
        (summary.client_done_last_s - 0.040).abs() < 1e-9,
        "{}",
        summary.client_done_last_s
    );
}

#[test]
fn an_empty_queue_holds_no_bytes() {
    let idle = BURST.replace("population = 5", "population = 1");
    let summary = run(&idle);
    assert_eq!(summary.queue_bytes_max, 0);
    assert!((summary.client_done_last_s - 0.010).abs() < 1e-9);
}

/// Runs `simulate` on a committed scenario with a trace cut at `trace_max`;
/// returns (trace lines, text summary).
fn simulate_with_trace_max(trace_max: usize) -> (Vec<String>, String) {
    let dir = std::env::temp_dir();
    let trace = dir.join(format!("cut-{trace_max}-{}.jsonl", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .args(["simulate", "experiments/scenarios/outage.toml", "--trace"])
        .arg(&trace)
        .args(["--trace-max", &trace_max.to_string()])
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).expect("trace written");
    let _ = std::fs::remove_file(&trace);
    let lines = text.lines().map(str::to_owned).collect();
    (lines, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn trace_max_zero_keeps_no_record_and_says_the_trace_was_cut() {
    let (lines, summary) = simulate_with_trace_max(0);
    assert_eq!(
        lines,
        vec![r#"{"event":"trace-truncated","records_max":0}"#],
        "only the marker"
    );
    assert!(summary.contains("trace cut at 0 records"), "{summary}");
}

#[test]
fn a_cut_trace_is_said_in_the_summary() {
    let (lines, summary) = simulate_with_trace_max(3);
    assert_eq!(lines.len(), 4, "three records and the marker");
    assert!(summary.contains("trace cut at 3 records"), "{summary}");
    let (_, whole) = simulate_with_trace_max(10_000_000);
    assert!(!whole.contains("trace cut"), "{whole}");
}

/// Ten requests against a downstream whose every call fails with `mix`;
/// the relay retries up to four attempts what its policy retries.
fn always_failing(mix: &str) -> resilient_relay::sim::Summary {
    run(&format!(
        r#"
name = "failing"
[relay.retry]
attempts_max = 4
[relay.retry.backoff]
base_ms = 1
cap_ms = 1
[downstream]
latency = {{ kind = "constant", ms = 1 }}
failure_rate = 1
failure_mix = {mix}
[[clients]]
kind = "closed-loop"
population = 10
requests_per_client = 1
"#
    ))
}

#[test]
fn a_client_error_is_not_retried_where_a_throttled_answer_is() {
    let refused = always_failing("{ client_error = 1 }");
    assert_eq!((refused.dead_lettered, refused.downstream_calls), (10, 10));
    assert_eq!(refused.relay_retries, 0, "a 4xx is the request's fault");
    let throttled = always_failing("{ throttled = 1 }");
    assert_eq!(throttled.dead_lettered, 10);
    assert_eq!(throttled.downstream_calls, 40, "four attempts each");
}

/// The relay's own retry denials reach the summary and `simulate --json`:
/// with a one-token budget the first failure empties it, so every job is
/// dead-lettered after one call and each refused retry is counted. A run
/// with no denials prints none.
#[test]
fn relay_retry_denials_are_in_the_summary() {
    let plain = always_failing("{ throttled = 1 }");
    let json = serde_json::to_value(&plain).expect("json");
    assert!(json.get("relay_denied_budget").is_none(), "{json}");
    let denied = run(r#"
name = "budgeted"
[relay.retry]
attempts_max = 4
budget = { kind = "token-bucket", tokens_max = 1, tokens_per_success = 0.1 }
[relay.retry.backoff]
base_ms = 1
cap_ms = 1
[downstream]
latency = { kind = "constant", ms = 1 }
failure_rate = 1
[[clients]]
kind = "closed-loop"
population = 10
requests_per_client = 1
"#);
    assert_eq!((denied.dead_lettered, denied.downstream_calls), (10, 10));
    assert_eq!(denied.relay_denied_budget, 10, "{denied}");
    assert_eq!(denied.relay_denied_retry_breaker, 0);
    let json = serde_json::to_value(&denied).expect("json");
    assert_eq!(json["relay_denied_budget"], 10);
    assert!(denied.to_string().contains("relay retries denied"));
}
