//! Idempotency store: the same request twice has one effect.
//!
//! Clients retry when they do not hear back, so a relay sees the same logical
//! request more than once. Following Stripe's idempotent requests, the client
//! names each logical request with a key; the store remembers what happened
//! under that key for a while (24 hours by default):
//!
//! - a new key starts a job;
//! - the same key while its job runs is a conflict (HTTP 409): wait, do not
//!   start a second job;
//! - the same key after success replays the stored answer (no second call);
//! - the same key with a different payload is a client bug (HTTP 422).
//!
//! A job that ends in the dead-letter queue releases its key, so the client
//! may try again. The store is bounded, and what a full store does is a
//! stated policy, [`KeysWhenFull`]: forget the oldest completed record early
//! (`evict-oldest`, the default: the relay stays available, but the replay
//! window shrinks to however long the store holds records at the arrival
//! rate, and a key re-sent after that runs again), or refuse new keys
//! (`refuse`: 503 keys-full until the oldest record's TTL is up, so every
//! replay promise is kept). Either way, if every record is still in flight,
//! new keys are refused. [`ReplayWindow`] says how far back replays really
//! reach.

use super::config_error::{ensure, parse_ms, ConfigError};
use super::job::JobId;
use crate::time::Time;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::hash::Hash;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// How long a completed answer is replayed.
    pub ttl_ms: f64,
    /// Keys remembered at once, in flight or completed.
    pub keys_max: usize,
    /// Refuse requests without a key.
    pub required: bool,
    /// Longest key accepted, in bytes.
    pub key_bytes_max: usize,
    pub when_full: KeysWhenFull,
}

/// What a full idempotency store does with a new key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeysWhenFull {
    /// Forget the oldest completed record before its TTL (counted).
    #[default]
    EvictOldest,
    /// Keep every record for its whole TTL: refuse the new key (503).
    Refuse,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            ttl_ms: 24.0 * 3600.0 * 1000.0,
            keys_max: 100_000,
            required: false,
            key_bytes_max: 255,
            when_full: KeysWhenFull::default(),
        }
    }
}

/// A checked [`IdempotencyConfig`]: what the store itself needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdempotencySettings {
    pub(super) ttl: Duration,
    pub(super) keys_max: usize,
    pub(super) required: bool,
    pub(super) when_full: KeysWhenFull,
}

impl IdempotencyConfig {
    /// The TTL as a duration; `key_bytes_max` stays with the config, since
    /// the HTTP layer checks key lengths before the relay sees a key.
    pub fn check(&self) -> Result<IdempotencySettings, ConfigError> {
        let ttl = parse_ms(self.ttl_ms, "ttl_ms")?;
        ensure(self.keys_max >= 1, "keys_max", "must be ≥ 1")?;
        ensure(
            self.keys_max <= 100_000_000,
            "keys_max",
            "must be ≤ 100,000,000",
        )?;
        ensure(self.key_bytes_max >= 1, "key_bytes_max", "must be ≥ 1")?;
        Ok(IdempotencySettings {
            ttl,
            keys_max: self.keys_max,
            required: self.required,
            when_full: self.when_full,
        })
    }
}

/// What the store says about a request's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin<R> {
    /// New key: recorded as in flight for the given job.
    Started,
    /// The key's job is still running.
    InFlight(JobId),
    /// The key completed: here is the stored answer.
    Replay { job: JobId, response: R },
    /// The key was used with another payload.
    Mismatch,
    /// Every remembered key is still in flight.
    Full,
}

#[derive(Clone, Debug)]
enum Record<R> {
    InFlight {
        job: JobId,
        fingerprint: u64,
    },
    Completed {
        job: JobId,
        fingerprint: u64,
        response: R,
    },
}

impl<R> Record<R> {
    fn fingerprint(&self) -> u64 {
        match self {
            Record::InFlight { fingerprint, .. } | Record::Completed { fingerprint, .. } => {
                *fingerprint
            }
        }
    }
}

