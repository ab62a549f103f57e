//! Tables, charts and headline text of the worker-pool-sizing experiment.

use super::{PoolOptions, PoolOutcome, METRICS};
use crate::experiment::chart::{Legend, LineChart, Scale};
use crate::experiment::metrics::{self, Column, PointSummary};
use crate::experiment::registry::Outputs;
use crate::experiment::sweep::Trial;
use crate::experiment::table::Cell;
use std::fmt::Write as _;

const X_LABEL: &str = "workers (concurrent downstream calls allowed)";

/// Adds the tables, charts and headline text to `outputs`.
pub(super) fn append(outputs: &mut Outputs, options: &PoolOptions, trials: &[Trial<PoolOutcome>]) {
    let workers = &options.workers[..];
    let keys = |w: &u64| vec![Cell::count(*w)];
    let summaries = metrics::summarize(workers, trials, &METRICS);
    outputs.tables.push(metrics::raw_table(
        "worker_pool_sizing",
        "one row per pool size and seed",
        &["workers"],
        keys,
        workers,
        trials,
        &METRICS,
    ));
    outputs.tables.push(metrics::summary_table(
        "worker_pool_sizing_summary",
        "per pool size: mean and 95% CI (Student t) over the seeds of every \
         worker_pool_sizing.csv column",
        &["workers"],
        keys,
        &summaries,
        &METRICS,
    ));
    outputs.charts.extend(charts(&summaries));
    outputs
        .summary_markdown
        .push_str(&headline(&summaries, options));
}

fn x(workers: &u64) -> f64 {
    *workers as f64
}

fn charts(summaries: &[PointSummary<u64>]) -> Vec<LineChart> {
    let chart = |name: &str,
                 title: &str,
                 y_label: &str,
                 (y_scale, legend): (Scale, Legend),
                 lines: &[(&str, &str)]| LineChart {
        name: name.to_string(),
        description: format!("{} vs workers (mean, 95% CI)", title.to_lowercase()),
        title: title.to_string(),
        x_label: X_LABEL.to_string(),
        y_label: y_label.to_string(),
        x_scale: Scale::Linear,
        y_scale,
        markers: true,
        legend,
        series: metrics::lines(summaries, lines, 1.0, x),
    };
    vec![
        chart(
            "worker_pool_throughput",
            "Throughput by pool size",
            "requests per second",
            (Scale::Linear, Legend::LowerRight),
            &[
                ("offered load", "offered_per_s"),
                ("throughput (jobs succeeded)", "throughput_per_s"),
            ],
        ),
        chart(
            "worker_pool_latency",
            "Job latency by pool size",
            "latency, accepted → success (ms, log scale)",
            (Scale::Log, Legend::UpperRight),
            &[("p50", "latency_p50_ms"), ("p99", "latency_p99_ms")],
        ),
        chart(
            "worker_pool_concurrency",
            "Concurrency the downstream sees",
            "downstream calls in flight at once (max)",
            (Scale::Linear, Legend::UpperLeft),
            &[("most calls in flight", "downstream_concurrency_max")],
        ),
        chart(
            "worker_pool_shed",
            "Requests refused with 429",
            "429s (% of sends)",
            (Scale::Linear, Legend::UpperRight),
            &[("429s", "shed_429_pct")],
        ),
    ]
}

fn headline(summaries: &[PointSummary<u64>], options: &PoolOptions) -> String {
    let mut md = String::from("## Worker pool size under steady load\n\n");
    let downstream_limit = options
        .scenario
        .downstream
        .capacity
        .map(|c| format!("; past {} calls at once it slows down", c.concurrency_max))
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "The definition's `[scenario]` run once per pool size for {} s of open-loop load \
         (the downstream's own limit matters here{downstream_limit}). Throughput is jobs \
         succeeded per second. Means over seeds, ± the 95% CI half-width.\n",
        options.scenario.horizon_s
    );
    md.push_str(&metrics::markdown_table(
        summaries,
        "workers",
        |w| w.to_string(),
        &[
            column("offered (req/s)", "offered_per_s", 1),
            column("throughput (req/s)", "throughput_per_s", 1),
            column("job p50 (ms)", "latency_p50_ms", 1),
            column("job p99 (ms)", "latency_p99_ms", 1),
            column(
                "max downstream concurrency",
                "downstream_concurrency_max",
                0,
            ),
            column("jobs in relay (mean)", "jobs_in_relay_avg", 2),
            column("429s (% of sends)", "shed_429_pct", 1),
        ],
    ));
    md.push('\n');
    md.push_str(&knee(summaries));
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

/// The smallest pool that serves (nearly) all the offered load, and what
/// the largest pool changes beyond it.
fn knee(summaries: &[PointSummary<u64>]) -> String {
    let mean = |s: &PointSummary<u64>, m: &str| s.get(m).mean;
    let enough = summaries
        .iter()
        .find(|s| mean(s, "throughput_per_s") >= 0.98 * mean(s, "offered_per_s"));
    let Some(enough) = enough else {
        return "- No pool size served 98 % of the offered load.\n".to_string();
    };
    let mut md = format!(
        "- The smallest pool that serves at least 98 % of the offered load: {} workers \
         ({:.1} of {:.1} req/s, job p99 {:.1} ms).\n",
        enough.point,
        mean(enough, "throughput_per_s"),
        mean(enough, "offered_per_s"),
        mean(enough, "latency_p99_ms"),
    );
    if let Some(largest) = summaries.last().filter(|l| l.point > enough.point) {
        let _ = writeln!(
            md,
            "- {} workers instead: throughput {:.1} req/s, job p99 {:.1} ms, up to {:.0} calls \
             in flight at the downstream.",
            largest.point,
            mean(largest, "throughput_per_s"),
            mean(largest, "latency_p99_ms"),
            mean(largest, "downstream_concurrency_max"),
        );
    }
    md
}
