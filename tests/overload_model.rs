//! The overload model: network delay, a downstream that slows with its
//! load, keyless clients, deadlines, Retry-After, per-bucket series, and
//! common random numbers across strategies.

use resilient_relay::sim::{simulate, Scenario, SimOptions, SimResult};
use serde_json::Value;
use std::collections::BTreeMap;

fn run(toml: &str, seed: u64) -> SimResult {
    let scenario = Scenario::from_toml(toml, "inline").expect("valid scenario");
    let opts = SimOptions {
        seed,
        trace_records_max: 100_000,
        calls_bucket_ms: None,
        series_bucket_ms: Some(100.0),
    };
    simulate(&scenario, &opts).unwrap_or_else(|f| panic!("{f}"))
}

fn lines(r: &SimResult) -> Vec<Value> {
    let trace = r.trace.as_ref().expect("trace requested");
    assert!(!trace.truncated);
    trace
        .to_jsonl()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn ms(v: &Value) -> f64 {
    v["t_ns"].as_u64().expect("t_ns") as f64 / 1e6
}

/// Per logical request: the first relay attempt of the job its first send
/// created, as (latency ms, ok, error).
fn first_tries(r: &SimResult) -> BTreeMap<u64, (f64, bool, Value)> {
    let lines = lines(r);
    let mut job_of = BTreeMap::new();
    let mut sends = BTreeMap::new();
    for l in &lines {
        match l["event"].as_str() {
            Some("send") => {
                sends.insert(
                    l["request"].as_u64().expect("request"),
                    l["send"].as_u64().expect("send"),
                );
            }
            Some("answer") if l["answer"] == "accepted" => {
                let req = l["request"].as_u64().expect("request");
                if sends.get(&req) == Some(&1) {
                    job_of.insert(l["job"].as_str().expect("job").to_string(), req);
                }
            }
            _ => {}
        }
    }
    let mut started = BTreeMap::new();
    let mut out = BTreeMap::new();
    for l in &lines {
        let job = l["job"].as_str().unwrap_or("").to_string();
        let Some(&req) = job_of.get(&job) else {
            continue;
        };
        if l["attempt"] != 1 {
            continue;
        }
        match l["event"].as_str() {
            Some("call") => {
                started.insert(req, ms(l));
            }
            Some("call-done") => {
                let latency = ms(l) - started[&req];
                out.insert(req, (latency, l["ok"] == true, l["error"].clone()));
            }
            _ => {}
        }
    }
    out
}

const CRN: &str = r#"
name = "crn"
horizon_s = 2
[relay]
workers = 64
jobs_max = 10000
[relay.queue]
capacity = 1000
[relay.retry]
attempts_max = 1
[downstream]
latency = { kind = "exponential", mean_ms = 20 }
failure_rate = 0.3
[[clients]]
kind = "open-loop"
per_s = 200
"#;

#[test]
fn two_retry_strategies_see_the_same_first_try_for_the_same_request() {
    let plain = run(CRN, 7);
    let retrying = CRN.replace(
        "[relay.retry]\nattempts_max = 1",
        "[relay.retry]\nattempts_max = 3\nattempt_timeout_ms = 15\nbackoff = { kind = \"constant\", base_ms = 5, cap_ms = 5 }",
    ) + "[clients.retry]\nattempts_max = 3\ntimeout_ms = 40\nkeyed = false\nbackoff = { kind = \"constant\", base_ms = 1, cap_ms = 1 }\n";
    let retrying = run(&retrying, 7);
    assert!(retrying.summary.downstream_calls > plain.summary.downstream_calls + 50);
    let (a, b) = (first_tries(&plain), first_tries(&retrying));
    assert!(a.len() > 300, "{} first tries", a.len());
    let mut compared = 0;
    for (req, first) in &a {
        let Some(other) = b.get(req) else { continue };
        assert_eq!(first.1, other.1, "request {req}: ok differs");
        assert_eq!(first.2, other.2, "request {req}: error differs");
        assert!(
            (first.0 - other.0).abs() < 1e-6,
            "request {req}: {first:?} vs {other:?}"
        );
        compared += 1;
    }
    assert!(compared > 300, "{compared} compared");
}

const SLOPE: &str = r#"
name = "slope"
[relay]
workers = 10
[relay.retry]
attempts_max = 1
[downstream]
latency = { kind = "constant", ms = 100 }
load_slope_ms = 10
[[clients]]
kind = "closed-loop"
population = 5
requests_per_client = 1
"#;

#[test]
fn latency_grows_by_the_slope_per_call_in_progress_at_the_start() {
    let r = run(SLOPE, 1);
    let mut latencies: Vec<f64> = lines(&r)
        .iter()
        .filter(|l| l["event"] == "call-done")
        .map(ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    assert_eq!(latencies, vec![100.0, 110.0, 120.0, 130.0, 140.0]);
    let series = r.series.expect("series");
    assert_eq!(
        series.in_progress[0], 5,
        "all five in progress in the first bucket"
    );
    assert_eq!(*series.in_progress.last().expect("buckets"), 0);
}

const LATE: &str = r#"
name = "late"
horizon_s = 1
[relay]
workers = 4
[relay.retry]
attempts_max = 1
attempt_timeout_ms = 30
[downstream]
latency = { kind = "constant", ms = 250 }
[[clients]]
kind = "open-loop"
per_s = 10
requests_max = 1
"#;

#[test]
fn a_call_whose_caller_timed_out_still_occupies_the_downstream_and_lands() {
    let r = run(LATE, 1);
    let s = &r.summary;
    assert_eq!((s.dead_lettered, s.late_results), (1, 1), "{s}");
    assert_eq!(s.side_effects, 1, "the timed-out call still landed");
    let series = r.series.expect("series");
    let call = series.calls.iter().position(|&c| c == 1).expect("a call");
    // In progress in the bucket after the relay stopped waiting (30 ms in).
    assert_eq!(series.in_progress[call + 1], 1, "{series:?}");
}

const NETWORK: &str = r#"
name = "network"
[relay]
workers = 2
[relay.retry]
attempts_max = 1
[network]
client_relay = { kind = "constant", ms = 10 }
relay_downstream = { kind = "constant", ms = 5 }
[downstream]
latency = { kind = "constant", ms = 20 }
[[clients]]
kind = "open-loop"
per_s = 10
requests_max = 3
"#;

#[test]
fn every_leg_adds_its_delay() {
    let r = run(NETWORK, 1);
    let s = &r.summary;
    assert_eq!(s.client_succeeded, 3);
    // in 10, there 5, work 20, back 5, news out 10.
    assert!((s.client_latency.max_ms - 50.0).abs() < 0.1, "{s}");
    assert!((s.client_latency.p50_ms - 50.0).abs() < 0.1, "{s}");
    // The relay's own job latency sees only its side of the wire.
    assert!((s.latency.max_ms - 30.0).abs() < 0.1, "{s}");
}

const KEYED: &str = r#"
name = "keyed"
[relay]
workers = 8
[relay.retry]
attempts_max = 1
[downstream]
latency = { kind = "constant", ms = 200 }
honours_idempotency_key = true
[[clients]]
kind = "open-loop"
per_s = 10
requests_max = 5
[clients.retry]
attempts_max = 3
timeout_ms = 50
backoff = { kind = "constant", base_ms = 10, cap_ms = 10 }
"#;

#[test]
fn keyless_retries_land_duplicates_the_key_prevents() {
    let keyed = run(KEYED, 1).summary;
    assert_eq!(keyed.duplicate_side_effects, 0, "{keyed}");
    assert!(keyed.conflicts_409 > 0, "{keyed}");
    let keyless = run(&(KEYED.to_string() + "keyed = false\n"), 1).summary;
    assert_eq!(keyless.conflicts_409, 0, "{keyless}");
    assert_eq!(keyless.accepted, 15, "{keyless}");
    assert_eq!(keyless.side_effects, 15, "{keyless}");
    assert_eq!(keyless.duplicate_side_effects, 10, "{keyless}");
    assert_eq!(keyless.duplicate_side_effects_keyless, 10, "{keyless}");
    assert_eq!(keyless.client_succeeded, 0, "the late outcomes are ignored");
}

#[test]
fn a_deadline_abandons_the_request_and_is_counted() {
    let text = KEYED.replace(
        "timeout_ms = 50",
        "timeout_ms = 50\ndeadline_ms = 75\nkeyed = false",
    );
    let s = run(&text, 1).summary;
    assert_eq!(s.client_deadline_abandoned, 5, "{s}");
    assert_eq!(s.client_abandoned, 5, "{s}");
    assert_eq!(
        s.sends, 10,
        "the third send would come after the deadline: {s}"
    );
}

const SHED: &str = r#"
name = "shed"
[relay]
workers = 1
jobs_max = 10
[relay.queue]
capacity = 1
retry_after_ms = 500
[downstream]
latency = { kind = "constant", ms = 100 }
[[clients]]
kind = "open-loop"
per_s = 1000
requests_max = 4
[clients.retry]
attempts_max = 2
backoff = { kind = "constant", base_ms = 10, cap_ms = 10 }
"#;

/// The gap between each shed answer and the retry it leads to.
fn retry_gaps(r: &SimResult) -> Vec<f64> {
    let lines = lines(r);
    let mut shed_at = BTreeMap::new();
    let mut gaps = Vec::new();
    for l in &lines {
        match l["event"].as_str() {
            Some("answer") if l["answer"] == "shed" => {
                shed_at.insert(l["request"].as_u64().expect("request"), ms(l));
            }
            Some("client-retry") => {
                let req = l["request"].as_u64().expect("request");
                let at = l["at"].as_u64().expect("at") as f64 / 1e6;
                gaps.push(at - shed_at[&req]);
            }
            _ => {}
        }
    }
    gaps
}

#[test]
fn honouring_retry_after_waits_at_least_that_long() {
    let plain = retry_gaps(&run(SHED, 1));
    assert!(
        !plain.is_empty() && plain.iter().all(|g| (g - 10.0).abs() < 1e-6),
        "{plain:?}"
    );
    let text = SHED.replace(
        "attempts_max = 2",
        "attempts_max = 2\nhonour_retry_after = true",
    );
    let honoured = retry_gaps(&run(&text, 1));
    assert!(
        !honoured.is_empty() && honoured.iter().all(|g| (g - 500.0).abs() < 1e-6),
        "{honoured:?}"
    );
}

const STORMY: &str = r#"
name = "stormy"
horizon_s = 5
[relay]
workers = 4
jobs_max = 200
[relay.queue]
capacity = 20
retry_after_ms = 50
[relay.retry]
attempts_max = 2
attempt_timeout_ms = 60
[network]
client_relay = { kind = "exponential", mean_ms = 5 }
relay_downstream = { kind = "exponential", mean_ms = 5 }
[downstream]
latency = { kind = "exponential", mean_ms = 30 }
failure_rate = 0.2
load_slope_ms = 1
[[clients]]
kind = "open-loop"
per_s = 150
clients = 10
[clients.retry]
attempts_max = 3
timeout_ms = 120
keyed = false
backoff = { kind = "full-jitter", base_ms = 20, cap_ms = 200 }
"#;

#[test]
fn each_series_field_counts_what_it_says() {
    let r = run(STORMY, 3);
    let s = &r.summary;
    let series = r.series.as_ref().expect("series");
    let sum = |v: &[u32]| v.iter().map(|&x| u64::from(x)).sum::<u64>();
    assert_eq!(series.starts.len(), 50, "5 s in 100 ms buckets");
    assert_eq!(sum(&series.starts), s.sends);
    assert_eq!(sum(&series.first_tries), s.arrivals);
    assert_eq!(sum(&series.retries), s.sends - s.arrivals);
    assert_eq!(sum(&series.successes), s.client_succeeded);
    assert_eq!(sum(&series.timeouts), s.client_timeouts);
    assert_eq!(sum(&series.calls), s.downstream_calls);
    assert_eq!(
        sum(&series.refusals),
        s.shed_429 + s.rate_limited_429 + s.unavailable_503
    );
    assert!(s.client_timeouts > 0 && s.shed_429 > 0, "{s}");
    assert_eq!(sum(&series.budget_denied), 0, "no gate configured");
    let peak = series.in_progress.iter().copied().max().unwrap_or(0);
    assert!(peak > 0 && u64::from(peak) <= s.downstream_concurrency_max);
    assert!(s.duplicate_side_effects_keyless > 0, "{s}");
}

#[test]
fn the_same_seed_gives_the_same_run_with_every_new_part_on() {
    let (a, b) = (run(STORMY, 5), run(STORMY, 5));
    assert_eq!(a.summary, b.summary);
    assert_eq!(a.series, b.series);
    assert_eq!(
        a.trace.expect("trace").to_jsonl(),
        b.trace.expect("trace").to_jsonl()
    );
}

/// The retry-storm scenario with series per second.
fn storm(spike: bool) -> SimResult {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/scenarios/retry-storm.toml"
    );
    let mut text = std::fs::read_to_string(path).expect("scenario file");
    if !spike {
        text = text.replace(
            "{ until_s = 25, per_s = 80 }",
            "{ until_s = 25, per_s = 40 }",
        );
    }
    let scenario = Scenario::from_toml(&text, path).expect("valid scenario");
    let opts = SimOptions {
        seed: 1,
        trace_records_max: 0,
        calls_bucket_ms: None,
        series_bucket_ms: Some(1000.0),
    };
    simulate(&scenario, &opts).unwrap_or_else(|f| panic!("{f}"))
}

#[test]
fn a_spike_leaves_the_retry_storm_collapsed_and_without_it_the_system_stays_healthy() {
    for spike in [false, true] {
        let r = storm(spike);
        let s = r.series.expect("series");
        println!("spike {spike}\n  t  starts successes retries timeouts calls in_progress");
        for t in (0..80).step_by(5) {
            println!(
                "{t:3} {:6} {:9} {:7} {:8} {:5} {:11}",
                s.starts[t],
                s.successes[t],
                s.retries[t],
                s.timeouts[t],
                s.calls[t],
                s.in_progress[t]
            );
        }
        let late = |v: &[u32]| v[60..80].iter().map(|&x| f64::from(x)).sum::<f64>() / 20.0;
        let goodput = late(&s.successes);
        if spike {
            assert!(goodput < 4.0, "goodput {goodput}/s long after the spike");
            assert!(
                s.in_progress[79] > s.in_progress[40] && s.in_progress[40] > 300,
                "{:?}",
                s.in_progress
            );
        } else {
            assert!(goodput > 35.0, "goodput {goodput}/s without a spike");
            assert!(s.in_progress[79] < 150, "{:?}", s.in_progress);
            assert_eq!(s.retries.iter().sum::<u32>(), 0);
        }
    }
}

fn with_gate(gate: &str) -> SimResult {
    run(&(STORMY.to_string() + gate + "\n"), 3)
}

#[test]
fn client_gates_deny_retries_by_reason_and_the_series_counts_them() {
    let open = run(STORMY, 3).summary;
    let bucket = "gate_scope = \"per-client\"\nbudget = { kind = \"client-bucket\", size = 5, per_first_try = 0.1, threshold = 1, cost = 1 }";
    let cases = [
        (bucket, 0),
        (
            "retry_breaker = { threshold = 0.1, window = { kind = \"cumulative\" } }",
            1,
        ),
        ("throttle = { k = 1.1, window_s = 2 }", 2),
    ];
    for (gate, reason) in cases {
        let r = with_gate(gate);
        let s = &r.summary;
        let by_reason = [
            s.client_denied_budget,
            s.client_denied_retry_breaker,
            s.client_denied_throttled,
        ];
        assert!(by_reason[reason] > 0, "{gate}: {s}");
        let others: u64 = by_reason.iter().sum::<u64>() - by_reason[reason];
        assert_eq!(others, 0, "{gate}: only its own control denies: {s}");
        let series = r.series.as_ref().expect("series");
        let denied: u64 = series.budget_denied.iter().map(|&x| u64::from(x)).sum();
        assert_eq!(denied, by_reason[reason], "{gate}");
        assert_eq!(s.arrivals, open.arrivals, "the same arrivals: {gate}");
        assert!(
            s.sends < open.sends,
            "{gate}: {} vs {}",
            s.sends,
            open.sends
        );
        let per_population: u64 = s
            .populations
            .iter()
            .map(|p| p.denied.values().sum::<u64>())
            .sum();
        assert_eq!(per_population, by_reason[reason]);
    }
}

#[test]
fn a_shared_budget_and_budgets_per_client_are_different_gates() {
    let budget = "budget = { kind = \"client-bucket\", size = 5, per_first_try = 0.1, threshold = 1, cost = 1 }";
    let shared = with_gate(budget).summary;
    let per_client = with_gate(&format!("gate_scope = \"per-client\"\n{budget}")).summary;
    // Ten clients each hold a bucket of 5: more retries get through.
    assert!(
        per_client.client_denied_budget < shared.client_denied_budget,
        "per client {} vs shared {}",
        per_client.client_denied_budget,
        shared.client_denied_budget
    );
}
