//! Recovery: what a store holds, and the fold that keeps it.
//!
//! A store is the journal's [`Record`]s folded in order: jobs accepted and
//! not finished, letters not removed, and the replay records of keyed
//! successes until their TTL. [`Stored::apply`] is that fold, written
//! plainly as the reference every store (and every test) checks against;
//! [`super::Relay::recover`] rebuilds a relay from its result. A job that
//! had started an attempt before the crash is run again: its work may be
//! done twice (at-least-once), and the job says so.

use super::config::RelaySettings;
use super::dlq::DeadLetter;
use super::job::{JobId, Outcome};
use super::journal::Record;
use super::route::RouteId;
use crate::time::Time;
use std::time::Duration;

/// What a store holds, as a relay restarts from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stored<K, P> {
    /// The next job serial: above every serial the store has seen, so ids
    /// never repeat across restarts.
    pub next_serial: u32,
    /// Unfinished jobs (no `Finished` record), in acceptance order.
    pub jobs: Vec<StoredJob<K, P>>,
    /// Letters not removed, in id order.
    pub letters: Vec<DeadLetter<K, P>>,
    /// Succeeded keyed jobs whose replay has not expired.
    pub replays: Vec<StoredReplay<K, P>>,
}

/// An accepted job that had not finished.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredJob<K, P> {
    pub job: JobId,
    pub route: RouteId,
    pub key: Option<K>,
    pub client: u64,
    pub fingerprint: u64,
    pub payload: P,
    pub accepted_at: Time,
    pub redrives: u32,
    /// The highest attempt with a `Started` record (0: never called). A
    /// job with attempts > 0 was in flight or between attempts at the crash:
    /// the downstream may already have done its work.
    pub attempts: u32,
}

/// The answer a keyed success replays until `finished_at + ttl`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredReplay<K, P> {
    pub key: K,
    pub fingerprint: u64,
    pub job: JobId,
    pub response: P,
    pub finished_at: Time,
}

impl<K: PartialEq, P> Stored<K, P> {
    /// Folds one record in. Records must come in the order the relay made
    /// them; replays older than `replay_ttl` at the record's time are
    /// purged, as the relay forgets them.
    pub fn apply(&mut self, record: Record<K, P>, replay_ttl: Duration) {
        match record {
            Record::Accepted {
                job,
                route,
                key,
                client,
                fingerprint,
                payload,
                accepted_at,
                redrives,
            } => {
                self.see_serial(job);
                self.expire(accepted_at, replay_ttl);
                // The relay took the key for a new job: it held no replay of it.
                if let Some(k) = &key {
                    self.replays.retain(|r| &r.key != k);
                }
                self.jobs.push(StoredJob {
                    job,
                    route,
                    key,
                    client,
                    fingerprint,
                    payload,
                    accepted_at,
                    redrives,
                    attempts: 0,
                });
            }
            Record::Started { job, attempt } => {
                // A job is known by its serial: adopted, it has a new slot.
                if let Some(j) = self
                    .jobs
                    .iter_mut()
                    .find(|j| j.job.serial() == job.serial())
                {
                    j.attempts = j.attempts.max(attempt);
                }
            }
            Record::Finished {
                job,
                key,
                fingerprint,
                finished_at,
                outcome,
                ..
            } => {
                self.expire(finished_at, replay_ttl);
                self.jobs.retain(|j| j.job.serial() != job.serial());
                if let (Some(key), Outcome::Succeeded { response }) = (key, outcome) {
                    self.replays.retain(|r| r.key != key);
                    self.replays.push(StoredReplay {
                        key,
                        fingerprint,
                        job,
                        response,
                        finished_at,
                    });
                }
            }
            Record::DeadLettered(letter) => {
                self.see_serial(letter.job);
                self.expire(letter.dead_at, replay_ttl);
                let at = self.letters.partition_point(|l| l.job < letter.job);
                if self.letters.get(at).is_some_and(|l| l.job == letter.job) {
                    self.letters[at] = *letter;
                } else {
                    self.letters.insert(at, *letter);
                }
            }
            Record::LetterRemoved { letter } => self.letters.retain(|l| l.job != letter),
        }
    }

    /// Keeps `next_serial` above every serial seen (saturating: a serial
    /// of `u32::MAX` is never handed out, so the store then says none is left).
    fn see_serial(&mut self, job: JobId) {
        self.next_serial = self.next_serial.max(job.serial().saturating_add(1));
    }

    /// Drops replays that expired by `now`, as the relay's store does
    /// (a record expiring at `now` is gone).
    fn expire(&mut self, now: Time, ttl: Duration) {
        self.replays.retain(|r| r.finished_at + ttl > now);
    }
}

impl RelaySettings {
    /// How long a keyed success is replayed: what [`Stored::apply`] needs.
    pub fn replay_ttl(&self) -> Duration {
        self.idempotency.ttl
    }
}

