//! The experiments that drive the simulator and the real relay, run end to
//! end in quick mode: exact CSV shapes, the direction of every effect they
//! exist to show, byte identity across thread counts, charts, and a pinned
//! quick-mode summary per experiment.

#[path = "common/experiments.rs"]
mod experiments;

use experiments::{
    csv, quick_run, read, rows as summary, same_bytes as check_byte_identity, svg_texts,
};
use std::path::Path;

const STRATEGIES: [&str; 5] = [
    "no-backoff",
    "exponential",
    "equal-jitter",
    "full-jitter",
    "decorrelated-jitter",
];

/// Quick seeds: `[quick.relay] seeds_max` for part (b), `[quick.seeds]`
/// for the others.
const HERD_SEEDS: usize = 2;
const QUICK_SEEDS: usize = 3;

const EXPERIMENTS: [&str; 7] = [
    "breaker-tuning",
    "dlq-sizing",
    "jitter-comparison",
    "queue-sizing",
    "rate-limit-sizing",
    "timeout-tuning",
    "worker-pool-sizing",
];

/// `metric` expanded to the summary's three columns.
fn summary_columns(keys: &[&str], metrics: &[&str]) -> Vec<String> {
    let mut columns: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
    columns.push("seeds".to_string());
    for m in metrics {
        for stat in ["mean", "ci95_low", "ci95_high"] {
            columns.push(format!("{m}_{stat}"));
        }
    }
    columns
}

fn raw_columns(keys: &[&str], metrics: &[&str]) -> Vec<String> {
    keys.iter()
        .chain(&["seed"])
        .chain(metrics)
        .map(|c| (*c).to_string())
        .collect()
}

/// Checks both tables' exact columns and row counts.
fn check_tables(
    dir: &Path,
    stem: &str,
    keys: &[&str],
    metrics: &[&str],
    points: usize,
    seeds: usize,
) {
    let (header, rows) = csv(dir, &format!("{stem}.csv"));
    assert_eq!(header, raw_columns(keys, metrics), "{stem}.csv columns");
    assert_eq!(rows.len(), points * seeds, "{stem}.csv rows");
    for row in &rows {
        assert_eq!(row.len(), header.len(), "{row:?}");
    }
    let (header, rows) = csv(dir, &format!("{stem}_summary.csv"));
    assert_eq!(header, summary_columns(keys, metrics), "{stem}_summary.csv");
    assert_eq!(rows.len(), points, "{stem}_summary.csv rows");
    for row in &rows {
        assert_eq!(row[keys.len()], seeds.to_string(), "{row:?}");
    }
}

/// The PNG decodes at the chart size and is drawn on; the SVG names every
/// series and both axes.
fn check_chart(dir: &Path, chart: &str, series: &[&str], x_label: &str) {
    let png = image::open(dir.join(format!("{chart}.png")))
        .unwrap_or_else(|e| panic!("{chart}.png: {e}"))
        .to_rgb8();
    assert_eq!(png.dimensions(), (1200, 750), "{chart}.png");
    let inked = png.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(inked > 20_000, "{chart}.png is nearly blank: {inked}");
    let svg = read(dir, &format!("{chart}.svg"));
    let texts = svg_texts(&svg);
    for name in series.iter().chain(&[x_label]) {
        let escaped = name.replace('&', "&amp;").replace('>', "&gt;");
        assert!(
            texts.iter().any(|t| *t == escaped),
            "{chart}.svg lacks {name:?}: {texts:?}"
        );
    }
}

mod breaker_tuning {
    use super::*;

    const METRICS: [&str; 9] = [
        "downstream_calls",
        "relay_retries",
        "unavailable_503",
        "shed_429",
        "succeeded",
        "dead_lettered",
        "breaker_transitions",
        "latency_p99_ms",
        "client_latency_p99_ms",
    ];

    const BREAKERS: [&str; 4] = [
        "consecutive-failures-5/1000",
        "consecutive-failures-5/5000",
        "failure-ratio-0.5-2000ms-20calls/1000",
        "failure-ratio-0.5-2000ms-20calls/5000",
    ];

