//! What a run amounts to: the numbers `simulate` prints.

use super::routes::{Downstreams, RouteSummary};
use crate::relay::{
    Denied, DeniedCounts, HedgeCounts, LatencyHistogram, LatencySummary, Refusal, Relay,
};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Counts only the simulator sees.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub events: u64,
    pub arrivals: u64,
    pub sends: u64,
    pub model_call_completions: u64,
    /// Calls the downstream answered with a success, late ones included.
    pub call_successes: u64,
    pub client_retries: u64,
    pub client_timeouts: u64,
    pub client_succeeded: u64,
    pub client_abandoned: u64,
    pub client_deadline_abandoned: u64,
    pub client_denied: DeniedCounts,
    pub breaker_transitions: u64,
    pub dlq_overflowed: u64,
    pub deadline_missed: u64,
    /// ∫ live jobs dt in job·ns, up to `live_area_until`.
    pub live_area_job_ns: f64,
    pub live_area_until: Time,
    /// Most bytes the relay's queue held after any event.
    pub queue_bytes_max: u64,
    /// When the last logical request got its final answer.
    pub client_done_last: Time,
    /// Per `[[clients]]` population, in scenario order.
    pub populations: Vec<PopulationCounts>,
    /// Relay crashes (`[[faults.crash]]`).
    pub crashes: u64,
    /// Jobs whose 202 had left and that no store kept through a crash.
    pub jobs_lost: u64,
    /// Sends that found the relay down.
    pub refused_while_down: u64,
    /// Group commits the store made.
    pub commits: u64,
}

/// What one `[[clients]]` population asked for and got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PopulationCounts {
    /// Logical requests it created.
    pub requests: u64,
    /// Of those, the ones that got a success.
    pub client_succeeded: u64,
    /// Sends and retries its retry gates did not allow, by reason.
    pub denied: DeniedCounts,
}

