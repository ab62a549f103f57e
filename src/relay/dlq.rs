//! Dead-letter queue: where jobs go when retrying stops, never a silent drop.
//!
//! Retries must end somewhere. Dropping a job that exhausted its retries
//! loses work without a trace; retrying forever lets poison messages clog the
//! workers. Like SQS dead-letter queues, the relay parks such jobs with
//! everything needed to understand and redrive them (send them again as new
//! jobs): payload, attempts, last error, times. An operator lists and
//! inspects them, and redrives one or all once the cause is fixed.
//!
//! The queue is bounded twice: in letters and in bytes (payload plus a fixed
//! record), because a count alone lets large payloads take the memory. What
//! happens when it is full is a stated policy, [`WhenFull`]:
//!
//! - `drop-oldest` (the default) evicts the oldest letters to make room, and
//!   hands each one back to be counted and reported, as SQS's retention
//!   period and Kafka's log retention do: the relay keeps relaying, and the
//!   letters an operator most likely already saw go first;
//! - `refuse` keeps every letter it holds and refuses new requests (503)
//!   until room is made (a redrive, or its pending part moving on), at the
//!   price of turning a full queue into an outage of its own.
//!
//! Either way a letter that cannot be kept is handed back to the relay, never
//! dropped silently. A redrive of all letters remembers which ones are still
//! to go (at most every letter held) and moves them as the job queue has room.

use super::config_error::{ensure, ConfigError};
use super::job::{JobId, LateSuccess};
use super::retry::{CallError, GiveUp};
use super::route::RouteId;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a full dead-letter queue does with the next letter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum WhenFull {
    /// Evict the oldest letters to make room; admission never waits on the DLQ.
    #[default]
    DropOldest,
    /// Keep what is held, hand the new letter back, and refuse new requests
    /// (503) while the queue is full.
    Refuse,
}

impl WhenFull {
    /// The kebab-case name, as in TOML and JSON.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Letters kept at once.
    pub capacity: usize,
    /// Bytes kept at once: payloads plus a fixed record per letter.
    pub bytes_max: usize,
    pub when_full: WhenFull,
}

/// The default byte bound: 10,000 letters of about 6 KiB each.
pub const DLQ_BYTES_MAX_DEFAULT: usize = 64 << 20;

impl Default for DlqConfig {
    fn default() -> Self {
        DlqConfig {
            capacity: 10_000,
            bytes_max: DLQ_BYTES_MAX_DEFAULT,
            when_full: WhenFull::default(),
        }
    }
}

/// A checked [`DlqConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DlqSettings {
    pub(super) capacity: usize,
    pub(super) bytes_max: usize,
    pub(super) when_full: WhenFull,
}

impl DlqConfig {
    /// With no room at all every dead letter would overflow: refused here.
    pub fn check(&self) -> Result<DlqSettings, ConfigError> {
        ensure(
            self.capacity >= 1,
            "capacity",
            "dead-letter capacity must be ≥ 1",
        )?;
        ensure(
            self.capacity <= 10_000_000,
            "capacity",
            "dead-letter capacity must be ≤ 10,000,000",
        )?;
        ensure(
            (4096..=1 << 40).contains(&self.bytes_max),
            "bytes_max",
            format!(
                "dead-letter bytes must be between 4096 and 1 TiB, got {}",
                self.bytes_max
            ),
        )?;
        Ok(DlqSettings {
            capacity: self.capacity,
            bytes_max: self.bytes_max,
            when_full: self.when_full,
        })
    }
}

/// How many bytes a payload holds, for the dead-letter queue's byte bound.
pub trait ByteSize {
    fn byte_size(&self) -> usize;
}

impl ByteSize for () {
    fn byte_size(&self) -> usize {
        0
    }
}

macro_rules! plain_byte_size {
    ($($t:ty),*) => {$(
        impl ByteSize for $t {
            fn byte_size(&self) -> usize {
                std::mem::size_of::<$t>()
            }
        }
    )*};
}
plain_byte_size!(u8, u16, u32, u64, u128, i32, i64);

