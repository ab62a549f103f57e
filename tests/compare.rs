//! `compare` on a scenario of a couple of seconds: a downstream and a relay
//! started on 127.0.0.1 ephemeral ports, the scenario's clients played
//! live against them, the same scenario simulated. Every request must be
//! answered in both worlds, and the report must be complete. How close the
//! two worlds are is the benchmark's business (`compare_bench`), not this
//! test's. The same run is drawn (`--out`): one live run, for CI's time.

use resilient_relay::cli::compare::report;
use resilient_relay::loadgen::compare::{
    compare, write_files, CompareOptions, FIGURES_JSON, TIMELINE_PNG, TIMELINE_SVG,
};
use resilient_relay::loadgen::peers::Peers;
use resilient_relay::loadgen::timeline_chart::{LIVE, SIMULATED};
use resilient_relay::loadgen::Ending;
use resilient_relay::sim::Scenario;

/// About 200 logical requests over 2 s: open-loop and closed-loop clients,
/// keyed retries with backoff and a timeout, a downstream failing a fifth
/// of its calls, relay retries. No horizon: both worlds run until every
/// request has its final answer.
const SCENARIO: &str = r#"
name = "compare-test"
seed = 3

[relay]
workers = 4
[relay.queue]
capacity = 20
[relay.retry]
attempts_max = 3
attempt_timeout_ms = 500
[relay.retry.backoff]
kind = "full-jitter"
base_ms = 10
cap_ms = 100

[downstream]
latency = { kind = "exponential", mean_ms = 10 }
failure_rate = 0.2

[[clients]]
kind = "open-loop"
per_s = 100
requests_max = 150
clients = 10
[clients.retry]
attempts_max = 4
timeout_ms = 2000
[clients.retry.backoff]
kind = "full-jitter"
base_ms = 20
cap_ms = 200

[[clients]]
kind = "closed-loop"
population = 5
think_ms = 50
requests_per_client = 10
[clients.retry]
attempts_max = 4
[clients.retry.backoff]
kind = "full-jitter"
base_ms = 20
cap_ms = 200
"#;

