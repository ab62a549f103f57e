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
    /// Entry `serial` of the completion order; held while `serial` is at
    /// or above the store's `dropped_below` mark.
    Completed {
        job: JobId,
        fingerprint: u64,
        serial: u32,
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

    /// Whether the store still holds this record, given its mark and how
    /// many completed records it holds.
    fn is_held(&self, dropped_below: u32, completed: usize) -> bool {
        match self {
            Record::InFlight { .. } => true,
            Record::Completed { serial, .. } => {
                (serial.wrapping_sub(dropped_below) as usize) < completed
            }
        }
    }
}

/// Key → in flight or completed, with expiry in completion order.
///
/// Forgetting a record (expiry, eviction) only moves a mark: the record
/// stays in the map, stale, until its key comes back or a sweep clears the
/// map. Forgetting thus touches the recent end of the expiry FIFO, never the
/// old record's place in a large map, which a store that is full would
/// otherwise reach once per new key, on memory long out of cache.
#[derive(Clone, Debug)]
pub struct IdempotencyStore<K, R> {
    /// Held records, and stale completed ones (serial below `dropped_below`).
    records: FxHashMap<K, Record<R>>,
    /// Completed keys by expiry time, one entry per held completed record,
    /// the front being serial `dropped_below`. The TTL is fixed and
    /// completions come in time order, so a FIFO is sorted.
    expiry: VecDeque<(Time, K)>,
    /// Completed records forgotten so far (wrapping: only the distance to
    /// a record's serial counts, and a sweep clears stale records long
    /// before it could wrap onto them).
    dropped_below: u32,
    in_flight: usize,
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

/// A full map is swept of stale records, rather than grown, once at least
/// one in this many is stale: a sweep then costs at most this many slots
/// per stale record it clears.
const SWEEP_STALE_SHARE: usize = 32;

/// Room reserved in the map for a store of `keys` records: twice the most
/// it holds before a sweep (the records, and stale ones up to one in
/// [`SWEEP_STALE_SHARE`]). A map more than half full that runs into the
/// tombstones its released keys leave grows to twice its size, holding both
/// copies while it moves; one at most half full rehashes in place.
fn records_reserved(keys: usize) -> usize {
    2 * (keys + keys / (SWEEP_STALE_SHARE - 1) + 1)
}

impl<K: Hash + Eq + Clone, R: Clone> IdempotencyStore<K, R> {
    pub fn new(settings: &IdempotencySettings) -> Self {
        assert!(
            settings.keys_max >= 1,
            "checked by IdempotencyConfig::check"
        );
        let reserved = settings.keys_max.min(super::RESERVED_MAX);
        IdempotencyStore {
            records: FxHashMap::with_capacity_and_hasher(
                records_reserved(reserved),
                Default::default(),
            ),
            expiry: VecDeque::with_capacity(reserved),
            dropped_below: 0,
            in_flight: 0,
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
        if self.len() >= self.keys_max && !self.evict_oldest_completed(now) {
            return Begin::Full;
        }
        self.sweep_if_full();
        self.records
            .insert(key.clone(), Record::InFlight { job, fingerprint });
        self.in_flight += 1;
        debug_assert!(self.len() <= self.keys_max);
        Begin::Started
    }

    /// The record held under `key`: `None` for an absent or stale one.
    fn held(&self, key: &K) -> Option<&Record<R>> {
        self.records.get(key).filter(|r| self.is_held(r))
    }

    fn is_held(&self, record: &Record<R>) -> bool {
        record.is_held(self.dropped_below, self.expiry.len())
    }

    /// Before an insert that would grow a full map, clears the stale
    /// records instead if there are enough of them to pay for the sweep.
    fn sweep_if_full(&mut self) {
        let len = self.records.len();
        let stale = len - self.len();
        if len == self.records.capacity() && stale * SWEEP_STALE_SHARE >= len {
            let (dropped_below, completed) = (self.dropped_below, self.expiry.len());
            self.records
                .retain(|_, r| r.is_held(dropped_below, completed));
            debug_assert_eq!(self.records.len(), self.len());
        }
    }

    /// What the store knows of `key`, without recording anything: `None`
    /// for a key it does not hold.
    pub fn peek(&mut self, now: Time, key: &K, fingerprint: u64) -> Option<Begin<R>> {
        self.handle_timeout(now);
        let record = self.held(key)?;
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
            self.release(key);
            return;
        }
        let serial = self.dropped_below.wrapping_add(self.expiry.len() as u32);
        let Some(record) = self.records.get_mut(key) else {
            return;
        };
        let Record::InFlight { job, fingerprint } = *record else {
            return;
        };
        *record = Record::Completed {
            job,
            fingerprint,
            serial,
            response,
        };
        self.in_flight -= 1;
        self.expiry.push_back((now + self.ttl, key.clone()));
    }

