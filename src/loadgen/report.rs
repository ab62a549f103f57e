//! A live run in `simulate`'s formats: the [`Summary`] from what the
//! clients heard and did, completed by what the relay (`/stats`) and the
//! downstream (`/admin`, `/effects`) say at the end; the calls per bucket
//! from the downstream's call count, sampled as the run goes.

use super::player::{play, Played};
use super::{Ending, LiveCounts, LoadgenOptions, PlayOptions, Target};
use crate::relay::LatencyHistogram;
use crate::server::client::{uri, HttpClient};
use crate::sim::series::Series;
use crate::sim::trace::Trace;
use crate::sim::{Scenario, Summary};
use crate::time::Time;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What a live run produced.
pub struct LoadgenResult {
    pub summary: Summary,
    pub live: LiveCounts,
    pub ending: Ending,
    pub trace: Option<Trace>,
    pub series: Series,
    pub client_latency: LatencyHistogram,
}

/// The JSON a live run prints: the summary's fields, then its own.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    #[serde(flatten)]
    pub summary: &'a Summary,
    pub ending: Ending,
    pub live: &'a LiveCounts,
}

/// What the services said at the end; `None` where one could not be read.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub stats: Option<Value>,
    pub effects: Option<Value>,
    pub downstream_calls: Option<u64>,
}

/// Samples of the downstream's call count: (time since start, calls).
type Samples = Arc<Mutex<Vec<(Time, u64)>>>;

/// Most samples kept (a week of 100 ms buckets is far beyond any run).
const SAMPLES_MAX: usize = 10_000_000;

pub async fn play_and_observe(
    scenario: &Scenario,
    opts: &LoadgenOptions,
) -> anyhow::Result<LoadgenResult> {
    let http = HttpClient::new(16 * 1024 * 1024);
    anyhow::ensure!(
        get(&http, &opts.target, "/health").await.is_some(),
        "no relay answers at {}/health: start one (`resilient-relay serve`) or fix --target",
        opts.target.base
    );
    let samples: Samples = Arc::default();
    let sampler = opts.downstream.clone().map(|d| {
        let (http, samples) = (http.clone(), samples.clone());
        let every = Duration::from_secs_f64(opts.bucket_ms / 1e3);
        tokio::spawn(sample_calls(http, d, every, samples))
    });
    let play_opts = PlayOptions {
        seed: opts.seed,
        target: opts.target.base.clone(),
        run_tag: run_tag(opts.seed),
        sends_max: opts.sends_max,
        in_flight_max: opts.in_flight_max,
        duration_max: opts.duration_max,
        trace_records_max: opts.trace_records_max,
        bucket_ms: opts.bucket_ms,
        progress: opts.progress,
    };
    let played = play(scenario, &play_opts).await;
    let observed = observe(&http, opts).await;
    if let Some(s) = sampler {
        s.abort();
    }
    let samples = samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(result(
        scenario,
        opts.seed,
        played,
        &observed,
        &samples,
        opts.bucket_ms,
    ))
}

/// A tag unique to this run, for its idempotency keys.
fn run_tag(seed: u64) -> String {
    let mut nonce = [0u8; 6];
    // Without OS randomness the tag is still the seed's; keys then collide
    // only with an earlier run of the same seed on the same relay.
    let _ = getrandom::fill(&mut nonce);
    format!("{seed}-{}", hex::encode(nonce))
}

async fn get(http: &HttpClient, target: &Target, path: &str) -> Option<Value> {
    let at = uri(&target.base, path).ok()?;
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Some(token) = &target.operator_token {
        headers.push((
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).ok()?,
        ));
    }
    let reply = http
        .send(hyper::Method::GET, &at, &headers, bytes::Bytes::new())
        .await
        .ok()?;
    reply.status.is_success().then(|| reply.json())
}

async fn observe(http: &HttpClient, opts: &LoadgenOptions) -> Observed {
    let stats = get(http, &opts.target, "/stats").await;
    if stats.is_none() {
        eprintln!(
            "warning: {}/stats did not answer (an operator endpoint: give --operator-token-file \
             when the relay has a token); relay-side figures are left at 0",
            opts.target.base
        );
    }
    let (effects, downstream_calls) = match &opts.downstream {
        Some(d) => (
            get(http, d, "/effects").await,
            get(http, d, "/admin")
                .await
                .and_then(|a| a["calls"].as_u64()),
        ),
        None => (None, None),
    };
    Observed {
        stats,
        effects,
        downstream_calls,
    }
}

/// Reads the downstream's call count every `every` until aborted.
async fn sample_calls(http: HttpClient, downstream: Target, every: Duration, into: Samples) {
    let start = crate::server::clock::read_monotonic();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Dated when it was due (a bucket's end), not when it was read.
        let due = tick.tick().await;
        let Some(calls) = get(&http, &downstream, "/admin")
            .await
            .and_then(|a| a["calls"].as_u64())
        else {
            continue;
        };
        let at = crate::time::duration_nanos(due.saturating_duration_since(start));
        let mut samples = into.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() < SAMPLES_MAX {
            samples.push((Time::from_nanos(at), calls));
        }
    }
}

/// Calls started per bucket, from cumulative samples taken about once a
/// bucket. A sample counts up to the bucket end nearest to it: one due at
/// 100 ms but taken a little later still closes the first bucket (dated by
/// its own instant, every call would land one bucket late).
pub fn calls_per_bucket(samples: &[(Time, u64)], bucket_ms: f64, buckets: usize) -> Vec<u32> {
    let mut calls = vec![0u32; buckets];
    let bucket_ns = crate::time::ms_to_nanos(bucket_ms).max(1);
    let mut before = 0;
    for &(at, n) in samples {
        let end = (at.as_nanos() + bucket_ns / 2) / bucket_ns;
        let i = end.saturating_sub(1) as usize;
        if let Some(c) = calls.get_mut(i) {
            *c = c.saturating_add(u32::try_from(n.saturating_sub(before)).unwrap_or(u32::MAX));
        }
        before = before.max(n);
    }
    calls
}

