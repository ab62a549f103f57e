//! The overload experiments in quick mode: `retry-storm` (a spike and a
//! ramp against a downstream that slows with its load), `retry-policies`
//! (clients retrying through their own gates against a failing downstream)
//! and `retry-policies-clients` (the same load from 10, 100 or 1000
//! clients). Exact table shapes, the effects each exists to show, byte
//! identity across thread counts, and a pinned quick-mode summary each.

#[path = "common/experiments.rs"]
mod experiments;

use experiments::{quick_run, read, rows, same_bytes};
use std::path::Path;

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
        for good in [
            "full-jitter/spike",
            "keyed/spike",
            "relay-token-bucket/spike",
            "client-token-bucket/spike",
            "client-bucket/spike",
            "client-retry-breaker/spike",
            "adaptive-throttling/spike",
        ] {
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
        // Every strategy sees the same arrivals (common random numbers):
        // the first tries per second agree exactly, the ones adaptive
        // throttling rejected before they left the client included (they
        // are offered load, the recovery rule's reference).
        for s in 0..80 {
            let t = format!("{s}.0");
            for other in [
                "full-jitter/spike",
                "adaptive-throttling/spike",
                "relay-retries/spike",
            ] {
                assert_eq!(
                    at("no-backoff/spike", &t, "first_tries_mean"),
                    at(other, &t, "first_tries_mean"),
                    "{other} at {t}"
                );
            }
        }
    }

    #[test]
    fn client_gates_refuse_retries_and_throttling_rejects_sends() {
        // Each client control says no for its own reason, and only it does.
        let s = rows(dir(), "retry_storm_summary.csv", 2);
        let v = |k: &str, m: &str| s[k][&format!("{m}_mean")];
        for (strategy, counted) in [
            ("client-bucket", "client_denied_budget"),
            ("client-retry-breaker", "client_denied_retry_breaker"),
            ("adaptive-throttling", "client_denied_throttled"),
        ] {
            let k = format!("{strategy}/spike");
            assert!(v(&k, counted) > 0.0, "{k}: {counted}");
            for other in [
                "client_denied_budget",
                "client_denied_retry_breaker",
                "client_denied_throttled",
            ] {
                if other != counted {
                    assert_eq!(v(&k, other), 0.0, "{k}: {other}");
                }
            }
        }
        for k in ["no-backoff/spike", "relay-token-bucket/spike"] {
            assert_eq!(v(k, "client_denied_budget"), 0.0, "{k}");
        }
        // Bounded client retries leave far fewer calls than none at all.
        assert!(
            v("client-bucket/spike", "downstream_calls")
                < 0.7 * v("no-backoff/spike", "downstream_calls")
        );
    }

    #[test]
    fn tables_have_one_row_per_strategy_trigger_and_second() {
        let summary = rows(dir(), "retry_storm_summary.csv", 2);
        assert_eq!(summary.len(), 17 * 2, "17 strategies × 2 triggers");
        let over = read(dir(), "retry_storm_over_time.csv");
        assert!(over.starts_with(
            "strategy,trigger,time_s,starts_mean,starts_ci95_low,starts_ci95_high,first_tries_mean,"
        ));
        assert_eq!(over.lines().count(), 1 + 34 * 80, "80 one-second buckets");
        let paired = rows(dir(), "retry_storm_paired.csv", 3);
        assert_eq!(
            paired.len(),
            16 * 2 * 3,
            "16 strategies × 2 triggers × 3 metrics"
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
    fn every_logical_request_ends_and_nothing_fails_without_failures() {
        let s = rows(dir(), "retry_policies_summary.csv", 2);
        let v = |k: &str, m: &str| s[k][&format!("{m}_mean")];
        assert_eq!(s.len(), 7 * 16);
        // The run goes on until every logical request has its answer, even
        // one whose news of the end overtook the answer that accepted it.
        for (k, row) in &s {
            assert_eq!(row["client_still_waiting_mean"], 0.0, "{k}");
        }
        for strategy in [
            "no-retries",
            "3-retries",
            "client-bucket",
            "retry-breaker",
            "token-bucket",
            "finagle",
            "aws-standard",
        ] {
            let k = format!("{strategy}/0");
            assert_eq!(v(&k, "calls_per_request"), 1.0, "{k}");
            assert_eq!(v(&k, "served_pct"), 100.0, "{k}");
        }
    }

    #[test]
    fn client_retries_cost_calls_that_the_gates_cap_as_failures_grow() {
        let s = rows(dir(), "retry_policies_summary.csv", 2);
        let v = |k: &str, m: &str| s[k][&format!("{m}_mean")];
        // Half the calls failing: three retries nearly double the calls and
        // rescue most requests; each client's bucket (5 tokens to start,
        // +0.1 per first try: 7 retries for its 20 requests of a quick run)
        // holds the calls near 1.35, and the breaker stops retrying.
        assert!(v("3-retries/0.5", "calls_per_request") > 1.8);
        assert!(v("3-retries/0.5", "served_pct") > 90.0);
        assert!(v("client-bucket/0.5", "calls_per_request") < 1.4);
        assert!(v("retry-breaker/0.5", "calls_per_request") < 1.05);
        assert!(v("no-retries/0.5", "served_pct") < 60.0);
        assert_eq!(v("no-retries/0.5", "calls_per_request"), 1.0);
        // The relay made one attempt per job: every retry is a client's.
        assert!(v("3-retries/0.5", "client_retries") > 0.0);
        // Rare failures: the bucket allows the few retries needed.
        assert_eq!(
            v("client-bucket/0.01", "served_pct"),
            v("3-retries/0.01", "served_pct")
        );
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

mod retry_policies_clients {
    use super::*;

    fn dir() -> &'static Path {
        &quick_run("retry-policies-clients", 1).dir
    }

    #[test]
    fn more_clients_loosen_the_bucket_and_tighten_the_breaker() {
        let s = rows(dir(), "retry_policies_clients_summary.csv", 3);
        let v = |k: &str, m: &str| s[k][&format!("{m}_mean")];
        assert_eq!(s.len(), 2 * 3 * 16);
        // A client with a tenth of a request per second keeps its bucket
        // full: at p = 0.5 the same load makes more calls the more clients
        // carry it.
        let bucket = |n: &str| v(&format!("client-bucket/{n}/0.5"), "calls_per_request");
        assert!(bucket("10") < bucket("100") && bucket("100") < bucket("1000"));
        // A client with few sends trips its breaker on its first failure:
        // at p = 0.05 more clients retry less and serve less.
        let breaker = |n: &str, m: &str| v(&format!("retry-breaker/{n}/0.05"), m);
        assert!(breaker("1000", "calls_per_request") < breaker("10", "calls_per_request"));
        assert!(breaker("1000", "served_pct") < breaker("10", "served_pct"));
        for (k, row) in &s {
            assert_eq!(row["client_still_waiting_mean"], 0.0, "{k}");
        }
        let md = read(dir(), "summary.md");
        assert!(md.contains("| client-bucket, 1000, 0.5 |"), "{md}");
    }

    #[test]
    fn charts_pick_one_strategy_and_draw_a_line_per_client_count() {
        for chart in [
            "retry_policies_clients_calls_bucket",
            "retry_policies_clients_calls_breaker",
            "retry_policies_clients_success_bucket",
            "retry_policies_clients_success_breaker",
        ] {
            let svg = read(dir(), &format!("{chart}.svg"));
            let texts = experiments::svg_texts(&svg);
            for line in ["10", "100", "1000"] {
                assert!(texts.contains(&line), "{chart}: {texts:?}");
            }
            assert!(
                !texts.iter().any(|t| t.contains("client-bucket")),
                "{chart}: {texts:?}"
            );
        }
        // The breaker's chart draws the breaker's numbers, not the bucket's.
        let calls = |name: &str| read(dir(), &format!("{name}.svg"));
        assert_ne!(
            calls("retry_policies_clients_calls_bucket"),
            calls("retry_policies_clients_calls_breaker")
        );
    }

    #[test]
    fn the_same_bytes_for_one_and_two_threads() {
        same_bytes("retry-policies-clients");
    }

    #[test]
    fn quick_summary() {
        insta::assert_snapshot!(
            "quick_retry_policies_clients_summary",
            read(dir(), "retry_policies_clients_summary.csv")
        );
    }
}
