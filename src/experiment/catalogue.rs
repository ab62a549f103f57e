//! Every number a simulated run can report, declared once.
//!
//! A sweep definition names the numbers it wants (`metrics = ["shed_429_pct",
//! …]`); each name here has one unit, one description, one number of
//! decimals for the CSVs and one way to read it from a run's [`Summary`].
//! A name that is not here is refused when the definition is read, with its
//! line and this list, so a typo never becomes an empty column. Code refers
//! to a metric by its [`Metric`] variant, never by a string.

use super::metrics::Column;
use super::scenario_runs::defined_if;
use crate::sim::routes::RouteSummary;
use crate::sim::Summary;
use serde::de::{Deserialize, Deserializer, Error as _};

/// What the catalogue knows about one metric.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub metric: Metric,
    /// Column name in the CSVs, unit last (`latency_p99_ms`).
    pub name: &'static str,
    pub unit: &'static str,
    /// Decimals the CSVs keep.
    pub decimals: usize,
    pub description: &'static str,
    /// The value in one run; NaN when undefined (a quantile of nothing).
    pub value: fn(&Summary) -> f64,
}

macro_rules! catalogue {
    ($($variant:ident: $name:literal, $unit:literal, $decimals:literal, $description:literal, $value:expr;)*) => {
        /// A metric of the catalogue; `entry()` says what it is.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Metric { $($variant),* }

        /// Every metric, in [`Metric`] order.
        pub const CATALOGUE: &[Entry] = &[$(Entry {
            metric: Metric::$variant,
            name: $name,
            unit: $unit,
            decimals: $decimals,
            description: $description,
            value: $value,
        }),*];
    };
}