#[test]
fn compare_answers_every_request_in_both_worlds_and_reports_everything() {
    let scenario = Scenario::from_toml(SCENARIO, "compare-test.toml").expect("valid");
    let seed = scenario.seed;
    let opts = CompareOptions {
        seed,
        bucket_ms: 100.0,
        duration_max_s: Some(30.0),
        progress: false,
    };
    let c = compare(&scenario, &opts).expect("both worlds ran");
    let again = format!(
        "reproduce with: cargo run -- compare <this scenario> --seed {seed} (tests/compare.rs)"
    );
    assert_eq!(c.live.ending, Ending::Done, "{again}");
    for (world, s) in [("simulated", &c.simulated), ("live", &c.live.summary)] {
        assert_eq!(
            s.arrivals, 200,
            "{world}: every logical request made; {again}"
        );
        assert_eq!(
            s.client_succeeded + s.client_abandoned,
            s.arrivals,
            "{world}: every request has its final answer; {again}"
        );
        assert_eq!(s.client_still_waiting, 0, "{world}; {again}");
        assert_eq!(s.still_in_flight, 0, "{world}: no job left; {again}");
        assert!(s.accepted > 0 && s.succeeded > 0, "{world}; {again}");
        assert!(
            s.downstream_calls > s.accepted,
            "{world}: the failing downstream made the relay retry; {again}"
        );
        assert!(s.client_latency.count > 0 && s.latency.count > 0, "{world}");
    }
    let live = c.live_counts();
    assert_eq!(
        live.answered(),
        c.live.summary.sends,
        "every live send got the relay's answer; {again}"
    );
    assert_eq!((live.transport_errors, live.overloaded), (0, 0), "{again}");
    assert!(
        live.other.is_empty(),
        "only relay answers: {:?}",
        live.other
    );
    assert!(live.polls > 0 && live.clock_offset_ms.is_some(), "{live:?}");
    assert!(live.timer_lateness.count > 0, "the noise was measured");
    assert_eq!(live.timers_shifted, 0, "every timer at its own instant");

    let text = report(&c);
    for row in &c.rows {
        assert!(
            text.contains(row.metric),
            "{} missing from\n{text}",
            row.metric
        );
        assert!(row.simulated.is_finite() && row.live.is_finite(), "{row:?}");
    }
    for line in [
        "downstream calls per 100 ms",
        "goodput per 100 ms",
        "simulated |",
        "live      |",
    ] {
        assert!(text.contains(line), "`{line}` missing from\n{text}");
    }
    let json = serde_json::to_value(c.json()).expect("serialises");
    for key in ["rows", "simulated", "live", "timeline"] {
        assert!(!json[key].is_null(), "{key} missing from the JSON");
    }
    let timeline = &json["timeline"];
    for key in [
        "simulated_calls",
        "live_calls",
        "simulated_goodput",
        "live_goodput",
    ] {
        let v = timeline[key].as_array().expect("a series");
        assert!(!v.is_empty(), "{key} empty");
        let total: u64 = v.iter().filter_map(serde_json::Value::as_u64).sum();
        assert!(total > 0, "{key} counts nothing");
    }
    let goodput: u64 = c.live.series.successes.iter().map(|&n| u64::from(n)).sum();
    assert_eq!(
        goodput, c.live.summary.client_succeeded,
        "the live timeline counts every success once"
    );
    let calls: u64 = c.live.series.calls.iter().map(|&n| u64::from(n)).sum();
    assert!(calls <= c.live.summary.downstream_calls, "{calls}");

    let dir = tempfile::tempdir().expect("a temporary directory");
    write_files(&c, &scenario, dir.path(), "compare compare-test.toml").expect("written");
    let svg = std::fs::read_to_string(dir.path().join(TIMELINE_SVG)).expect("the SVG");
    for name in [SIMULATED, LIVE] {
        let legend = format!(">\n{name}\n</text>");
        assert_eq!(
            svg.matches(&legend).count(),
            2,
            "`{name}` in both panels' legends"
        );
    }
    for title in ["downstream calls per 100 ms", "goodput per 100 ms"] {
        assert!(svg.contains(title), "panel `{title}` missing");
    }
    let buckets = c
        .simulated_series
        .calls
        .len()
        .min(c.live.series.calls.len());
    assert!(buckets >= 10, "{buckets} buckets");
    let lines = svg
        .lines()
        .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"3\""))
        .filter(|l| l.matches(',').count() >= buckets)
        .count();
    assert_eq!(lines, 4, "a line per world in each panel");
    let png = image::open(dir.path().join(TIMELINE_PNG)).expect("a PNG");
    let pixels = png.to_rgb8();
    let coloured = pixels.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(
        coloured > pixels.len() / 3 / 100,
        "more than 1 % of the PNG drawn: {coloured} pixels"
    );
    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(FIGURES_JSON)).expect("figures"))
            .expect("JSON");
    assert_eq!(figures["seed"], seed);
    assert_eq!(figures["timeline"], json["timeline"], "the charted series");
    assert!(figures["command"].is_string());
}

/// Two open-loop clients (requests go to them in turn), 20 requests in
/// half a second, no retries, and a rate limit of 3 per client per minute:
/// each client gets 3 through and the rest of its 10 are limited. Live,
/// each client sends from a loopback address of its own, so the relay's
/// per-peer limit sees two peers, as the simulated relay sees two ids.
const RATE_LIMITED: &str = r#"
name = "compare-rate-limit"
seed = 5

[relay]
workers = 2
[relay.rate_limit]
requests_max = 3
window_ms = 60000

[downstream]
latency = { kind = "constant", ms = 1 }

[[clients]]
kind = "open-loop"
per_s = 40
requests_max = 20
clients = 2
[clients.retry]
attempts_max = 1
"#;

#[test]
fn each_live_client_is_its_own_peer_for_the_rate_limit() {
    let scenario = Scenario::from_toml(RATE_LIMITED, "compare-rate-limit.toml").expect("valid");
    let peers = Peers::new(&scenario.clients, "http://127.0.0.1:3000");
    if peers.len() < 2 {
        eprintln!("skipped: this host cannot send from 127.1.0.x (not Linux?)");
        return;
    }
    let seed = scenario.seed;
    let opts = CompareOptions {
        seed,
        bucket_ms: 100.0,
        duration_max_s: Some(10.0),
        progress: false,
    };
    let c = compare(&scenario, &opts).expect("both worlds ran");
    let again = format!(
        "reproduce with: cargo run -- compare <this scenario> --seed {seed} (tests/compare.rs)"
    );
    let (sim, live) = (&c.simulated, &c.live.summary);
    assert_eq!(
        (sim.accepted, sim.rate_limited_429),
        (6, 14),
        "simulated: 3 per client; {again}"
    );
    assert_eq!(
        (live.accepted, live.rate_limited_429),
        (sim.accepted, sim.rate_limited_429),
        "live: two peers, 3 each (one shared peer would let 3 through in all); {again}"
    );
}
