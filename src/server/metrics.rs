//! `GET /metrics`: the same numbers as `/stats`, in Prometheus text format.
//!
//! Dashboards and alerts scrape counters and gauges rather than parse JSON.
//! Counters end in `_total`; refusals, attempt errors and dead-letter
//! reasons are one metric each with a label, so a new kind is a new series,
//! not a new metric. Latency quantiles come out as a summary (quantiles plus
//! `_sum` and `_count`) straight from the relay's HDR histograms.

use super::views::{RouteView, StatsView};
use crate::relay::{BreakerState, HedgeCounts, LatencySummary};
use std::collections::BTreeMap;
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders a stats view as exposition text.
pub fn render(v: &StatsView) -> String {
    let mut out = String::with_capacity(4096);
    let red = &v.red;
    for (name, help, value) in [
        (
            "relay_replayed_total",
            "Requests answered from the idempotency store.",
            red.replayed,
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
        (
            "relay_retries_denied_total",
            "Retries not made because a retry control refused them, by reason.",
            "reason",
            &red.retries_denied,
        ),
    ] {
        labelled(&mut out, name, help, label, values);
    }
    if let Some(h) = &v.hedges {
        hedges(&mut out, h);
    }
    summary(
        &mut out,
        "relay_attempt_latency_seconds",
        "One downstream attempt.",
        "",
        [&red.attempt_latency],
    );
    gauges(&mut out, v);
    per_route(&mut out, &v.routes);
    out
}

/// Everything a route has of its own, under a `route` label: summed over
/// the routes, the relay's totals.
fn per_route(out: &mut String, routes: &[RouteView]) {
    type Count = fn(&RouteView) -> u64;
    let counts: [(&str, &str, Count); 4] = [
        ("relay_requests_total", "Requests seen by the relay.", |r| {
            r.requests
        }),
        ("relay_accepted_total", "Requests accepted (202).", |r| {
            r.accepted
        }),
        (
            "relay_attempts_total",
            "Downstream attempts started.",
            |r| r.attempts,
        ),
        ("relay_succeeded_total", "Jobs that succeeded.", |r| {
            r.succeeded
        }),
    ];
    for (name, help, value) in counts {
        head(out, name, help, "counter");
        for r in routes {
            let _ = writeln!(out, "{name}{{route=\"{}\"}} {}", escape(&r.name), value(r));
        }
    }
    type ByKind = fn(&RouteView) -> &BTreeMap<String, u64>;
    let kinds: [(&str, &str, &str, ByKind); 3] = [
        (
            "relay_refused_total",
            "Requests refused, by reason.",
            "reason",
            |r| &r.refused,
        ),
        (
            "relay_attempt_errors_total",
            "Failed downstream attempts, by kind.",
            "kind",
            |r| &r.attempt_errors,
        ),
        (
            "relay_dead_lettered_total",
            "Jobs dead-lettered, by reason.",
            "reason",
            |r| &r.dead_lettered,
        ),
    ];
    for (name, help, label, values) in kinds {
        head(out, name, help, "counter");
        for r in routes {
            for (k, n) in values(r) {
                let (route, k) = (escape(&r.name), escape(k));
                let _ = writeln!(out, "{name}{{route=\"{route}\",{label}=\"{k}\"}} {n}");
            }
        }
    }
    head(out, "relay_fallbacks_total", "Requests answered by a route's fallback, by when: at the door (breaker open) or after the job's final failure.", "counter");
    for r in routes {
        let route = escape(&r.name);
        for (when, n) in [
            ("door", r.fallbacks_at_door),
            ("after_failure", r.fallbacks_after_failure),
        ] {
            let _ = writeln!(
                out,
                "relay_fallbacks_total{{route=\"{route}\",when=\"{when}\"}} {n}"
            );
        }
    }
    summary(
        out,
        "relay_job_latency_seconds",
        "Accepted to succeeded, per job.",
        "route",
        routes.iter().map(|r| (&*r.name, &r.job_latency)),
    );
    type Level = fn(&RouteView) -> usize;
    let levels: [(&str, &str, Level); 7] = [
        ("relay_queue_depth", "Jobs waiting for a worker.", |r| {
            r.queue_depth
        }),
        ("relay_queue_capacity", "Queue capacity.", |r| {
            r.queue_capacity
        }),
        (
            "relay_retry_lane",
            "Jobs whose backoff is over, waiting for a worker ahead of new work.",
            |r| r.retry_lane,
        ),
        ("relay_in_flight", "Downstream calls in flight.", |r| {
            r.in_flight
        }),
        (
            "relay_route_slots",
            "Calls the route may hold at once (its bulkhead), out of relay_workers.",
            |r| r.slots,
        ),
        (
            "relay_fallback_cached",
            "Answers the route's fallback cache holds.",
            |r| r.fallback_cached,
        ),
        ("relay_dlq_size", "Letters in the dead-letter queue.", |r| {
            r.dead_letters
        }),
    ];
    for (name, help, value) in levels {
        head(out, name, help, "gauge");
        for r in routes {
            let _ = writeln!(out, "{name}{{route=\"{}\"}} {}", escape(&r.name), value(r));
        }
    }
    let with_breaker: Vec<_> = routes
        .iter()
        .filter_map(|r| Some((&r.name, r.breaker?)))
        .collect();
    if with_breaker.is_empty() {
        return;
    }
    head(
        out,
        "relay_breaker_state",
        "Circuit breaker state (1 = current).",
        "gauge",
    );
    for (route, state) in with_breaker {
        for (name, s) in [
            ("closed", BreakerState::Closed),
            ("open", BreakerState::Open),
            ("half-open", BreakerState::HalfOpen),
        ] {
            let on = u8::from(state == s);
            let route = escape(route);
            let _ = writeln!(
                out,
                "relay_breaker_state{{route=\"{route}\",state=\"{name}\"}} {on}"
            );
        }
    }
}

/// Hedging's counters; only with `[relay.hedge]`, like the limit gauges.
fn hedges(out: &mut String, h: &HedgeCounts) {
    for (name, help, value) in [
        (
            "relay_hedges_sent_total",
            "Hedges sent: extra attempts of a job whose attempt was slow to answer.",
            h.sent,
        ),
        (
            "relay_hedges_won_total",
            "Jobs won by an attempt other than the one that was hedged.",
            h.won,
        ),
        (
            "relay_hedges_abandoned_total",
            "Attempts no longer waited for because another attempt of their job won.",
            h.abandoned,
        ),
        (
            "relay_hedge_first_attempts_total",
            "First attempts, the base of the hedge budget.",
            h.first_attempts,
        ),
    ] {
        counter(out, name, help, value);
    }
    let not_sent = BTreeMap::from([
        ("attempts".to_owned(), h.denied_attempts),
        ("budget".to_owned(), h.denied_budget),
        ("cap".to_owned(), h.denied_cap),
        ("no_room".to_owned(), h.skipped),
    ]);
    labelled(
        out,
        "relay_hedges_not_sent_total",
        "Hedges due but not sent, by reason: attempts (the job's last attempt allowed by attempts_max), cap (max_per_job in flight), budget (budget_pct spent), no_room (no free worker, no room under the concurrency limit, or the breaker not closed).",
        "reason",
        &not_sent,
    );
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
            "relay_open_connections",
            "HTTP connections open now.",
            v.connections.open as f64,
        ),
        ("relay_workers", "Worker slots.", v.workers as f64),
        (
            "relay_live_jobs",
            "Jobs accepted and not finished.",
            v.live_jobs as f64,
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

/// A summary family: per `label` value when `label` is set (else one).
fn summary<'a, I, S>(out: &mut String, name: &str, help: &str, label: &str, series: I)
where
    I: IntoIterator<Item = S>,
    S: Labelled<'a>,
{
    head(out, name, help, "summary");
    for one in series {
        let (value, s) = one.parts();
        let (with, alone) = if label.is_empty() {
            (String::new(), String::new())
        } else {
            let l = format!("{label}=\"{}\"", escape(value));
            (format!("{l},"), format!("{{{l}}}"))
        };
        for (q, ms) in [
            ("0.5", s.p50_ms),
            ("0.9", s.p90_ms),
            ("0.99", s.p99_ms),
            ("0.999", s.p999_ms),
        ] {
            let _ = writeln!(out, "{name}{{{with}quantile=\"{q}\"}} {}", ms / 1e3);
        }
        let _ = writeln!(
            out,
            "{name}_sum{alone} {}",
            s.mean_ms * s.count as f64 / 1e3
        );
        let _ = writeln!(out, "{name}_count{alone} {}", s.count);
    }
}

/// One summary series: its label value (if any) and its figures.
trait Labelled<'a> {
    fn parts(self) -> (&'a str, &'a LatencySummary);
}

impl<'a> Labelled<'a> for &'a LatencySummary {
    fn parts(self) -> (&'a str, &'a LatencySummary) {
        ("", self)
    }
}