catalogue! {
    Requests: "requests", "requests", 0, "logical requests the clients created", |s| n(s.arrivals);
    Sends: "sends", "requests", 0, "requests sent to the relay, client retries included", |s| n(s.sends);
    Accepted: "accepted", "jobs", 0, "jobs the relay accepted", |s| n(s.accepted);
    Succeeded: "succeeded", "jobs", 0, "jobs that succeeded downstream", |s| n(s.succeeded);
    SuccessPct: "success_pct", "% of accepted", 2, "succeeded jobs per accepted job", |s| pct(s.succeeded, s.accepted);
    ClientSucceeded: "client_succeeded", "requests", 0, "logical requests that got a success", |s| n(s.client_succeeded);
    ServedPct: "served_pct", "% of requests", 2, "logical requests that got a success", |s| pct(s.client_succeeded, s.arrivals);
    ClientAbandoned: "client_abandoned", "requests", 0, "logical requests whose client gave up", |s| n(s.client_abandoned);
    RequestsAbandonedPct: "requests_abandoned_pct", "% of requests", 2, "logical requests whose client gave up after its last send", |s| pct(s.client_abandoned, s.arrivals);
    ClientStillWaiting: "client_still_waiting", "requests", 0, "logical requests still waiting for a final answer when the run ended (for a job lost in a crash, or still running)", |s| n(s.client_still_waiting);
    ClientDeniedBudget: "client_denied_budget", "retries", 0, "client retries their retry budgets did not allow", |s| n(s.client_denied_budget);
    ClientDeniedRetryBreaker: "client_denied_retry_breaker", "retries", 0, "client retries their retry breakers did not allow", |s| n(s.client_denied_retry_breaker);
    ClientDeniedThrottled: "client_denied_throttled", "sends", 0, "client sends (first tries or retries) adaptive throttling rejected locally", |s| n(s.client_denied_throttled);
    ClientRetries: "client_retries", "sends", 0, "sends that retried a logical request", |s| n(s.client_retries);
    Shed429: "shed_429", "answers", 0, "429s because the queue was full", |s| n(s.shed_429);
    Shed429Pct: "shed_429_pct", "% of sends", 2, "429s because the queue was full, per send", |s| pct(s.shed_429, s.sends);
    RateLimited429: "rate_limited_429", "answers", 0, "429s from the per-client rate limit", |s| n(s.rate_limited_429);
    RateLimited429Pct: "rate_limited_429_pct", "% of sends", 2, "429s from the per-client rate limit, per send", |s| pct(s.rate_limited_429, s.sends);
    Unavailable503: "unavailable_503", "answers", 0, "503s (breaker open or dead-letter queue full)", |s| n(s.unavailable_503);
    Unavailable503Pct: "unavailable_503_pct", "% of sends", 2, "503s per send", |s| pct(s.unavailable_503, s.sends);
    Replayed: "replayed", "answers", 0, "sends answered from the idempotency store", |s| n(s.replayed);
    DeadLettered: "dead_lettered", "jobs", 0, "jobs that ran out of attempts", |s| n(s.dead_lettered);
    DeadLetteredPct: "dead_lettered_pct", "% of accepted", 2, "jobs that ran out of attempts, per accepted job", |s| pct(s.dead_lettered, s.accepted);
    DlqHeld: "dlq_held", "letters", 0, "letters in the dead-letter queue at the end", |s| n(s.dlq_held);
    DlqOverflowed: "dlq_overflowed", "letters", 0, "letters dropped because the dead-letter queue was full", |s| n(s.dlq_overflowed);
    DlqOverflowedPct: "dlq_overflowed_pct", "% of dead-lettered", 2, "letters dropped because the dead-letter queue was full, per dead-lettered job", |s| pct(s.dlq_overflowed, s.dead_lettered);
    DlqFullPct: "dlq_full_pct", "% of runs", 1, "runs that ended with the dead-letter queue full", |s| if s.dlq_full { 100.0 } else { 0.0 };
    DownstreamCalls: "downstream_calls", "calls", 0, "calls the relay made to the downstream", |s| n(s.downstream_calls);
    CallsPerRequest: "calls_per_request", "calls per request", 3, "downstream calls per logical request (client retries and relay retries included)", |s| ratio(s.downstream_calls, s.arrivals);
    RetryAmplification: "retry_amplification", "calls per job", 3, "downstream calls per accepted job", |s| ratio(s.downstream_calls, s.accepted);
    RelayRetries: "relay_retries", "attempts", 0, "attempts the relay retried", |s| n(s.relay_retries);
    RetriesPer100Requests: "retries_per_100_requests", "per 100 requests", 2, "relay retries per 100 logical requests", |s| pct(s.relay_retries, s.arrivals);
    LateResults: "late_results", "answers", 0, "answers to attempts that had already timed out", |s| n(s.late_results);
    LateResultsPer100Requests: "late_results_per_100_requests", "per 100 requests", 2, "late answers per 100 logical requests", |s| pct(s.late_results, s.arrivals);
    DuplicateSideEffects: "duplicate_side_effects", "effects", 0, "side effects that happened more than once for one key", |s| n(s.duplicate_side_effects);
    DuplicatesPer100Requests: "duplicates_per_100_requests", "per 100 requests", 2, "duplicate side effects per 100 logical requests", |s| pct(s.duplicate_side_effects, s.arrivals);
    BreakerTransitions: "breaker_transitions", "transitions", 0, "circuit breaker state changes", |s| n(s.breaker_transitions);
    DeadlineMissed: "deadline_missed", "jobs", 0, "accepted jobs that succeeded after the scenario's deadline", |s| n(s.deadline_missed);
    DeadlineMissedPct: "deadline_missed_pct", "% of accepted", 2, "accepted jobs that succeeded after the deadline, per accepted job", |s| pct(s.deadline_missed, s.accepted);
    LatencyP50Ms: "latency_p50_ms", "ms", 2, "median job latency, accepted to success", |s| defined_if(s.latency.count, s.latency.p50_ms);
    LatencyP99Ms: "latency_p99_ms", "ms", 2, "99th percentile job latency, accepted to success", |s| defined_if(s.latency.count, s.latency.p99_ms);
    ClientLatencyP50Ms: "client_latency_p50_ms", "ms", 2, "median client latency, first send to success", |s| defined_if(s.client_latency.count, s.client_latency.p50_ms);
    ClientLatencyP99Ms: "client_latency_p99_ms", "ms", 2, "99th percentile client latency, first send to success (429s and backoff included)", |s| defined_if(s.client_latency.count, s.client_latency.p99_ms);
    QueueDepthMax: "queue_depth_max", "jobs", 0, "most jobs the queue held", |s| n(s.queue_depth_max);
    QueueBytesMax: "queue_bytes_max", "bytes", 0, "most bytes the queue held, sampled after every event", |s| n(s.queue_bytes_max);
    JobsInRelayAvg: "jobs_in_relay_avg", "jobs", 3, "time-average jobs in the relay (queued, in flight, backing off)", |s| s.live_jobs_mean;
    DownstreamConcurrencyMax: "downstream_concurrency_max", "calls", 0, "most downstream calls in flight at once", |s| n(s.downstream_concurrency_max);
    OfferedPerS: "offered_per_s", "requests/s", 2, "logical requests per simulated second", |s| per_s(s.arrivals, s.simulated_s);
    ThroughputPerS: "throughput_per_s", "jobs/s", 2, "jobs succeeded per simulated second", |s| per_s(s.succeeded, s.simulated_s);
    DoneLastS: "done_last_s", "s", 2, "when the last logical request got its final answer", |s| s.client_done_last_s;
    FirstPopulationServedPct: "first_population_served_pct", "% of its requests", 2, "logical requests of the first [[clients]] population that got a success", |s| population_pct(s, true);
    OtherPopulationsServedPct: "other_populations_served_pct", "% of their requests", 2, "logical requests of every other population that got a success", |s| population_pct(s, false);
    JobsLost: "jobs_lost", "jobs", 0, "jobs whose 202 had left and that no store kept through a relay crash", |s| n(s.jobs_lost);
    JobsRecovered: "jobs_recovered", "jobs", 0, "unfinished jobs taken back from the store after a crash", |s| n(s.jobs_recovered);
    JobsRedelivered: "jobs_redelivered", "jobs", 0, "recovered jobs that had started an attempt: run again, their work possibly done twice", |s| n(s.jobs_redelivered);
    RefusedWhileDown: "refused_while_down", "sends", 0, "sends that found the relay down (refused connections, retried by the clients)", |s| n(s.refused_while_down);
    FirstRouteGoodputPerS: "first_route_goodput_per_s", "jobs/s", 2, "jobs of the first [[relay.routes]] route that succeeded, per simulated second (runs with routes only)", |s| route_value(s, true, |r| r.goodput_per_s);
    FirstRouteLatencyP99Ms: "first_route_latency_p99_ms", "ms", 2, "99th percentile job latency of the first route, accepted to success (runs with routes only)", |s| route_value(s, true, |r| defined_if(r.succeeded, r.latency_p99_ms));
    FirstRouteRefusedPct: "first_route_refused_pct", "% of its requests", 2, "requests to the first route the relay refused (429 or 503)", |s| route_pct(s, true, |r| r.refused);
    OtherRoutesGoodputPerS: "other_routes_goodput_per_s", "jobs/s", 2, "jobs of every other route that succeeded, per simulated second", |s| route_value(s, false, |r| r.goodput_per_s);
    OtherRoutesFallbackPct: "other_routes_fallback_pct", "% of their requests", 2, "requests to the other routes answered from their fallback (at the door while the breaker was open, or after the job failed)", |s| route_pct(s, false, |r| r.fallbacks_at_door + r.fallbacks_after_failure);
    OtherRoutesRefusedPct: "other_routes_refused_pct", "% of their requests", 2, "requests to the other routes the relay refused (429 or 503)", |s| route_pct(s, false, |r| r.refused);
    OtherRoutesDeadLettered: "other_routes_dead_lettered", "jobs", 0, "jobs of the other routes that ran out of attempts", |s| route_value(s, false, |r| n(r.dead_lettered));
    OtherRoutesCalls: "other_routes_calls", "calls", 0, "calls the relay made to the other routes' downstreams", |s| route_value(s, false, |r| n(r.downstream_calls));
}

