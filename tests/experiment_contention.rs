//! The jitter comparison's contention part, run end to end in quick mode:
//! files, shape of the results, determinism across thread counts, charts.

#[path = "common/experiments.rs"]
mod experiments;

use experiments::{read, svg_texts};
use resilient_relay::experiment::RunReport;
use std::collections::BTreeMap;
use std::path::Path;

const STRATEGIES: [&str; 5] = [
    "no-backoff",
    "exponential",
    "equal-jitter",
    "full-jitter",
    "decorrelated-jitter",
];
/// What `[quick]` in experiments/jitter-comparison.toml asks for.
const QUICK_CLIENTS: [u32; 4] = [10, 50, 100, 150];
const QUICK_SEEDS: u64 = 20;

fn quick_run(jobs: usize) -> &'static RunReport {
    experiments::quick_run("jitter-comparison", jobs)
}

/// Summary rows keyed by (strategy, clients) → column → value.
fn summary(dir: &Path) -> BTreeMap<(String, u32), BTreeMap<String, f64>> {
    let text = read(dir, "contention_summary.csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let mut rows = BTreeMap::new();
    for record in reader.records() {
        let record = record.expect("row");
        let key = (record[0].to_string(), record[1].parse().expect("clients"));
        let values = headers
            .iter()
            .zip(record.iter())
            .skip(2)
            .map(|(h, v)| (h.to_string(), v.parse().unwrap_or(f64::NAN)))
            .collect();
        rows.insert(key, values);
    }
    rows
}

#[test]
fn raw_csv_has_the_exact_header_and_one_row_per_point_and_seed() {
    let report = quick_run(1);
    let text = read(&report.dir, "contention.csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("strategy,clients,seed,calls,completion_ms")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let expected = STRATEGIES.len() * QUICK_CLIENTS.len() * QUICK_SEEDS as usize;
    assert_eq!(rows.len(), expected);
    for row in &rows {
        assert_eq!(row.len(), 5, "{row:?}");
        assert!(STRATEGIES.contains(&row[0]), "{row:?}");
        assert!(QUICK_CLIENTS.contains(&row[1].parse().expect("clients")));
        let seed: u64 = row[2].parse().expect("seed");
        assert!((1..=QUICK_SEEDS).contains(&seed));
        let calls: u64 = row[3].parse().expect("calls");
        let clients: u64 = row[1].parse().expect("clients");
        assert!(
            calls >= clients,
            "every client writes at least once: {row:?}"
        );
        assert!(row[4].parse::<f64>().expect("completion") > 0.0, "{row:?}");
    }
    let summary_text = read(&report.dir, "contention_summary.csv");
    assert_eq!(
        summary_text.lines().count(),
        1 + STRATEGIES.len() * QUICK_CLIENTS.len()
    );
}

#[test]
fn results_have_the_published_shape_from_fifty_clients() {
    let rows = summary(&quick_run(1).dir);
    let get =
        |strategy: &str, clients: u32, column: &str| rows[&(strategy.to_string(), clients)][column];
    for clients in QUICK_CLIENTS.into_iter().filter(|&n| n >= 50) {
        let calls = |s: &str| get(s, clients, "calls_mean");
        let completion = |s: &str| get(s, clients, "completion_ms_mean");
        for other in STRATEGIES.iter().filter(|&&s| s != "no-backoff") {
            assert!(
                calls("no-backoff") > calls(other),
                "{clients} clients: no-backoff {} calls, {other} {}",
                calls("no-backoff"),
                calls(other)
            );
        }
        for other in STRATEGIES.iter().filter(|&&s| s != "exponential") {
            assert!(
                completion("exponential") > 3.0 * completion(other),
                "{clients} clients: exponential {} ms is not far above {other} {} ms",
                completion("exponential"),
                completion(other)
            );
        }
        for jittered in ["full-jitter", "decorrelated-jitter"] {
            assert!(
                calls(jittered) < 0.7 * calls("no-backoff"),
                "{clients} clients: {jittered} {} calls vs no-backoff {}",
                calls(jittered),
                calls("no-backoff")
            );
        }
        assert_eq!(get("full-jitter", clients, "unfinished"), 0.0);
    }
}

#[test]
fn outputs_are_byte_identical_for_one_and_two_jobs() {
    let one = quick_run(1);
    let two = quick_run(2);
    assert_eq!(one.files, two.files);
    for file in one.files.iter().filter(|f| *f != "meta.json") {
        let a = std::fs::read(one.dir.join(file)).expect("jobs 1 output");
        let b = std::fs::read(two.dir.join(file)).expect("jobs 2 output");
        assert!(a == b, "{file} differs between --jobs 1 and --jobs 2");
    }
    let meta = |dir: &Path| {
        let mut v: serde_json::Value =
            serde_json::from_str(&read(dir, "meta.json")).expect("meta.json is JSON");
        let timing = v.as_object_mut().and_then(|m| m.remove("timing"));
        (v, timing)
    };
    let (meta_one, timing_one) = meta(&one.dir);
    let (meta_two, timing_two) = meta(&two.dir);
    assert_eq!(meta_one, meta_two, "meta.json differs outside `timing`");
    assert_eq!(timing_one.expect("timing")["jobs"], 1);
    assert_eq!(timing_two.expect("timing")["jobs"], 2);
}

#[test]
fn meta_json_records_seeds_options_and_version() {
    let dir = &quick_run(1).dir;
    let meta: serde_json::Value = serde_json::from_str(&read(dir, "meta.json")).expect("JSON");
    assert_eq!(meta["experiment"], "jitter-comparison");
    assert_eq!(meta["crate_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["quick"], true);
    assert_eq!(meta["seeds"]["count"], QUICK_SEEDS);
    assert_eq!(
        meta["seeds"]["list"].as_array().map(Vec::len),
        Some(QUICK_SEEDS as usize)
    );
    let contention = &meta["options"]["contention"];
    assert_eq!(contention["base_ms"], 5.0);
    assert_eq!(contention["cap_ms"], 2000.0);
    assert_eq!(contention["clients"], serde_json::json!(QUICK_CLIENTS));
    assert_eq!(contention["strategies"], serde_json::json!(STRATEGIES));
    assert!(meta["timing"]["wall_s"].as_f64().is_some_and(|s| s > 0.0));
}

#[test]
fn charts_decode_at_the_expected_size_and_name_every_series() {
    let dir = &quick_run(1).dir;
    for chart in ["contention_calls", "contention_completion"] {
        let png = image::open(dir.join(format!("{chart}.png")))
            .unwrap_or_else(|e| panic!("{chart}.png: {e}"))
            .to_rgb8();
        assert_eq!(png.dimensions(), (1200, 750), "{chart}.png");
        let inked = png.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(
            inked > 20_000,
            "{chart}.png is nearly blank: {inked} pixels"
        );
        let svg = read(dir, &format!("{chart}.svg"));
        assert!(svg.starts_with("<svg"), "{chart}.svg");
        let texts = svg_texts(&svg);
        for name in STRATEGIES {
            assert!(texts.contains(&name), "{chart}.svg lacks {name}: {texts:?}");
        }
        assert!(
            texts.contains(&"number of clients"),
            "{chart}.svg lacks the x label"
        );
        assert!(
            svg.contains("font-family=\"DejaVu Sans, "),
            "{chart}.svg font"
        );
    }
}

#[test]
fn summary_md_reports_the_shape_checks() {
    let md = read(&quick_run(1).dir, "summary.md");
    assert!(md.contains("cargo run --release -- experiment jitter-comparison --quick"));
    // The contention part's section ends where the relay part's begins.
    let contention = md.split("## Through the relay").next().unwrap_or_default();
    let verdicts = contention
        .lines()
        .filter(|l| l.starts_with("- ") && l.contains("**"))
        .count();
    assert_eq!(verdicts, 4, "{md}");
    assert_eq!(
        md.matches("**yes, at all 3 client counts**").count(),
        4,
        "{md}"
    );
}

#[test]
fn quick_summary_csv_snapshot() {
    let text = read(&quick_run(1).dir, "contention_summary.csv");
    insta::assert_snapshot!("quick_contention_summary", text);
}