/// Why stored state cannot be taken back: it does not fit the settings, or
/// it contradicts itself. Each says which setting to change or that the
/// store is damaged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    #[error(
        "the store holds {stored} unfinished jobs but `relay.jobs_max` is {jobs_max}: \
         raise `relay.jobs_max` to at least {stored}"
    )]
    TooManyJobs { stored: usize, jobs_max: usize },
    #[error(
        "the store holds {waiting} jobs never called on route `{route}` but \
         `relay.queue.capacity` (each route's queue) is {capacity}: raise \
         `relay.queue.capacity` to at least {waiting}"
    )]
    QueueTooSmall {
        route: String,
        waiting: usize,
        capacity: usize,
    },
    #[error(
        "stored job {job} is for route {route} but the relay has {routes} routes: \
         put its route back in `relay.routes`"
    )]
    UnknownRoute {
        job: JobId,
        route: u16,
        routes: usize,
    },
    #[error(
        "stored job {job} has slot {} but `relay.jobs_max` is {jobs_max}: \
         raise `relay.jobs_max` above the slot",
        job.slot()
    )]
    SlotOutOfRange { job: JobId, jobs_max: usize },
    #[error("stored jobs {first} and {second} share slot {}: the store is damaged", first.slot())]
    DuplicateSlot { first: JobId, second: JobId },
    #[error("stored job {job} has the same idempotency key as another unfinished job: the store is damaged")]
    DuplicateKey { job: JobId },
    #[error("letter {letter} is stored twice: the store is damaged")]
    DuplicateLetter { letter: JobId },
    #[error(
        "the store holds {letters} dead letters that do not fit `relay.dlq` \
         (capacity {capacity}, bytes_max {bytes_max}): raise `relay.dlq.capacity` or `relay.dlq.bytes_max`"
    )]
    LettersDoNotFit {
        letters: usize,
        capacity: usize,
        bytes_max: usize,
    },
    #[error(
        "the store holds {keys} idempotency keys of unfinished jobs but \
         `relay.idempotency.keys_max` is {keys_max}: raise it to at least {keys}"
    )]
    KeysDoNotFit { keys: usize, keys_max: usize },
    #[error(
        "stored id {job} is not below the store's next serial {next_serial}: the store is damaged"
    )]
    SerialAhead { job: JobId, next_serial: u32 },
    #[error("every job serial has been used ({}): start a new store", u32::MAX)]
    SerialsExhausted,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{CallError, GiveUp};

    const TTL: Duration = Duration::from_secs(10);

    fn accepted(serial: u32, key: Option<u64>, at_ms: u64) -> Record<u64, u64> {
        Record::Accepted {
            job: JobId::new(serial, serial as usize),
            route: RouteId::DEFAULT,
            key,
            client: 1,
            fingerprint: 7,
            payload: u64::from(serial),
            accepted_at: Time::from_millis(at_ms),
            redrives: 0,
        }
    }

    fn finished(serial: u32, key: Option<u64>, at_ms: u64, ok: bool) -> Record<u64, u64> {
        let outcome = if ok {
            Outcome::Succeeded {
                response: 100 + u64::from(serial),
            }
        } else {
            Outcome::DeadLettered {
                reason: GiveUp::AttemptsExhausted,
                last_error: CallError::ServerError,
            }
        };
        Record::Finished {
            job: JobId::new(serial, serial as usize),
            key,
            fingerprint: 7,
            attempts: 1,
            finished_at: Time::from_millis(at_ms),
            outcome,
        }
    }

    fn fold(records: Vec<Record<u64, u64>>) -> Stored<u64, u64> {
        let mut s = Stored::default();
        for r in records {
            s.apply(r, TTL);
        }
        s
    }

    #[test]
    fn unfinished_jobs_stay_with_their_highest_started_attempt() {
        let s = fold(vec![
            accepted(0, None, 0),
            accepted(1, Some(5), 1),
            Record::Started {
                job: JobId::new(1, 1),
                attempt: 1,
            },
            Record::Started {
                job: JobId::new(1, 1),
                attempt: 2,
            },
            finished(0, None, 2, true),
        ]);
        assert_eq!(s.next_serial, 2);
        assert_eq!(s.jobs.len(), 1);
        assert_eq!((s.jobs[0].job, s.jobs[0].attempts), (JobId::new(1, 1), 2));
        assert!(s.replays.is_empty(), "a keyless success has no replay");
    }

    #[test]
    fn keyed_successes_replay_until_their_ttl() {
        let s = fold(vec![
            accepted(0, Some(5), 0),
            finished(0, Some(5), 10, true),
        ]);
        assert_eq!(s.replays.len(), 1);
        assert_eq!(s.replays[0].response, 100);
        // A record at exactly finished_at + ttl finds it expired.
        let later = fold(vec![
            accepted(0, Some(5), 0),
            finished(0, Some(5), 10, true),
            accepted(1, None, 10_010),
        ]);
        assert!(later.replays.is_empty());
    }

    #[test]
    fn letters_stay_in_id_order_until_removed() {
        let letter = |serial: u32| {
            Record::DeadLettered(Box::new(DeadLetter {
                job: JobId::new(serial, 0),
                route: RouteId::DEFAULT,
                key: None,
                client: 1,
                fingerprint: 7,
                payload: 1u64,
                attempts: 3,
                reason: GiveUp::AttemptsExhausted,
                last_error: CallError::ServerError,
                accepted_at: Time::ZERO,
                dead_at: Time::ZERO,
                redrives: 0,
                late_success: None,
            }))
        };
        let s = fold(vec![
            letter(4),
            letter(2),
            letter(3),
            Record::LetterRemoved {
                letter: JobId::new(3, 0),
            },
        ]);
        let ids: Vec<_> = s.letters.iter().map(|l| l.job.serial()).collect();
        assert_eq!(ids, [2, 4]);
        assert_eq!(s.next_serial, 5);
    }
}
