//! `GET /metrics`: the same numbers as `/stats`, in Prometheus text format.
//!
//! Dashboards and alerts scrape counters and gauges rather than parse JSON.
//! Counters end in `_total`; refusals, attempt errors and dead-letter
//! reasons are one metric each with a label, so a new kind is a new series,
//! not a new metric. Latency quantiles come out as a summary (quantiles plus
//! `_sum` and `_count`) straight from the relay's HDR histograms.

use super::views::StatsView;
use crate::relay::{BreakerState, LatencySummary};
use std::collections::BTreeMap;
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders a stats view as exposition text.
pub fn render(v: &StatsView) -> String {
    let mut out = String::with_capacity(4096);
    let red = &v.red;
    for (name, help, value) in [
        (
            "relay_requests_total",
            "Requests seen by the relay.",
            red.requests,
        ),
        (
            "relay_accepted_total",
            "Requests accepted (202).",
            red.accepted,
        ),
        (
            "relay_replayed_total",
            "Requests answered from the idempotency store.",
            red.replayed,
        ),
        (
            "relay_attempts_total",
            "Downstream attempts started.",
            red.attempts,
        ),
        ("relay_retries_total", "Retries scheduled.", red.retries),
        (
            "relay_recovered_jobs_total",
            "Unfinished jobs taken back from the store at start.",
            red.recovered_jobs,
        ),
        (
            "relay_redelivered_jobs_total",
            "Recovered jobs that were in flight at the last stop: run again, maybe twice.",
            red.redelivered_jobs,
        ),
        (
            "relay_succeeded_total",
            "Jobs that succeeded.",
            red.succeeded,
        ),
        (
            "relay_dlq_overflowed_total",
            "Dead letters not kept: the queue was full (refuse) or the letter exceeded its byte bound.",
            red.dlq_overflowed,
        ),
        (
            "relay_dlq_evicted_total",
            "Dead letters evicted, oldest first, to make room (drop-oldest).",
            red.dlq_evicted,
        ),
        (
            "relay_dlq_redriven_total",
            "Jobs started by redriving a dead letter.",
            red.redriven,
        ),
        (
            "relay_dlq_redrive_skipped_total",
            "Pending redrives left in the dead-letter queue because their key was in use.",
            red.dlq_redrive_skipped,
        ),
        (
            "relay_idempotency_evicted_early_total",
            "Completed idempotency records forgotten before their TTL (store full).",
            v.replay_window.evicted_early,
        ),
        (
            "relay_rate_limit_table_full_total",
            "New clients refused because every rate-limit bucket was in use.",
            v.rate_limit_table_full,
        ),
        (
            "relay_late_results_total",
            "Downstream answers after their attempt timed out.",
            red.late_results,
        ),
        (
            "relay_late_successes_used_total",
            "Late successes that completed a job waiting to retry (no retry sent).",
            red.late_successes_used,
        ),
        (
            "relay_late_successes_recorded_total",
            "Late successes recorded on a job, its dead letter or its status (the work may be done twice).",
            red.late_successes_recorded,
        ),
        (
            "relay_shed_total",
            "Jobs shed by age: they waited in the queue longer than shed_after_ms and were never called.",
            red.shed,
        ),
        (
            "relay_served_out_of_order_total",
            "Queued jobs served ahead of older ones (adaptive LIFO).",
            red.served_out_of_order,
        ),
        (
            "relay_calls_held_back_total",
            "Times the concurrency limit held a call back while a worker was free.",
            red.calls_held_back,
        ),
        (
            "relay_retry_after_honoured_total",
            "Retries of throttled attempts that waited for the downstream's Retry-After.",
            red.retry_after_honoured,
        ),
        (
            "relay_dlq_late_answers_dropped_total",
            "Late answers not kept on their dead letters for want of room in the byte bound.",
            v.dlq_late_answers_dropped,
        ),
    ] {
        counter(&mut out, name, help, value);
    }
    let http = by_field(&v.http_rejected);
    let mut limits = by_field(&v.connections);
    // A gauge, not a count of limits acting.
    limits.remove("open");
    for (name, help, label, values) in [
        (
            "relay_refused_total",
            "Requests refused, by reason.",
            "reason",
            &red.refused,
        ),
        (
            "relay_attempt_errors_total",
            "Failed downstream attempts, by kind.",
            "kind",
            &red.attempt_errors,
        ),
        (
            "relay_dead_lettered_total",
            "Jobs dead-lettered, by reason.",
            "reason",
            &red.dead_letter_reasons,
        ),
        (
            "relay_http_rejected_total",
            "Requests refused by the HTTP layer, by reason.",
            "reason",
            &http,
        ),
        (
            "relay_connection_limits_total",
            "Connections and requests the connection limits acted on, by limit.",
            "limit",
            &limits,
        ),
    ] {
        labelled(&mut out, name, help, label, values);
    }
    summary(
        &mut out,
        "relay_job_latency_seconds",
        "Accepted to succeeded, per job.",
        &red.job_latency,
    );
    summary(
        &mut out,
        "relay_attempt_latency_seconds",
        "One downstream attempt.",
        &red.attempt_latency,
    );
    gauges(&mut out, v);
    out
}

