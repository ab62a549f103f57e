//! Determinism is a feature: same scenario and seed give byte-identical
//! traces and summaries, in one process and across processes; another seed
//! gives another run.

use resilient_relay::sim::{simulate, Scenario, SimOptions};
use std::path::Path;
use std::process::Command;

const SCENARIO: &str = "experiments/scenarios/outage.toml";

fn run(seed: u64) -> (String, String) {
    let scenario = Scenario::load(Path::new(SCENARIO)).expect("scenario loads");
    let opts = SimOptions {
        seed,
        trace_records_max: 10_000_000,
        calls_bucket_ms: Some(100.0),
        series_bucket_ms: None,
    };
    let result = simulate(&scenario, &opts).unwrap_or_else(|f| {
        panic!("{f}\nreproduce with: cargo run --release -- simulate {SCENARIO} --seed {seed}")
    });
    let trace = result.trace.expect("trace requested").to_jsonl();
    (
        trace,
        serde_json::to_string(&result.summary).expect("summary serialises"),
    )
}

#[test]
fn same_seed_twice_in_one_process_gives_the_same_bytes() {
    let (trace_a, summary_a) = run(42);
    let (trace_b, summary_b) = run(42);
    assert!(
        trace_a.len() > 100_000,
        "the outage trace should be substantial"
    );
    assert!(
        trace_a == trace_b,
        "traces differ for seed 42 (cargo run --release -- simulate {SCENARIO} --seed 42)"
    );
    assert_eq!(summary_a, summary_b);
}

#[test]
fn another_seed_gives_another_run() {
    let (trace_a, summary_a) = run(42);
    let (trace_b, summary_b) = run(43);
    assert_ne!(trace_a, trace_b);
    assert_ne!(summary_a, summary_b);
}

/// Runs the binary and returns (trace bytes, summary JSON without wall time).
fn run_process(seed: u64, dir: &Path) -> (Vec<u8>, serde_json::Value) {
    let trace = dir.join(format!("trace-{seed}-{}.jsonl", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .args([
            "simulate",
            SCENARIO,
            "--seed",
            &seed.to_string(),
            "--json",
            "--trace",
        ])
        .arg(&trace)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    summary.as_object_mut().expect("an object").remove("wall_s");
    let bytes = std::fs::read(&trace).expect("trace written");
    let _ = std::fs::remove_file(&trace);
    (bytes, summary)
}

#[test]
fn same_seed_in_two_processes_gives_the_same_bytes() {
    let dir = std::env::temp_dir();
    let (trace_a, summary_a) = run_process(7, &dir);
    let (trace_b, summary_b) = run_process(7, &dir);
    assert!(!trace_a.is_empty());
    assert!(
        trace_a == trace_b,
        "traces differ across processes for seed 7"
    );
    assert_eq!(summary_a, summary_b);
    assert_eq!(summary_a["seed"], 7);
    let in_process = run(7).0;
    assert!(
        in_process.as_bytes() == trace_a.as_slice(),
        "CLI trace differs from the library's"
    );
}

#[test]
fn a_run_past_its_event_bound_stops_and_names_its_seed() {
    use resilient_relay::sim::simulation::Simulation;
    use resilient_relay::sim::Stop;
    let scenario = Scenario::load(Path::new(SCENARIO)).expect("scenario loads");
    let failure = Simulation::new(&scenario, &SimOptions::seed(42))
        .with_events_max(1_000)
        .run()
        .err()
        .expect("stopped by the bound");
    assert_eq!(failure.seed, 42);
    assert!(
        matches!(failure.reason, Stop::EventsExhausted { events_max: 1_000, at_s } if at_s > 0.0),
        "{failure}"
    );
    assert!(failure.to_string().contains("seed 42"), "{failure}");
    let whole = Simulation::new(&scenario, &SimOptions::seed(42)).run();
    assert!(
        whole.is_ok(),
        "the committed scenario is far inside the bound"
    );
}
