//! Routes: several downstreams behind one relay, each isolated from the
//! others by a bulkhead.
//!
//! A route is a name and everything that is about its downstream: its retry
//! policy (with its budget), its breaker, its rate limit, its queue and
//! retry lane, its worker slots, and its fallback. What is about the relay
//! stays shared: the job table, the idempotency records, the dead-letter
//! queue (each letter names its route), hedging and the adaptive
//! concurrency limit.
//!
//! The bulkhead: every call holds one of the relay's `workers` (the common
//! pool) and, when the route sets `slots`, one of the route's own. Without
//! `slots` a route may take the whole pool, so a downstream that hangs
//! holds every worker until its calls time out and the other routes wait
//! (a shared pool). Slots that add up to `workers` partition the pool: no
//! route can take another's. Slots that add up to more share the rest.
//!
//! Without `[[relay.routes]]` the relay has one route, `default`, made of
//! the top-level `retry`, `breaker` and `rate_limit`: the relay as it was.
//! With them, those top-level sections are what a route that leaves its
//! own out inherits, and the first route is the default one.

use super::answer::Refusal;
use super::backoff::Backoff;
use super::breaker::{Breaker, BreakerConfig, BreakerSettings};
use super::config_error::{ensure, ConfigError};
use super::fallback::{Fallback, FallbackConfig, FallbackSettings};
use super::queue::{BoundedQueue, QueueSettings};
use super::rate_limit::{RateLimitConfig, RateLimitSettings, RateLimiter};
use super::retry::{CallError, GiveUp, RetryConfig, RetryPolicy, RetrySettings};
use super::retry_lane::RetryLane;
use super::stats::LatencyHistogram;
use super::workers::WorkerPool;
use enum_map::EnumMap;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A route's index in the relay's settings; 0 is the default route.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RouteId(pub u16);

impl RouteId {
    pub const DEFAULT: RouteId = RouteId(0);

    pub fn is_default(&self) -> bool {
        *self == RouteId::DEFAULT
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Routes a relay may have.
pub const ROUTES_MAX: usize = 64;

/// Longest route name (it appears in URLs, metrics and traces).
const NAME_MAX: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// `[a-z0-9_-]`, unique: `POST /relay/{name}`.
    pub name: String,
    /// Calls in flight this route may hold at once, out of the relay's
    /// `workers`; absent: the whole pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<usize>,
    /// Absent: the relay's `retry`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Absent: the relay's `breaker` (each route has its own, in its own state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerConfig>,
    /// Absent: the relay's `rate_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// The route's calls change nothing downstream (reads): a fallback may
    /// answer them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub side_effect_free: bool,
    /// Absent: no fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackConfig>,
}

/// A checked [`RouteConfig`], with what it inherited filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSettings {
    pub(super) name: String,
    pub(super) slots: usize,
    pub(super) retry: RetrySettings,
    pub(super) breaker: Option<BreakerSettings>,
    pub(super) rate_limit: Option<RateLimitSettings>,
    pub(super) fallback: Option<FallbackSettings>,
}

impl RouteSettings {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The text of the static fallback answer, if the route has one.
    pub fn static_answer(&self) -> Option<&str> {
        self.fallback.as_ref()?.static_answer.as_deref()
    }
}

/// What a route inherits from the relay's top level.
pub(super) struct Inherited<'a> {
    pub(super) workers: usize,
    pub(super) retry: &'a RetryConfig,
    pub(super) breaker: Option<BreakerConfig>,
    pub(super) rate_limit: Option<RateLimitConfig>,
}

impl RouteConfig {
    pub(super) fn check(&self, top: &Inherited<'_>) -> Result<RouteSettings, ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= NAME_MAX
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        ensure(
            name_ok,
            "name",
            format!(
                "must be 1 to {NAME_MAX} of a-z, 0-9, - and _, got {:?}",
                self.name
            ),
        )?;
        let slots = self.slots.unwrap_or(top.workers);
        ensure(
            (1..=top.workers).contains(&slots),
            "slots",
            format!(
                "must be between 1 and the relay's workers ({}), got {slots}",
                top.workers
            ),
        )?;
        let retry = self
            .retry
            .as_ref()
            .unwrap_or(top.retry)
            .check()
            .map_err(|e| e.within("retry"))?;
        let breaker = self
            .breaker
            .or(top.breaker)
            .map(|b| b.check().map_err(|e| e.within("breaker")))
            .transpose()?;
        let rate_limit = self
            .rate_limit
            .or(top.rate_limit)
            .map(|r| r.check().map_err(|e| e.within("rate_limit")))
            .transpose()?;
        let fallback = self
            .fallback
            .as_ref()
            .map(|f| {
                f.check(self.side_effect_free)
                    .map_err(|e| e.within("fallback"))
            })
            .transpose()?;
        Ok(RouteSettings {
            name: self.name.clone(),
            slots,
            retry,
            breaker,
            rate_limit,
            fallback,
        })
    }
}