    fn dir() -> &'static Path {
        &quick_run("breaker-tuning", 1).dir
    }

    #[test]
    fn tables_have_the_exact_columns_and_one_row_per_setting_and_seed() {
        check_tables(
            dir(),
            "breaker_tuning",
            &["trip", "open_ms"],
            &METRICS,
            5,
            QUICK_SEEDS,
        );
        let (_, rows) = csv(dir(), "breaker_tuning_summary.csv");
        let keys: Vec<String> = rows.iter().map(|r| r[..2].join("/")).collect();
        let mut expected = vec!["none/".to_string()];
        expected.extend(BREAKERS.iter().map(|b| (*b).to_string()));
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_breaker_spares_the_downstream_and_trades_dead_letters_for_503s() {
        let s = summary(dir(), "breaker_tuning_summary.csv", 2);
        let get = |key: &str, column: &str| s[key][column];
        let none = "none/";
        assert_eq!(get(none, "breaker_transitions_mean"), 0.0);
        assert_eq!(get(none, "unavailable_503_mean"), 0.0);
        for b in BREAKERS {
            assert!(get(b, "breaker_transitions_mean") > 0.0, "{b}");
            assert!(
                get(b, "downstream_calls_mean") < 0.5 * get(none, "downstream_calls_mean"),
                "{b}"
            );
            assert!(
                get(b, "relay_retries_mean") < get(none, "relay_retries_mean"),
                "{b}"
            );
            assert!(
                get(b, "dead_lettered_mean") < get(none, "dead_lettered_mean"),
                "{b}"
            );
            assert!(get(b, "unavailable_503_mean") > 0.0, "{b}");
        }
        // A shorter open period probes (and so re-opens) more often.
        for trip in ["consecutive-failures-5", "failure-ratio-0.5-2000ms-20calls"] {
            assert!(
                get(&format!("{trip}/1000"), "breaker_transitions_mean")
                    > get(&format!("{trip}/5000"), "breaker_transitions_mean"),
                "{trip}"
            );
        }
    }

    #[test]
    fn charts_name_every_line() {
        let x = "breaker open duration (s)";
        let trips = [
            "no breaker",
            "5 consecutive failures",
            "failure ratio ≥ 0.5 over 2 s (≥ 20 calls)",
        ];
        check_chart(dir(), "breaker_downstream_calls", &trips, x);
        let refusals: Vec<String> = trips
            .iter()
            .flat_map(|t| [format!("{t}: dead-lettered"), format!("{t}: 503s")])
            .collect();
        let refusals: Vec<&str> = refusals.iter().map(String::as_str).collect();
        check_chart(dir(), "breaker_refusals", &refusals, x);
    }

    #[test]
    fn quick_summary_csv_snapshot() {
        insta::assert_snapshot!(
            "quick_breaker_tuning_summary",
            read(dir(), "breaker_tuning_summary.csv")
        );
    }
}

mod herd {
    use super::*;

    const METRICS: [&str; 9] = [
        "downstream_calls",
        "calls_per_100ms_max",
        "drain_s",
        "completion_p99_ms",
        "idle_after_outage_s",
        "shed_429",
        "duplicate_side_effects",
        "clients_succeeded",
        "clients_abandoned",
    ];

