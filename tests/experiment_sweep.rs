//! Scenario sweeps declared in TOML alone: a user's definition runs end to
//! end, and a bad metric, path or axis is refused at its line with the names
//! that would be valid.

use resilient_relay::experiment::definition::Definition;
use resilient_relay::experiment::{run_definition, RunSettings};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn settings(out: PathBuf, jobs: usize) -> RunSettings {
    RunSettings {
        out_dir: out,
        jobs,
        quick: true,
        seeds: None,
        progress: false,
    }
}

/// A definition no Rust knows about: two axes, one of them overlays.
const MINE: &str = r#"experiment = "my-sweep"
question = "Does a bigger pool help a small queue?"

[seeds]
count = 4

[[axes]]
path = "relay.workers"
values = [2, 8]

[[axes]]
column = "queue"
points = [
  { label = "tiny", set = { "relay.queue.capacity" = 5 } },
  { label = "roomy", set = { "relay.queue.capacity" = 500, "relay.queue.retry_after_ms" = 200 } },
]

[tables]
name = "mine"
raw_description = "one row per point and seed"
summary_description = "per point: mean and 95% CI"
metrics = ["shed_429_pct", "latency_p99_ms", "succeeded"]

[[charts]]
name = "mine_shed"
title = "Shed"
description = "shed vs workers"
x = "workers"
x_label = "workers"
y_label = "%"
legend = "upper-right"
y = "shed_429_pct"
series = "queue"

[[charts]]
name = "mine_calls"
title = "Calls"
description = "calls per 500 ms"
calls_bucket_ms = 500
y_label = "calls"
legend = "upper-middle"

[summary]
title = "Mine"
intro = "Horizon {scenario.horizon_s} s."
key_header = "workers, queue"
columns = [{ header = "429s (%)", metric = "shed_429_pct", decimals = 1 }]

[scenario]
name = "mine"
horizon_s = 5

[[scenario.clients]]
kind = "open-loop"
per_s = 200
clients = 10

[quick.seeds]
count = 2
"#;

fn definition(text: &str) -> Definition {
    Definition::from_text("my-sweep.toml", text.to_string())
}

#[test]
fn a_toml_only_sweep_runs_end_to_end_with_the_same_bytes_for_any_jobs() {
    let one = scratch("sweep_jobs_1");
    let two = scratch("sweep_jobs_2");
    let report = run_definition(&definition(MINE), &settings(one.clone(), 1)).expect("runs");
    run_definition(&definition(MINE), &settings(two.clone(), 2)).expect("runs");
    assert_eq!(report.experiment, "my-sweep");
    let read = |dir: &PathBuf, file: &str| {
        std::fs::read_to_string(dir.join("my-sweep").join(file)).expect(file)
    };
    for file in [
        "mine.csv",
        "mine_summary.csv",
        "summary.md",
        "mine_shed.svg",
    ] {
        assert_eq!(read(&one, file), read(&two, file), "{file}");
    }
    let raw = read(&one, "mine.csv");
    let mut lines = raw.lines();
    assert_eq!(
        lines.next(),
        Some("workers,queue,seed,shed_429_pct,latency_p99_ms,succeeded")
    );
    // 2 workers × 2 queues × 2 quick seeds, first axis outermost.
    let keys: Vec<String> = lines
        .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(
        keys,
        [
            "2,tiny,1",
            "2,tiny,2",
            "2,roomy,1",
            "2,roomy,2",
            "8,tiny,1",
            "8,tiny,2",
            "8,roomy,1",
            "8,roomy,2"
        ]
    );
    let summary = read(&one, "mine_summary.csv");
    assert!(summary.starts_with(
        "workers,queue,seeds,shed_429_pct_mean,shed_429_pct_ci95_low,shed_429_pct_ci95_high,"
    ));
    // Calls per 500 ms bucket, one series per point, padded to the longest
    // run: every point has the same number of buckets.
    let calls = read(&one, "mine_calls.csv");
    assert!(
        calls.starts_with(
            "workers,queue,time_s,calls_mean,calls_ci95_low,calls_ci95_high\n2,tiny,0.0,"
        ),
        "{calls}"
    );
    let per_point = calls.lines().filter(|l| l.starts_with("2,tiny,")).count();
    assert!(per_point >= 10, "{per_point} buckets over a 5 s run");
    assert_eq!(calls.lines().count(), 1 + 4 * per_point);
    let md = read(&one, "summary.md");
    assert!(
        md.contains("Does a bigger pool help a small queue?"),
        "{md}"
    );
    assert!(md.contains("Horizon 5 s."), "{md}");
    assert!(md.contains("| 2, tiny | "), "{md}");
    // A tiny queue in front of two workers sheds; a roomy one does not.
    let shed = |row: &str| -> f64 {
        let line = raw.lines().find(|l| l.starts_with(row)).expect(row);
        line.split(',')
            .nth(3)
            .and_then(|v| v.parse().ok())
            .expect("number")
    };
    assert!(shed("2,tiny,1") > shed("8,roomy,1"), "{raw}");
}

