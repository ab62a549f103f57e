//! Properties over random configurations and seeds. Every run is watched by
//! the simulator's outside checker (nothing lost, bounds held, breaker
//! transitions legal, no second side effect for a completed key, no accepted
//! job dead-lettered because of the queue, no success lost); here we add
//! conservation of jobs and of successes at the end, and the backoff and
//! breaker bounds on their own.
//! A failing case prints its seed and configuration; proptest shrinks it.

use proptest::prelude::*;
use resilient_relay::relay::{
    Backoff, BackoffConfig, BackoffKind, BackoffState, Breaker, BreakerConfig, RateLimitConfig,
    TripConfig,
};
use resilient_relay::rng::{Domain, Seed};
use resilient_relay::sim::clients::{ClientRetryConfig, ClientsConfig};
use resilient_relay::sim::downstream::{LatencyConfig, OutageConfig, OutageMode};
use resilient_relay::sim::workload::Workload;
use resilient_relay::sim::{simulate, Scenario, SimOptions};
use resilient_relay::time::Time;
use strum::VariantArray;

fn backoff_kind() -> impl Strategy<Value = BackoffKind> {
    proptest::sample::select(BackoffKind::VARIANTS.to_vec())
}

fn backoff() -> impl Strategy<Value = BackoffConfig> {
    (backoff_kind(), 0.0f64..50.0, 0.0f64..500.0, 1.0f64..3.0).prop_map(
        |(kind, base_ms, extra, multiplier)| BackoffConfig {
            kind,
            base_ms,
            cap_ms: base_ms + extra,
            multiplier,
        },
    )
}

fn latency() -> impl Strategy<Value = LatencyConfig> {
    prop_oneof![
        (0.0f64..50.0).prop_map(|ms| LatencyConfig::Constant { ms }),
        (0.1f64..50.0).prop_map(|mean_ms| LatencyConfig::Exponential { mean_ms }),
        (1.0f64..30.0, 0.0f64..1.5)
            .prop_map(|(median_ms, sigma)| LatencyConfig::LogNormal { median_ms, sigma }),
    ]
}

fn breaker() -> impl Strategy<Value = Option<BreakerConfig>> {
    let trip = prop_oneof![
        (1u32..6).prop_map(|failures| TripConfig::ConsecutiveFailures { failures }),
        (0.1f64..1.0, 10.0f64..500.0, 1u32..10).prop_map(|(ratio, window_ms, calls_min)| {
            TripConfig::FailureRatio {
                ratio,
                window_ms,
                calls_min,
            }
        }),
    ];
    proptest::option::of((trip, 1u32..4, 0.0f64..300.0, 1u32..4).prop_map(
        |(trip, success, open_ms, probes)| BreakerConfig {
            trip,
            success_threshold: success,
            open_ms,
            half_open_probes_max: probes,
        },
    ))
}

fn client_retry() -> impl Strategy<Value = ClientRetryConfig> {
    (1u32..5, backoff(), prop_oneof![Just(0.0), 10.0f64..400.0]).prop_map(
        |(attempts_max, backoff, timeout_ms)| ClientRetryConfig {
            attempts_max,
            backoff,
            timeout_ms,
            ..ClientRetryConfig::default()
        },
    )
}

fn clients() -> impl Strategy<Value = ClientsConfig> {
    prop_oneof![
        (10.0f64..500.0, 1u64..150, 1u32..5, client_retry()).prop_map(
            |(per_s, n, clients, retry)| {
                ClientsConfig::OpenLoop {
                    per_s: Some(per_s),
                    schedule: vec![],
                    requests_max: Some(n),
                    clients,
                    retry,
                }
            }
        ),
        (1u32..15, 0.0f64..50.0, 1u32..5, client_retry()).prop_map(
            |(population, think_ms, requests_per_client, retry)| {
                ClientsConfig::ClosedLoop {
                    population,
                    think_ms,
                    requests_per_client,
                    start_spread_ms: 20.0,
                    retry,
                }
            }
        ),
    ]
}

