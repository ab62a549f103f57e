//! Named strategies in a sweep definition: the strategy axis, exclusions,
//! the paired baseline (paired CI beside the independent one), counters per
//! time bucket and the recovery tables, end to end in quick mode.

use resilient_relay::experiment::definition::Definition;
use resilient_relay::experiment::{run_definition, RunSettings};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run(text: &str, dir: &str, jobs: usize) -> PathBuf {
    let out = scratch(dir);
    let settings = RunSettings {
        out_dir: out.clone(),
        jobs,
        quick: true,
        seeds: None,
        progress: false,
    };
    run_definition(&definition(text), &settings).expect("runs");
    out.join("my-strategies")
}

fn errors_of(text: &str) -> String {
    let settings = RunSettings {
        out_dir: scratch("strategies_errors"),
        jobs: 1,
        quick: true,
        seeds: None,
        progress: false,
    };
    run_definition(&definition(text), &settings)
        .expect_err("refused")
        .to_string()
}

fn definition(text: &str) -> Definition {
    Definition::from_text("my-strategies.toml", text.to_string())
}

/// Clients that retry an outage with or without backoff, or not at all.
const MINE: &str = r#"experiment = "my-strategies"
question = "What do retries cost through an outage?"

[seeds]
count = 6

[[strategies]]
name = "no-retries"
description = "one send per request"
set = { "clients.0.retry.attempts_max" = 1 }

[[strategies]]
name = "retries"
description = "the scenario as written"

[[strategies]]
name = "fast-retries"
set = { "clients.0.retry.backoff.base_ms" = 10, "clients.0.retry.backoff.cap_ms" = 20 }

[[axes]]
column = "load"
points = [
  { label = "light", set = { "clients.0.per_s" = 50 } },
  { label = "heavy", set = { "clients.0.per_s" = 200 } },
]

[[exclude]]
strategy = "fast-retries"
load = ["light"]

[paired]
baseline = "no-retries"
metrics = ["downstream_calls", "served_pct"]

[series]
bucket_ms = 1000
metrics = ["calls", "successes"]

[recovery]
after_s = 4
window_s = 2

[tables]
name = "mine"
raw_description = "one row per point and seed"
summary_description = "per point: mean and 95% CI"
metrics = ["downstream_calls", "served_pct"]

[[charts]]
name = "mine_calls_heavy"
title = "Calls, heavy load"
description = "downstream calls per second, heavy load"
over_time = "calls"
only = { load = "heavy" }
shade = { from_s = 2, to_s = 4, label = "downstream down" }
y_label = "calls per second"
legend = "upper-right"

[summary]
title = "Mine"
intro = "Outage from {scenario.downstream.outages.0.start_s} s."
key_header = "strategy, load"
columns = [{ header = "calls", metric = "downstream_calls", decimals = 0 }]

[scenario]
name = "mine"
horizon_s = 8

[scenario.relay]
workers = 20
queue = { capacity = 200, retry_after_ms = 100 }

[scenario.relay.retry]
attempts_max = 1
attempt_timeout_ms = 500

[scenario.downstream]
latency = { kind = "exponential", mean_ms = 20 }

[[scenario.downstream.outages]]
start_s = 2
end_s = 4
mode = "fail-fast"

[[scenario.clients]]
kind = "open-loop"
per_s = 100
clients = 20
retry = { attempts_max = 4, backoff = { kind = "full-jitter", base_ms = 200, cap_ms = 1000 } }

[quick.seeds]
count = 5
"#;

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn strategies_run_as_the_first_axis_without_the_excluded_points() {
    let dir = run(MINE, "strategies_run", 1);
    let raw = read(&dir, "mine.csv");
    assert!(
        raw.starts_with("strategy,load,seed,downstream_calls,served_pct\n"),
        "{raw}"
    );
    let points: Vec<String> = raw
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        points,
        [
            "fast-retries,heavy",
            "no-retries,heavy",
            "no-retries,light",
            "retries,heavy",
            "retries,light"
        ]
    );
    assert_eq!(raw.lines().count(), 1 + 5 * 5, "5 points × 5 quick seeds");
    let meta = read(&dir, "meta.json");
    assert!(meta.contains("one send per request"), "{meta}");
}

/// Rows of the paired table: key → (difference, paired half, independent half).
fn paired_rows(dir: &std::path::Path) -> Vec<(String, f64, f64, f64)> {
    let text = read(dir, "mine_paired.csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "strategy,load,metric,pairs,difference_mean,paired_ci95_low,paired_ci95_high,\
             independent_ci95_low,independent_ci95_high,width_ratio"
        )
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f[i].parse::<f64>().unwrap_or(f64::NAN);
            (
                format!("{},{},{}", f[0], f[1], f[2]),
                n(4),
                (n(6) - n(5)) / 2.0,
                (n(8) - n(7)) / 2.0,
            )
        })
        .collect()
}

