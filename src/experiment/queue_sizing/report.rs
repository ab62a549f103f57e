//! Tables, charts and headline text of the queue-sizing experiment.

use super::{QueueOutcome, QueueSizingOptions, METRICS};
use crate::experiment::chart::{Legend, LineChart, Scale};
use crate::experiment::metrics::{self, Column, PointSummary};
use crate::experiment::registry::Outputs;
use crate::experiment::sweep::Trial;
use crate::experiment::table::Cell;
use std::fmt::Write as _;

const X_LABEL: &str = "queue capacity (jobs, log scale)";

/// Adds the tables, charts and headline text to `outputs`.
pub(super) fn append(
    outputs: &mut Outputs,
    options: &QueueSizingOptions,
    trials: &[Trial<QueueOutcome>],
) {
    let capacities = &options.capacities[..];
    let keys = |c: &u64| vec![Cell::count(*c)];
    let summaries = metrics::summarize(capacities, trials, &METRICS);
    outputs.tables.push(metrics::raw_table(
        "queue_sizing",
        "one row per queue capacity and seed",
        &["capacity"],
        keys,
        capacities,
        trials,
        &METRICS,
    ));
    outputs.tables.push(metrics::summary_table(
        "queue_sizing_summary",
        "per queue capacity: mean and 95% CI (Student t) over the seeds of every queue_sizing.csv column",
        &["capacity"],
        keys,
        &summaries,
        &METRICS,
    ));
    outputs.charts.extend(charts(&summaries));
    outputs
        .summary_markdown
        .push_str(&headline(&summaries, options));
}

fn x(capacity: &u64) -> f64 {
    *capacity as f64
}

fn charts(summaries: &[PointSummary<u64>]) -> Vec<LineChart> {
    let chart = |name: &str,
                 title: &str,
                 y_label: &str,
                 (y_scale, legend): (Scale, Legend),
                 lines: &[(&str, &str)]| {
        LineChart {
            name: name.to_string(),
            description: format!("{} vs queue capacity (mean, 95% CI)", title.to_lowercase()),
            title: title.to_string(),
            x_label: X_LABEL.to_string(),
            y_label: y_label.to_string(),
            x_scale: Scale::Log,
            y_scale,
            markers: true,
            legend,
            series: metrics::lines(summaries, lines, 1.0, x),
        }
    };
    vec![
        chart(
            "queue_sizing_refusals",
            "Refused early or served late",
            "share (%)",
            (Scale::Linear, Legend::UpperRight),
            &[
                ("429s (% of sends)", "shed_429_pct"),
                (
                    "requests given up (% of requests)",
                    "requests_abandoned_pct",
                ),
                ("late jobs (% of accepted)", "deadline_missed_pct"),
            ],
        ),
        chart(
            "queue_sizing_latency",
            "Latency by queue capacity",
            "latency (ms, log scale)",
            (Scale::Log, Legend::LowerRight),
            &[
                ("job p50 (accepted → success)", "latency_p50_ms"),
                ("job p99 (accepted → success)", "latency_p99_ms"),
                ("client p99 (first send → success)", "client_latency_p99_ms"),
            ],
        ),
        chart(
            "queue_sizing_memory",
            "Most bytes the queue held",
            "peak queue memory (bytes, log scale)",
            (Scale::Log, Legend::UpperLeft),
            &[("bytes held (measured)", "queue_bytes_max")],
        ),
    ]
}

fn headline(summaries: &[PointSummary<u64>], options: &QueueSizingOptions) -> String {
    let mut md = String::from("## Queue capacity under a spike\n\n");
    let deadline_ms = options.scenario.deadline_ms.unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "The definition's `[scenario]` run once per queue capacity. A job is late when it \
         succeeds more than {deadline_ms} ms after it was accepted. Peak queue memory is the \
         most bytes the relay's queue held (ring entries plus the job records of queued jobs), \
         sampled after every event. Means over seeds, ± the 95% CI half-width.\n"
    );
    md.push_str(&metrics::markdown_table(
        summaries,
        "capacity",
        |c| c.to_string(),
        &[
            column("429s (% of sends)", "shed_429_pct", 1.0, 1),
            column("given up (% of requests)", "requests_abandoned_pct", 1.0, 1),
            column(
                "peak queue memory (KiB)",
                "queue_bytes_max",
                1.0 / 1024.0,
                1,
            ),
            column("job p50 (ms)", "latency_p50_ms", 1.0, 0),
            column("job p99 (ms)", "latency_p99_ms", 1.0, 0),
            column("client p99 (ms)", "client_latency_p99_ms", 1.0, 0),
            column("late jobs", "deadline_missed", 1.0, 0),
            column("late (% of accepted)", "deadline_missed_pct", 1.0, 1),
        ],
    ));
    md.push('\n');
    md.push_str(&trade_off(summaries));
    md
}

fn column<'a>(header: &'a str, metric: &'a str, factor: f64, decimals: usize) -> Column<'a> {
    Column {
        header,
        metric,
        factor,
        decimals,
    }
}

/// The smallest and the largest capacity side by side, and the bytes one
/// queued job costs, as measured.
fn trade_off(summaries: &[PointSummary<u64>]) -> String {
    let (Some(small), Some(large)) = (summaries.first(), summaries.last()) else {
        return String::new();
    };
    let mean = |s: &PointSummary<u64>, m: &str| s.get(m).mean;
    let mut md = format!(
        "- From a queue of {} to one of {}: 429s go from {:.1} % to {:.1} % of sends and late \
         jobs from {:.1} % to {:.1} % of accepted ones; the job p99 goes from {:.0} ms to \
         {:.0} ms.\n",
        small.point,
        large.point,
        mean(small, "shed_429_pct"),
        mean(large, "shed_429_pct"),
        mean(small, "deadline_missed_pct"),
        mean(large, "deadline_missed_pct"),
        mean(small, "latency_p99_ms"),
        mean(large, "latency_p99_ms"),
    );
    let per_job = mean(large, "queue_bytes_max") / mean(large, "queue_depth_max");
    if per_job.is_finite() {
        let _ = writeln!(
            md,
            "- One queued job holds {per_job:.0} bytes of the relay's memory (payload excluded); \
             the largest queue peaked at {:.0} of its {} places.",
            mean(large, "queue_depth_max"),
            large.point
        );
    }
    md
}
