//! Tables, charts and headline text of the timeout-tuning experiment.

use super::{TimeoutOptions, TimeoutOutcome, TimeoutPoint, METRICS};
use crate::experiment::chart::{Legend, LineChart, Scale};
use crate::experiment::metrics::{self, Column, PointSummary};
use crate::experiment::registry::Outputs;
use crate::experiment::sweep::Trial;
use crate::experiment::table::Cell;
use crate::sim::Scenario;
use std::fmt::Write as _;

const X_LABEL: &str = "per-attempt timeout (s)";

/// Adds the tables, charts and headline text to `outputs`.
pub(super) fn append(
    outputs: &mut Outputs,
    options: &TimeoutOptions,
    points: &[TimeoutPoint],
    trials: &[Trial<TimeoutOutcome>],
) {
    let keys = |p: &TimeoutPoint| {
        vec![
            Cell::count(p.attempt_timeout_ms),
            Cell::text(if p.honours_key { "true" } else { "false" }),
        ]
    };
    let key_columns = ["attempt_timeout_ms", "downstream_honours_key"];
    let summaries = metrics::summarize(points, trials, &METRICS);
    outputs.tables.push(metrics::raw_table(
        "timeout_tuning",
        "one row per per-attempt timeout, key handling of the downstream, and seed",
        &key_columns,
        keys,
        points,
        trials,
        &METRICS,
    ));
    outputs.tables.push(metrics::summary_table(
        "timeout_tuning_summary",
        "per timeout and key handling: mean and 95% CI (Student t) over the seeds of every \
         timeout_tuning.csv column",
        &key_columns,
        keys,
        &summaries,
        &METRICS,
    ));
    outputs.charts.extend(charts(&summaries, options));
    outputs
        .summary_markdown
        .push_str(&headline(&summaries, &options.scenario));
}

fn timeout_s(p: &TimeoutPoint) -> f64 {
    p.attempt_timeout_ms as f64 / 1e3
}

fn key_label(honours: bool) -> &'static str {
    if honours {
        "downstream honours the key"
    } else {
        "downstream ignores the key"
    }
}

/// Summaries of the points with the first key handling swept: timing does
/// not depend on it (same seeds, same calls), so one of them stands for both.
fn timing_only(
    summaries: &[PointSummary<TimeoutPoint>],
    options: &TimeoutOptions,
) -> Vec<PointSummary<TimeoutPoint>> {
    let first = options.downstream_honours_key.first().copied();
    summaries
        .iter()
        .filter(|s| Some(s.point.honours_key) == first)
        .cloned()
        .collect()
}

fn charts(summaries: &[PointSummary<TimeoutPoint>], options: &TimeoutOptions) -> Vec<LineChart> {
    let chart = |name: &str, title: &str, y_label: &str, (y_scale, legend), series| LineChart {
        name: name.to_string(),
        description: format!(
            "{} vs per-attempt timeout (mean, 95% CI)",
            title.to_lowercase()
        ),
        title: title.to_string(),
        x_label: X_LABEL.to_string(),
        y_label: y_label.to_string(),
        x_scale: Scale::Linear,
        y_scale,
        markers: true,
        legend,
        series,
    };
    let timing = timing_only(summaries, options);
    vec![
        chart(
            "timeout_duplicates",
            "Duplicate side effects by timeout",
            "duplicate side effects per 100 requests",
            (Scale::Linear, Legend::UpperRight),
            metrics::series(
                summaries,
                "duplicates_per_100_requests",
                1.0,
                |p| key_label(p.honours_key).to_string(),
                timeout_s,
            ),
        ),
        chart(
            "timeout_latency",
            "Job latency by timeout",
            "latency, accepted → success (ms, log scale)",
            (Scale::Log, Legend::LowerRight),
            metrics::lines(
                &timing,
                &[("p50", "latency_p50_ms"), ("p99", "latency_p99_ms")],
                1.0,
                timeout_s,
            ),
        ),
        chart(
            "timeout_retries",
            "Retries and calls abandoned by timeout",
            "per 100 requests",
            (Scale::Linear, Legend::UpperRight),
            metrics::lines(
                &timing,
                &[
                    ("relay retries", "retries_per_100_requests"),
                    (
                        "calls still running after their timeout",
                        "late_results_per_100_requests",
                    ),
                ],
                1.0,
                timeout_s,
            ),
        ),
    ]
}

fn headline(summaries: &[PointSummary<TimeoutPoint>], scenario: &Scenario) -> String {
    let mut md = String::from("## Per-attempt timeout against a heavy tail\n\n");
    md.push_str(
        "The definition's `[scenario]` run once per per-attempt timeout and key handling of the \
         downstream. Both key handlings see the same seeds, hence the same calls: they differ \
         only in whether a timed-out call that lands anyway counts twice. Means over seeds, ± \
         the 95% CI half-width.\n\n",
    );
    md.push_str(&metrics::markdown_table(
        summaries,
        "timeout, key handling",
        |p| {
            format!(
                "{} s, {}",
                timeout_s(p),
                if p.honours_key { "honoured" } else { "ignored" }
            )
        },
        &[
            column("success (%)", "success_pct", 2),
            column("job p50 (ms)", "latency_p50_ms", 0),
            column("job p99 (ms)", "latency_p99_ms", 0),
            column("relay retries", "relay_retries", 0),
            column("late answers", "late_results", 0),
            column("duplicate side effects", "duplicate_side_effects", 0),
        ],
    ));
    md.push('\n');
    md.push_str(&trade_off(summaries));
    let d = &scenario.downstream;
    if d.failure_rate == 0.0 && d.outages.is_empty() && d.brownouts.is_empty() {
        md.push_str(
            "- Every call in this scenario eventually succeeds downstream, so each \
             dead-lettered job (the gap to 100 % success) did its work anyway: the relay \
             reported a failure for work that was done.\n",
        );
    }
    md
}

fn column<'a>(header: &'a str, metric: &'a str, decimals: usize) -> Column<'a> {
    Column {
        header,
        metric,
        factor: 1.0,
        decimals,
    }
}

/// Shortest against longest timeout, with the key ignored, and what
/// honouring the key changes.
fn trade_off(summaries: &[PointSummary<TimeoutPoint>]) -> String {
    let ignored: Vec<&PointSummary<TimeoutPoint>> =
        summaries.iter().filter(|s| !s.point.honours_key).collect();
    let mut md = String::new();
    if let (Some(short), Some(long)) = (ignored.first(), ignored.last()) {
        let mean = |s: &PointSummary<TimeoutPoint>, m: &str| s.get(m).mean;
        let _ = writeln!(
            md,
            "- With the key ignored downstream, a {} s timeout costs {:.0} duplicate side effects \
             and {:.0} retries per run against {:.0} and {:.0} at {} s; its job p99 is {:.0} ms \
             against {:.0} ms.",
            timeout_s(&short.point),
            mean(short, "duplicate_side_effects"),
            mean(short, "relay_retries"),
            mean(long, "duplicate_side_effects"),
            mean(long, "relay_retries"),
            timeout_s(&long.point),
            mean(short, "latency_p99_ms"),
            mean(long, "latency_p99_ms"),
        );
    }
    let honoured_max = summaries
        .iter()
        .filter(|s| s.point.honours_key)
        .map(|s| s.get("duplicate_side_effects").mean)
        .fold(f64::NAN, f64::max);
    if honoured_max.is_finite() {
        let _ = writeln!(
            md,
            "- With the key honoured downstream: at most {honoured_max:.0} duplicate side \
             effects per run, whatever the timeout; the late calls still ran, but their second \
             landing on the same key did nothing."
        );
    }
    md
}
