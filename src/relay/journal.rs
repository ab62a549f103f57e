//! The journal: what a driver must make durable before it performs a turn.
//!
//! The relay holds every promise in memory; a store keeps them across a
//! crash. The relay does no I/O, so it says what changed as [`Record`]s, in
//! the order the transitions happened, and the driver makes a turn's
//! records durable before it sends any of that turn's answers or calls
//! (write-ahead, as a database's log). Folding the records in order
//! ([`super::Stored::apply`]) gives what a restart needs.
//!
//! Off by default: a relay without a store pays nothing for it.

use super::dlq::DeadLetter;
use super::job::{JobId, Outcome};
use super::route::RouteId;
use crate::time::Time;
use std::collections::VecDeque;

/// What must be made durable before the driver performs the turn's outputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Record<K, P> {
    /// A job was accepted (a new request, or a redrive). Durable before its 202.
    Accepted {
        job: JobId,
        route: RouteId,
        key: Option<K>,
        client: u64,
        fingerprint: u64,
        payload: P,
        accepted_at: Time,
        redrives: u32,
    },
    /// Attempt `attempt` (1-based) is about to be sent (first try, retry or
    /// hedge). Durable before the call leaves: after a crash the job is
    /// marked possibly run twice.
    Started { job: JobId, attempt: u32 },
    /// The job ended. `Succeeded` with a key is also its replay record,
    /// which expires at `finished_at + ttl` (the store may purge it then).
    Finished {
        job: JobId,
        key: Option<K>,
        fingerprint: u64,
        attempts: u32,
        finished_at: Time,
        outcome: Outcome<P>,
    },
    /// Dead-lettered: the letter, kept until redriven or dropped.
    DeadLettered(Box<DeadLetter<K, P>>),
    /// A letter left the queue: redriven (its new job has its own
    /// `Accepted`), overflowed or evicted.
    LetterRemoved { letter: JobId },
}

impl<K, P> Record<K, P> {
    /// The job (or letter) the record is about.
    pub fn job(&self) -> JobId {
        match self {
            Record::Accepted { job, .. }
            | Record::Started { job, .. }
            | Record::Finished { job, .. } => *job,
            Record::DeadLettered(letter) => letter.job,
            Record::LetterRemoved { letter } => *letter,
        }
    }
}

/// The records not yet taken by the driver. The driver drains it every
/// turn, so one turn's records bound it: each job accepted, started,
/// ended and dead-lettered in one turn, plus letters dropped.
#[derive(Clone, Debug)]
pub(super) struct Journal<K, P> {
    records: VecDeque<Record<K, P>>,
    bound: usize,
}

impl<K, P> Journal<K, P> {
    pub(super) fn new(jobs_max: usize) -> Self {
        Journal {
            records: VecDeque::new(),
            bound: jobs_max.saturating_mul(4).saturating_add(1024),
        }
    }

    pub(super) fn push(&mut self, record: Record<K, P>) {
        assert!(
            self.records.len() < self.bound,
            "journal over its bound of {}: the driver must drain it every turn",
            self.bound
        );
        self.records.push_back(record);
    }

    pub(super) fn pop(&mut self) -> Option<Record<K, P>> {
        self.records.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_in_order() {
        let mut j: Journal<u64, u64> = Journal::new(1);
        for attempt in 1..=3 {
            j.push(Record::Started {
                job: JobId::new(0, 0),
                attempt,
            });
        }
        let attempts: Vec<_> = std::iter::from_fn(|| j.pop())
            .map(|r| match r {
                Record::Started { attempt, .. } => attempt,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(attempts, [1, 2, 3]);
    }

    #[test]
    #[should_panic(expected = "journal over its bound")]
    fn an_undrained_journal_is_a_bug() {
        let mut j: Journal<u64, u64> = Journal::new(0);
        for _ in 0..=1024 {
            j.push(Record::LetterRemoved {
                letter: JobId::new(0, 0),
            });
        }
    }
}