prop_compose! {
    fn scenario()(
        workers in 1usize..6,
        queue in 1usize..12,
        attempts in 1u32..5,
        timeout_ms in prop_oneof![Just(0.0), 5.0f64..200.0],
        relay_backoff in backoff(),
        breaker in breaker(),
        rate_limit in proptest::option::of((1u32..20, 10.0f64..500.0)),
        keys_max in 20usize..200,
        dlq in 1usize..20,
        latency in latency(),
        failure_rate in 0.0f64..1.0,
        honours in any::<bool>(),
        outage in proptest::option::of((0.0f64..0.5, 0.01f64..0.5, any::<bool>())),
        clients in proptest::collection::vec(clients(), 1..3),
        horizon_s in prop_oneof![Just(0.0), 0.2f64..3.0],
    ) -> Scenario {
        let mut s = Workload::mmck(1, 1.0, 1.0, workers, queue).scenario("random");
        s.horizon_s = horizon_s;
        s.relay.jobs_max = 3 * (workers + queue);
        s.relay.retry.attempts_max = attempts;
        s.relay.retry.attempt_timeout_ms = timeout_ms;
        s.relay.retry.backoff = relay_backoff;
        s.relay.breaker = breaker;
        s.relay.rate_limit = rate_limit.map(|(requests_max, window_ms)| RateLimitConfig { requests_max, window_ms, clients_max: 8 });
        s.relay.idempotency.keys_max = keys_max;
        s.relay.dlq.capacity = dlq;
        s.downstream.latency = latency;
        s.downstream.failure_rate = failure_rate;
        s.downstream.honours_idempotency_key = honours;
        s.downstream.outages = outage
            .map(|(start_s, len_s, hang)| OutageConfig {
                start_s,
                end_s: start_s + len_s,
                mode: if hang { OutageMode::Hang } else { OutageMode::FailFast },
            })
            .into_iter()
            .collect();
        s.clients = clients;
        s
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_run_keeps_its_invariants_and_conserves_jobs(s in scenario(), seed in any::<u64>()) {
        prop_assume!(s.validate().is_ok());
        let result = simulate(&s, &SimOptions::seed(seed));
        let summary = match result {
            Ok(r) => r.summary,
            Err(f) => return Err(TestCaseError::fail(format!("{f}\nseed {seed}, scenario:\n{}", toml::to_string(&s).unwrap_or_default()))),
        };
        prop_assert_eq!(
            summary.accepted + summary.dlq_redrives(),
            summary.succeeded + summary.dead_lettered + summary.still_in_flight,
            "conservation broken, seed {}", seed
        );
        prop_assert!(summary.queue_depth_max <= s.relay.queue.capacity as u64, "seed {}", seed);
        if s.horizon_s == 0.0 {
            prop_assert_eq!(summary.still_in_flight, 0, "a run to completion leaves nothing in flight, seed {}", seed);
            // Every success the downstream sent ended a job, or is a late
            // success recorded after a retry or the job's end.
            prop_assert_eq!(
                summary.downstream_successes,
                summary.succeeded + summary.late_successes_recorded,
                "a success lost, seed {}", seed
            );
        }
        prop_assert!(
            summary.late_successes_used + summary.late_successes_recorded <= summary.late_results,
            "seed {}", seed
        );
        if s.downstream.honours_idempotency_key {
            prop_assert_eq!(summary.duplicate_side_effects, 0, "seed {}", seed);
        }
    }

    #[test]
    fn every_backoff_delay_is_within_its_strategy_bounds(cfg in backoff(), seed in any::<u64>(), retries in 1u32..40) {
        let b = Backoff::new(&cfg);
        let mut rng = Seed(seed).stream(Domain::Relay, 0);
        let mut state = BackoffState::default();
        for n in 1..=retries {
            let d = b.delay_ns(n, &mut state, &mut rng);
            let (lo, hi) = b.bounds_ns(n);
            prop_assert!(lo <= d && d <= hi, "{:?} retry {}: {} not in [{}, {}], seed {}", cfg.kind, n, d, lo, hi, seed);
        }
    }

    #[test]
    fn breaker_only_makes_legal_transitions(cfg in breaker(), outcomes in proptest::collection::vec((any::<bool>(), 0u64..50), 1..200)) {
        let Some(cfg) = cfg else { return Ok(()) };
        let settings = cfg.check();
        prop_assume!(settings.is_ok());
        let mut b = Breaker::new(&settings.expect("assumed valid"));
        let mut now = Time::ZERO;
        let mut state = b.state();
        for (ok, gap_ms) in outcomes {
            now = Time::from_nanos(now.as_nanos() + gap_ms * 1_000_000);
            if let Some(permit) = b.allow(now) {
                b.on_result(now, permit, ok);
            }
            while let Some(t) = b.poll_transition() {
                prop_assert_eq!(t.from, state);
                prop_assert!(t.from.can_become(t.to), "{:?} -> {:?}", t.from, t.to);
                state = t.to;
            }
            prop_assert_eq!(state, b.state());
        }
    }
}
