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
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests a client may make per window (and in one burst).
    pub requests_max: u32,
    pub window_ms: f64,
    /// Clients tracked at once; beyond it, the client idle the longest is
    /// forgotten if its bucket is full again, and a new client is refused
    /// only while every bucket is in use.
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
    /// The same clients ordered by that time: the first is the one idle the
    /// longest, so a full table finds an evictable bucket in O(log n).
    by_next: BTreeSet<(u64, u64)>,
    interval_ns: u64,
    tolerance_ns: u64,
    clients_max: usize,
    /// New clients refused because every bucket was in use.
    table_full: u64,
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
            by_next: BTreeSet::new(),
            interval_ns,
            tolerance_ns: interval_ns * (requests_max - 1),
            clients_max: settings.clients_max,
            table_full: 0,
        }
    }

    /// Takes a token for `client`, or says how long until one is back.
    pub fn check(&mut self, now: Time, client: u64) -> Result<(), Duration> {
        let now_ns = now.as_nanos();
        let tat = match self.next_ns.get(&client) {
            Some(&tat) => tat,
            None => {
                self.make_room(now_ns)?;
                now_ns
            }
        };
        let start = tat.max(now_ns);
        let ahead = start - now_ns;
        if ahead > self.tolerance_ns {
            return Err(Duration::from_nanos(ahead - self.tolerance_ns));
        }
        self.by_next.remove(&(tat, client));
        self.by_next.insert((start + self.interval_ns, client));
        self.next_ns.insert(client, start + self.interval_ns);
        debug_assert_eq!(self.by_next.len(), self.next_ns.len());
        debug_assert!(self.next_ns.len() <= self.clients_max);
        Ok(())
    }

    /// Makes room for one new client: forgets the client idle the longest if
    /// its bucket is full again (it is as good as new, so nothing is lost);
    /// when every bucket is still in use, says when the first one will be
    /// full, and counts the refusal.
    fn make_room(&mut self, now_ns: u64) -> Result<(), Duration> {
        if self.next_ns.len() < self.clients_max {
            return Ok(());
        }
        let Some(&(tat, client)) = self.by_next.first() else {
            unreachable!("a full table has a first client")
        };
        if tat > now_ns {
            self.table_full += 1;
            return Err(Duration::from_nanos(tat - now_ns));
        }
        self.by_next.pop_first();
        self.next_ns.remove(&client);
        Ok(())
    }

    /// New clients refused because every bucket was in use.
    pub fn table_full(&self) -> u64 {
        self.table_full
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

    /// A table full of distinct clients does not lock a new one out once
    /// their buckets have refilled, and while every bucket is still in use
    /// the refusal says when the first one will be free, not one interval.
    #[test]
    fn a_full_table_admits_new_clients_once_a_bucket_is_full_again() {
        let mut l = limiter(10, 1000.0, 100);
        for c in 0..100 {
            for _ in 0..10 {
                assert_eq!(l.check(Time::ZERO, c), Ok(()));
            }
        }
        assert_eq!(
            l.check(Time::from_millis(1), 1000),
            Err(Duration::from_millis(999)),
            "every bucket refills at 1 s"
        );
        assert_eq!(l.check(Time::from_millis(1000), 1000), Ok(()));
        for c in 1001..1100 {
            assert_eq!(l.check(Time::from_millis(1000), c), Ok(()), "client {c}");
        }
        assert!(l.next_ns.len() <= 100);
        assert_eq!(l.table_full(), 1, "the one refusal is counted");
    }
}
