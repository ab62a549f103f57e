//! Dead-letter queue: where jobs go when retrying stops, never a silent drop.
//!
//! Retries must end somewhere. Dropping a job that exhausted its retries
//! loses work without a trace; retrying forever lets poison messages clog the
//! workers. Like SQS dead-letter queues, the relay parks such jobs with
//! everything needed to understand and redrive them (send them again as new
//! jobs): payload, attempts, last error, times. An operator lists and
//! inspects them, and redrives one or all once the cause is fixed.
//!
//! The queue is bounded. When it is full, [`DeadLetterQueue::push`] hands the
//! letter back: the relay counts it, hands it to its driver to log in full,
//! and refuses new work until the queue is drained.

use super::config_error::{ensure, ConfigError};
use super::job::{JobId, LateSuccess};
use super::retry::{CallError, GiveUp};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Letters kept at once.
    pub capacity: usize,
}

impl Default for DlqConfig {
    fn default() -> Self {
        DlqConfig { capacity: 10_000 }
    }
}

/// A checked [`DlqConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DlqSettings {
    pub(super) capacity: usize,
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
        Ok(DlqSettings {
            capacity: self.capacity,
        })
    }
}

/// A job whose retries ended without success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter<K, P> {
    pub job: JobId,
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
}

/// Letters by job id, which is admission order.
#[derive(Clone, Debug)]
pub struct DeadLetterQueue<K, P> {
    letters: BTreeMap<JobId, DeadLetter<K, P>>,
    capacity: usize,
    overflowed: u64,
}

impl<K, P> DeadLetterQueue<K, P> {
    pub(super) fn new(settings: &DlqSettings) -> Self {
        assert!(settings.capacity >= 1, "checked by DlqConfig::check");
        DeadLetterQueue {
            letters: BTreeMap::new(),
            capacity: settings.capacity,
            overflowed: 0,
        }
    }

    /// Stores the letter, or hands it back when the queue is full.
    #[allow(clippy::result_large_err)]
    pub(super) fn push(&mut self, letter: DeadLetter<K, P>) -> Result<(), DeadLetter<K, P>> {
        if self.letters.len() >= self.capacity {
            self.overflowed += 1;
            return Err(letter);
        }
        self.letters.insert(letter.job, letter);
        debug_assert!(self.letters.len() <= self.capacity);
        Ok(())
    }

    /// All letters, oldest job first.
    pub fn list(&self) -> impl Iterator<Item = &DeadLetter<K, P>> {
        self.letters.values()
    }

    pub fn get(&self, job: JobId) -> Option<&DeadLetter<K, P>> {
        self.letters.get(&job)
    }

    /// Removes a letter, to redrive it.
    pub(super) fn take(&mut self, job: JobId) -> Option<DeadLetter<K, P>> {
        self.letters.remove(&job)
    }

    /// Puts back a letter whose redrive could not start.
    pub(super) fn restore(&mut self, letter: DeadLetter<K, P>) {
        self.letters.insert(letter.job, letter);
    }

    /// Ids of all letters, oldest first.
    pub(super) fn ids(&self) -> Vec<JobId> {
        self.letters.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.letters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.letters.len() >= self.capacity
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Letters refused because the queue was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(job: u64) -> DeadLetter<u64, ()> {
        DeadLetter {
            job: JobId(job),
            key: Some(job),
            client: 0,
            fingerprint: 0,
            payload: (),
            attempts: 3,
            reason: GiveUp::AttemptsExhausted,
            last_error: CallError::ServerError,
            accepted_at: Time::ZERO,
            dead_at: Time::from_millis(1),
            redrives: 0,
            late_success: None,
        }
    }

    #[test]
    fn lists_in_job_order_and_takes_for_redrive() {
        let mut q = DeadLetterQueue::new(&DlqSettings { capacity: 3 });
        for j in [5, 2, 9] {
            q.push(letter(j)).expect("room");
        }
        assert_eq!(q.list().map(|l| l.job.0).collect::<Vec<_>>(), vec![2, 5, 9]);
        assert_eq!(q.get(JobId(5)).map(|l| l.attempts), Some(3));
        assert_eq!(q.take(JobId(5)).map(|l| l.job), Some(JobId(5)));
        assert_eq!(q.ids(), vec![JobId(2), JobId(9)]);
    }

    #[test]
    fn full_queue_hands_the_letter_back_and_counts_it() {
        let mut q = DeadLetterQueue::new(&DlqSettings { capacity: 1 });
        q.push(letter(1)).expect("room");
        let back = q.push(letter(2)).expect_err("full");
        assert_eq!(back.job, JobId(2));
        assert_eq!((q.len(), q.overflowed()), (1, 1));
    }
}
