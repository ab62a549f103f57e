//! Fallback: an answer without the downstream, while a route cannot reach it.
//!
//! A route's fallback answers a request from the last good answer to the
//! same request (a bounded cache keyed by a part of the request the driver
//! chooses, with a maximum age) or from a static answer. It is used while
//! the route's breaker is open (instead of queueing a job that cannot be
//! called) and when a job fails for good (beside its dead letter, which
//! still keeps the work). An answer from a fallback is never the real
//! downstream's: a route whose calls have side effects refuses a fallback
//! unless it says, with `for_side_effects`, that its callers accept that.

use super::config_error::{ensure, parse_ms, ConfigError};
use crate::time::Time;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackConfig {
    /// Keep the last good answer per cache key; absent: no cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<FallbackCacheConfig>,
    /// An answer given when the cache has none (the driver turns the text
    /// into its payload); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_answer: Option<String>,
    /// Answer by fallback even though the route's calls have side effects
    /// (the caller is told the answer is a fallback and the work did not
    /// happen; the job's dead letter still keeps it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub for_side_effects: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackCacheConfig {
    /// Answers kept; the oldest written goes first.
    pub entries_max: usize,
    /// An answer older than this is not served.
    pub max_age_ms: f64,
}

impl Default for FallbackCacheConfig {
    fn default() -> Self {
        FallbackCacheConfig {
            entries_max: 10_000,
            max_age_ms: 60_000.0,
        }
    }
}

/// Cache entries a route may keep.
pub const FALLBACK_ENTRIES_MAX: usize = 10_000_000;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct FallbackSettings {
    pub(super) cache: Option<(usize, Duration)>,
    pub(super) static_answer: Option<String>,
}

impl FallbackConfig {
    /// `side_effect_free`: the route's calls change nothing downstream.
    pub(super) fn check(&self, side_effect_free: bool) -> Result<FallbackSettings, ConfigError> {
        ensure(
            side_effect_free || self.for_side_effects,
            "for_side_effects",
            "a fallback would answer requests whose side effect never happened: set \
             side_effect_free = true on a read-only route, or for_side_effects = true \
             if its callers accept that",
        )?;
        ensure(
            self.cache.is_some() || self.static_answer.is_some(),
            "cache",
            "a fallback needs a cache, a static_answer, or both",
        )?;
        let cache = self
            .cache
            .map(|c| {
                ensure(
                    (1..=FALLBACK_ENTRIES_MAX).contains(&c.entries_max),
                    "cache.entries_max",
                    format!("must be between 1 and {FALLBACK_ENTRIES_MAX}"),
                )?;
                let age = parse_ms(c.max_age_ms, "cache.max_age_ms")?;
                ensure(c.max_age_ms > 0.0, "cache.max_age_ms", "must be > 0")?;
                Ok((c.entries_max, age))
            })
            .transpose()?;
        Ok(FallbackSettings {
            cache,
            static_answer: self.static_answer.clone(),
        })
    }
}

/// Where a fallback answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackFrom {
    /// The last good answer to the same request, `age` old.
    Cache {
        age: Duration,
    },
    Static,
}

impl FallbackFrom {
    pub fn name(self) -> &'static str {
        match self {
            FallbackFrom::Cache { .. } => "cache",
            FallbackFrom::Static => "static",
        }
    }
}

/// A route's fallback: the cache of good answers and the static answer.
#[derive(Clone, Debug)]
pub(super) struct Fallback<P> {
    cache: Option<AnswerCache<P>>,
    static_answer: Option<P>,
}

impl<P: Clone> Fallback<P> {
    pub(super) fn new(s: &FallbackSettings) -> Fallback<P> {
        Fallback {
            cache: s.cache.map(|(max, age)| AnswerCache::new(max, age)),
            static_answer: None,
        }
    }

    pub(super) fn set_static(&mut self, answer: P) {
        self.static_answer = Some(answer);
    }

    /// Keeps a good answer for `key`.
    pub(super) fn remember(&mut self, now: Time, key: u64, answer: &P) {
        if let Some(c) = &mut self.cache {
            c.put(now, key, answer.clone());
        }
    }

    /// An answer for a request with cache key `key`, if there is one.
    pub(super) fn answer(&self, now: Time, key: Option<u64>) -> Option<(P, FallbackFrom)> {
        let cached = key.and_then(|k| self.cache.as_ref()?.get(now, k));
        cached
            .map(|(p, age)| (p.clone(), FallbackFrom::Cache { age }))
            .or_else(|| {
                self.static_answer
                    .clone()
                    .map(|p| (p, FallbackFrom::Static))
            })
    }

    pub(super) fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, AnswerCache::len)
    }
}

/// Good answers by cache key, bounded by `entries_max`: the least recently
/// written goes first. `order` lists writes oldest first; a write that a
/// later one for the same key replaced is skipped when it comes up (its
/// sequence number no longer matches), so every operation is O(1)
/// amortised, and `order` is compacted before it outgrows twice the bound.
#[derive(Clone, Debug)]
struct AnswerCache<P> {
    entries: FxHashMap<u64, (u64, Time, P)>,
    order: VecDeque<(u64, u64)>,
    writes: u64,
    entries_max: usize,
    max_age: Duration,
}

