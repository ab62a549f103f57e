//! `simulate --trace-format chrome` writes a file a trace viewer can open:
//! checked against the trace-event format, against the JSON-lines trace of
//! the same run, and for determinism.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const SCENARIO: &str = "experiments/scenarios/outage.toml";
/// Long enough for the outage at 10 s to open the breaker, short enough
/// to leave jobs, attempts and requests open when the run stops.
const HORIZON: &str = "horizon_s=14";

/// Runs the binary and returns the bytes of the trace it wrote.
fn trace_bytes(dir: &Path, seed: u64, format: &str, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .args(["simulate", SCENARIO, "--set", HORIZON, "--seed"])
        .arg(seed.to_string())
        .arg("--trace")
        .arg(&path)
        .args(["--trace-format", format])
        .output()
        .expect("run the binary");
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).expect("the trace file was written")
}

/// Virtual nanoseconds back from the format's microseconds.
fn ns(micros: &Value) -> u64 {
    let us = micros.as_f64().expect("a number");
    assert!(us >= 0.0, "negative time {us}");
    (us * 1_000.0).round() as u64
}

fn num(e: &Value, field: &str) -> u64 {
    e[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a non-negative integer in {e}"))
}

/// Every event has the fields the format requires, with legal values.
fn check_fields(events: &[Value]) {
    for e in events {
        assert!(e["name"].is_string(), "no name: {e}");
        let ph = e["ph"].as_str().unwrap_or_else(|| panic!("no ph: {e}"));
        assert!(["X", "i", "M"].contains(&ph), "phase {ph} in {e}");
        ns(&e["ts"]);
        num(e, "pid");
        num(e, "tid");
        match ph {
            "X" => {
                ns(&e["dur"]);
            }
            "i" => assert!(["t", "p"].contains(&e["s"].as_str().unwrap_or("?")), "{e}"),
            _ => {}
        }
    }
}

/// Every process and every track an event lands on is named.
fn check_names(events: &[Value]) {
    let mut processes = BTreeMap::new();
    let mut threads = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "M") {
        let name = e["args"]["name"].as_str().expect("a metadata name");
        assert!(!name.is_empty());
        let key = (num(e, "pid"), num(e, "tid"));
        match e["name"].as_str() {
            Some("process_name") => processes.insert(key.0, name.to_string()),
            Some("thread_name") => threads.insert(key, name.to_string()),
            other => panic!("unexpected metadata {other:?}"),
        };
    }
    assert_eq!(processes.get(&1).map(String::as_str), Some("jobs"));
    assert_eq!(processes.get(&2).map(String::as_str), Some("workers"));
    assert_eq!(processes.get(&3).map(String::as_str), Some("clients"));
    for e in events.iter().filter(|e| e["ph"] != "M") {
        let key = (num(e, "pid"), num(e, "tid"));
        if e["s"] == "p" {
            assert!(processes.contains_key(&key.0), "unnamed process: {e}");
        } else {
            assert!(threads.contains_key(&key), "unnamed track: {e}");
        }
    }
}

/// Slices as (start, end) in nanoseconds, by (pid, tid), in start order.
fn slices(events: &[Value], pid: u64, name_prefix: &str) -> BTreeMap<u64, Vec<(u64, u64)>> {
    let mut by_tid: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e["ph"] == "X" && num(e, "pid") == pid)
    {
        if !e["name"].as_str().unwrap_or("").starts_with(name_prefix) {
            continue;
        }
        let start = ns(&e["ts"]);
        let span = (start, start + ns(&e["dur"]));
        by_tid.entry(num(e, "tid")).or_default().push(span);
    }
    for spans in by_tid.values_mut() {
        spans.sort();
    }
    by_tid
}

#[test]
fn the_chrome_trace_follows_the_format_and_matches_the_jsonl_run() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bytes = trace_bytes(dir.path(), 42, "chrome", "run.json");
    let doc: Value = serde_json::from_slice(&bytes).expect("the file is JSON");
    assert_eq!(doc["displayTimeUnit"], "ms");
    assert_eq!(doc["otherData"]["seed"], 42);
    assert_eq!(doc["otherData"]["scenario"], "outage");
    let events = doc["traceEvents"].as_array().expect("a traceEvents array");
    check_fields(events);
    check_names(events);

    // Worker lanes: calls in flight never overlap on one lane.
    let lanes = slices(events, 2, "attempt ");
    assert!(lanes.len() > 1, "the run should use several lanes");
    for (lane, spans) in &lanes {
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "lane {lane}: {:?} overlaps {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    // One attempt slice per call, in each view.
    let jsonl = String::from_utf8(trace_bytes(dir.path(), 42, "jsonl", "run.jsonl")).unwrap();
    let calls = jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|r| r["event"] == "call")
        .count();
    assert!(calls > 1_000, "only {calls} calls");
    let in_jobs: usize = slices(events, 1, "attempt ").values().map(Vec::len).sum();
    let in_lanes: usize = lanes.values().map(Vec::len).sum();
    assert_eq!(in_jobs, calls);
    assert_eq!(in_lanes, calls);

    // A job's attempts lie within its life (no hedging here: one track each).
    let jobs = slices(events, 1, "job ");
    for (tid, attempts) in slices(events, 1, "attempt ") {
        let life = jobs[&tid].as_slice();
        assert_eq!(life.len(), 1, "job {tid} has one life");
        let (start, end) = life[0];
        for a in attempts {
            assert!(
                start <= a.0 && a.1 <= end,
                "job {tid}: {a:?} outside {life:?}"
            );
        }
    }

    // The outage opens the breaker: a process-wide instant.
    assert!(events
        .iter()
        .any(|e| e["name"] == "breaker" && e["s"] == "p" && e["args"]["to"] == "open"));
    // Work still in flight at the horizon ends with the trace, marked.
    assert!(events
        .iter()
        .any(|e| e["ph"] == "X" && e["args"]["open_at_end"] == true));
}

#[test]
fn the_same_seed_writes_the_same_chrome_bytes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let a = trace_bytes(dir.path(), 7, "chrome", "a.json");
    let b = trace_bytes(dir.path(), 7, "chrome", "b.json");
    assert!(a.len() > 100_000, "the trace should be substantial");
    assert!(a == b, "two runs of seed 7 wrote different chrome traces");
    let c = trace_bytes(dir.path(), 8, "chrome", "c.json");
    assert!(a != c, "seeds 7 and 8 wrote the same chrome trace");
}