/// A struct of counters as `field -> value`, in field order.
fn by_field(counters: &impl serde::Serialize) -> BTreeMap<String, u64> {
    let json = serde_json::to_value(counters).unwrap_or_default();
    json.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn gauges(out: &mut String, v: &StatsView) {
    if let Some(l) = v.concurrency_limit {
        gauge(
            out,
            "relay_concurrency_limit",
            "Downstream calls the adaptive concurrency limit allows in flight now.",
            l.limit as f64,
        );
        gauge(
            out,
            "relay_concurrency_limit_min_seen",
            "The lowest the adaptive concurrency limit has been.",
            l.min_seen as f64,
        );
        gauge(
            out,
            "relay_concurrency_limit_max_seen",
            "The highest the adaptive concurrency limit has been.",
            l.max_seen as f64,
        );
    }
    for (name, help, value) in [
        (
            "relay_queue_depth",
            "Jobs waiting for a worker.",
            v.queue_depth as f64,
        ),
        (
            "relay_queue_capacity",
            "Queue capacity.",
            v.queue_capacity as f64,
        ),
        (
            "relay_retry_lane",
            "Jobs whose backoff is over, waiting for a worker ahead of new work.",
            v.retry_lane as f64,
        ),
        (
            "relay_open_connections",
            "HTTP connections open now.",
            v.connections.open as f64,
        ),
        (
            "relay_in_flight",
            "Downstream calls in flight.",
            v.in_flight as f64,
        ),
        ("relay_workers", "Worker slots.", v.workers as f64),
        (
            "relay_live_jobs",
            "Jobs accepted and not finished.",
            v.live_jobs as f64,
        ),
        (
            "relay_dlq_size",
            "Letters in the dead-letter queue.",
            v.dlq_size as f64,
        ),
        (
            "relay_dlq_capacity",
            "Letters the dead-letter queue may hold.",
            v.dlq.capacity as f64,
        ),
        (
            "relay_dlq_bytes",
            "Bytes the dead-letter queue holds (payloads plus a fixed record each).",
            v.dlq.bytes as f64,
        ),
        (
            "relay_dlq_bytes_max",
            "Bytes the dead-letter queue may hold.",
            v.dlq.bytes_max as f64,
        ),
        (
            "relay_dlq_blocks_admission",
            "1 while a full dead-letter queue refuses new requests (policy refuse).",
            f64::from(u8::from(v.dlq.blocks_admission)),
        ),
        (
            "relay_dlq_redrive_pending",
            "Dead letters a redrive of all has still to move into the queue.",
            v.dlq.redrive_pending as f64,
        ),
        (
            "relay_idempotency_keys",
            "Idempotency records held.",
            v.idempotency_keys as f64,
        ),
        (
            "relay_idempotency_ttl_seconds",
            "How long a completed answer is meant to be replayed.",
            v.replay_window.ttl_ms / 1e3,
        ),
        (
            "relay_draining",
            "1 while draining for shutdown.",
            f64::from(u8::from(v.draining)),
        ),
        (
            "relay_uptime_seconds",
            "Time since the server started.",
            v.uptime_s,
        ),
    ] {
        gauge(out, name, help, value);
    }
    replay_window(out, v);
    if let Some(state) = v.breaker {
        head(
            out,
            "relay_breaker_state",
            "Circuit breaker state (1 = current).",
            "gauge",
        );
        for (name, s) in [
            ("closed", BreakerState::Closed),
            ("open", BreakerState::Open),
            ("half-open", BreakerState::HalfOpen),
        ] {
            let on = u8::from(state == s);
            let _ = writeln!(out, "relay_breaker_state{{state=\"{name}\"}} {on}");
        }
    }
}

/// The ages that say how far back replays really reach; absent until known.
fn replay_window(out: &mut String, v: &StatsView) {
    let w = &v.replay_window;
    for (name, help, value) in [
        (
            "relay_idempotency_oldest_held_age_seconds",
            "Age of the oldest completed idempotency record held.",
            w.oldest_held_age_ms,
        ),
        (
            "relay_idempotency_evicted_age_last_seconds",
            "Age of the last record forgotten before its TTL: the effective replay window while the store is full.",
            w.evicted_age_last_ms,
        ),
        (
            "relay_idempotency_evicted_age_min_seconds",
            "Youngest age at which a record was ever forgotten before its TTL.",
            w.evicted_age_min_ms,
        ),
    ] {
        if let Some(ms) = value {
            gauge(out, name, help, ms / 1e3);
        }
    }
}

fn head(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    head(out, name, help, "counter");
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    head(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn labelled(out: &mut String, name: &str, help: &str, label: &str, values: &BTreeMap<String, u64>) {
    head(out, name, help, "counter");
    for (k, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape(k));
    }
}

fn summary(out: &mut String, name: &str, help: &str, s: &LatencySummary) {
    head(out, name, help, "summary");
    for (q, ms) in [
        ("0.5", s.p50_ms),
        ("0.9", s.p90_ms),
        ("0.99", s.p99_ms),
        ("0.999", s.p999_ms),
    ] {
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", ms / 1e3);
    }
    let _ = writeln!(out, "{name}_sum {}", s.mean_ms * s.count as f64 / 1e3);
    let _ = writeln!(out, "{name}_count {}", s.count);
}

/// Label values escape backslash, quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::Stats;
    use crate::time::Time;

    #[test]
    fn every_line_is_a_comment_or_a_sample() {
        let view = StatsView {
            uptime_s: 1.0,
            red: Stats::default().snapshot(Time::from_millis(1000)),
            queue_depth: 1,
            queue_capacity: 2,
            queue_depth_max_seen: 2,
            in_flight: 0,
            workers: 1,
            concurrency_limit: Some(crate::server::views::LimitGauge {
                limit: 3,
                min_seen: 2,
                max_seen: 5,
            }),
            live_jobs: 1,
            breaker: Some(BreakerState::Open),
            dlq_size: 0,
            dlq_capacity: 10,
            dlq: Default::default(),
            idempotency_keys: 0,
            replay_window: super::super::views::ReplayWindowView {
                evicted_age_last_ms: Some(4000.0),
                ..Default::default()
            },
            rate_limit_table_full: 0,
            draining: false,
            retry_lane: 0,
            dlq_late_answers_dropped: 0,
            http_rejected: Default::default(),
            connections: Default::default(),
        };
        let text = render(&view);
        assert!(text.contains("relay_refused_total{reason=\"shed\"} 0"));
        assert!(text.contains("relay_breaker_state{state=\"open\"} 1"));
        assert!(text.contains("relay_http_rejected_total{reason=\"too_large\"} 0"));
        assert!(text.contains("relay_connection_limits_total{limit=\"header_timeouts\"} 0"));
        assert!(!text.contains("limit=\"open\""), "open is a gauge");
        assert!(text.contains("relay_idempotency_evicted_age_last_seconds 4\n"));
        assert!(text.contains("relay_late_successes_recorded_total 0\n"));
        assert!(text.contains("relay_dlq_bytes_max 0\n"));
        for line in text.lines() {
            let ok = line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || line
                    .rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok());
            assert!(ok, "bad line: {line}");
        }
    }
}