impl ByteSize for str {
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl ByteSize for [u8] {
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl ByteSize for String {
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl ByteSize for Vec<u8> {
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl ByteSize for bytes::Bytes {
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl<T: ByteSize + ?Sized> ByteSize for &T {
    fn byte_size(&self) -> usize {
        (**self).byte_size()
    }
}

impl<T: ByteSize + ?Sized> ByteSize for Arc<T> {
    fn byte_size(&self) -> usize {
        (**self).byte_size()
    }
}

impl<T: ByteSize + ?Sized> ByteSize for Box<T> {
    fn byte_size(&self) -> usize {
        (**self).byte_size()
    }
}

/// A job whose retries ended without success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter<K, P> {
    pub job: JobId,
    /// The route the job was for; a redrive sends it there again.
    pub route: RouteId,
    pub key: Option<K>,
    pub client: u64,
    pub fingerprint: u64,
    pub payload: P,
    pub attempts: u32,
    pub reason: GiveUp,
    pub last_error: CallError,
    pub accepted_at: Time,
    pub dead_at: Time,
    /// How many times this payload was redriven from the queue before.
    pub redrives: u32,
    /// An earlier attempt succeeded too late to count: the work may be done.
    pub late_success: Option<LateSuccess<P>>,
}

/// Why a dead letter could not be redriven (it stays in the queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
pub enum RedriveError {
    #[error("no dead letter with that id")]
    NotFound,
    #[error("its idempotency key is in use by another job")]
    KeyInUse,
    #[error("the queue or job table is full; try again later")]
    Full,
    #[error("the relay is draining")]
    Draining,
    #[error("its route is not in the relay's settings any more")]
    NoRoute,
}

/// Why a letter left the queue without being redriven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dropped {
    /// It found the queue full (policy `refuse`) or was larger than the
    /// whole byte bound.
    Overflowed,
    /// It was the oldest when a newer one needed room (policy `drop-oldest`).
    Evicted,
}

/// Letters by job id, which is admission order.
#[derive(Clone, Debug)]
pub struct DeadLetterQueue<K, P> {
    letters: BTreeMap<JobId, DeadLetter<K, P>>,
    bytes: usize,
    capacity: usize,
    bytes_max: usize,
    when_full: WhenFull,
    overflowed: u64,
    evicted: u64,
    late_answers_dropped: u64,
    /// Letters a redrive of all still has to move; a subset of `letters`.
    redrive_pending: BTreeSet<JobId>,
}

impl<K, P: ByteSize> DeadLetterQueue<K, P> {
    pub(super) fn new(settings: &DlqSettings) -> Self {
        assert!(settings.capacity >= 1, "checked by DlqConfig::check");
        DeadLetterQueue {
            letters: BTreeMap::new(),
            bytes: 0,
            capacity: settings.capacity,
            bytes_max: settings.bytes_max,
            when_full: settings.when_full,
            overflowed: 0,
            evicted: 0,
            late_answers_dropped: 0,
            redrive_pending: BTreeSet::new(),
        }
    }

    /// What one letter counts against the byte bound: its payload, a late
    /// success's answer if it has one, and the record around it.
    pub fn letter_bytes(letter: &DeadLetter<K, P>) -> usize {
        let late = letter
            .late_success
            .as_ref()
            .map_or(0, |l| l.response.byte_size());
        std::mem::size_of::<DeadLetter<K, P>>() + letter.payload.byte_size() + late
    }

    /// Notes a late success on a held letter, in place: it stays pending if
    /// it was. Its answer is kept only while the letter still fits the byte
    /// bound; otherwise the count alone goes up and the answer is dropped
    /// (counted in `late_answers_dropped`), since making room would cost
    /// another letter. Returns whether the letter now carries it.
    pub(super) fn note_late_success(
        &mut self,
        job: JobId,
        attempt: u32,
        at: Time,
        answer: P,
    ) -> bool {
        let Some(letter) = self.letters.get_mut(&job) else {
            return false;
        };
        let fits = self.bytes + answer.byte_size() <= self.bytes_max;
        match &mut letter.late_success {
            Some(first) => first.count = first.count.saturating_add(1),
            None if fits => {
                self.bytes += answer.byte_size();
                letter.late_success = Some(LateSuccess {
                    attempt,
                    at,
                    response: answer,
                    count: 1,
                });
            }
            None => {
                self.late_answers_dropped += 1;
                return false;
            }
        }
        true
    }

    /// Late answers not kept on their letters for want of room.
    pub fn late_answers_dropped(&self) -> u64 {
        self.late_answers_dropped
    }

    /// Stores the letter, making room as the policy says; returns every
    /// letter that could not be kept (the new one, or evicted old ones).
    pub(super) fn push(&mut self, letter: DeadLetter<K, P>) -> Vec<(Dropped, DeadLetter<K, P>)> {
        let size = Self::letter_bytes(&letter);
        if size > self.bytes_max {
            self.overflowed += 1;
            return vec![(Dropped::Overflowed, letter)];
        }
        let mut dropped = Vec::new();
        while !self.has_room_for(size) {
            match self.when_full {
                WhenFull::Refuse => {
                    self.overflowed += 1;
                    dropped.push((Dropped::Overflowed, letter));
                    return dropped;
                }
                WhenFull::DropOldest => {
                    let Some((_, old)) = self.letters.pop_first() else {
                        unreachable!("an empty queue has room for a letter within the bound")
                    };
                    self.forget(&old);
                    self.evicted += 1;
                    dropped.push((Dropped::Evicted, old));
                }
            }
        }
        self.bytes += size;
        self.letters.insert(letter.job, letter);
        debug_assert!(self.letters.len() <= self.capacity && self.bytes <= self.bytes_max);
        dropped
    }

    /// Stores the letter only if it fits without evicting another (a
    /// letter taken over from elsewhere must not push out one held here);
    /// gives it back otherwise.
    pub(super) fn admit(&mut self, letter: DeadLetter<K, P>) -> Result<(), DeadLetter<K, P>> {
        let size = Self::letter_bytes(&letter);
        if self.letters.contains_key(&letter.job) || !self.has_room_for(size) {
            return Err(letter);
        }
        self.bytes += size;
        self.letters.insert(letter.job, letter);
        Ok(())
    }

    fn has_room_for(&self, size: usize) -> bool {
        self.letters.len() < self.capacity && self.bytes + size <= self.bytes_max
    }

    /// Accounts for a letter that left the map.
    fn forget(&mut self, letter: &DeadLetter<K, P>) {
        self.bytes -= Self::letter_bytes(letter);
        self.redrive_pending.remove(&letter.job);
    }

    /// All letters, oldest job first.
    pub fn list(&self) -> impl Iterator<Item = &DeadLetter<K, P>> {
        self.letters.values()
    }

    pub fn get(&self, job: JobId) -> Option<&DeadLetter<K, P>> {
        self.letters.get(&job)
    }

    /// Removes a letter, to redrive it; it is no longer pending.
    pub(super) fn take(&mut self, job: JobId) -> Option<DeadLetter<K, P>> {
        let letter = self.letters.remove(&job)?;
        self.forget(&letter);
        Some(letter)
    }

    /// Puts back a letter whose redrive could not start (it had room).
    pub(super) fn restore(&mut self, letter: DeadLetter<K, P>) {
        self.bytes += Self::letter_bytes(&letter);
        self.letters.insert(letter.job, letter);
    }

    /// Marks every letter held now as to be redriven; returns how many are
    /// pending.
    pub(super) fn schedule_all(&mut self) -> usize {
        self.redrive_pending.extend(self.letters.keys().copied());
        self.redrive_pending.len()
    }

    /// Marks one held letter as pending again (its redrive has to wait).
    pub(super) fn schedule(&mut self, job: JobId) {
        if self.letters.contains_key(&job) {
            self.redrive_pending.insert(job);
        }
    }

    /// The oldest letter still to be redriven, taken off the pending set.
    pub(super) fn next_pending(&mut self) -> Option<JobId> {
        self.redrive_pending.pop_first()
    }

    /// Letters a redrive of all has still to move.
    pub fn redrive_pending(&self) -> usize {
        self.redrive_pending.len()
    }

    pub fn len(&self) -> usize {
        self.letters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }

    /// No room for one more letter, even one with an empty payload.
    pub fn is_full(&self) -> bool {
        !self.has_room_for(std::mem::size_of::<DeadLetter<K, P>>())
    }

    /// Whether new requests must be refused because of this queue: only
    /// under `refuse`, and only while it is full.
    pub fn blocks_admission(&self) -> bool {
        self.when_full == WhenFull::Refuse && self.is_full()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held: payloads plus a fixed record per letter.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    pub fn when_full(&self) -> WhenFull {
        self.when_full
    }

    /// Letters not kept because the queue was full (or they were larger
    /// than the whole byte bound).
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Letters evicted, oldest first, to make room for newer ones.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(job: u64) -> DeadLetter<u64, Vec<u8>> {
        sized(job, 0)
    }

    fn sized(job: u64, payload_bytes: usize) -> DeadLetter<u64, Vec<u8>> {
        DeadLetter {
            job: JobId(job),
            route: RouteId::DEFAULT,
            key: Some(job),
            client: 0,
            fingerprint: 0,
            payload: vec![0; payload_bytes],
            attempts: 3,
            reason: GiveUp::AttemptsExhausted,
            last_error: CallError::ServerError,
            accepted_at: Time::ZERO,
            dead_at: Time::from_millis(1),
            redrives: 0,
            late_success: None,
        }
    }

    fn queue(
        capacity: usize,
        bytes_max: usize,
        when_full: WhenFull,
    ) -> DeadLetterQueue<u64, Vec<u8>> {
        let cfg = DlqConfig {
            capacity,
            bytes_max,
            when_full,
        };
        DeadLetterQueue::new(&cfg.check().expect("valid"))
    }

    fn jobs(q: &DeadLetterQueue<u64, Vec<u8>>) -> Vec<u64> {
        q.list().map(|l| l.job.0).collect()
    }

    const RECORD: usize = std::mem::size_of::<DeadLetter<u64, Vec<u8>>>();

    #[test]
    fn lists_in_job_order_and_takes_for_redrive() {
        let mut q = queue(3, 1 << 20, WhenFull::Refuse);
        for j in [5, 2, 9] {
            assert!(q.push(letter(j)).is_empty(), "room");
        }
        assert_eq!(jobs(&q), vec![2, 5, 9]);
        assert_eq!(q.get(JobId(5)).map(|l| l.attempts), Some(3));
        assert_eq!(q.take(JobId(5)).map(|l| l.job), Some(JobId(5)));
        assert_eq!(jobs(&q), vec![2, 9]);
        assert_eq!(q.bytes(), 2 * RECORD);
    }

    #[test]
    fn refuse_hands_the_new_letter_back_and_counts_it() {
        let mut q = queue(1, 1 << 20, WhenFull::Refuse);
        assert!(q.push(letter(1)).is_empty());
        assert!(q.blocks_admission());
        let back = q.push(letter(2));
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].0, back[0].1.job), (Dropped::Overflowed, JobId(2)));
        assert_eq!((q.len(), q.overflowed(), q.evicted()), (1, 1, 0));
    }

    #[test]
    fn drop_oldest_evicts_to_make_room_and_never_blocks() {
        let mut q = queue(2, 1 << 20, WhenFull::DropOldest);
        for j in [1, 2] {
            assert!(q.push(letter(j)).is_empty());
        }
        assert!(q.is_full() && !q.blocks_admission());
        let out = q.push(letter(3));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, out[0].1.job), (Dropped::Evicted, JobId(1)));
        assert_eq!(jobs(&q), vec![2, 3]);
        assert_eq!((q.overflowed(), q.evicted()), (0, 1));
    }

    /// Large payloads fill the byte bound long before the count: a 60 KB
    /// letter is 60 KB against the bound, not one letter of 10,000.
    #[test]
    fn the_byte_bound_holds_whatever_the_payload_sizes() {
        let bytes_max = 4 * (60_000 + RECORD);
        let mut q = queue(10_000, bytes_max, WhenFull::DropOldest);
        for j in 0..100 {
            q.push(sized(j, 60_000));
            assert!(q.bytes() <= bytes_max);
        }
        assert_eq!(q.len(), 4);
        assert_eq!(q.evicted(), 96);
        assert_eq!(jobs(&q), vec![96, 97, 98, 99]);
        // One small letter needs one big one out.
        assert_eq!(q.push(sized(100, 10)).len(), 1);
        let mut r = queue(10_000, bytes_max, WhenFull::Refuse);
        for j in 0..5 {
            r.push(sized(j, 60_000));
        }
        assert_eq!((r.len(), r.overflowed()), (4, 1));
        assert_eq!(r.bytes(), 4 * (60_000 + RECORD));
    }

    #[test]
    fn a_letter_larger_than_the_whole_bound_overflows_without_evicting() {
        let mut q = queue(10, 4096, WhenFull::DropOldest);
        assert!(q.push(letter(1)).is_empty());
        let out = q.push(sized(2, 5000));
        assert_eq!((out.len(), out[0].0), (1, Dropped::Overflowed));
        assert_eq!(jobs(&q), vec![1]);
    }

    #[test]
    fn pending_redrives_follow_the_letters() {
        let mut q = queue(3, 1 << 20, WhenFull::DropOldest);
        for j in [1, 2, 3] {
            q.push(letter(j));
        }
        assert_eq!(q.schedule_all(), 3);
        q.push(letter(4)); // evicts 1, which is no longer pending
        assert_eq!(q.redrive_pending(), 2);
        assert_eq!(q.next_pending(), Some(JobId(2)));
        q.take(JobId(3));
        assert_eq!((q.redrive_pending(), q.next_pending()), (0, None));
        q.schedule(JobId(4));
        q.schedule(JobId(99));
        assert_eq!(q.redrive_pending(), 1, "only held letters can be pending");
    }

    #[test]
    fn bounds_are_checked() {
        let bad = |c: DlqConfig| c.check().expect_err("invalid").field;
        let base = DlqConfig::default();
        assert_eq!(
            bad(DlqConfig {
                capacity: 0,
                ..base
            }),
            "capacity"
        );
        assert_eq!(
            bad(DlqConfig {
                bytes_max: 100,
                ..base
            }),
            "bytes_max"
        );
        let parsed: DlqConfig = toml::from_str("when_full = \"refuse\"").expect("parses");
        assert_eq!(parsed.when_full, WhenFull::Refuse);
        assert!(toml::from_str::<DlqConfig>("when_full = \"drop\"").is_err());
    }
}