impl<'a> Labelled<'a> for (&'a str, &'a LatencySummary) {
    fn parts(self) -> (&'a str, &'a LatencySummary) {
        self
    }
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
            hedges: Some(crate::relay::HedgeCounts {
                sent: 3,
                skipped: 2,
                ..Default::default()
            }),
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
            routes: vec![
                RouteView {
                    name: "orders".into(),
                    breaker: Some(BreakerState::Open),
                    refused: BTreeMap::from([("shed".to_owned(), 0)]),
                    requests: 7,
                    fallbacks_at_door: 2,
                    ..RouteView::default()
                },
                RouteView {
                    name: "se\"arch".into(),
                    in_flight: 3,
                    ..RouteView::default()
                },
            ],
        };
        let text = render(&view);
        assert!(text.contains("relay_requests_total{route=\"orders\"} 7\n"));
        assert!(text.contains("relay_fallbacks_total{route=\"orders\",when=\"door\"} 2\n"));
        assert!(
            text.contains("relay_in_flight{route=\"se\\\"arch\"} 3\n"),
            "label escaped"
        );
        assert!(text.contains("relay_job_latency_seconds_count{route=\"orders\"} 0\n"));
        assert!(text.contains("relay_job_latency_seconds{route=\"orders\",quantile=\"0.99\"}"));
        assert!(text.contains("relay_attempt_latency_seconds{quantile=\"0.99\"}"));
        assert!(
            !text.contains("relay_breaker_state{route=\"se"),
            "no breaker, no series"
        );
        let families = text
            .lines()
            .filter(|l| l.starts_with("# TYPE relay_in_flight "))
            .count();
        assert_eq!(families, 1, "one family however many routes");
        assert!(text.contains("relay_refused_total{route=\"orders\",reason=\"shed\"} 0"));
        assert!(text.contains("relay_breaker_state{route=\"orders\",state=\"open\"} 1"));
        assert!(text.contains("relay_http_rejected_total{reason=\"too_large\"} 0"));
        assert!(text.contains("relay_connection_limits_total{limit=\"header_timeouts\"} 0"));
        assert!(!text.contains("limit=\"open\""), "open is a gauge");
        assert!(text.contains("relay_idempotency_evicted_age_last_seconds 4\n"));
        assert!(text.contains("relay_late_successes_recorded_total 0\n"));
        assert!(text.contains("relay_dlq_bytes_max 0\n"));
        assert!(text.contains("relay_retries_denied_total{reason=\"retry-breaker\"} 0\n"));
        assert!(text.contains("relay_hedges_sent_total 3\n"));
        assert!(text.contains("relay_hedges_not_sent_total{reason=\"no_room\"} 2\n"));
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