#[test]
fn paired_differences_are_tighter_than_independent_ones_on_common_seeds() {
    let dir = run(MINE, "strategies_paired", 1);
    let rows = paired_rows(&dir);
    let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            "retries,light,downstream_calls",
            "retries,heavy,downstream_calls",
            "fast-retries,heavy,downstream_calls",
            "retries,light,served_pct",
            "retries,heavy,served_pct",
            "fast-retries,heavy,served_pct",
        ],
        "the baseline is not compared with itself; excluded points have no row"
    );
    // Retrying through the outage costs calls: the difference is positive
    // and its paired interval excludes zero.
    let (_, diff, paired, independent) = rows[1];
    assert!(diff > 0.0 && diff - paired > 0.0, "{rows:?}");
    // Same arrivals on both sides: the paired interval is the tighter one.
    assert!(paired < independent, "{rows:?}");
    let md = read(&dir, "summary.md");
    assert!(
        md.contains("## Paired differences against `no-retries`"),
        "{md}"
    );
    assert!(
        md.contains("| retries, heavy | downstream_calls | "),
        "{md}"
    );
}

#[test]
fn counters_over_time_and_recovery_are_tabled_per_point() {
    let dir = run(MINE, "strategies_series", 2);
    let over = read(&dir, "mine_over_time.csv");
    assert!(
        over.starts_with(
            "strategy,load,time_s,calls_mean,calls_ci95_low,calls_ci95_high,\
             successes_mean,successes_ci95_low,successes_ci95_high\n"
        ),
        "{over}"
    );
    assert_eq!(
        over.lines().count(),
        1 + 5 * 8,
        "8 one-second buckets per point"
    );
    let recovery = read(&dir, "mine_recovery.csv");
    assert!(recovery.starts_with("strategy,load,seed,recovered,recovery_s\n"));
    assert_eq!(recovery.lines().count(), 1 + 25);
    let summary = read(&dir, "mine_recovery_summary.csv");
    assert!(summary.starts_with(
        "strategy,load,seeds,recovered_pct,recovery_s_mean,recovery_s_ci95_low,recovery_s_ci95_high\n"
    ));
    let md = read(&dir, "summary.md");
    assert!(md.contains("## Recovery"), "{md}");
    assert!(md.contains("| no-retries, light | 5 of 5 | "), "{md}");
    let svg = read(&dir, "mine_calls_heavy.svg");
    let texts = svg_texts(&svg);
    for legend in ["downstream down", "no-retries", "retries", "fast-retries"] {
        assert!(texts.contains(&legend), "{legend}: {texts:?}");
    }
    assert!(
        !texts.contains(&"no-retries, heavy"),
        "the fixed axis is left out of the legend: {texts:?}"
    );
    // Same bytes for one and two threads.
    let one = run(MINE, "strategies_series_1", 1);
    for file in [
        "mine_over_time.csv",
        "mine_recovery.csv",
        "mine_paired.csv",
        "summary.md",
    ] {
        assert_eq!(read(&one, file), read(&dir, file), "{file}");
    }
}

#[test]
fn a_baseline_or_exclusion_that_names_nothing_is_refused_with_the_names() {
    let bad = MINE.replace("baseline = \"no-retries\"", "baseline = \"none\"");
    let message = errors_of(&bad);
    assert!(
        message.contains("paired.baseline: no strategy named `none`; strategies: no-retries, retries, fast-retries"),
        "{message}"
    );
    let bad = MINE.replace("load = [\"light\"]", "load = [\"medium\"]");
    let message = errors_of(&bad);
    assert!(
        message
            .contains("exclude: axis `load` has no value labelled `medium`; labels: light, heavy"),
        "{message}"
    );
    let bad = MINE.replace(
        "metrics = [\"calls\", \"successes\"]",
        "metrics = [\"goodput\"]",
    );
    let message = errors_of(&bad);
    assert!(message.contains("no series named `goodput`"), "{message}");
    let bad = MINE.replace("name = \"fast-retries\"", "name = \"retries\"");
    let message = errors_of(&bad);
    assert!(message.contains("`retries` is named twice"), "{message}");
    // A chart over an axis draws each line from one level of the other
    // axes: `only` may name one label per axis there, never two.
    let mixed = "[[charts]]\nname = \"mixed\"\ntitle = \"t\"\ndescription = \"d\"\n\
        x = \"load\"\ny_label = \"y\"\nlegend = \"upper-right\"\ny = \"served_pct\"\n\
        only = { strategy = [\"retries\", \"no-retries\"] }\n\n[summary]";
    let bad = MINE.replacen("[summary]", mixed, 1);
    let message = errors_of(&bad);
    assert!(
        message.contains("charts[1].only: a chart over `x` takes one label per axis in `only`"),
        "{message}"
    );
}

/// The trimmed contents of every `<text>` element.
fn svg_texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|element| {
            let start = element.find('>')? + 1;
            let end = element.find("</text>")?;
            Some(element[start..end].trim())
        })
        .collect()
}