impl Metric {
    pub fn entry(self) -> &'static Entry {
        &CATALOGUE[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// Index into [`CATALOGUE`] (and into summaries made with [`columns`]).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn by_name(name: &str) -> Option<Metric> {
        CATALOGUE.iter().find(|e| e.name == name).map(|e| e.metric)
    }

    /// The catalogue's names, for messages.
    pub fn names() -> String {
        CATALOGUE
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// This metric as a table column.
    pub fn column(self) -> Column<Summary> {
        let e = self.entry();
        Column {
            name: e.name,
            decimals: e.decimals,
            value: e.value,
        }
    }
}

/// Every metric as a column, in catalogue order: summaries made with it are
/// indexed by [`Metric::index`].
pub fn columns() -> Vec<Column<Summary>> {
    CATALOGUE.iter().map(|e| e.metric.column()).collect()
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Metric, D::Error> {
        let name = String::deserialize(deserializer)?;
        Metric::by_name(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "no metric named `{name}`; known: {}",
                Metric::names()
            ))
        })
    }
}

fn n(count: u64) -> f64 {
    count as f64
}

/// `part / whole`, NaN when `whole` is zero.
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        part as f64 / whole as f64
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    100.0 * ratio(part, whole)
}

fn per_s(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        f64::NAN
    }
}