fn result(
    scenario: &Scenario,
    seed: u64,
    played: Played,
    observed: &Observed,
    samples: &[(Time, u64)],
    bucket_ms: f64,
) -> LoadgenResult {
    let mut live = played.counts.clone();
    live.timer_lateness = played.timer_lateness.summary();
    let summary = summary(scenario, seed, &played, observed);
    let mut series = played.series;
    let buckets = series.starts.len();
    series.calls = calls_per_bucket(samples, bucket_ms, buckets);
    LoadgenResult {
        summary,
        live,
        ending: played.ending,
        trace: played.trace,
        series,
        client_latency: played.client_latency,
    }
}

fn count(v: &Option<Value>, path: &[&str]) -> u64 {
    let mut at = match v {
        Some(v) => v,
        None => return 0,
    };
    for p in path {
        at = &at[*p];
    }
    at.as_u64().unwrap_or(0)
}

/// The summary `simulate` would print, from the live run.
fn summary(scenario: &Scenario, seed: u64, p: &Played, o: &Observed) -> Summary {
    let (c, s) = (&p.counts, p.clients.stats());
    let st = &o.stats;
    let stat = |name: &str| count(st, &[name]);
    let job_latency = st
        .as_ref()
        .and_then(|v| serde_json::from_value(v["job_latency"].clone()).ok())
        .unwrap_or_default();
    let calls = o.downstream_calls.unwrap_or_else(|| stat("attempts"));
    let accepted = c.accepted;
    Summary {
        scenario: scenario.name.clone(),
        seed,
        simulated_s: p.end.as_secs_f64(),
        arrivals: s.arrivals,
        sends: s.sends,
        accepted,
        replayed: c.replayed,
        shed_429: c.shed_429,
        rate_limited_429: c.rate_limited_429,
        unavailable_503: c.unavailable_503,
        conflicts_409: c.conflicts_409,
        mismatches_422: c.mismatches_422,
        keys_full: c.keys_full,
        bad_key: c.bad_key,
        keys_evicted_early: 0,
        succeeded: stat("succeeded"),
        dead_lettered: stat("dead_lettered"),
        dlq_overflowed: stat("dlq_overflowed"),
        dlq_redriven: stat("redriven"),
        dlq_held: stat("dlq_size"),
        dlq_full: stat("dlq_size") > 0 && stat("dlq_size") >= stat("dlq_capacity"),
        still_in_flight: stat("live_jobs"),
        downstream_calls: calls,
        downstream_successes: count(&o.effects, &["effects"]),
        relay_retries: stat("retries"),
        relay_denied_budget: count(st, &["retries_denied", "budget"]),
        relay_denied_retry_breaker: count(st, &["retries_denied", "retry-breaker"]),
        hedges: None,
        retry_amplification: if accepted == 0 {
            0.0
        } else {
            calls as f64 / accepted as f64
        },
        side_effects: count(&o.effects, &["effects"]),
        duplicate_side_effects: count(&o.effects, &["duplicate_effects"]) + c.keyless_repeats,
        duplicate_side_effects_keyless: c.keyless_repeats,
        breaker_transitions: 0,
        late_results: stat("late_results"),
        late_successes_used: stat("late_successes_used"),
        late_successes_recorded: stat("late_successes_recorded"),
        deadline_missed: 0,
        client_retries: s.retries,
        client_timeouts: s.timeouts,
        client_succeeded: s.succeeded,
        client_abandoned: s.abandoned,
        client_deadline_abandoned: s.deadline_abandoned,
        client_denied_budget: s.denied[crate::relay::Denied::Budget],
        client_denied_retry_breaker: s.denied[crate::relay::Denied::RetryBreaker],
        client_denied_throttled: s.denied[crate::relay::Denied::Throttled],
        client_still_waiting: p.clients.waiting() as u64,
        latency: job_latency,
        client_latency: p.client_latency.summary(),
        queue_depth_max: stat("queue_depth_max_seen"),
        retry_lane_depth_max: 0,
        queue_bytes_max: 0,
        client_done_last_s: s.done_last.as_secs_f64(),
        live_jobs_max: 0,
        live_jobs_mean: 0.0,
        downstream_concurrency_max: 0,
        model_events: 0,
        scheduler_events: 0,
        scheduler_depth_max: 0,
        invariant_checks: 0,
        trace_cut_at: p
            .trace
            .as_ref()
            .filter(|t| t.truncated)
            .map(|t| t.lines.len()),
        crashes: 0,
        jobs_lost: 0,
        jobs_recovered: 0,
        jobs_redelivered: 0,
        refused_while_down: 0,
        commits: 0,
        routes: Vec::new(),
        populations: s.populations.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_call_counts_become_calls_per_bucket() {
        let at = |ms| Time::from_millis(ms);
        let samples = [
            (at(0), 0),
            (at(104), 3),
            (at(198), 3),
            (at(301), 10),
            (at(520), 12),
        ];
        assert_eq!(
            calls_per_bucket(&samples, 100.0, 5),
            vec![3, 0, 7, 0, 2],
            "a sample closes the bucket whose end is nearest"
        );
        assert_eq!(
            calls_per_bucket(&samples, 100.0, 2),
            vec![3, 0],
            "past the end: dropped"
        );
    }
}