    fn dir() -> &'static Path {
        &quick_run("jitter-comparison", 1).dir
    }

    #[test]
    fn tables_have_the_exact_columns_and_one_row_per_strategy_and_seed() {
        check_tables(dir(), "relay", &["strategy"], &METRICS, 5, HERD_SEEDS);
        let (header, rows) = csv(dir(), "relay_calls_over_time.csv");
        assert_eq!(
            header,
            [
                "strategy",
                "time_s",
                "calls_mean",
                "calls_ci95_low",
                "calls_ci95_high"
            ]
        );
        let per_strategy = rows.len() / STRATEGIES.len();
        assert_eq!(rows.len(), per_strategy * STRATEGIES.len());
        for (i, strategy) in STRATEGIES.iter().enumerate() {
            let first = &rows[i * per_strategy];
            assert_eq!((first[0].as_str(), first[1].as_str()), (*strategy, "0.0"));
        }
    }

    #[test]
    fn calls_over_time_add_up_to_the_calls_of_each_run() {
        let (_, rows) = csv(dir(), "relay_calls_over_time.csv");
        let s = summary(dir(), "relay_summary.csv", 1);
        for strategy in STRATEGIES {
            let total: f64 = rows
                .iter()
                .filter(|r| r[0] == strategy)
                .map(|r| r[2].parse::<f64>().expect("calls_mean"))
                .sum();
            let calls = s[strategy]["downstream_calls_mean"];
            assert!((total - calls).abs() < 0.01 * calls, "{strategy}");
        }
    }

    #[test]
    fn the_herd_shows_where_it_should() {
        let s = summary(dir(), "relay_summary.csv", 1);
        let get = |strategy: &str, column: &str| s[strategy][column];
        // No backoff: every client spends its sends at once against a full
        // queue and gives up; the relay retries as fast as its workers go.
        assert_eq!(get("no-backoff", "clients_succeeded_mean"), 0.0);
        assert!(get("no-backoff", "shed_429_mean") > get("full-jitter", "shed_429_mean"));
        // Exponential without jitter: its clients come back in lockstep, but
        // the relay keeps every job it accepted (a retry waits in the retry
        // lane, never dead-lettered for want of queue room), so the waves
        // meet few 429s and the backlog drains soonest.
        for other in ["equal-jitter", "full-jitter", "decorrelated-jitter"] {
            assert!(
                get("exponential", "drain_s_mean") < get(other, "drain_s_mean"),
                "exponential drains slower than {other}"
            );
            assert!(
                get("exponential", "shed_429_mean") < get(other, "shed_429_mean"),
                "{other}"
            );
            assert!(get(other, "clients_succeeded_mean") > 2900.0, "{other}");
        }
        for strategy in STRATEGIES {
            assert_eq!(get(strategy, "duplicate_side_effects_mean"), 0.0);
        }
    }

    #[test]
    fn charts_name_every_strategy() {
        for chart in ["relay_calls_over_time", "relay_calls_after_outage"] {
            check_chart(dir(), chart, &STRATEGIES, "time (s)");
        }
    }

    #[test]
    fn summary_md_has_the_relay_table() {
        let md = read(dir(), "summary.md");
        let part = md
            .split("## Through the relay (part b)")
            .nth(1)
            .expect("part b");
        for strategy in STRATEGIES {
            assert!(part.contains(&format!("| {strategy} |")), "{strategy}");
        }
        assert!(part.contains("fastest: **exponential**"), "{part}");
    }

    #[test]
    fn quick_summary_csv_snapshot() {
        insta::assert_snapshot!("quick_relay_summary", read(dir(), "relay_summary.csv"));
    }
}

mod queue_sizing {
    use super::*;

    const METRICS: [&str; 11] = [
        "sends",
        "shed_429",
        "shed_429_pct",
        "requests_abandoned_pct",
        "queue_bytes_max",
        "queue_depth_max",
        "latency_p50_ms",
        "latency_p99_ms",
        "client_latency_p99_ms",
        "deadline_missed",
        "deadline_missed_pct",
    ];

