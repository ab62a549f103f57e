//! Whole scenarios drawn from one seed, as a swarm explores them.
//!
//! Every option is drawn, not only the numbers: each pattern is on or off,
//! clients open- or closed-loop, the downstream's latency of any shape,
//! and a fault schedule of outages, brownouts, spikes and crashes. Swarm
//! testing finds more bugs this way than by running every option at once
//! (Groce et al., "Swarm testing", ISSTA 2012): a feature that is always on
//! hides the bugs that only show when it is off.
//!
//! The offered load after the faults is drawn below the relay's capacity,
//! so a run that does not recover is a finding, not a foregone conclusion.

use super::triggers::RECOVER_WITHIN_S;
use crate::fault::{BrownoutConfig, CapacityConfig, FailureMix, OutageConfig, OutageMode};
use crate::relay::{
    AimdConfig, BackoffConfig, BackoffKind, BreakerConfig, BudgetConfig, ConcurrencyLimitConfig,
    DlqConfig, FinagleConfig, HedgeConfig, IdempotencyConfig, KeysWhenFull, QueueConfig,
    RateLimitConfig, RelayConfig, RetryBreakerConfig, RetryConfig, ShedTo, TokenBucketConfig,
    TripConfig, WhenFull,
};
use crate::rng::{unit, Domain, Seed, Stream};
use crate::sim::clients::{ClientRetryConfig, ClientsConfig, RatePhase};
use crate::sim::downstream::{DownstreamConfig, LatencyConfig};
use crate::sim::{CrashConfig, FaultsConfig, NetworkConfig, Scenario, StoreConfig, StoreKind};
use rand::Rng;

/// Seconds of the run after the last fault's end beyond the time allowed
/// to recover: the window in which recovery is judged.
pub const TAIL_S: f64 = 20.0;

/// Highest total first-try rate drawn (per second): keeps one run to
/// milliseconds of CPU.
const RATE_MAX: f64 = 200.0;

/// The scenario of swarm run `seed`.
pub fn draw(seed: u64) -> Scenario {
    let mut d = Draw(Seed(seed).stream(Domain::Swarm, 0));
    let latency_ms = d.log_uniform(2.0, 200.0);
    let relay = d.relay(latency_ms);
    let capacity_per_s = relay.workers as f64 / (latency_ms / 1e3);
    let rate = (d.uniform(0.05, 0.6) * capacity_per_s).clamp(1.0, RATE_MAX);
    let mut downstream = d.downstream(latency_ms, relay.workers);
    let faults_end = d.faults(&mut downstream);
    let crash = d.chance(0.15).then(|| CrashConfig {
        at_s: d.uniform(2.0, 20.0),
        restart_after_s: d.uniform(0.05, 3.0),
    });
    let spike = d
        .chance(0.3)
        .then(|| (d.uniform(2.0, 20.0), d.uniform(0.5, 8.0)));
    if faults_end == 0.0 && crash.is_none() && spike.is_none() {
        // Nothing to recover from would leave liveness unjudged.
        downstream.outages.push(OutageConfig {
            start_s: 5.0,
            end_s: 5.0 + d.log_uniform(0.2, 15.0),
            mode: OutageMode::FailFast,
        });
    }
    let faults_end = faults_end.max(downstream.outages.last().map_or(0.0, |o| o.end_s));
    let end = [
        faults_end,
        crash.map_or(0.0, |c| c.at_s + c.restart_after_s),
        spike.map_or(0.0, |(at, len)| at + len),
    ]
    .into_iter()
    .fold(5.0, f64::max);
    let horizon_s = (end + RECOVER_WITHIN_S + TAIL_S).ceil();
    let clients = d.clients(rate, latency_ms, spike, horizon_s);
    Scenario {
        name: format!("swarm-{seed}"),
        description: "drawn by `swarm`".into(),
        seed,
        horizon_s,
        deadline_ms: None,
        store: StoreConfig {
            kind: match (crash.is_some(), d.below(3)) {
                (false, _) | (true, 0) => StoreKind::Memory,
                (true, 1) => StoreKind::Embedded,
                _ => StoreKind::Shared,
            },
            commit_ms: None,
        },
        faults: FaultsConfig {
            crash: crash.into_iter().collect(),
        },
        network: d.network(),
        relay,
        downstream,
        clients,
        routes: Vec::new(),
    }
}

