//! Rate limiter: a token bucket per client.
//!
//! One client in a retry loop, or one misbehaving integration, can take the
//! whole queue and starve everyone else. A per-client token bucket caps each
//! client at `requests_max` per `window_ms` (bursts up to `requests_max`),
//! answering 429 with the time until a token is back.
//!
//! A bucket starts full, so a client may send `requests_max` at once and
//! then one every `window_ms / requests_max`: over any sliding window it can
//! get up to `2 · requests_max − 1` through (a full burst, then the refill).
//!
//! The bucket is kept in its GCRA form (the "generic cell rate algorithm"):
//! one integer per client, the theoretical arrival time of its next request,
//! which is exact, needs no refill timer, and is equivalent to a token bucket.

use super::config_error::{ensure, parse_ms, ConfigError};
use crate::time::duration_nanos;
use crate::time::Time;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests a client may make per window (and in one burst).
    pub requests_max: u32,
    pub window_ms: f64,
    /// Clients tracked at once; beyond it, idle clients are forgotten first.
    pub clients_max: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_max: 100,
            window_ms: 1000.0,
            clients_max: 100_000,
        }
    }
}

/// A checked [`RateLimitConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub(super) requests_max: u32,
    pub(super) window: Duration,
    pub(super) clients_max: usize,
}

impl RateLimitConfig {
    /// A window of zero would let no request through: refused here.
    pub fn check(&self) -> Result<RateLimitSettings, ConfigError> {
        ensure(self.requests_max >= 1, "requests_max", "must be ≥ 1")?;
        let window = parse_ms(self.window_ms, "window_ms")?;
        ensure(self.window_ms > 0.0, "window_ms", "must be > 0")?;
        ensure(self.clients_max >= 1, "clients_max", "must be ≥ 1")?;
        Ok(RateLimitSettings {
            requests_max: self.requests_max,
            window,
            clients_max: self.clients_max,
        })
    }
}

#[derive(Clone, Debug)]
pub struct RateLimiter {
    /// Client → theoretical arrival time of its next conforming request.
    next_ns: FxHashMap<u64, u64>,
    interval_ns: u64,
    tolerance_ns: u64,
    clients_max: usize,
    /// No client can be idle before this (ns): a full table is not swept
    /// again until then, so a flood of new clients costs O(1) each.
    sweep_not_before_ns: u64,
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> RateLimiter {
        assert!(
            settings.requests_max >= 1 && settings.clients_max >= 1,
            "checked by RateLimitConfig::check"
        );
        let requests_max = u64::from(settings.requests_max);
        // A window shorter than one nanosecond per request still spaces them.
        let interval_ns = (duration_nanos(settings.window) / requests_max).max(1);
        RateLimiter {
            next_ns: FxHashMap::default(),
            interval_ns,
            tolerance_ns: interval_ns * (requests_max - 1),
            clients_max: settings.clients_max,
            sweep_not_before_ns: 0,
        }
    }

    /// Takes a token for `client`, or says how long until one is back.
    pub fn check(&mut self, now: Time, client: u64) -> Result<(), Duration> {
        let now_ns = now.as_nanos();
        if !self.next_ns.contains_key(&client) && !self.make_room(now_ns) {
            return Err(Duration::from_nanos(self.interval_ns));
        }
        let tat = self.next_ns.entry(client).or_insert(now_ns);
        let start = (*tat).max(now_ns);
        let ahead = start - now_ns;
        if ahead > self.tolerance_ns {
            return Err(Duration::from_nanos(ahead - self.tolerance_ns));
        }
        *tat = start + self.interval_ns;
        Ok(())
    }

    /// Forgets clients whose bucket is full again (they are as good as new).
    fn make_room(&mut self, now_ns: u64) -> bool {
        if self.next_ns.len() < self.clients_max {
            return true;
        }
        if now_ns < self.sweep_not_before_ns {
            return false;
        }
        self.next_ns.retain(|_, tat| *tat > now_ns);
        self.sweep_not_before_ns = self.next_ns.values().copied().min().unwrap_or(0);
        self.next_ns.len() < self.clients_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests_max: u32, window_ms: f64, clients_max: usize) -> RateLimiter {
        let cfg = RateLimitConfig {
            requests_max,
            window_ms,
            clients_max,
        };
        RateLimiter::new(&cfg.check().expect("valid"))
    }

    #[test]
    fn allows_a_burst_then_one_per_interval() {
        let mut l = limiter(3, 300.0, 10);
        let t0 = Time::ZERO;
        for _ in 0..3 {
            assert_eq!(l.check(t0, 1), Ok(()));
        }
        assert_eq!(l.check(t0, 1), Err(Duration::from_millis(100)));
        assert_eq!(
            l.check(Time::from_millis(99), 1),
            Err(Duration::from_millis(1))
        );
        assert_eq!(l.check(Time::from_millis(100), 1), Ok(()));
        assert!(l.check(Time::from_millis(100), 1).is_err());
    }

    #[test]
    fn clients_have_separate_buckets() {
        let mut l = limiter(1, 1000.0, 10);
        assert_eq!(l.check(Time::ZERO, 1), Ok(()));
        assert!(l.check(Time::ZERO, 1).is_err());
        assert_eq!(l.check(Time::ZERO, 2), Ok(()));
    }

    #[test]
    fn client_table_is_bounded_and_forgets_idle_clients() {
        let mut l = limiter(1, 1000.0, 2);
        assert!(l.check(Time::ZERO, 1).is_ok());
        assert!(l.check(Time::ZERO, 2).is_ok());
        assert!(
            l.check(Time::ZERO, 3).is_err(),
            "table full of busy clients"
        );
        assert!(
            l.check(Time::from_millis(1000), 3).is_ok(),
            "clients 1 and 2 went idle"
        );
        assert!(l.next_ns.len() <= 2);
    }
}