    fn dir() -> &'static Path {
        &quick_run("queue-sizing", 1).dir
    }

    #[test]
    fn tables_have_the_exact_columns_and_one_row_per_capacity_and_seed() {
        check_tables(
            dir(),
            "queue_sizing",
            &["capacity"],
            &METRICS,
            3,
            QUICK_SEEDS,
        );
    }

    #[test]
    fn a_bigger_queue_trades_refusals_for_lateness_and_memory() {
        let s = summary(dir(), "queue_sizing_summary.csv", 1);
        let get = |c: &str, column: &str| s[c][column];
        let caps = ["10", "100", "1000"];
        for pair in caps.windows(2) {
            let (small, large) = (pair[0], pair[1]);
            assert!(get(small, "shed_429_pct_mean") > get(large, "shed_429_pct_mean"));
            assert!(get(small, "latency_p99_ms_mean") < get(large, "latency_p99_ms_mean"));
            assert!(get(small, "queue_bytes_max_mean") < get(large, "queue_bytes_max_mean"));
            assert!(
                get(small, "deadline_missed_pct_mean") <= get(large, "deadline_missed_pct_mean")
            );
        }
        assert_eq!(get("10", "deadline_missed_mean"), 0.0);
        assert!(get("1000", "deadline_missed_pct_mean") > 10.0);
    }

    #[test]
    fn peak_bytes_are_whole_queued_jobs_within_the_capacity() {
        let (header, rows) = csv(dir(), "queue_sizing.csv");
        let col = |name: &str| header.iter().position(|h| h == name).expect(name);
        let mut per_job = None;
        for row in &rows {
            let capacity: u64 = row[0].parse().expect("capacity");
            let bytes: u64 = row[col("queue_bytes_max")].parse().expect("bytes");
            let depth: u64 = row[col("queue_depth_max")].parse().expect("depth");
            assert!(depth <= capacity, "{row:?}");
            assert!(bytes > 0 && bytes % depth == 0, "{row:?}");
            let this = bytes / depth;
            assert_eq!(*per_job.get_or_insert(this), this, "{row:?}");
        }
    }

    #[test]
    fn charts_name_every_line() {
        let x = "queue capacity (jobs, log scale)";
        check_chart(
            dir(),
            "queue_sizing_refusals",
            &[
                "429s (% of sends)",
                "requests given up (% of requests)",
                "late jobs (% of accepted)",
            ],
            x,
        );
        check_chart(
            dir(),
            "queue_sizing_latency",
            &[
                "job p50 (accepted → success)",
                "job p99 (accepted → success)",
                "client p99 (first send → success)",
            ],
            x,
        );
        check_chart(dir(), "queue_sizing_memory", &["bytes held (measured)"], x);
    }

    #[test]
    fn quick_summary_csv_snapshot() {
        insta::assert_snapshot!(
            "quick_queue_sizing_summary",
            read(dir(), "queue_sizing_summary.csv")
        );
    }
}

mod timeout_tuning {
    use super::*;

    const METRICS: [&str; 11] = [
        "success_pct",
        "dead_lettered",
        "latency_p50_ms",
        "latency_p99_ms",
        "relay_retries",
        "retries_per_100_requests",
        "downstream_calls",
        "late_results",
        "late_results_per_100_requests",
        "duplicate_side_effects",
        "duplicates_per_100_requests",
    ];

    fn dir() -> &'static Path {
        &quick_run("timeout-tuning", 1).dir
    }

    #[test]
    fn tables_have_the_exact_columns_and_one_row_per_point_and_seed() {
        check_tables(
            dir(),
            "timeout_tuning",
            &["attempt_timeout_ms", "downstream_honours_key"],
            &METRICS,
            6,
            QUICK_SEEDS,
        );
    }

    #[test]
    fn short_timeouts_duplicate_unless_the_key_is_honoured() {
        let s = summary(dir(), "timeout_tuning_summary.csv", 2);
        let get = |key: &str, column: &str| s[key][column];
        let timeouts = ["1000", "5000", "10000"];
        for t in timeouts {
            let ignored = format!("{t}/false");
            let honoured = format!("{t}/true");
            assert!(get(&ignored, "duplicate_side_effects_mean") > 0.0, "{t}");
            assert_eq!(get(&honoured, "duplicate_side_effects_mean"), 0.0, "{t}");
            // Same seeds, same calls: only the duplicates differ.
            for column in [
                "latency_p99_ms_mean",
                "relay_retries_mean",
                "late_results_mean",
            ] {
                assert_eq!(
                    get(&ignored, column),
                    get(&honoured, column),
                    "{t} {column}"
                );
            }
        }
        for pair in timeouts.windows(2) {
            let (short, long) = (format!("{}/false", pair[0]), format!("{}/false", pair[1]));
            assert!(get(&short, "relay_retries_mean") > get(&long, "relay_retries_mean"));
            assert!(
                get(&short, "duplicate_side_effects_mean")
                    > get(&long, "duplicate_side_effects_mean")
            );
            assert!(get(&short, "latency_p99_ms_mean") < get(&long, "latency_p99_ms_mean"));
        }
    }

    #[test]
    fn charts_name_every_line() {
        let x = "per-attempt timeout (s)";
        check_chart(
            dir(),
            "timeout_duplicates",
            &["downstream ignores the key", "downstream honours the key"],
            x,
        );
        check_chart(dir(), "timeout_latency", &["p50", "p99"], x);
        check_chart(
            dir(),
            "timeout_retries",
            &["relay retries", "calls still running after their timeout"],
            x,
        );
    }

    #[test]
    fn quick_summary_csv_snapshot() {
        insta::assert_snapshot!(
            "quick_timeout_tuning_summary",
            read(dir(), "timeout_tuning_summary.csv")
        );
    }
}