/// Key → in flight or completed, with expiry in completion order.
#[derive(Clone, Debug)]
pub struct IdempotencyStore<K, R> {
    records: FxHashMap<K, Record<R>>,
    /// Completed keys by expiry time. The TTL is fixed and completions come
    /// in time order, so a FIFO is sorted. Entries whose record has since
    /// changed are skipped when they surface.
    expiry: VecDeque<(Time, K, JobId)>,
    ttl: Duration,
    keys_max: usize,
    when_full: KeysWhenFull,
    evicted_early: u64,
    /// Age of the last record forgotten early, and of the youngest ever.
    evicted_age_last: Option<Duration>,
    evicted_age_min: Option<Duration>,
    forgotten: Option<K>,
}

/// How far back a replay really reaches. With no early eviction it is the
/// TTL; a full store under `evict-oldest` forgets records at the age given
/// here, and a key re-sent later than that runs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReplayWindow {
    pub ttl: Duration,
    /// Age of the oldest completed record held now.
    pub oldest_held_age: Option<Duration>,
    /// Age of the last record forgotten before its TTL: the effective replay
    /// window while the store stays full.
    pub evicted_age_last: Option<Duration>,
    /// The youngest age at which a record was ever forgotten early.
    pub evicted_age_min: Option<Duration>,
}

/// Stale expiry entries a look-up of the oldest record steps over at most.
const OLDEST_SCAN_MAX: usize = 64;

impl<K: Hash + Eq + Clone, R: Clone> IdempotencyStore<K, R> {
    pub fn new(settings: &IdempotencySettings) -> Self {
        assert!(
            settings.keys_max >= 1,
            "checked by IdempotencyConfig::check"
        );
        IdempotencyStore {
            records: FxHashMap::default(),
            expiry: VecDeque::new(),
            ttl: settings.ttl,
            keys_max: settings.keys_max,
            when_full: settings.when_full,
            evicted_early: 0,
            evicted_age_last: None,
            evicted_age_min: None,
            forgotten: None,
        }
    }

    /// Looks `key` up and, if it is new, records it as in flight for `job`.
    pub fn begin(&mut self, now: Time, key: &K, fingerprint: u64, job: JobId) -> Begin<R> {
        if let Some(known) = self.peek(now, key, fingerprint) {
            return known;
        }
        if self.records.len() >= self.keys_max && !self.evict_oldest_completed(now) {
            return Begin::Full;
        }
        self.records
            .insert(key.clone(), Record::InFlight { job, fingerprint });
        debug_assert!(self.records.len() <= self.keys_max);
        Begin::Started
    }

    /// What the store knows of `key`, without recording anything: `None`
    /// for a key it does not hold.
    pub fn peek(&mut self, now: Time, key: &K, fingerprint: u64) -> Option<Begin<R>> {
        self.handle_timeout(now);
        let record = self.records.get(key)?;
        if record.fingerprint() != fingerprint {
            return Some(Begin::Mismatch);
        }
        Some(match record {
            Record::InFlight { job, .. } => Begin::InFlight(*job),
            Record::Completed { job, response, .. } => Begin::Replay {
                job: *job,
                response: response.clone(),
            },
        })
    }

    /// The key's job succeeded: remember the answer until `now + ttl`.
    pub fn complete(&mut self, now: Time, key: &K, response: R) {
        #[cfg(test)]
        if crate::planted::active(crate::planted::Bug::ForgetsSuccess) {
            self.records.remove(key);
            return;
        }
        let Some(record) = self.records.get_mut(key) else {
            return;
        };
        let Record::InFlight { job, fingerprint } = *record else {
            return;
        };
        let expires = now + self.ttl;
        *record = Record::Completed {
            job,
            fingerprint,
            response,
        };
        self.expiry.push_back((expires, key.clone(), job));
    }

    /// Forgets an in-flight key: its job was refused or dead-lettered.
    pub fn release(&mut self, key: &K) {
        if matches!(self.records.get(key), Some(Record::InFlight { .. })) {
            self.records.remove(key);
        }
    }

