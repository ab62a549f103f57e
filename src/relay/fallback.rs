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
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
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

/// Good answers by cache key, in the order they were last written, bounded
/// by `entries_max` (the least recently written goes first).
#[derive(Clone, Debug)]
struct AnswerCache<P> {
    entries: IndexMap<u64, (Time, P)>,
    entries_max: usize,
    max_age: Duration,
}

impl<P> AnswerCache<P> {
    fn new(entries_max: usize, max_age: Duration) -> AnswerCache<P> {
        AnswerCache {
            entries: IndexMap::with_capacity(entries_max.min(1 << 12)),
            entries_max,
            max_age,
        }
    }

    fn put(&mut self, now: Time, key: u64, answer: P) {
        // Re-insert at the end: the map's order is the order of writing.
        self.entries.shift_remove(&key);
        if self.entries.len() >= self.entries_max {
            self.entries.shift_remove_index(0);
        }
        self.entries.insert(key, (now, answer));
    }

    fn get(&self, now: Time, key: u64) -> Option<(&P, Duration)> {
        let (at, p) = self.entries.get(&key)?;
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