mod worker_pool_sizing {
    use super::*;

    const METRICS: [&str; 7] = [
        "offered_per_s",
        "throughput_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "downstream_concurrency_max",
        "jobs_in_relay_avg",
        "shed_429_pct",
    ];

    fn dir() -> &'static Path {
        &quick_run("worker-pool-sizing", 1).dir
    }

    #[test]
    fn tables_have_the_exact_columns_and_one_row_per_pool_and_seed() {
        check_tables(
            dir(),
            "worker_pool_sizing",
            &["workers"],
            &METRICS,
            4,
            QUICK_SEEDS,
        );
    }

    #[test]
    fn more_workers_serve_more_until_the_load_is_served() {
        let s = summary(dir(), "worker_pool_sizing_summary.csv", 1);
        let get = |w: &str, column: &str| s[w][column];
        for pair in ["1", "5", "10", "20"].windows(2) {
            let (few, more) = (pair[0], pair[1]);
            assert!(get(few, "throughput_per_s_mean") <= get(more, "throughput_per_s_mean"));
            assert!(get(few, "shed_429_pct_mean") >= get(more, "shed_429_pct_mean"));
        }
        for w in ["1", "5", "10", "20"] {
            let workers: f64 = w.parse().expect("workers");
            assert!(get(w, "downstream_concurrency_max_mean") <= workers);
        }
        let served = get("10", "throughput_per_s_mean") / get("10", "offered_per_s_mean");
        assert!(served > 0.98, "10 workers serve {served}");
        assert!(get("1", "shed_429_pct_mean") > 50.0);
        // Past the downstream's own limit, more workers only add latency.
        assert!(get("20", "latency_p99_ms_mean") > get("10", "latency_p99_ms_mean"));
    }

    #[test]
    fn charts_name_every_line() {
        let x = "workers (concurrent downstream calls allowed)";
        check_chart(
            dir(),
            "worker_pool_throughput",
            &["offered load", "throughput (jobs succeeded)"],
            x,
        );
        check_chart(dir(), "worker_pool_latency", &["p50", "p99"], x);
        check_chart(
            dir(),
            "worker_pool_concurrency",
            &["most calls in flight"],
            x,
        );
        check_chart(dir(), "worker_pool_shed", &["429s"], x);
    }

    #[test]
    fn quick_summary_csv_snapshot() {
        insta::assert_snapshot!(
            "quick_worker_pool_sizing_summary",
            read(dir(), "worker_pool_sizing_summary.csv")
        );
    }
}

mod rate_limit_sizing {
    use super::*;

    const METRICS: [&str; 8] = [
        "first_population_served_pct",
        "other_populations_served_pct",
        "rate_limited_429",
        "rate_limited_429_pct",
        "shed_429",
        "shed_429_pct",
        "throughput_per_s",
        "latency_p99_ms",
    ];

    fn dir() -> &'static Path {
        &quick_run("rate-limit-sizing", 1).dir
    }

    #[test]
    fn tables_have_the_exact_columns_and_one_row_per_limit_and_seed() {
        check_tables(
            dir(),
            "rate_limit_sizing",
            &["requests_max"],
            &METRICS,
            5,
            QUICK_SEEDS,
        );
    }

    #[test]
    fn a_tight_limit_protects_the_quiet_clients_from_the_noisy_one() {
        let s = summary(dir(), "rate_limit_sizing_summary.csv", 1);
        let get = |limit: &str, column: &str| s[limit][column];
        let noisy = "first_population_served_pct_mean";
        let quiet = "other_populations_served_pct_mean";
        // The noisy client gets more as the limit loosens…
        for pair in ["5", "20", "50", "100", "1000"].windows(2) {
            assert!(get(pair[0], noisy) < get(pair[1], noisy), "{pair:?}");
        }
        // …and without a binding limit the queue refuses everyone alike.
        assert!(get("50", quiet) > 99.0, "{}", get("50", quiet));
        assert!(get("1000", quiet) < 60.0, "{}", get("1000", quiet));
        assert_eq!(get("1000", "rate_limited_429_mean"), 0.0);
        assert!(get("5", "shed_429_mean") < get("1000", "shed_429_mean"));
    }

    #[test]
    fn charts_name_every_line() {
        let x = "per-client limit (requests per second, log scale)";
        check_chart(
            dir(),
            "rate_limit_served",
            &["the noisy client", "the quiet clients"],
            x,
        );
        check_chart(
            dir(),
            "rate_limit_refusals",
            &["rate limited", "queue full"],
            x,
        );
    }
}

