//! The standard benchmark workloads (`relay-std`, `relay-ovl`,
//! `relay-scale`) and the M/M/c/K check, as scenarios.
//!
//! They mirror the shared workload definition: Poisson arrivals into a FIFO
//! of capacity K in front of c workers with exponential service, each attempt
//! failing with probability p, up to three retries with full jitter (base
//! 10 ms, cap 1 s) that re-enter the queue like arrivals and are shed (here:
//! dead-lettered) when it is full. They run through the real `Relay`, with
//! idempotency keys and statistics on.

use super::clients::{ClientRetryConfig, ClientsConfig};
use super::downstream::{DownstreamConfig, LatencyConfig};
use super::network::NetworkConfig;
use super::scenario::Scenario;
use crate::relay::{
    BackoffConfig, BackoffKind, DlqConfig, IdempotencyConfig, QueueConfig, RelayConfig, RetryConfig,
};

/// The knobs that tell the standard workloads apart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    pub arrivals: u64,
    pub per_s: f64,
    pub service_mean_ms: f64,
    pub workers: usize,
    pub queue: usize,
    pub failure_rate: f64,
    pub retries: u32,
}

pub const NAMES: [&str; 3] = ["relay-std", "relay-ovl", "relay-scale"];

impl Workload {
    pub fn named(name: &str) -> Option<Workload> {
        let std = Workload {
            arrivals: 1_000_000,
            per_s: 720.0,
            service_mean_ms: 10.0,
            workers: 10,
            queue: 100,
            failure_rate: 0.2,
            retries: 3,
        };
        match name {
            "relay-std" => Some(std),
            "relay-ovl" => Some(Workload {
                per_s: 900.0,
                ..std
            }),
            "relay-scale" => Some(Workload {
                per_s: 100_000.0,
                service_mean_ms: 1000.0,
                workers: 100_000,
                queue: 100_000,
                ..std
            }),
            _ => None,
        }
    }

    /// An M/M/c/K queue: no failures, no retries (K counts waiting room only).
    pub fn mmck(
        arrivals: u64,
        per_s: f64,
        service_mean_ms: f64,
        workers: usize,
        queue: usize,
    ) -> Workload {
        Workload {
            arrivals,
            per_s,
            service_mean_ms,
            workers,
            queue,
            failure_rate: 0.0,
            retries: 0,
        }
    }

    pub fn scenario(&self, name: &str) -> Scenario {
        let room = self.queue + self.workers;
        let relay = RelayConfig {
            workers: self.workers,
            jobs_max: (4 * room).max(10_000),
            queue: QueueConfig {
                capacity: self.queue,
                retry_after_ms: 1000.0,
                ..QueueConfig::default()
            },
            retry: RetryConfig {
                attempts_max: self.retries + 1,
                attempt_timeout_ms: 0.0,
                backoff: BackoffConfig {
                    kind: BackoffKind::FullJitter,
                    base_ms: 10.0,
                    cap_ms: 1000.0,
                    multiplier: 2.0,
                },
                ..RetryConfig::default()
            },
            breaker: None,
            rate_limit: None,
            idempotency: IdempotencyConfig {
                keys_max: (room + room / 10).max(100_000),
                ..IdempotencyConfig::default()
            },
            dlq: DlqConfig {
                capacity: 1_000_000,
                ..DlqConfig::default()
            },
            history_max: 0,
            concurrency_limit: None,
            hedge: None,
            routes: Vec::new(),
        };
        Scenario {
            name: name.to_string(),
            description: String::new(),
            seed: 1,
            horizon_s: 0.0,
            deadline_ms: None,
            relay,
            downstream: DownstreamConfig {
                latency: LatencyConfig::Exponential {
                    mean_ms: self.service_mean_ms,
                },
                failure_rate: self.failure_rate,
                ..DownstreamConfig::default()
            },
            network: NetworkConfig::default(),
            store: Default::default(),
            faults: Default::default(),
            clients: vec![ClientsConfig::OpenLoop {
                per_s: Some(self.per_s),
                schedule: vec![],
                requests_max: Some(self.arrivals),
                clients: 1,
                retry: ClientRetryConfig::default(),
            }],
            routes: Vec::new(),
        }
    }
}