/// One route's RED counts (the relay's [`super::Stats`] hold the totals).
#[derive(Clone, Debug, Default)]
pub struct RouteStats {
    pub requests: u64,
    pub accepted: u64,
    /// By reason, as the relay's totals.
    pub refused: EnumMap<Refusal, u64>,
    /// Answered from the fallback at the door (the breaker was open).
    pub fallbacks_at_door: u64,
    /// Jobs that failed for good and were answered from the fallback.
    pub fallbacks_after_failure: u64,
    pub attempts: u64,
    pub attempt_errors: EnumMap<CallError, u64>,
    pub succeeded: u64,
    /// By reason, as the relay's totals.
    pub dead_lettered: EnumMap<GiveUp, u64>,
    /// Accepted → success, per job.
    pub job_latency: LatencyHistogram,
}

impl RouteStats {
    /// Adds an earlier life's counts (after a restart).
    pub fn absorb(&mut self, o: &RouteStats) {
        self.requests += o.requests;
        self.accepted += o.accepted;
        for (why, n) in &o.refused {
            self.refused[why] += n;
        }
        self.fallbacks_at_door += o.fallbacks_at_door;
        self.fallbacks_after_failure += o.fallbacks_after_failure;
        self.attempts += o.attempts;
        for (e, n) in &o.attempt_errors {
            self.attempt_errors[e] += n;
        }
        self.succeeded += o.succeeded;
        for (why, n) in &o.dead_lettered {
            self.dead_lettered[why] += n;
        }
        self.job_latency.add(&o.job_latency);
    }
}

/// A route's state inside the relay.
pub(super) struct Route<P> {
    pub(super) backoff: Backoff,
    pub(super) attempt_timeout: Option<Duration>,
    pub(super) honour_retry_after: bool,
    pub(super) queue: BoundedQueue<super::job::JobId>,
    pub(super) retry_lane: RetryLane,
    pub(super) slots: WorkerPool,
    pub(super) retry: RetryPolicy,
    pub(super) breaker: Option<Breaker>,
    pub(super) limiter: Option<RateLimiter>,
    pub(super) fallback: Option<Fallback<P>>,
}

impl<P: Clone> Route<P> {
    pub(super) fn new(s: &RouteSettings, queue: &QueueSettings, jobs_max: usize) -> Route<P> {
        Route {
            backoff: s.retry.backoff,
            attempt_timeout: s.retry.attempt_timeout,
            honour_retry_after: s.retry.honour_retry_after,
            queue: BoundedQueue::new(queue),
            retry_lane: RetryLane::new(jobs_max),
            slots: WorkerPool::new(s.slots),
            retry: RetryPolicy::new(&s.retry),
            breaker: s.breaker.as_ref().map(Breaker::new),
            limiter: s.rate_limit.as_ref().map(RateLimiter::new),
            fallback: s.fallback.as_ref().map(Fallback::new),
        }
    }

    /// A job of this route waits for a worker.
    pub(super) fn has_waiting_work(&self) -> bool {
        !self.queue.is_empty() || !self.retry_lane.is_empty()
    }

    /// The breaker is open: no call of this route can start now.
    pub(super) fn is_open(&self) -> bool {
        self.breaker
            .as_ref()
            .is_some_and(|b| b.state() == super::breaker::BreakerState::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(retry: &RetryConfig) -> Inherited<'_> {
        Inherited {
            workers: 10,
            retry,
            breaker: Some(BreakerConfig::default()),
            rate_limit: None,
        }
    }

    #[test]
    fn a_route_inherits_what_it_leaves_out() {
        let retry = RetryConfig::default();
        let r = RouteConfig {
            name: "search".into(),
            ..RouteConfig::default()
        };
        let s = r.check(&top(&retry)).expect("valid");
        assert_eq!(s.slots, 10, "the whole pool");
        assert_eq!(s.retry, retry.check().expect("valid"));
        assert!(s.breaker.is_some(), "the relay's breaker, as its own");
    }

    #[test]
    fn names_and_slots_are_checked() {
        let retry = RetryConfig::default();
        let bad = |r: RouteConfig| r.check(&top(&retry)).unwrap_err().field;
        let named = |name: &str| RouteConfig {
            name: name.into(),
            ..RouteConfig::default()
        };
        assert_eq!(bad(named("")), "name");
        assert_eq!(bad(named("Search")), "name");
        assert_eq!(bad(named("a/b")), "name");
        for slots in [0, 11] {
            let r = RouteConfig {
                slots: Some(slots),
                ..named("a")
            };
            assert_eq!(bad(r), "slots");
        }
        let r = RouteConfig {
            fallback: Some(FallbackConfig {
                static_answer: Some("x".into()),
                ..FallbackConfig::default()
            }),
            ..named("orders")
        };
        assert_eq!(bad(r), "fallback.for_side_effects");
    }
}
