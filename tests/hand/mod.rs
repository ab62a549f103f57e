//! A relay driven by hand on a fake clock, shared by the tests that step
//! it one input at a time.

#![allow(dead_code)]

use resilient_relay::relay::{BackoffKind, Relay, RelayConfig};
use resilient_relay::rng::{Domain, Seed};
use resilient_relay::time::Time;

pub type TestRelay = Relay<u64, u32>;

pub fn relay(cfg: RelayConfig) -> TestRelay {
    Relay::new(
        &cfg.check().expect("valid test config"),
        Seed(1).stream(Domain::Relay, 0),
    )
}

/// One worker, a queue of two, ten jobs at most, `attempts_max` attempts of
/// 100 ms each, a constant 10 ms backoff, no breaker.
pub fn small(attempts_max: u32) -> RelayConfig {
    let mut cfg = RelayConfig {
        workers: 1,
        jobs_max: 10,
        breaker: None,
        ..RelayConfig::default()
    };
    cfg.queue.capacity = 2;
    cfg.retry.attempts_max = attempts_max;
    cfg.retry.attempt_timeout_ms = 100.0;
    cfg.retry.backoff.base_ms = 10.0;
    cfg.retry.backoff.kind = BackoffKind::Constant;
    cfg
}

pub fn ms(t: u64) -> Time {
    Time::from_millis(t)
}