/// Served share of the first population (`first`) or of all the others.
fn population_pct(s: &Summary, first: bool) -> f64 {
    let chosen = s
        .populations
        .iter()
        .enumerate()
        .filter(|(i, _)| (*i == 0) == first);
    let (served, requests) = chosen.fold((0, 0), |(a, b), (_, p)| {
        (a + p.client_succeeded, b + p.requests)
    });
    pct(served, requests)
}

/// The routes of a run with several: the first one (`first`), or every
/// other; empty for a run with one route.
fn routes_of(s: &Summary, first: bool) -> impl Iterator<Item = &RouteSummary> {
    s.routes
        .iter()
        .enumerate()
        .filter(move |(i, _)| (*i == 0) == first)
        .map(|(_, r)| r)
}

/// A number of the first route, or the sum over the others; NaN for a run
/// without routes.
fn route_value(s: &Summary, first: bool, value: fn(&RouteSummary) -> f64) -> f64 {
    let values: Vec<f64> = routes_of(s, first).map(value).collect();
    if values.is_empty() {
        return f64::NAN;
    }
    if first || values.len() == 1 {
        return values[0];
    }
    values.iter().sum()
}

/// `part` of the chosen routes' requests, in %.
fn route_pct(s: &Summary, first: bool, part: fn(&RouteSummary) -> u64) -> f64 {
    let (num, of) = routes_of(s, first).fold((0, 0), |(a, b), r| (a + part(r), b + r.requests));
    pct(num, of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_sits_at_its_index_under_a_unique_name() {
        for (i, e) in CATALOGUE.iter().enumerate() {
            assert_eq!(e.metric.index(), i, "{}", e.name);
            assert_eq!(Metric::by_name(e.name), Some(e.metric));
            assert!(
                !e.unit.is_empty() && !e.description.is_empty(),
                "{}",
                e.name
            );
        }
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_list() {
        let err = toml::from_str::<std::collections::BTreeMap<String, Metric>>("m = \"shed\"\n")
            .expect_err("unknown");
        let message = err.to_string();
        assert!(message.contains("no metric named `shed`"), "{message}");
        assert!(message.contains("shed_429_pct"), "{message}");
    }
}
