//! Part (b): thousands of clients retrying into the relay while the
//! downstream is down, then back.
//!
//! Part (a) shows what backoff does to contention for one record; this part
//! shows what it does to a relay and its downstream. The definition's
//! scenario is run once per strategy, with that strategy as the backoff of
//! the relay's own retries *and* of every client population, since a herd
//! forms wherever failed work is retried on the same schedule. The numbers
//! come from the simulator's summary plus the downstream calls it counts
//! per 100 ms bucket.

use super::strategy::Strategy;
use crate::experiment::scenario_runs::defined_if;
use crate::sim::clients::ClientsConfig;
use crate::sim::{Scenario, SimResult};

/// Width of the buckets downstream calls are counted in; the herd is a
/// matter of tens of milliseconds, the outage of seconds.
pub const BUCKET_MS: f64 = 100.0;

/// What one run of one strategy produced.
#[derive(Clone, Debug, PartialEq)]
pub struct HerdOutcome {
    /// Logical requests the clients made (one per client and request).
    pub requests: u64,
    pub downstream_calls: u64,
    /// The busiest 100 ms for the downstream.
    pub calls_per_100ms_max: u32,
    /// From the end of the outage until the last logical request got its
    /// final answer (0 if all were answered before it ended); NaN if some
    /// client was still waiting at the horizon.
    pub drain_s: f64,
    /// 99th percentile of first send → success over the requests that
    /// succeeded; NaN if none did.
    pub completion_p99_ms: f64,
    /// Time after the outage during which the downstream got no call at all
    /// although work was still to come (empty 100 ms buckets between the end
    /// of the outage and the last call): a synchronized herd leaves the
    /// recovered downstream idle between its waves.
    pub idle_after_outage_s: f64,
    pub shed_429: u64,
    pub duplicate_side_effects: u64,
    pub clients_succeeded: u64,
    /// Requests whose client spent all its sends and gave up.
    pub clients_abandoned: u64,
    /// Downstream calls started in each 100 ms from time zero.
    pub calls_per_bucket: Vec<u32>,
}

/// The base scenario with `strategy` as every backoff in it.
pub fn scenario_for(strategy: Strategy, base: &Scenario) -> Scenario {
    let kind = strategy.backoff_kind();
    let mut scenario = base.clone();
    scenario.name = format!("{}-{}", base.name, strategy.name());
    scenario.relay.retry.backoff.kind = kind;
    for clients in &mut scenario.clients {
        match clients {
            ClientsConfig::OpenLoop { retry, .. } | ClientsConfig::ClosedLoop { retry, .. } => {
                retry.backoff.kind = kind;
            }
        }
    }
    scenario
}

/// Takes what part (b) reports from one run; the outage ended at
/// `outage_end_s`.
pub fn outcome(result: SimResult, outage_end_s: f64) -> HerdOutcome {
    let s = &result.summary;
    let drain_s = if s.client_still_waiting > 0 {
        f64::NAN
    } else {
        (s.client_done_last_s - outage_end_s).max(0.0)
    };
    HerdOutcome {
        requests: s.arrivals,
        downstream_calls: s.downstream_calls,
        calls_per_100ms_max: result.calls_per_bucket.iter().copied().max().unwrap_or(0),
        drain_s,
        completion_p99_ms: defined_if(s.client_latency.count, s.client_latency.p99_ms),
        idle_after_outage_s: idle_after_s(&result.calls_per_bucket, outage_end_s),
        shed_429: s.shed_429,
        duplicate_side_effects: s.duplicate_side_effects,
        clients_succeeded: s.client_succeeded,
        clients_abandoned: s.client_abandoned,
        calls_per_bucket: result.calls_per_bucket,
    }
}

/// Seconds of empty buckets from the first bucket that starts at or after
/// `from_s` up to the last bucket with a call.
fn idle_after_s(calls_per_bucket: &[u32], from_s: f64) -> f64 {
    let first = (from_s * 1e3 / BUCKET_MS).ceil().max(0.0) as usize;
    let Some(last) = calls_per_bucket.iter().rposition(|&c| c > 0) else {
        return 0.0;
    };
    let empty = calls_per_bucket
        .get(first..=last)
        .map_or(0, |tail| tail.iter().filter(|&&c| c == 0).count());
    empty as f64 * BUCKET_MS / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::BackoffKind;

    const BASE: &str = r#"
name = "herd"
[relay.retry]
backoff = { kind = "constant", base_ms = 10, cap_ms = 10 }
[[downstream.outages]]
start_s = 0
end_s = 1
mode = "fail-fast"
[[clients]]
kind = "closed-loop"
population = 3
requests_per_client = 1
retry = { attempts_max = 20, backoff = { kind = "constant", base_ms = 50, cap_ms = 50 } }
[[clients]]
kind = "open-loop"
per_s = 10
requests_max = 2
"#;

    #[test]
    fn the_strategy_replaces_every_backoff_kind_and_nothing_else() {
        let base = Scenario::from_toml(BASE, "inline").expect("valid");
        let s = scenario_for(Strategy::DecorrelatedJitter, &base);
        assert_eq!(s.name, "herd-decorrelated-jitter");
        assert_eq!(s.relay.retry.backoff.kind, BackoffKind::DecorrelatedJitter);
        for c in &s.clients {
            assert_eq!(c.retry().backoff.kind, BackoffKind::DecorrelatedJitter);
        }
        assert_eq!(s.clients[0].retry().backoff.base_ms, 50.0);
        assert_eq!(s.relay.retry.backoff.base_ms, 10.0);
        assert_eq!(s.downstream, base.downstream);
    }

    #[test]
    fn idle_time_counts_empty_buckets_between_the_outage_and_the_last_call() {
        let calls = [9, 9, 0, 5, 0, 0, 3, 0, 0];
        assert!((idle_after_s(&calls, 0.2) - 0.3).abs() < 1e-12);
        assert!((idle_after_s(&calls, 0.15) - 0.3).abs() < 1e-12);
        assert_eq!(idle_after_s(&calls, 1.0), 0.0);
        assert_eq!(idle_after_s(&[], 0.0), 0.0);
    }

    #[test]
    fn drain_counts_from_the_end_of_the_outage() {
        let base = Scenario::from_toml(BASE, "inline").expect("valid");
        let scenario = scenario_for(Strategy::Exponential, &base);
        let options = crate::sim::SimOptions {
            seed: 1,
            trace_records_max: 0,
            calls_bucket_ms: Some(BUCKET_MS),
            series_bucket_ms: None,
        };
        let result = crate::sim::simulate(&scenario, &options).expect("runs");
        let last_s = result.summary.client_done_last_s;
        let o = outcome(result, 1.0);
        assert_eq!(o.requests, 5);
        assert_eq!(o.clients_succeeded + o.clients_abandoned, 5);
        assert!(last_s > 1.0, "someone waited out the outage: {last_s}");
        assert!((o.drain_s - (last_s - 1.0)).abs() < 1e-12);
        assert_eq!(
            o.calls_per_bucket
                .iter()
                .map(|&c| u64::from(c))
                .sum::<u64>(),
            o.downstream_calls
        );
    }
}
