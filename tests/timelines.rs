//! Short timelines pinned as snapshots: small enough to read, and any change
//! to the relay's behaviour shows up as a readable diff.

use resilient_relay::sim::{simulate, Scenario, SimOptions};

fn timeline(toml: &str, seed: u64) -> String {
    let scenario = Scenario::from_toml(toml, "inline").expect("valid scenario");
    let opts = SimOptions {
        seed,
        trace_records_max: 10_000,
        calls_bucket_ms: None,
        series_bucket_ms: None,
    };
    let result = simulate(&scenario, &opts).unwrap_or_else(|f| panic!("{f} (seed {seed})"));
    let trace = result.trace.expect("trace requested");
    assert!(!trace.truncated);
    format!("{}\n{}", result.summary, trace.to_jsonl())
        .lines()
        .filter(|l| !l.contains("invariant checks"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The downstream is down for 250 ms; the relay retries with a constant
/// 100 ms backoff until it is back.
const OUTAGE: &str = r#"
name = "outage-retries"
[relay]
workers = 2
jobs_max = 10
[relay.queue]
capacity = 4
[relay.retry]
attempts_max = 5
attempt_timeout_ms = 100
[relay.retry.backoff]
kind = "constant"
base_ms = 100
cap_ms = 100
[downstream]
latency = { kind = "constant", ms = 20 }
fail_fast_ms = 5
[[downstream.outages]]
start_s = 0.0
end_s = 0.25
mode = "fail-fast"
[[clients]]
kind = "open-loop"
per_s = 50
requests_max = 2
"#;

/// Six requests in a burst against one worker and a queue of two: three
/// are shed with 429, the client retries them after its backoff.
const SPIKE: &str = r#"
name = "spike-429"
[relay]
workers = 1
jobs_max = 10
[relay.queue]
capacity = 2
retry_after_ms = 100
[downstream]
latency = { kind = "constant", ms = 30 }
[[clients]]
kind = "open-loop"
per_s = 2000
requests_max = 6
[clients.retry]
attempts_max = 3
[clients.retry.backoff]
kind = "exponential"
base_ms = 50
cap_ms = 400
"#;

/// Every attempt fails: each job uses its three attempts and lands in the
/// dead-letter queue with the last error.
const EXHAUSTED: &str = r#"
name = "retries-exhausted"
[relay]
workers = 2
jobs_max = 10
[relay.queue]
capacity = 4
[relay.retry]
attempts_max = 3
attempt_timeout_ms = 0
[relay.retry.backoff]
kind = "exponential"
base_ms = 10
cap_ms = 100
[downstream]
latency = { kind = "constant", ms = 5 }
failure_rate = 1.0
[[clients]]
kind = "open-loop"
per_s = 10
requests_max = 2
"#;

/// One worker, a queue of one, 30 ms timeouts against calls of 5–45 ms.
/// Seed 14: a retry comes due while the queue is full and waits in the
/// retry lane (a request is shed), and the lane is served before the
/// queue; a late success completes a job while it waits to retry, and one
/// that comes after its job was dead-lettered is recorded on the letter.
const LATE_AND_LANE: &str = r#"
name = "late-and-lane"
[relay]
workers = 1
jobs_max = 10
[relay.queue]
capacity = 1
[relay.retry]
attempts_max = 3
attempt_timeout_ms = 30
[relay.retry.backoff]
kind = "constant"
base_ms = 10
cap_ms = 10
[downstream]
latency = { kind = "uniform", min_ms = 5, max_ms = 45 }
failure_rate = 0.3
[[clients]]
kind = "open-loop"
per_s = 100
requests_max = 4
"#;

#[test]
fn outage_with_retries() {
    insta::assert_snapshot!(timeline(OUTAGE, 1));
}

#[test]
fn spike_with_429s() {
    insta::assert_snapshot!(timeline(SPIKE, 1));
}

#[test]
fn exhausted_retries_into_the_dlq() {
    insta::assert_snapshot!(timeline(EXHAUSTED, 1));
}

#[test]
fn retries_wait_in_the_lane_and_late_successes_are_used_or_recorded() {
    let timeline = timeline(LATE_AND_LANE, 14);
    for shown in [r#""fate":"completed-job""#, r#""fate":"recorded""#] {
        assert!(timeline.contains(shown), "{shown} missing:\n{timeline}");
    }
    insta::assert_snapshot!(timeline);
}
