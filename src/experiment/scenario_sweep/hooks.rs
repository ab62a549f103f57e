//! Headline prose of the built-in sweeps: what the numbers say, read off
//! them after the table. Optional: a sweep without a hook has its table only.

use super::report::{Notes, View};
use super::Point;
use crate::experiment::catalogue::Metric;
use crate::experiment::metrics::PointSummary;
use std::fmt::Write as _;

/// The hook of the sweep called `name`, if it has one and the sweep's axes
/// are the ones its prose reads (a user's copy that sweeps something else
/// gets its table without words written for another sweep).
pub fn notes(name: &str, axis_columns: &[&str]) -> Option<Notes> {
    let (hook, reads): (Notes, &[&str]) = match name {
        "queue-sizing" => (queue_sizing, &["capacity"]),
        "timeout-tuning" => (
            timeout_tuning,
            &["attempt_timeout_ms", "downstream_honours_key"],
        ),
        "worker-pool-sizing" => (worker_pool_sizing, &["workers"]),
        _ => return None,
    };
    (axis_columns == reads).then_some(hook)
}

type Summary = PointSummary<Point>;

/// The smallest and the largest capacity side by side, and the bytes one
/// queued job costs, as measured.
fn queue_sizing(view: &View<'_>) -> String {
    let (Some(small), Some(large)) = (view.summaries.first(), view.summaries.last()) else {
        return String::new();
    };
    let mean = |s: &Summary, m| view.mean(s, m);
    let mut md = format!(
        "- From a queue of {} to one of {}: 429s go from {:.1} % to {:.1} % of sends and late \
         jobs from {:.1} % to {:.1} % of accepted ones; the job p99 goes from {:.0} ms to \
         {:.0} ms.\n",
        view.label(small),
        view.label(large),
        mean(small, Metric::Shed429Pct),
        mean(large, Metric::Shed429Pct),
        mean(small, Metric::DeadlineMissedPct),
        mean(large, Metric::DeadlineMissedPct),
        mean(small, Metric::LatencyP99Ms),
        mean(large, Metric::LatencyP99Ms),
    );
    let per_job = mean(large, Metric::QueueBytesMax) / mean(large, Metric::QueueDepthMax);
    if per_job.is_finite() {
        let _ = writeln!(
            md,
            "- One queued job holds {per_job:.0} bytes of the relay's memory (payload excluded); \
             the largest queue peaked at {:.0} of its {} places.",
            mean(large, Metric::QueueDepthMax),
            view.scenario(large).relay.queue.capacity
        );
    }
    md
}

/// The smallest pool that serves (nearly) all the offered load, and what
/// the largest pool changes beyond it.
fn worker_pool_sizing(view: &View<'_>) -> String {
    let mean = |s: &Summary, m| view.mean(s, m);
    let enough = view
        .summaries
        .iter()
        .position(|s| mean(s, Metric::ThroughputPerS) >= 0.98 * mean(s, Metric::OfferedPerS));
    let Some(i) = enough else {
        return "- No pool size served 98 % of the offered load.\n".to_string();
    };
    let enough = &view.summaries[i];
    let mut md = format!(
        "- The smallest pool that serves at least 98 % of the offered load: {} workers \
         ({:.1} of {:.1} req/s, job p99 {:.1} ms).\n",
        view.scenario(enough).relay.workers,
        mean(enough, Metric::ThroughputPerS),
        mean(enough, Metric::OfferedPerS),
        mean(enough, Metric::LatencyP99Ms),
    );
    if let Some(largest) = view.summaries.get(i + 1..).and_then(<[Summary]>::last) {
        let _ = writeln!(
            md,
            "- {} workers instead: throughput {:.1} req/s, job p99 {:.1} ms, up to {:.0} calls \
             in flight at the downstream.",
            view.scenario(largest).relay.workers,
            mean(largest, Metric::ThroughputPerS),
            mean(largest, Metric::LatencyP99Ms),
            mean(largest, Metric::DownstreamConcurrencyMax),
        );
    }
    md
}

/// Shortest against longest timeout, with the key ignored, and what
/// honouring the key changes.
fn timeout_tuning(view: &View<'_>) -> String {
    let honours = |s: &Summary| view.scenario(s).downstream.honours_idempotency_key;
    let timeout_s = |s: &Summary| view.scenario(s).relay.retry.attempt_timeout_ms / 1e3;
    let mean = |s: &Summary, m| view.mean(s, m);
    let ignored: Vec<&Summary> = view.summaries.iter().filter(|s| !honours(s)).collect();
    let mut md = String::new();
    if let (Some(short), Some(long)) = (ignored.first(), ignored.last()) {
        let _ = writeln!(
            md,
            "- With the key ignored downstream, a {} s timeout costs {:.0} duplicate side effects \
             and {:.0} retries per run against {:.0} and {:.0} at {} s; its job p99 is {:.0} ms \
             against {:.0} ms.",
            timeout_s(short),
            mean(short, Metric::DuplicateSideEffects),
            mean(short, Metric::RelayRetries),
            mean(long, Metric::DuplicateSideEffects),
            mean(long, Metric::RelayRetries),
            timeout_s(long),
            mean(short, Metric::LatencyP99Ms),
            mean(long, Metric::LatencyP99Ms),
        );
    }
    let honoured_max = view
        .summaries
        .iter()
        .filter(|s| honours(s))
        .map(|s| mean(s, Metric::DuplicateSideEffects))
        .fold(f64::NAN, f64::max);
    if honoured_max.is_finite() {
        let _ = writeln!(
            md,
            "- With the key honoured downstream: at most {honoured_max:.0} duplicate side \
             effects per run, whatever the timeout; the late calls still ran, but their second \
             landing on the same key did nothing."
        );
    }
    let d = &view.sweep.base.downstream;
    if d.failure_rate == 0.0 && d.outages.is_empty() && d.brownouts.is_empty() {
        md.push_str(
            "- Every call in this scenario eventually succeeds downstream, so each \
             dead-lettered job (the gap to 100 % success) did its work anyway: the relay \
             reported a failure for work that was done.\n",
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_speaks_only_for_the_axes_it_reads() {
        assert!(notes("queue-sizing", &["capacity"]).is_some());
        assert!(
            notes("queue-sizing", &["workers"]).is_none(),
            "a copy sweeping workers"
        );
        assert!(notes("queue-sizing", &["capacity", "workers"]).is_none());
        assert!(notes("my-sweep", &["capacity"]).is_none());
    }
}
