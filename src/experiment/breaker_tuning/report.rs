//! Tables, charts and headline text of the breaker-tuning experiment.

use super::{BreakerOptions, BreakerPoint, METRICS};
use crate::experiment::catalogue::{self, Metric};
use crate::experiment::chart::{Legend, LineChart, Scale, Series};
use crate::experiment::metrics::{self, MdColumn, PointSummary};
use crate::experiment::registry::Outputs;
use crate::experiment::sweep::Trial;
use crate::experiment::table::Cell;
use crate::relay::TripConfig;
use crate::sim::Summary;
use std::fmt::Write as _;

const X_LABEL: &str = "breaker open duration (s)";
const NO_BREAKER: &str = "no breaker";

/// Adds the tables, charts and headline text to `outputs`.
pub(super) fn append(
    outputs: &mut Outputs,
    options: &BreakerOptions,
    points: &[BreakerPoint],
    trials: &[Trial<Summary>],
) {
    let keys = |p: &BreakerPoint| {
        vec![
            Cell::text(p.trip_label()),
            if p.trip.is_some() {
                Cell::count(p.open_ms)
            } else {
                Cell::text("")
            },
        ]
    };
    let columns = METRICS.map(Metric::column);
    let summaries = metrics::summarize(points, trials, &catalogue::columns());
    outputs.tables.push(metrics::raw_table(
        "breaker_tuning",
        "one row per breaker setting (trip rule, open duration; none = no breaker) and seed",
        &["trip", "open_ms"],
        keys,
        points,
        trials,
        &columns,
    ));
    outputs.tables.push(metrics::summary_table(
        "breaker_tuning_summary",
        "per breaker setting: mean and 95% CI (Student t) over the seeds of every \
         breaker_tuning.csv column",
        &["trip", "open_ms"],
        keys,
        &metrics::summarize(points, trials, &columns),
        &columns,
    ));
    outputs.charts.extend(charts(&summaries, options));
    outputs
        .summary_markdown
        .push_str(&headline(&summaries, options));
}

/// A trip rule in words, for legends and the headline.
fn describe(trip: Option<TripConfig>) -> String {
    match trip {
        None => NO_BREAKER.to_string(),
        Some(TripConfig::ConsecutiveFailures { failures }) => {
            format!("{failures} consecutive failures")
        }
        Some(TripConfig::FailureRatio {
            ratio,
            window_ms,
            calls_min,
        }) => format!(
            "failure ratio ≥ {ratio} over {} s (≥ {calls_min} calls)",
            window_ms / 1000.0
        ),
        Some(TripConfig::FailureRatioCount { ratio, calls }) => {
            format!("failure ratio ≥ {ratio} over the last {calls} calls")
        }
    }
}

fn x(p: &BreakerPoint) -> f64 {
    p.open_ms as f64 / 1000.0
}

/// Lines of `metric`: one per trip rule over the open durations, and the
/// no-breaker run drawn flat across them as the baseline. `suffix` is
/// appended to each legend (empty for a single-metric chart).
fn lines(
    summaries: &[PointSummary<BreakerPoint>],
    options: &BreakerOptions,
    metric: Metric,
    suffix: &str,
) -> Vec<Series> {
    let mut with_baseline: Vec<PointSummary<BreakerPoint>> = Vec::new();
    if let Some(none) = summaries.iter().find(|s| s.point.trip.is_none()) {
        with_baseline.extend(options.open_ms.iter().map(|&open_ms| {
            let mut flat = none.clone();
            flat.point.open_ms = open_ms;
            flat
        }));
    }
    with_baseline.extend(summaries.iter().filter(|s| s.point.trip.is_some()).cloned());
    metrics::series(
        &with_baseline,
        metric.index(),
        1.0,
        |p| format!("{}{suffix}", describe(p.trip)),
        x,
    )
}