    /// Drops records whose time is up. Safe to call early or twice.
    pub fn handle_timeout(&mut self, now: Time) {
        while self.expiry.front().is_some_and(|(t, _, _)| *t <= now) {
            self.pop_expiry();
        }
    }

    /// Removes the front expiry entry's record if it is still the same one;
    /// returns whether a record was removed. One hash look-up in the common
    /// case: remove first, put back in the rare case the key was reused.
    fn pop_expiry(&mut self) -> Option<K> {
        let (_, key, job) = self.expiry.pop_front()?;
        match self.records.remove(&key) {
            Some(Record::Completed { job: j, .. }) if j == job => Some(key),
            Some(other) => {
                self.records.insert(key, other);
                None
            }
            None => None,
        }
    }

    /// Under `evict-oldest`, forgets the oldest completed record and notes
    /// its age; under `refuse`, forgets nothing.
    fn evict_oldest_completed(&mut self, now: Time) -> bool {
        if self.when_full == KeysWhenFull::Refuse {
            return false;
        }
        while let Some(&(expires, ..)) = self.expiry.front() {
            if let Some(key) = self.pop_expiry() {
                let age = self.age(now, expires);
                self.evicted_early += 1;
                self.evicted_age_last = Some(age);
                self.evicted_age_min = Some(self.evicted_age_min.map_or(age, |m| m.min(age)));
                self.forgotten = Some(key);
                return true;
            }
        }
        false
    }

    /// Age at `now` of a record that expires at `expires`.
    fn age(&self, now: Time, expires: Time) -> Duration {
        self.ttl.saturating_sub(expires.since(now))
    }

    /// The front expiry entry that still names its record, looking past a
    /// bounded number of stale ones.
    fn oldest_completed(&self) -> Option<Time> {
        self.expiry
            .iter()
            .take(OLDEST_SCAN_MAX)
            .find(|(_, key, job)| {
                matches!(self.records.get(key), Some(Record::Completed { job: j, .. }) if j == job)
            })
            .map(|(expires, ..)| *expires)
    }

    /// When a full store will have room again without evicting: the oldest
    /// completed record's expiry; `None` when no record is completed.
    pub fn room_at(&self) -> Option<Time> {
        self.oldest_completed()
    }

    /// How far back replays reach at `now`.
    pub fn window(&self, now: Time) -> ReplayWindow {
        ReplayWindow {
            ttl: self.ttl,
            oldest_held_age: self.oldest_completed().map(|e| self.age(now, e)),
            evicted_age_last: self.evicted_age_last,
            evicted_age_min: self.evicted_age_min,
        }
    }

