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