fn charts(summaries: &[PointSummary<BreakerPoint>], options: &BreakerOptions) -> Vec<LineChart> {
    let chart = |name: &str, title: &str, y_label: &str, series: Vec<Series>| LineChart {
        name: name.to_string(),
        description: format!(
            "{} vs breaker open duration, per trip rule (mean, 95% CI)",
            title.to_lowercase()
        ),
        title: title.to_string(),
        x_label: X_LABEL.to_string(),
        y_label: y_label.to_string(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        markers: true,
        legend: Legend::UpperRight,
        series,
        shade: None,
    };
    let mut refusals = lines(summaries, options, Metric::DeadLettered, ": dead-lettered");
    refusals.extend(lines(summaries, options, Metric::Unavailable503, ": 503s"));
    vec![
        chart(
            "breaker_downstream_calls",
            "Downstream calls by breaker setting",
            "calls to the downstream per run",
            lines(summaries, options, Metric::DownstreamCalls, ""),
        ),
        chart(
            "breaker_refusals",
            "Dead-lettered jobs and 503s by breaker setting",
            "per run",
            refusals,
        ),
    ]
}

fn headline(summaries: &[PointSummary<BreakerPoint>], options: &BreakerOptions) -> String {
    let mut md = String::from("## Circuit breaker during a downstream outage\n\n");
    let outages: Vec<String> = options
        .scenario
        .downstream
        .outages
        .iter()
        .map(|o| format!("{} s to {} s", o.start_s, o.end_s))
        .collect();
    let _ = writeln!(
        md,
        "The definition's `[scenario]` run for {} s of open-loop load with the downstream \
         down ({}), once with no breaker and once per trip rule and open duration \
         (success threshold {}, {} probe(s) at once). Counts are per run. Means over seeds, \
         ± the 95% CI half-width.\n",
        options.scenario.horizon_s,
        if outages.is_empty() {
            "no outage".to_string()
        } else {
            outages.join(", ")
        },
        options.success_threshold,
        options.half_open_probes_max,
    );
    md.push_str(&metrics::markdown_table(
        summaries,
        "breaker",
        |p| match p.trip {
            None => NO_BREAKER.to_string(),
            Some(_) => format!("{}, open {} s", describe(p.trip), x(p)),
        },
        &[
            column("downstream calls", Metric::DownstreamCalls, 0),
            column("relay retries", Metric::RelayRetries, 0),
            column("503s", Metric::Unavailable503, 0),
            column("429s", Metric::Shed429, 0),
            column("succeeded", Metric::Succeeded, 0),
            column("dead-lettered", Metric::DeadLettered, 0),
            column("breaker transitions", Metric::BreakerTransitions, 1),
            column("job p99 (ms)", Metric::LatencyP99Ms, 1),
            column("client p99 (ms)", Metric::ClientLatencyP99Ms, 1),
        ],
    ));
    md.push('\n');
    md.push_str(&savings(summaries));
    md
}

fn column(header: &str, metric: Metric, decimals: usize) -> MdColumn<'_> {
    MdColumn {
        header,
        metric: metric.index(),
        factor: 1.0,
        decimals,
    }
}

/// What the breaker setting with the fewest downstream calls saves against
/// no breaker.
fn savings(summaries: &[PointSummary<BreakerPoint>]) -> String {
    let mean = |s: &PointSummary<BreakerPoint>, m: Metric| s.get(m.index()).mean;
    let Some(none) = summaries.iter().find(|s| s.point.trip.is_none()) else {
        return String::new();
    };
    let fewest = summaries
        .iter()
        .filter(|s| s.point.trip.is_some())
        .min_by(|a, b| {
            mean(a, Metric::DownstreamCalls).total_cmp(&mean(b, Metric::DownstreamCalls))
        });
    let Some(best) = fewest else {
        return String::new();
    };
    let pct = |m: Metric| 100.0 * (1.0 - mean(best, m) / mean(none, m));
    format!(
        "- Fewest downstream calls: {}, open {} s: {:.0} calls instead of {:.0} without a \
         breaker ({:.0} % fewer), {:.0} dead-lettered instead of {:.0}, {:.0} 503s instead of \
         {:.0}; {:.0} jobs succeeded instead of {:.0}.\n",
        describe(best.point.trip),
        x(&best.point),
        mean(best, Metric::DownstreamCalls),
        mean(none, Metric::DownstreamCalls),
        pct(Metric::DownstreamCalls),
        mean(best, Metric::DeadLettered),
        mean(none, Metric::DeadLettered),
        mean(best, Metric::Unavailable503),
        mean(none, Metric::Unavailable503),
        mean(best, Metric::Succeeded),
        mean(none, Metric::Succeeded),
    )
}