    /// Forgets an in-flight key: its job was refused or dead-lettered.
    pub fn release(&mut self, key: &K) {
        if matches!(self.records.get(key), Some(Record::InFlight { .. })) {
            self.records.remove(key);
            self.in_flight -= 1;
        }
    }

    /// Drops records whose time is up. Safe to call early or twice.
    pub fn handle_timeout(&mut self, now: Time) {
        while self.expiry.front().is_some_and(|(t, _)| *t <= now) {
            self.pop_expiry();
        }
    }

    /// Forgets the oldest completed record: moves the mark past it.
    fn pop_expiry(&mut self) -> Option<K> {
        let (_, key) = self.expiry.pop_front()?;
        self.dropped_below = self.dropped_below.wrapping_add(1);
        Some(key)
    }

    /// Under `evict-oldest`, forgets the oldest completed record and notes
    /// its age; under `refuse`, forgets nothing.
    fn evict_oldest_completed(&mut self, now: Time) -> bool {
        if self.when_full == KeysWhenFull::Refuse {
            return false;
        }
        let Some(&(expires, _)) = self.expiry.front() else {
            return false;
        };
        let key = self.pop_expiry();
        let age = self.age(now, expires);
        self.evicted_early += 1;
        self.evicted_age_last = Some(age);
        self.evicted_age_min = Some(self.evicted_age_min.map_or(age, |m| m.min(age)));
        self.forgotten = key;
        true
    }

    /// Age at `now` of a record that expires at `expires`.
    fn age(&self, now: Time, expires: Time) -> Duration {
        self.ttl.saturating_sub(expires.since(now))
    }

    /// The oldest completed record's expiry.
    fn oldest_completed(&self) -> Option<Time> {
        self.expiry.front().map(|(expires, _)| *expires)
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

    /// Records held, in flight or completed.
    pub fn len(&self) -> usize {
        self.in_flight + self.expiry.len()
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

    /// Forgotten records stay in the map until a sweep: the map must not
    /// grow with every key ever seen, and a stale record must not answer.
    #[test]
    fn forgotten_records_neither_answer_nor_pile_up() {
        let mut s: IdempotencyStore<u64, u64> = IdempotencyStore::new(
            &IdempotencyConfig {
                ttl_ms: 1000.0,
                keys_max: 4,
                ..IdempotencyConfig::default()
            }
            .check()
            .expect("valid"),
        );
        for k in 0..10_000u64 {
            assert_eq!(s.begin(T0, &k, 1, JobId(k)), Begin::Started, "key {k}");
            s.complete(T0, &k, k);
            assert!(s.len() <= 4);
        }
        assert!(s.records.capacity() < 64, "{}", s.records.capacity());
        assert_eq!(s.evicted_early(), 10_000 - 4);
        assert_eq!(s.begin(T0, &9_000, 1, JobId(1)), Begin::Started);
        let held = Begin::Replay {
            job: JobId(9_999),
            response: 9_999,
        };
        assert_eq!(s.begin(T0, &9_999, 1, JobId(2)), held);
        let later = Time::from_millis(1000);
        assert_eq!(s.begin(later, &9_999, 1, JobId(3)), Begin::Started);
        assert_eq!(s.len(), 2, "9,000 and 9,999 in flight");
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