fn errors_of(text: &str) -> String {
    let out = scratch("sweep_errors");
    let err = run_definition(&definition(text), &settings(out, 1)).expect_err("refused");
    err.to_string()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

#[test]
fn an_unknown_metric_is_refused_at_its_line_with_the_catalogue() {
    let bad = MINE.replace("metrics = [\"shed_429_pct\",", "metrics = [\"shed_pct\",");
    let message = errors_of(&bad);
    let line = line_of(&bad, "shed_pct");
    assert!(
        message.contains(&format!("my-sweep.toml:{line}:")),
        "{message}"
    );
    assert!(message.contains("no metric named `shed_pct`"), "{message}");
    assert!(
        message.contains("shed_429_pct, rate_limited_429"),
        "{message}"
    );
}

#[test]
fn an_unknown_path_is_refused_at_its_line_with_the_valid_names() {
    let bad = MINE.replace("path = \"relay.workers\"", "path = \"relay.wrkers\"");
    let message = errors_of(&bad);
    let line = line_of(&bad, "relay.wrkers");
    assert!(
        message.contains(&format!("my-sweep.toml:{line}:")),
        "{message}"
    );
    assert!(message.contains("wrkers"), "{message}");
    assert!(message.contains("`workers`"), "{message}");
    assert!(message.contains("`queue`"), "{message}");
    let about_axes = message.lines().filter(|l| l.contains(": axes.")).count();
    assert_eq!(about_axes, 1, "one message for one bad path: {message}");
}

#[test]
fn an_unknown_axis_in_a_chart_and_a_placeholder_are_refused() {
    let bad = MINE
        .replace("series = \"queue\"", "series = \"qeue\"")
        .replace("{scenario.horizon_s}", "{scenario.horizon}");
    let message = errors_of(&bad);
    let line = line_of(&bad, "\"qeue\"");
    assert!(
        message.contains(&format!(
            ":{line}:10: charts[0]: no axis `qeue`; axes: workers, queue"
        )),
        "{message}"
    );
    assert!(message.contains("`{scenario.horizon}`"), "{message}");
}

#[test]
fn a_value_the_scenario_refuses_names_the_axis_and_point() {
    let bad = MINE.replace("values = [2, 8]", "values = [2, 0]");
    let message = errors_of(&bad);
    assert!(message.contains("axes.workers"), "{message}");
    assert!(message.contains("workers = 0"), "{message}");
}

#[test]
fn a_definition_that_is_neither_a_model_nor_a_sweep_is_told_both() {
    let message = errors_of("experiment = \"jitter-comparsion\"\n[seeds]\ncount = 1\n");
    assert!(
        message.contains("my-sweep.toml:1:14: experiment:"),
        "{message}"
    );
    assert!(
        message.contains("no experiment named `jitter-comparsion`"),
        "{message}"
    );
    assert!(message.contains("jitter-comparison"), "{message}");
    assert!(message.contains("or a scenario sweep"), "{message}");
}

#[test]
fn table_and_chart_names_are_plain_distinct_file_names() {
    let escaping = MINE.replace("name = \"mine_shed\"", "name = \"../../escape\"");
    let message = errors_of(&escaping);
    let line = line_of(&escaping, "../../escape");
    assert!(
        message.contains(&format!(
            ":{line}:8: charts[0].name: `../../escape` is not a file name"
        )),
        "{message}"
    );
    let clash = MINE.replace("name = \"mine_calls\"", "name = \"mine_summary\"");
    let message = errors_of(&clash);
    let line = line_of(&clash, "\"mine_summary\"");
    assert!(
        message.contains(&format!(
            ":{line}:8: charts[1].name: `mine_summary` names another table or chart"
        )),
        "{message}"
    );
}

#[test]
fn summary_columns_and_chart_scales_are_bounded() {
    let bad = MINE
        .replace("decimals = 1 }", "decimals = 100000 }")
        .replace(
            "name = \"mine_shed\"",
            "name = \"mine_shed\"\nx_factor = nan",
        );
    let message = errors_of(&bad);
    assert!(
        message.contains("summary.columns[0].decimals: at most 12, got 100000"),
        "{message}"
    );
    assert!(
        message.contains("x_factor: must be a finite number > 0, got NaN"),
        "{message}"
    );
}

#[test]
fn the_outage_is_shaded_only_when_every_point_shares_it() {
    let with_outage = MINE.replace(
        "[[scenario.clients]]",
        "[[scenario.downstream.outages]]\nstart_s = 1\nend_s = 2\nmode = \"fail-fast\"\n\n[[scenario.clients]]",
    );
    let moving = with_outage.replace(
        "{ label = \"roomy\", set = { \"relay.queue.capacity\" = 500,",
        "{ label = \"roomy\", set = { \"downstream.outages\" = [{ start_s = 3, end_s = 4, mode = \"fail-fast\" }], \"relay.queue.capacity\" = 500,",
    );
    assert_ne!(moving, with_outage, "the edit applies");
    let svg = |text: &str, dir: &str| {
        let out = scratch(dir);
        run_definition(&definition(text), &settings(out.clone(), 1)).expect("runs");
        std::fs::read_to_string(out.join("my-sweep").join("mine_calls.svg")).expect("svg")
    };
    assert!(svg(&with_outage, "sweep_shade_shared").contains("downstream down"));
    assert!(!svg(&moving, "sweep_shade_moving").contains("downstream down"));
}