/// The draws, in one fixed order: changing the order changes every
/// scenario, so new options go at the end of their section.
struct Draw(Stream);

impl Draw {
    fn chance(&mut self, p: f64) -> bool {
        unit(&mut self.0) < p
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + unit(&mut self.0) * (hi - lo)
    }

    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + unit(&mut self.0) * (hi.ln() - lo.ln())).exp()
    }

    /// A whole number in `[lo, hi]`, log-uniform: small values as often as
    /// large ones, since bugs live at the edges (a queue of 1).
    fn count(&mut self, lo: u32, hi: u32) -> u32 {
        let x = self.log_uniform(f64::from(lo), f64::from(hi) + 1.0);
        (x.floor() as u32).clamp(lo, hi)
    }

    fn below(&mut self, n: u32) -> u32 {
        self.0.random_range(0..n)
    }

    fn backoff(&mut self, base_max_ms: f64) -> BackoffConfig {
        let kind = [
            BackoffKind::None,
            BackoffKind::Constant,
            BackoffKind::Exponential,
            BackoffKind::EqualJitter,
            BackoffKind::FullJitter,
            BackoffKind::DecorrelatedJitter,
        ][self.below(6) as usize];
        let base_ms = self.log_uniform(1.0, base_max_ms);
        BackoffConfig {
            kind,
            base_ms,
            cap_ms: base_ms * self.log_uniform(1.0, 50.0),
            multiplier: self.uniform(1.5, 3.0),
        }
    }

    fn relay(&mut self, latency_ms: f64) -> RelayConfig {
        let workers = self.count(1, 64) as usize;
        let capacity = self.count(1, 2000) as usize;
        let queue = QueueConfig {
            capacity,
            retry_after_ms: self.log_uniform(10.0, 2000.0),
            shed_after_ms: if self.chance(0.3) {
                self.log_uniform(latency_ms, 20.0 * latency_ms)
            } else {
                0.0
            },
            shed_to: if self.chance(0.5) {
                ShedTo::DeadLetter
            } else {
                ShedTo::Fail
            },
            lifo_above: if self.chance(0.2) {
                self.count(1, capacity as u32) as usize
            } else {
                0
            },
        };
        let retry = self.relay_retry(latency_ms);
        let breaker = self.chance(0.4).then(|| self.breaker(latency_ms));
        let rate_limit = self.chance(0.2).then(|| RateLimitConfig {
            requests_max: self.count(1, 500),
            window_ms: self.log_uniform(100.0, 5000.0),
            clients_max: self.count(1, 10_000) as usize,
        });
        let idempotency = IdempotencyConfig {
            ttl_ms: self.log_uniform(100.0, 600_000.0),
            keys_max: self.count(1, 100_000) as usize,
            when_full: if self.chance(0.5) {
                KeysWhenFull::EvictOldest
            } else {
                KeysWhenFull::Refuse
            },
            ..IdempotencyConfig::default()
        };
        let dlq = DlqConfig {
            capacity: self.count(1, 10_000) as usize,
            // A full dead-letter queue that refuses new work waits for an
            // operator's redrive by design: it never heals by itself, so
            // the swarm leaves it out (`when_full = "refuse"`).
            when_full: WhenFull::DropOldest,
            ..DlqConfig::default()
        };
        let concurrency_limit = self.chance(0.15).then(|| {
            let max = workers as u32;
            ConcurrencyLimitConfig::Aimd(AimdConfig {
                initial: self.count(1, max),
                min: 1,
                max,
                ..AimdConfig::default()
            })
        });
        let hedge = self.chance(0.1).then(|| HedgeConfig {
            after_ms: Some(self.log_uniform(latency_ms, 10.0 * latency_ms)),
            percentile: None,
            ..HedgeConfig::default()
        });
        RelayConfig {
            workers,
            jobs_max: 2 * (capacity + workers) + self.count(1, 1000) as usize,
            queue,
            retry,
            breaker,
            rate_limit,
            idempotency,
            dlq,
            history_max: 0,
            concurrency_limit,
            hedge,
            routes: Vec::new(),
        }
    }

    fn relay_retry(&mut self, latency_ms: f64) -> RetryConfig {
        RetryConfig {
            attempts_max: self.count(1, 6),
            attempt_timeout_ms: if self.chance(0.6) {
                self.log_uniform(2.0 * latency_ms, 30.0 * latency_ms)
            } else {
                0.0
            },
            backoff: self.backoff(200.0),
            budget: match self.below(4) {
                0 => Some(BudgetConfig::TokenBucket(TokenBucketConfig {
                    tokens_max: self.log_uniform(1.0, 100.0),
                    tokens_per_success: self.uniform(0.05, 1.0),
                })),
                1 => Some(BudgetConfig::Finagle(FinagleConfig {
                    percent: self.uniform(1.0, 50.0),
                    ..FinagleConfig::default()
                })),
                _ => None,
            },
            retry_breaker: self.chance(0.15).then(|| RetryBreakerConfig {
                threshold: self.uniform(0.05, 0.5),
                ..RetryBreakerConfig::default()
            }),
            honour_retry_after: self.chance(0.5),
            ..RetryConfig::default()
        }
    }

    fn breaker(&mut self, latency_ms: f64) -> BreakerConfig {
        let trip = match self.below(2) {
            0 => TripConfig::ConsecutiveFailures {
                failures: self.count(1, 20),
            },
            _ => TripConfig::FailureRatio {
                ratio: self.uniform(0.1, 0.9),
                window_ms: self.log_uniform(100.0, 10_000.0),
                calls_min: self.count(1, 50),
            },
        };
        BreakerConfig {
            trip,
            success_threshold: self.count(1, 5),
            open_ms: self.log_uniform(10.0 * latency_ms.min(100.0), 10_000.0),
            half_open_probes_max: self.count(1, 5),
            ..BreakerConfig::default()
        }
    }

    fn downstream(&mut self, latency_ms: f64, workers: usize) -> DownstreamConfig {
        let latency = match self.below(4) {
            0 => LatencyConfig::Constant { ms: latency_ms },
            1 => LatencyConfig::Exponential {
                mean_ms: latency_ms,
            },
            2 => {
                // A log-normal with this mean: median = mean / e^(σ²/2).
                let sigma = self.uniform(0.1, 1.2);
                LatencyConfig::LogNormal {
                    median_ms: latency_ms / (sigma * sigma / 2.0).exp(),
                    sigma,
                }
            }
            _ => LatencyConfig::Uniform {
                min_ms: latency_ms / 2.0,
                max_ms: latency_ms * 1.5,
            },
        };
        let failure_rate = if self.chance(0.5) {
            self.uniform(0.0, 0.2)
        } else {
            0.0
        };
        let failure_mix = if self.chance(0.3) {
            FailureMix {
                server_error: self.uniform(0.1, 1.0),
                throttled: self.uniform(0.0, 1.0),
                client_error: self.uniform(0.0, 0.3),
            }
        } else {
            FailureMix::SERVER_ERRORS
        };
        let capacity = self.chance(0.2).then(|| CapacityConfig {
            concurrency_max: self.count((workers as u32 / 2).max(1), 2 * workers as u32),
            slowdown_per_excess: self.uniform(0.1, 2.0),
            failure_rate_over: self.uniform(0.0, 0.3),
        });
        DownstreamConfig {
            latency,
            failure_rate,
            failure_mix,
            honours_idempotency_key: self.chance(0.5),
            capacity,
            load_slope_ms: if self.chance(0.2) {
                self.log_uniform(0.01, 0.2) * latency_ms
            } else {
                0.0
            },
            ..DownstreamConfig::default()
        }
    }

    /// Outages and brownouts of the downstream; returns when the last ends.
    fn faults(&mut self, downstream: &mut DownstreamConfig) -> f64 {
        let mut end: f64 = 0.0;
        for _ in 0..self.below(3) {
            let start_s = self.uniform(1.0, 20.0);
            let end_s = start_s + self.log_uniform(0.2, 15.0);
            end = end.max(end_s);
            if self.chance(0.6) {
                downstream.outages.push(OutageConfig {
                    start_s,
                    end_s,
                    mode: if self.chance(0.5) {
                        OutageMode::FailFast
                    } else {
                        OutageMode::Hang
                    },
                });
            } else {
                downstream.brownouts.push(BrownoutConfig {
                    start_s,
                    end_s,
                    failure_rate: self.uniform(0.2, 1.0),
                    latency_factor: self.uniform(1.0, 5.0),
                });
            }
        }
        end
    }

    /// One to three populations sharing `rate` first tries per second; the
    /// first carries the spike, `(at, length)`, if there is one.
    fn clients(
        &mut self,
        rate: f64,
        latency_ms: f64,
        spike: Option<(f64, f64)>,
        horizon_s: f64,
    ) -> Vec<ClientsConfig> {
        let n = 1 + self.below(3) as usize;
        let mut shares: Vec<f64> = (0..n).map(|_| self.uniform(0.2, 1.0)).collect();
        let total: f64 = shares.iter().sum();
        shares.iter_mut().for_each(|s| *s *= rate / total);
        let mut out = Vec::with_capacity(n);
        for (i, per_s) in shares.into_iter().enumerate() {
            let retry = self.client_retry(latency_ms);
            let spiked = spike.filter(|_| i == 0);
            if spiked.is_none() && self.chance(0.25) {
                // A closed loop offering about `per_s`: population / (think + latency).
                let think_ms = self.log_uniform(latency_ms, 20.0 * latency_ms);
                let population =
                    ((per_s * (think_ms + latency_ms) / 1e3).round() as u32).clamp(1, 5_000);
                out.push(ClientsConfig::ClosedLoop {
                    population,
                    think_ms,
                    requests_per_client: 1_000_000 / population,
                    start_spread_ms: self.log_uniform(1.0, 2000.0),
                    retry,
                });
                continue;
            }
            let (per_s, schedule) = match spiked {
                None => (Some(per_s), Vec::new()),
                Some((at, len)) => {
                    let k = self.log_uniform(2.0, 10.0);
                    let schedule = vec![
                        RatePhase { until_s: at, per_s },
                        RatePhase {
                            until_s: at + len,
                            per_s: (per_s * k).min(4.0 * RATE_MAX),
                        },
                        RatePhase {
                            until_s: horizon_s,
                            per_s,
                        },
                    ];
                    (None, schedule)
                }
            };
            out.push(ClientsConfig::OpenLoop {
                per_s,
                schedule,
                requests_max: None,
                clients: self.count(1, 10_000),
                retry,
            });
        }
        out
    }

    fn client_retry(&mut self, latency_ms: f64) -> ClientRetryConfig {
        ClientRetryConfig {
            attempts_max: self.count(1, 6),
            backoff: self.backoff(1000.0),
            timeout_ms: if self.chance(0.7) {
                self.log_uniform(3.0 * latency_ms, 5000.0_f64.max(6.0 * latency_ms))
            } else {
                0.0
            },
            deadline_ms: if self.chance(0.2) {
                self.log_uniform(10.0 * latency_ms, 30_000.0_f64.max(20.0 * latency_ms))
            } else {
                0.0
            },
            keyed: self.chance(0.8),
            honour_retry_after: self.chance(0.5),
            ..ClientRetryConfig::default()
        }
    }

    fn network(&mut self) -> NetworkConfig {
        if self.chance(0.7) {
            return NetworkConfig::default();
        }
        NetworkConfig {
            client_relay: Some(LatencyConfig::Exponential {
                mean_ms: self.log_uniform(0.1, 50.0),
            }),
            ..NetworkConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_scenarios_are_valid_and_survive_a_trip_through_toml() {
        for seed in 0..500 {
            let s = draw(seed);
            if let Err(e) = s.validate() {
                panic!(
                    "seed {seed}: {e}\n{}",
                    toml::to_string(&s).unwrap_or_default()
                );
            }
            let text = toml::to_string(&s).expect("serialises");
            let back = Scenario::from_toml(&text, "drawn.toml")
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
            assert_eq!(back, s, "seed {seed}");
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_scenario_and_seeds_differ() {
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn every_option_is_drawn_both_ways() {
        let all: Vec<Scenario> = (0..300).map(draw).collect();
        let share = |f: &dyn Fn(&Scenario) -> bool| all.iter().filter(|s| f(s)).count();
        for (name, n) in [
            ("breaker", share(&|s| s.relay.breaker.is_some())),
            ("rate limit", share(&|s| s.relay.rate_limit.is_some())),
            ("budget", share(&|s| s.relay.retry.budget.is_some())),
            ("outage", share(&|s| !s.downstream.outages.is_empty())),
            ("crash", share(&|s| !s.faults.crash.is_empty())),
            (
                "closed loop",
                share(&|s| {
                    s.clients
                        .iter()
                        .any(|c| matches!(c, ClientsConfig::ClosedLoop { .. }))
                }),
            ),
        ] {
            assert!(n > 10 && n < 290, "{name}: {n} of 300");
        }
    }
}