mod dlq_sizing {
    use super::*;

    const METRICS: [&str; 10] = [
        "requests",
        "accepted",
        "succeeded",
        "dead_lettered",
        "dlq_held",
        "dlq_overflowed",
        "dlq_overflowed_pct",
        "dlq_full_pct",
        "unavailable_503",
        "served_pct",
    ];

    fn dir() -> &'static Path {
        &quick_run("dlq-sizing", 1).dir
    }

    #[test]
    fn tables_have_the_exact_columns_and_one_row_per_capacity_policy_and_seed() {
        let keys = ["capacity", "when_full"];
        check_tables(dir(), "dlq_sizing", &keys, &METRICS, 6, QUICK_SEEDS);
    }

    /// Under `refuse` a full queue refuses work after the outage; under
    /// `drop-oldest` it never does, and serves as much as room for every
    /// letter would. Either way every letter is kept or counted as dropped.
    #[test]
    fn the_full_queue_policy_decides_who_pays_for_a_small_queue() {
        let s = summary(dir(), "dlq_sizing_summary.csv", 2);
        let get = |c: &str, policy: &str, column: &str| s[&format!("{c}/{policy}")][column];
        for c in ["100", "1000", "10000"] {
            let capacity: f64 = c.parse().expect("capacity");
            for p in ["drop-oldest", "refuse"] {
                assert!(get(c, p, "dlq_held_mean") <= capacity);
                let letters = get(c, p, "dlq_held_mean") + get(c, p, "dlq_overflowed_mean");
                assert!(
                    (letters - get(c, p, "dead_lettered_mean")).abs() < 1e-9,
                    "{c} {p}"
                );
            }
            assert_eq!(get(c, "drop-oldest", "unavailable_503_mean"), 0.0, "{c}");
        }
        let refuse = |c, column| get(c, "refuse", column);
        assert_eq!(refuse("100", "dlq_full_pct_mean"), 100.0);
        assert_eq!(refuse("10000", "dlq_full_pct_mean"), 0.0);
        assert!(refuse("100", "unavailable_503_mean") > refuse("1000", "unavailable_503_mean"));
        assert_eq!(refuse("10000", "unavailable_503_mean"), 0.0);
        assert!(refuse("100", "served_pct_mean") < refuse("10000", "served_pct_mean"));
        let served = get("100", "drop-oldest", "served_pct_mean");
        assert!((served - get("10000", "drop-oldest", "served_pct_mean")).abs() < 1.0);
    }
}

#[test]
fn outputs_are_byte_identical_for_one_and_two_jobs() {
    for experiment in EXPERIMENTS {
        check_byte_identity(experiment);
    }
}

#[test]
fn meta_json_records_each_experiments_options() {
    for (experiment, key) in [
        ("breaker-tuning", "trips"),
        ("jitter-comparison", "relay"),
        ("dlq-sizing", "axes"),
        ("queue-sizing", "axes"),
        ("rate-limit-sizing", "axes"),
        ("timeout-tuning", "axes"),
        ("worker-pool-sizing", "axes"),
    ] {
        let dir = &quick_run(experiment, 1).dir;
        let meta: serde_json::Value = serde_json::from_str(&read(dir, "meta.json")).expect("JSON");
        assert_eq!(meta["experiment"], experiment);
        assert_eq!(meta["quick"], true);
        assert!(
            meta["options"].get(key).is_some(),
            "{experiment}: {}",
            meta["options"]
        );
    }
}