/// The run's outcome. Deterministic: same scenario and seed, same bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub simulated_s: f64,
    /// Logical requests created by the clients.
    pub arrivals: u64,
    /// Requests sent to the relay, client retries included.
    pub sends: u64,
    pub accepted: u64,
    pub replayed: u64,
    pub shed_429: u64,
    pub rate_limited_429: u64,
    pub unavailable_503: u64,
    pub conflicts_409: u64,
    pub mismatches_422: u64,
    /// Refused because every idempotency record was in flight.
    pub keys_full: u64,
    /// Refused for a missing key (when keys are required).
    pub bad_key: u64,
    /// Completed idempotency records forgotten before their TTL (store full).
    pub keys_evicted_early: u64,
    pub succeeded: u64,
    pub dead_lettered: u64,
    pub dlq_overflowed: u64,
    pub dlq_redriven: u64,
    /// Letters in the dead-letter queue at the end; when it is full the relay
    /// refuses new work (503) until it is drained.
    pub dlq_held: u64,
    pub dlq_full: bool,
    pub still_in_flight: u64,
    pub downstream_calls: u64,
    /// Of those, calls answered with a success (in time or late): each one
    /// either ended a job as a success or is a recorded late success.
    #[serde(default)]
    pub downstream_successes: u64,
    pub relay_retries: u64,
    /// Relay retries its retry budget did not allow.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub relay_denied_budget: u64,
    /// Relay retries its retry breaker did not allow.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub relay_denied_retry_breaker: u64,
    /// Hedges sent, won, abandoned and not sent; absent without
    /// `[relay.hedge]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedges: Option<HedgeCounts>,
    /// Downstream calls per accepted job.
    pub retry_amplification: f64,
    pub side_effects: u64,
    pub duplicate_side_effects: u64,
    /// Of those, effects of calls that carried no idempotency key (keyless
    /// clients): no key, so neither relay nor downstream could stop them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicate_side_effects_keyless: u64,
    pub breaker_transitions: u64,
    /// Answers to attempts that had already timed out.
    pub late_results: u64,
    /// Of those, successes that completed a job waiting to retry.
    #[serde(default)]
    pub late_successes_used: u64,
    /// Of those, successes that came after a retry was sent or the job
    /// ended (recorded on the job or its dead letter; the work landed again).
    #[serde(default)]
    pub late_successes_recorded: u64,
    pub deadline_missed: u64,
    pub client_retries: u64,
    pub client_timeouts: u64,
    pub client_succeeded: u64,
    pub client_abandoned: u64,
    /// Of the abandoned, logical requests given up at their `deadline_ms`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub client_deadline_abandoned: u64,
    /// Client retries the clients' budgets did not allow.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub client_denied_budget: u64,
    /// Client retries their retry breakers did not allow.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub client_denied_retry_breaker: u64,
    /// Client sends (first tries or retries) adaptive throttling rejected locally.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub client_denied_throttled: u64,
    pub client_still_waiting: u64,
    /// Accepted → success, per job (virtual time).
    pub latency: LatencySummary,
    /// First send → final answer, per logical request that succeeded.
    pub client_latency: LatencySummary,
    pub queue_depth_max: u64,
    /// Most retries waiting for a worker at once (the retry lane, which the
    /// job table bounds, not the queue).
    #[serde(default)]
    pub retry_lane_depth_max: u64,
    /// Most bytes the queue held (ring entries plus the job records of
    /// queued jobs), sampled from the relay after every event: a measured
    /// peak, for sizing the queue's memory.
    #[serde(default)]
    pub queue_bytes_max: u64,
    /// Virtual time at which the last logical request got its final answer
    /// (success or giving up), so an experiment can tell when a backlog was
    /// gone; 0 if none did.
    #[serde(default)]
    pub client_done_last_s: f64,
    pub live_jobs_max: u64,
    /// Time-average number of jobs in the relay (queued, in flight, backing off).
    pub live_jobs_mean: f64,
    pub downstream_concurrency_max: u64,
    /// arrivals + call completions + retry wake-ups (the unit of `bench`).
    pub model_events: u64,
    /// Events the scheduler processed, relay wake-ups and client timers included.
    pub scheduler_events: u64,
    pub scheduler_depth_max: u64,
    pub invariant_checks: u64,
    /// Trace records kept when the trace was cut short; absent when whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_cut_at: Option<usize>,
    /// Relay crashes, and what they cost: jobs whose 202 had left and that
    /// no store kept, jobs taken back from the store, of those the ones
    /// that had started an attempt (run again: the downstream may do
    /// their work twice), and sends refused while the relay was down.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crashes: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jobs_lost: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jobs_recovered: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jobs_redelivered: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_while_down: u64,
    /// Group commits of a durable store.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub commits: u64,
    /// Per relay route, when there is more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSummary>,
    /// Per `[[clients]]` population, in scenario order (for experiments that
    /// compare populations; not part of the printed or JSON summary).
    #[serde(skip)]
    pub populations: Vec<PopulationCounts>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Summary {
    /// Requests answered from a route's fallback, over every route.
    pub fn fallbacks_total(&self) -> u64 {
        self.routes
            .iter()
            .map(|r| r.fallbacks_at_door + r.fallbacks_after_failure)
            .sum()
    }

    /// Jobs started by redriving a dead letter (they are not `accepted`).
    pub fn dlq_redrives(&self) -> u64 {
        self.dlq_redriven
    }

    #[allow(clippy::too_many_arguments)]
    pub fn collect(
        scenario: &str,
        seed: u64,
        end: Time,
        c: &Counters,
        relay: &Relay<u64, ()>,
        downstream: &Downstreams,
        client_still_waiting: u64,
        client_latency: &LatencyHistogram,
        scheduler_depth_max: usize,
        invariant_checks: u64,
    ) -> Summary {
        let s = relay.stats();
        let accepted = s.accepted;
        Summary {
            scenario: scenario.to_string(),
            seed,
            simulated_s: end.as_secs_f64(),
            arrivals: c.arrivals,
            sends: c.sends,
            accepted,
            replayed: s.replayed,
            shed_429: s.refused(Refusal::Shed),
            rate_limited_429: s.refused(Refusal::RateLimited),
            unavailable_503: s.refused(Refusal::Unavailable),
            conflicts_409: s.refused(Refusal::Conflict),
            mismatches_422: s.refused(Refusal::Mismatch),
            keys_full: s.refused(Refusal::KeysFull),
            bad_key: s.refused(Refusal::BadKey),
            keys_evicted_early: relay.idempotency_evicted_early(),
            succeeded: s.succeeded,
            dead_lettered: s.dead_lettered_total(),
            dlq_overflowed: c.dlq_overflowed,
            dlq_redriven: s.dlq_redriven,
            dlq_held: relay.dead_letters().len() as u64,
            dlq_full: relay.dead_letters().is_full(),
            still_in_flight: relay.live_jobs() as u64,
            downstream_calls: downstream.calls(),
            downstream_successes: c.call_successes,
            relay_retries: s.retries,
            relay_denied_budget: s.retries_denied[Denied::Budget],
            relay_denied_retry_breaker: s.retries_denied[Denied::RetryBreaker],
            hedges: relay.hedge_counts(),
            retry_amplification: if accepted == 0 {
                0.0
            } else {
                downstream.calls() as f64 / accepted as f64
            },
            side_effects: downstream.effects_total(),
            duplicate_side_effects: downstream.duplicates(),
            duplicate_side_effects_keyless: downstream.duplicates_keyless(),
            breaker_transitions: c.breaker_transitions,
            late_results: s.late_results,
            late_successes_used: s.late_successes_used,
            late_successes_recorded: s.late_successes_recorded,
            deadline_missed: c.deadline_missed,
            client_retries: c.client_retries,
            client_timeouts: c.client_timeouts,
            client_succeeded: c.client_succeeded,
            client_abandoned: c.client_abandoned,
            client_deadline_abandoned: c.client_deadline_abandoned,
            client_denied_budget: c.client_denied[Denied::Budget],
            client_denied_retry_breaker: c.client_denied[Denied::RetryBreaker],
            client_denied_throttled: c.client_denied[Denied::Throttled],
            client_still_waiting,
            latency: s.job_latency().summary(),
            client_latency: client_latency.summary(),
            queue_depth_max: relay.queue_depth_max_seen() as u64,
            retry_lane_depth_max: relay.retry_lane_depth_max_seen() as u64,
            queue_bytes_max: c.queue_bytes_max,
            client_done_last_s: c.client_done_last.as_secs_f64(),
            live_jobs_max: relay.live_jobs_max_seen() as u64,
            live_jobs_mean: if end.as_nanos() == 0 {
                0.0
            } else {
                c.live_area_job_ns / end.as_nanos() as f64
            },
            downstream_concurrency_max: u64::from(downstream.in_flight_max_seen()),
            model_events: c.arrivals + c.model_call_completions + s.retries,
            scheduler_events: c.events,
            scheduler_depth_max: scheduler_depth_max as u64,
            invariant_checks,
            trace_cut_at: None,
            crashes: c.crashes,
            jobs_lost: c.jobs_lost,
            jobs_recovered: s.recovered_jobs,
            jobs_redelivered: s.redelivered_jobs,
            refused_while_down: c.refused_while_down,
            commits: c.commits,
            populations: c.populations.clone(),
            routes: Vec::new(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |n: u64, of: u64| {
            if of == 0 {
                0.0
            } else {
                100.0 * n as f64 / of as f64
            }
        };
        writeln!(f, "scenario {}  seed {}", self.scenario, self.seed)?;
        writeln!(f, "  simulated               {:>12.3} s", self.simulated_s)?;
        writeln!(
            f,
            "  arrivals                {:>12}   (sends incl. client retries: {})",
            self.arrivals, self.sends
        )?;
        writeln!(
            f,
            "  accepted                {:>12}   ({:.1} % of sends)",
            self.accepted,
            pct(self.accepted, self.sends)
        )?;
        writeln!(f, "  shed (429)              {:>12}", self.shed_429)?;
        writeln!(f, "  rate-limited (429)      {:>12}", self.rate_limited_429)?;
        writeln!(f, "  unavailable (503)       {:>12}", self.unavailable_503)?;
        writeln!(
            f,
            "  conflicts (409)         {:>12}   replayed: {}",
            self.conflicts_409, self.replayed
        )?;
        if self.mismatches_422 + self.keys_full + self.bad_key + self.keys_evicted_early > 0 {
            writeln!(
                f,
                "  idempotency             mismatches (422) {}  keys full {}  missing key {}  evicted early {}",
                self.mismatches_422, self.keys_full, self.bad_key, self.keys_evicted_early
            )?;
        }
        writeln!(f, "  succeeded               {:>12}", self.succeeded)?;
        writeln!(
            f,
            "  dead-lettered           {:>12}   (held at the end: {}{}, overflowed: {})",
            self.dead_lettered,
            self.dlq_held,
            if self.dlq_full {
                ", FULL: new work refused"
            } else {
                ""
            },
            self.dlq_overflowed
        )?;
        writeln!(f, "  still in flight         {:>12}", self.still_in_flight)?;
        if self.crashes + self.commits > 0 {
            writeln!(
                f,
                "  crashes                 {:>12}   jobs lost {}  recovered {}  redelivered {}  refused while down {}  commits {}",
                self.crashes,
                self.jobs_lost,
                self.jobs_recovered,
                self.jobs_redelivered,
                self.refused_while_down,
                self.commits
            )?;
        }
        writeln!(
            f,
            "  downstream calls        {:>12}   (relay retries: {})",
            self.downstream_calls, self.relay_retries
        )?;
        if self.relay_denied_budget + self.relay_denied_retry_breaker > 0 {
            writeln!(
                f,
                "  relay retries denied    {:>12}   (budget {}  retry breaker {})",
                self.relay_denied_budget + self.relay_denied_retry_breaker,
                self.relay_denied_budget,
                self.relay_denied_retry_breaker
            )?;
        }
        if let Some(h) = &self.hedges {
            writeln!(
                f,
                "  hedges sent             {:>12}   won {}  abandoned {}  not sent: cap {}  budget {}  no room {}",
                h.sent, h.won, h.abandoned, h.denied_cap, h.denied_budget, h.skipped
            )?;
        }
        writeln!(
            f,
            "  retry amplification     {:>12.3}   calls per accepted job",
            self.retry_amplification
        )?;
        writeln!(
            f,
            "  duplicate side effects  {:>12}   of {}",
            self.duplicate_side_effects, self.side_effects
        )?;
        if self.duplicate_side_effects_keyless > 0 {
            writeln!(
                f,
                "  of them without a key   {:>12}",
                self.duplicate_side_effects_keyless
            )?;
        }
        writeln!(
            f,
            "  breaker transitions     {:>12}",
            self.breaker_transitions
        )?;
        if self.late_results > 0 {
            writeln!(
                f,
                "  late answers            {:>12}   (successes: {} completed their job, {} recorded on it or its letter)",
                self.late_results, self.late_successes_used, self.late_successes_recorded
            )?;
        }
        let l = &self.latency;
        writeln!(
            f,
            "  job latency (ms)        p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        )?;
        let l = &self.client_latency;
        writeln!(
            f,
            "  client latency (ms)     p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        )?;
        writeln!(
            f,
            "  clients                 succeeded {}  abandoned {}  still waiting {}  retries {}  timeouts {}",
            self.client_succeeded, self.client_abandoned, self.client_still_waiting, self.client_retries, self.client_timeouts
        )?;
        let denied = self.client_denied_budget
            + self.client_denied_retry_breaker
            + self.client_denied_throttled;
        if denied > 0 {
            writeln!(
                f,
                "  client gates denied     {:>12}   (budget {}  retry breaker {}  throttled {})",
                denied,
                self.client_denied_budget,
                self.client_denied_retry_breaker,
                self.client_denied_throttled
            )?;
        }
        for r in &self.routes {
            writeln!(
                f,
                "  route {:<17} {:>12}   requests; {} succeeded ({:.1}/s, p99 {:.1} ms), \
                 {} refused, {} fallbacks at the door, {} after failure, {} dead-lettered",
                r.name,
                r.requests,
                r.succeeded,
                r.goodput_per_s,
                r.latency_p99_ms,
                r.refused,
                r.fallbacks_at_door,
                r.fallbacks_after_failure,
                r.dead_lettered
            )?;
        }
        if self.client_deadline_abandoned > 0 {
            writeln!(
                f,
                "  client deadlines        {:>12}   logical requests given up at their deadline",
                self.client_deadline_abandoned
            )?;
        }
        write!(
            f,
            "  events                  {} model, {} scheduled; {} invariant checks",
            self.model_events, self.scheduler_events, self.invariant_checks
        )?;
        if let Some(n) = self.trace_cut_at {
            write!(f, "\n  trace cut at {n} records")?;
        }
        Ok(())
    }
}