    /// The key last forgotten before its TTL, if not yet taken: a repeat of
    /// it will run again, which observers need to know.
    pub fn take_forgotten(&mut self) -> Option<K> {
        self.forgotten.take()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Completed records forgotten before their TTL because the store was full.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(keys_max: usize) -> IdempotencyStore<&'static str, &'static str> {
        let cfg = IdempotencyConfig {
            ttl_ms: 1000.0,
            keys_max,
            ..IdempotencyConfig::default()
        };
        IdempotencyStore::new(&cfg.check().expect("valid"))
    }

    const T0: Time = Time::ZERO;
    const J1: JobId = JobId(1);
    const J2: JobId = JobId(2);

    #[test]
    fn in_flight_key_conflicts_then_replays_after_completion() {
        let mut s = store(10);
        assert_eq!(s.begin(T0, &"k", 7, J1), Begin::Started);
        assert_eq!(s.begin(T0, &"k", 7, J2), Begin::InFlight(J1));
        s.complete(Time::from_millis(5), &"k", "ok");
        assert_eq!(
            s.begin(Time::from_millis(6), &"k", 7, J2),
            Begin::Replay {
                job: J1,
                response: "ok"
            }
        );
    }

    #[test]
    fn other_payload_under_the_same_key_is_a_mismatch() {
        let mut s = store(10);
        s.begin(T0, &"k", 7, J1);
        assert_eq!(s.begin(T0, &"k", 8, J2), Begin::Mismatch);
        s.complete(T0, &"k", "ok");
        assert_eq!(s.begin(T0, &"k", 8, J2), Begin::Mismatch);
    }

    #[test]
    fn completed_records_expire_after_the_ttl() {
        let mut s = store(10);
        s.begin(T0, &"k", 7, J1);
        s.complete(Time::from_millis(10), &"k", "ok");
        assert!(matches!(
            s.begin(Time::from_millis(1009), &"k", 7, J2),
            Begin::Replay { .. }
        ));
        assert_eq!(
            s.begin(Time::from_millis(1010), &"k", 7, J2),
            Begin::Started
        );
    }

    #[test]
    fn released_keys_start_again() {
        let mut s = store(10);
        s.begin(T0, &"k", 7, J1);
        s.release(&"k");
        assert_eq!(s.begin(T0, &"k", 7, J2), Begin::Started);
    }

    /// At a high rate of new keys a full store forgets records long before
    /// their TTL; the window says at what age.
    #[test]
    fn the_replay_window_shows_how_young_evicted_records_were() {
        let mut s = store(3);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            let at = Time::from_millis(10 * i as u64);
            s.begin(at, &k, 1, JobId(i as u64));
            s.complete(at, &k, "ok");
        }
        let w = s.window(Time::from_millis(25));
        assert_eq!(w.ttl, Duration::from_secs(1));
        assert_eq!(w.oldest_held_age, Some(Duration::from_millis(25)));
        assert_eq!((w.evicted_age_last, w.evicted_age_min), (None, None));
        assert_eq!(
            s.begin(Time::from_millis(30), &"d", 1, JobId(9)),
            Begin::Started
        );
        let w = s.window(Time::from_millis(30));
        assert_eq!(
            w.evicted_age_last,
            Some(Duration::from_millis(30)),
            "a, 30 ms old"
        );
        assert_eq!(w.oldest_held_age, Some(Duration::from_millis(20)), "b");
        assert_eq!(
            s.begin(Time::from_millis(500), &"a", 1, JobId(10)),
            Begin::Started,
            "a runs again"
        );
        assert_eq!(
            s.window(Time::from_millis(500)).evicted_age_min,
            Some(Duration::from_millis(30))
        );
    }

    #[test]
    fn under_refuse_a_full_store_keeps_its_records_until_they_expire() {
        let cfg = IdempotencyConfig {
            ttl_ms: 1000.0,
            keys_max: 1,
            when_full: KeysWhenFull::Refuse,
            ..IdempotencyConfig::default()
        };
        let mut s: IdempotencyStore<&str, &str> =
            IdempotencyStore::new(&cfg.check().expect("valid"));
        s.begin(T0, &"a", 1, J1);
        assert_eq!(s.room_at(), None, "in flight: no expiry known");
        s.complete(Time::from_millis(100), &"a", "ok");
        assert_eq!(s.begin(Time::from_millis(200), &"b", 1, J2), Begin::Full);
        assert_eq!(s.room_at(), Some(Time::from_millis(1100)));
        assert_eq!(s.evicted_early(), 0);
        assert_eq!(
            s.begin(Time::from_millis(1100), &"b", 1, J2),
            Begin::Started
        );
    }

    #[test]
    fn full_store_evicts_the_oldest_completed_or_refuses() {
        let mut s = store(2);
        s.begin(T0, &"a", 1, J1);
        s.begin(T0, &"b", 1, J2);
        assert_eq!(s.begin(T0, &"c", 1, JobId(3)), Begin::Full);
        s.complete(T0, &"a", "ok");
        assert_eq!(s.begin(T0, &"c", 1, JobId(3)), Begin::Started);
        assert_eq!((s.len(), s.evicted_early()), (2, 1));
        assert_eq!(s.begin(T0, &"a", 1, JobId(4)), Begin::Full);
    }
}