impl<P> AnswerCache<P> {
    fn new(entries_max: usize, max_age: Duration) -> AnswerCache<P> {
        AnswerCache {
            entries: FxHashMap::default(),
            order: VecDeque::new(),
            writes: 0,
            entries_max,
            max_age,
        }
    }

    fn put(&mut self, now: Time, key: u64, answer: P) {
        self.writes += 1;
        self.entries.insert(key, (self.writes, now, answer));
        self.order.push_back((key, self.writes));
        while self.entries.len() > self.entries_max {
            let Some((k, seq)) = self.order.pop_front() else {
                unreachable!("every entry has its write in `order`")
            };
            if self.is_current(k, seq) {
                self.entries.remove(&k);
            }
        }
        if self.order.len() > 2 * self.entries_max + 16 {
            let mut order = std::mem::take(&mut self.order);
            order.retain(|&(k, seq)| self.is_current(k, seq));
            self.order = order;
        }
    }

    /// Whether write `seq` of `key` is the one the cache holds.
    fn is_current(&self, key: u64, seq: u64) -> bool {
        self.entries.get(&key).is_some_and(|e| e.0 == seq)
    }

    fn get(&self, now: Time, key: u64) -> Option<(&P, Duration)> {
        let (_, at, p) = self.entries.get(&key)?;
        let age = now.since(*at);
        (age <= self.max_age).then_some((p, age))
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries_max: usize, max_age_ms: f64) -> FallbackSettings {
        FallbackConfig {
            cache: Some(FallbackCacheConfig {
                entries_max,
                max_age_ms,
            }),
            ..FallbackConfig::default()
        }
        .check(true)
        .expect("valid")
    }

    fn at_ms(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn a_cached_answer_is_served_until_it_is_too_old() {
        let mut f = Fallback::new(&settings(10, 1_000.0));
        f.remember(at_ms(0), 7, &"seven");
        assert_eq!(
            f.answer(at_ms(400), Some(7)),
            Some((
                "seven",
                FallbackFrom::Cache {
                    age: Duration::from_millis(400)
                }
            ))
        );
        assert_eq!(f.answer(at_ms(1_001), Some(7)), None, "too old");
        assert_eq!(f.answer(at_ms(400), Some(8)), None, "never seen");
        assert_eq!(f.answer(at_ms(400), None), None, "no cache key");
    }

    #[test]
    fn the_cache_forgets_the_least_recently_written_first() {
        let mut f = Fallback::new(&settings(2, 1e6));
        f.remember(at_ms(0), 1, &1);
        f.remember(at_ms(1), 2, &2);
        f.remember(at_ms(2), 1, &10);
        f.remember(at_ms(3), 3, &3);
        assert_eq!(f.cached(), 2);
        assert_eq!(
            f.answer(at_ms(4), Some(2)),
            None,
            "2 was written least recently"
        );
        assert_eq!(f.answer(at_ms(4), Some(1)).map(|a| a.0), Some(10));
    }

    #[test]
    fn rewriting_keys_keeps_the_cache_and_its_log_bounded() {
        let mut f = Fallback::new(&settings(3, 1e6));
        for i in 0..1_000u64 {
            f.remember(at_ms(i), i % 5, &i);
        }
        assert_eq!(f.cached(), 3);
        let c = f.cache.as_ref().expect("a cache");
        assert!(c.order.len() <= 2 * 3 + 16, "{}", c.order.len());
        // The last three written are 997 % 5 = 2, 998 % 5 = 3, 999 % 5 = 4.
        for (key, answer) in [(2, 997), (3, 998), (4, 999)] {
            assert_eq!(f.answer(at_ms(1_000), Some(key)).map(|a| a.0), Some(answer));
        }
        assert_eq!(f.answer(at_ms(1_000), Some(0)), None);
    }

    #[test]
    fn the_static_answer_covers_what_the_cache_does_not() {
        let mut f = Fallback::new(&settings(2, 1e6));
        f.set_static(0);
        f.remember(at_ms(0), 1, &1);
        assert_eq!(f.answer(at_ms(1), Some(1)).map(|a| a.0), Some(1));
        assert_eq!(f.answer(at_ms(1), Some(2)), Some((0, FallbackFrom::Static)));
    }

    #[test]
    fn a_route_with_side_effects_refuses_a_fallback_unless_it_says_so() {
        let cfg = FallbackConfig {
            static_answer: Some("{}".into()),
            ..FallbackConfig::default()
        };
        assert_eq!(cfg.check(false).unwrap_err().field, "for_side_effects");
        assert!(cfg.check(true).is_ok());
        let allowed = FallbackConfig {
            for_side_effects: true,
            ..cfg
        };
        assert!(allowed.check(false).is_ok());
        let empty = FallbackConfig::default();
        assert_eq!(empty.check(true).unwrap_err().field, "cache");
    }
}
