//! The overload experiments in quick mode: `retry-storm` (a spike and a
//! ramp against a downstream that slows with its load) and `retry-policies`
//! (retry policies against a failing downstream). Exact table shapes, the
//! effects each exists to show, byte identity across thread counts, and a
//! pinned quick-mode summary each.

use resilient_relay::experiment::{run_named, RunReport, RunSettings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const EXPERIMENTS: [&str; 2] = ["retry-storm", "retry-policies"];

fn quick_run(experiment: &str, jobs: usize) -> &'static RunReport {
    static RUNS: [OnceLock<RunReport>; 4] = [const { OnceLock::new() }; 4];
    let index = EXPERIMENTS
        .iter()
        .position(|e| *e == experiment)
        .expect("known experiment");
    RUNS[2 * index + jobs - 1].get_or_init(|| {
        let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("experiment_overload_{experiment}_jobs{jobs}"));
        let _ = std::fs::remove_dir_all(&out_dir);
        let settings = RunSettings {
            out_dir,
            jobs,
            quick: true,
            seeds: None,
            progress: false,
        };
        run_named(experiment, &settings).expect("quick run succeeds")
    })
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Rows keyed by their first `keys` columns joined with `/`: column → value.
fn rows(dir: &Path, file: &str, keys: usize) -> BTreeMap<String, BTreeMap<String, f64>> {
    let text = read(dir, file);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|r| {
            let row: Vec<String> = r.expect("row").iter().map(str::to_string).collect();
            let key = row[..keys].join("/");
            let values = header
                .iter()
                .zip(&row)
                .skip(keys)
                .map(|(h, v)| (h.clone(), v.parse().unwrap_or(f64::NAN)))
                .collect();
            (key, values)
        })
        .collect()
}

fn same_bytes(experiment: &str) {
    let one = quick_run(experiment, 1);
    let two = quick_run(experiment, 2);
    assert_eq!(one.files, two.files);
    for file in one.files.iter().filter(|f| *f != "meta.json") {
        let a = std::fs::read(one.dir.join(file)).expect("jobs 1");
        let b = std::fs::read(two.dir.join(file)).expect("jobs 2");
        assert!(
            a == b,
            "{experiment}: {file} differs between --jobs 1 and 2"
        );
    }
}

mod retry_storm {
    use super::*;

    fn dir() -> &'static Path {
        &quick_run("retry-storm", 1).dir
    }

    #[test]
    fn no_backoff_stays_collapsed_after_the_spike_and_backoff_recovers() {
        let recovery = rows(dir(), "retry_storm_recovery_summary.csv", 2);
        let share = |k: &str| recovery[k]["recovered_pct"];
        assert_eq!(share("no-backoff/spike"), 0.0, "{recovery:?}");
        assert_eq!(share("no-backoff/ramp"), 0.0, "{recovery:?}");
        for good in ["full-jitter/spike", "keyed/spike", "token-bucket/spike"] {
            assert_eq!(share(good), 100.0, "{good}: {recovery:?}");
        }
        // After the spike, no backoff keeps piling calls onto the
        // downstream: the calls in progress at the end dwarf the healthy
        // level, and goodput in the last 10 s is nothing.
        let over = rows(dir(), "retry_storm_over_time.csv", 3);
        let at = |k: &str, t: &str, c: &str| over[&format!("{k}/{t}")][c];
        assert!(at("no-backoff/spike", "79.0", "in_progress_mean") > 1000.0);
        assert!(at("full-jitter/spike", "79.0", "in_progress_mean") < 200.0);
        let late_goodput: f64 = (70..80)
            .map(|s| at("no-backoff/spike", &format!("{s}.0"), "successes_mean"))
            .sum();
        assert_eq!(late_goodput, 0.0);
        // Before the spike every strategy sees the same arrivals (common
        // random numbers): the first tries per second agree exactly.
        for s in 0..20 {
            let t = format!("{s}.0");
            assert_eq!(
                at("no-backoff/spike", &t, "first_tries_mean"),
                at("full-jitter/spike", &t, "first_tries_mean"),
                "{t}"
            );
        }
    }

    #[test]
    fn tables_have_one_row_per_strategy_trigger_and_second() {
        let summary = rows(dir(), "retry_storm_summary.csv", 2);
        assert_eq!(summary.len(), 11 * 2, "11 strategies × 2 triggers");
        let over = read(dir(), "retry_storm_over_time.csv");
        assert!(over.starts_with(
            "strategy,trigger,time_s,starts_mean,starts_ci95_low,starts_ci95_high,first_tries_mean,"
        ));
        assert_eq!(over.lines().count(), 1 + 22 * 80, "80 one-second buckets");
        let paired = rows(dir(), "retry_storm_paired.csv", 3);
        assert_eq!(
            paired.len(),
            10 * 2 * 3,
            "10 strategies × 2 triggers × 3 metrics"
        );
        assert!(!paired.keys().any(|k| k.starts_with("no-backoff/")));
        let md = read(dir(), "summary.md");
        for section in [
            "## Retry storm after a spike or a ramp",
            "## Recovery",
            "## Paired differences against `no-backoff`",
        ] {
            assert!(md.contains(section), "{section}");
        }
        assert!(
            md.contains("| no-backoff, spike | 0 of 2 | stuck |"),
            "{md}"
        );
    }

    #[test]
    fn the_same_bytes_for_one_and_two_threads() {
        same_bytes("retry-storm");
    }

    #[test]
    fn quick_recovery_summary() {
        insta::assert_snapshot!(
            "quick_retry_storm_recovery",
            read(dir(), "retry_storm_recovery_summary.csv")
        );
    }
}

mod retry_policies {
    use super::*;

    fn dir() -> &'static Path {
        &quick_run("retry-policies", 1).dir
    }

    #[test]
    fn retries_cost_calls_that_budgets_cap_as_failures_grow() {
        let s = rows(dir(), "retry_policies_summary.csv", 2);
        let v = |k: &str, m: &str| s[k][&format!("{m}_mean")];
        // No failures: one call per request, every request served, whatever
        // the policy.
        for strategy in ["no-retries", "3-retries", "token-bucket", "retry-breaker"] {
            let k = format!("{strategy}/0");
            assert_eq!(v(&k, "retry_amplification"), 1.0, "{k}");
            assert_eq!(v(&k, "success_pct"), 100.0, "{k}");
        }
        // Half the calls failing: three retries nearly double the calls and
        // rescue most requests; the bucket and the breaker stop retrying.
        assert!(v("3-retries/0.5", "retry_amplification") > 1.8);
        assert!(v("3-retries/0.5", "success_pct") > 90.0);
        assert!(v("token-bucket/0.5", "retry_amplification") < 1.05);
        assert!(v("retry-breaker/0.5", "retry_amplification") < 1.05);
        assert!(v("no-retries/0.5", "success_pct") < 60.0);
        // Rare failures: the budgets allow the few retries needed.
        assert_eq!(
            v("token-bucket/0.01", "success_pct"),
            v("3-retries/0.01", "success_pct")
        );
        assert_eq!(s.len(), 7 * 16);
    }

    #[test]
    fn the_same_bytes_for_one_and_two_threads() {
        same_bytes("retry-policies");
    }

    #[test]
    fn quick_summary() {
        insta::assert_snapshot!(
            "quick_retry_policies_summary",
            read(dir(), "retry_policies_summary.csv")
        );
    }
}
