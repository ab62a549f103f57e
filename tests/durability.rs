//! Durability, checked from outside the relay: the journal's records,
//! folded with `Stored::apply`, are enough to rebuild a relay after a crash
//! that loses everything in memory.
//!
//! The property test drives a relay with its journal on through random
//! requests (keyed and not), call results (success, failure, never
//! answered), wake-ups and redrives, crashes it at random points (each
//! turn's records are committed before its outputs are used, as a driver
//! must), recovers from the fold, and checks that:
//!
//! - no accepted job is lost: each is live in the recovered relay under its
//!   old id, or has finished, and by the end every one has finished;
//! - a job whose attempt had started is marked redelivered, and only such;
//! - ids never repeat after recovery;
//! - keyed replays (and in-flight keys) answer as before the crash;
//! - the dead letters are back, as they were.
//!
//! Each of these fails if the fold drops the matching record (try it).

mod hand;

use hand::ms;
use proptest::prelude::*;
use resilient_relay::relay::{
    Answer, BackoffKind, CallError, CallId, DeadLetter, GiveUp, JobId, JobState, Outcome, Output,
    Record, RecoverError, Refusal, Relay, RelayConfig, RelaySettings, Request, Stored, StoredJob,
    StoredReplay, WhenFull,
};
use resilient_relay::rng::{Domain, Seed};
use resilient_relay::time::Time;
use std::collections::BTreeMap;
use std::time::Duration;

type TestRelay = Relay<u64, u32>;

const TTL_MS: f64 = 2_000.0;

fn config() -> RelayConfig {
    let mut cfg = RelayConfig {
        workers: 2,
        jobs_max: 16,
        breaker: None,
        ..RelayConfig::default()
    };
    cfg.queue.capacity = 6;
    cfg.retry.attempts_max = 3;
    cfg.retry.attempt_timeout_ms = 100.0;
    cfg.retry.backoff.base_ms = 10.0;
    cfg.retry.backoff.kind = BackoffKind::Constant;
    cfg.idempotency.ttl_ms = TTL_MS;
    cfg.dlq.capacity = 4;
    cfg.dlq.when_full = WhenFull::DropOldest;
    cfg
}

fn settings(cfg: &RelayConfig) -> RelaySettings {
    cfg.check().expect("valid test config")
}

fn rng(run: u64) -> resilient_relay::rng::Stream {
    Seed(7).stream(Domain::Relay, run)
}

fn request(key: Option<u64>, payload: u32) -> Request<u64, u32> {
    Request {
        client: 1,
        key,
        fingerprint: u64::from(payload),
        payload,
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// A request; keys come from a small set, so they repeat.
    Request {
        key: Option<u64>,
        payload: u32,
    },
    /// An outstanding call (picked by index) answers: 0 success, 1 failure.
    Answer {
        pick: usize,
        fails: bool,
    },
    /// An outstanding call is never answered (its attempt will time out).
    Lose {
        pick: usize,
    },
    /// Time moves on and due timers fire.
    Wait(u64),
    RedriveAll,
    /// Redrive one letter, picked by index.
    Redrive(usize),
    /// The relay crashes; it restarts from the store after this pause.
    Crash {
        pause_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (proptest::option::of(0u64..6), 0u32..2)
            .prop_map(|(key, payload)| Step::Request { key, payload }),
        5 => (0usize..8, proptest::bool::weighted(0.5))
            .prop_map(|(pick, fails)| Step::Answer { pick, fails }),
        1 => (0usize..8).prop_map(|pick| Step::Lose { pick }),
        3 => (0u64..300).prop_map(Step::Wait),
        1 => Just(Step::RedriveAll),
        1 => (0usize..4).prop_map(Step::Redrive),
        1 => (0u64..3_000).prop_map(|pause_ms| Step::Crash { pause_ms }),
    ]
}

/// A key's last job, its fingerprint, and its success (response, when).
type KeyTruth = (JobId, u64, Option<(u32, Time)>);

/// What the test knows, independently of the relay and the store.
#[derive(Default)]
struct Truth {
    /// Every job accepted (or redriven), ever, with its key and fingerprint.
    accepted: BTreeMap<JobId, (Option<u64>, u64)>,
    /// How every finished job ended.
    finished: BTreeMap<JobId, Outcome<u32>>,
    /// Attempts started per job (from the calls the relay asked for).
    started: BTreeMap<JobId, u32>,
    /// Per key: the last job that took it, and its success (response, when).
    keys: BTreeMap<u64, KeyTruth>,
}

struct Run {
    cfg: RelayConfig,
    relay: TestRelay,
    now: Time,
    /// Calls sent and not answered, in order.
    calls: Vec<CallId>,
    /// Records committed so far, folded.
    store: Stored<u64, u32>,
    truth: Truth,
    crashes: u64,
}

impl Run {
    fn new(cfg: RelayConfig) -> Run {
        let mut relay = Relay::new(&settings(&cfg), rng(0));
        relay.set_journal(true);
        Run {
            cfg,
            relay,
            now: Time::ZERO,
            calls: Vec::new(),
            store: Stored::default(),
            truth: Truth::default(),
            crashes: 0,
        }
    }

    fn ttl(&self) -> Duration {
        settings(&self.cfg).replay_ttl()
    }

    /// Ends a turn: its records are committed (folded), then its outputs
    /// are performed (noted).
    fn end_turn(&mut self) {
        let ttl = self.ttl();
        while let Some(r) = self.relay.poll_record() {
            self.store.apply(r, ttl);
        }
        while let Some(o) = self.relay.poll_output() {
            match o {
                Output::Call { call, .. } => {
                    self.truth.started.insert(call.job, call.attempt);
                    self.calls.push(call);
                }
                Output::Finished(f) => {
                    if let (Some(k), Outcome::Succeeded { response }) = (f.key, &f.outcome) {
                        if let Some(entry) = self.truth.keys.get_mut(&k) {
                            if entry.0 == f.job {
                                entry.2 = Some((*response, self.now));
                            }
                        }
                    }
                    self.truth.finished.insert(f.job, f.outcome);
                }
                Output::Event(resilient_relay::relay::Event::Redriven { letter, job }) => {
                    let l = self.truth.accepted.get(&letter).copied();
                    self.accept(job, l.and_then(|l| l.0), l.map_or(0, |l| l.1));
                }
                _ => {}
            }
        }
    }

    fn accept(&mut self, job: JobId, key: Option<u64>, fingerprint: u64) {
        assert!(
            !self.truth.accepted.contains_key(&job),
            "id {job} given out twice"
        );
        if let Some(&last) = self.truth.accepted.keys().next_back() {
            assert!(job.serial() > last.serial(), "id {job} after {last}");
        }
        self.truth.accepted.insert(job, (key, fingerprint));
        if let Some(k) = key {
            self.truth.keys.insert(k, (job, fingerprint, None));
        }
    }

    fn step(&mut self, s: &Step) -> Result<(), TestCaseError> {
        match *s {
            Step::Request { key, payload } => {
                let answer = self.relay.handle_request(self.now, request(key, payload));
                if let Answer::Accepted { job } = answer {
                    self.accept(job, key, u64::from(payload));
                }
            }
            Step::Answer { pick, fails } if !self.calls.is_empty() => {
                let call = self.calls.remove(pick % self.calls.len());
                let result = if fails {
                    Err(CallError::ServerError)
                } else {
                    Ok(1000 + call.attempt)
                };
                self.relay.handle_call_result(self.now, call, result);
            }
            Step::Lose { pick } if !self.calls.is_empty() => {
                self.calls.remove(pick % self.calls.len());
            }
            Step::Answer { .. } | Step::Lose { .. } => {}
            Step::Wait(d) => {
                self.now += Duration::from_millis(d);
                self.relay.handle_timeout(self.now);
            }
            Step::RedriveAll => {
                self.relay.redrive_all(self.now);
            }
            Step::Redrive(pick) => {
                let letters: Vec<_> = self.relay.dead_letters().list().map(|l| l.job).collect();
                if !letters.is_empty() {
                    let _ = self.relay.redrive(self.now, letters[pick % letters.len()]);
                }
            }
            Step::Crash { pause_ms } => {
                self.end_turn();
                return self.crash(pause_ms);
            }
        }
        self.end_turn();
        Ok(())
    }

    /// Loses the relay and every call in flight; restarts from the store.
    fn crash(&mut self, pause_ms: u64) -> Result<(), TestCaseError> {
        let before = Snapshot::of(&self.relay);
        self.crashes += 1;
        self.now += Duration::from_millis(pause_ms);
        self.calls.clear();
        let stored = self.store.clone();
        let relay = Relay::recover(&settings(&self.cfg), rng(self.crashes), self.now, stored);
        self.relay = relay.map_err(|e| TestCaseError::fail(format!("recover: {e}")))?;
        let ttl = self.ttl();
        self.check_jobs(&before)?;
        self.check_letters(&before)?;
        self.check_keys(ttl)?;
        self.end_turn();
        Ok(())
    }

    fn check_jobs(&self, before: &Snapshot) -> Result<(), TestCaseError> {
        let s = self.relay.stats();
        let unfinished: Vec<_> = self
            .truth
            .accepted
            .keys()
            .filter(|j| !self.truth.finished.contains_key(j))
            .collect();
        prop_assert_eq!(s.recovered_jobs, unfinished.len() as u64);
        prop_assert_eq!(
            &before.live,
            &unfinished.iter().map(|j| **j).collect::<Vec<_>>()
        );
        let mut redelivered = 0;
        for &&job in &unfinished {
            let Some(status) = self.relay.job_status(job) else {
                return Err(TestCaseError::fail(format!("accepted job {job} lost")));
            };
            let was_started = self.truth.started.get(&job).copied().unwrap_or(0);
            prop_assert!(status.finished_at.is_none(), "{job} is live");
            prop_assert_eq!(
                status.redelivered,
                was_started > 0,
                "job {} started {} attempts",
                job,
                was_started
            );
            let attempts_now = status.attempts - u32::from(status.state == JobState::InFlight);
            prop_assert_eq!(attempts_now, was_started, "job {} keeps its attempts", job);
            redelivered += u64::from(was_started > 0);
        }
        prop_assert_eq!(s.redelivered_jobs, redelivered);
        Ok(())
    }

    fn check_letters(&self, before: &Snapshot) -> Result<(), TestCaseError> {
        let after: Vec<_> = self
            .relay
            .dead_letters()
            .list()
            .map(strip_late_success)
            .collect();
        prop_assert_eq!(&before.letters, &after, "the letters are back");
        Ok(())
    }

    /// Every key answers as it did: an unfinished job's key conflicts, a
    /// success within its TTL replays.
    fn check_keys(&mut self, ttl: Duration) -> Result<(), TestCaseError> {
        let keys: Vec<_> = self.truth.keys.iter().map(|(k, v)| (*k, *v)).collect();
        for (key, (job, fingerprint, success)) in keys {
            let live = !self.truth.finished.contains_key(&job);
            let req = request(Some(key), fingerprint as u32);
            let expected = match success {
                _ if live => Some(Answer::Refused {
                    why: Refusal::Conflict,
                    retry_after: None,
                    job: Some(job),
                }),
                Some((response, at)) if at + ttl > self.now => {
                    Some(Answer::Replayed { job, response })
                }
                _ => None,
            };
            if let Some(expected) = expected {
                let answer = self.relay.handle_request(self.now, req);
                prop_assert_eq!(answer, expected, "key {} after recovery", key);
            }
        }
        Ok(())
    }

    /// Answers every call with success and lets time pass until no job is
    /// live; then every accepted job has finished.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..200 {
            if self.relay.live_jobs() == 0 {
                break;
            }
            for call in std::mem::take(&mut self.calls) {
                self.relay.handle_call_result(self.now, call, Ok(7));
                self.end_turn();
            }
            self.now += Duration::from_millis(50);
            self.relay.handle_timeout(self.now);
            self.end_turn();
        }
        prop_assert_eq!(self.relay.live_jobs(), 0);
        for job in self.truth.accepted.keys() {
            prop_assert!(
                self.truth.finished.contains_key(job),
                "accepted job {} never finished",
                job
            );
        }
        Ok(())
    }
}

fn strip_late_success(l: &DeadLetter<u64, u32>) -> DeadLetter<u64, u32> {
    DeadLetter {
        late_success: None,
        ..l.clone()
    }
}

/// The relay just before a crash: live job ids and letters.
struct Snapshot {
    live: Vec<JobId>,
    letters: Vec<DeadLetter<u64, u32>>,
}

impl Snapshot {
    fn of(r: &TestRelay) -> Snapshot {
        Snapshot {
            live: r.unfinished().iter().map(|(s, ..)| s.job).collect(),
            letters: r.dead_letters().list().map(strip_late_success).collect(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_crash_loses_no_accepted_job(steps in proptest::collection::vec(step(), 1..150)) {
        let mut run = Run::new(config());
        for s in &steps {
            run.step(s)?;
        }
        run.step(&Step::Crash { pause_ms: 10 })?;
        run.finish()?;
    }
}

// ---- By hand -------------------------------------------------------------

fn fold(
    relay: &mut TestRelay,
    store: &mut Stored<u64, u32>,
    ttl: Duration,
) -> Vec<Output<u64, u32>> {
    while let Some(r) = relay.poll_record() {
        store.apply(r, ttl);
    }
    std::iter::from_fn(|| relay.poll_output()).collect()
}

fn calls(outputs: &[Output<u64, u32>]) -> Vec<CallId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Call { call, .. } => Some(*call),
            _ => None,
        })
        .collect()
}

#[test]
fn an_in_flight_job_comes_back_in_its_slot_marked_redelivered() {
    let s = settings(&config());
    let ttl = s.replay_ttl();
    let mut r = Relay::new(&s, rng(0));
    r.set_journal(true);
    let mut store = Stored::default();
    let Answer::Accepted { job: a } = r.handle_request(ms(0), request(Some(1), 1)) else {
        panic!("not accepted")
    };
    let Answer::Accepted { job: b } = r.handle_request(ms(0), request(None, 2)) else {
        panic!("not accepted")
    };
    let Answer::Accepted { job: c } = r.handle_request(ms(0), request(None, 3)) else {
        panic!("not accepted")
    };
    let sent = calls(&fold(&mut r, &mut store, ttl));
    assert_eq!(sent.len(), 2, "two workers");
    drop(r);

    let r = Relay::recover(&s, rng(1), ms(1_000), store).expect("recovers");
    let status = r.job_status(a).expect("a is back under its id");
    assert!(status.redelivered, "a was in flight: {status:?}");
    assert_eq!(status.state, JobState::InFlight, "and runs again");
    assert_eq!(status.attempts, 2, "as its second attempt");
    let c_status = r.job_status(c).expect("c is back");
    assert!(!c_status.redelivered, "c was never called");
    assert_eq!(
        c_status.state,
        JobState::Queued,
        "the redelivered jobs go first"
    );
    assert!(r.job_status(b).expect("b is back").redelivered);
    assert_eq!(
        (r.stats().recovered_jobs, r.stats().redelivered_jobs),
        (3, 2)
    );
    assert_eq!((a.slot(), b.slot(), c.slot()), (0, 1, 2));
}

#[test]
fn ids_continue_after_recovery() {
    let s = settings(&config());
    let ttl = s.replay_ttl();
    let mut r = Relay::new(&s, rng(0));
    r.set_journal(true);
    let mut store = Stored::default();
    for p in 0..3 {
        r.handle_request(ms(0), request(None, p));
    }
    let sent = calls(&fold(&mut r, &mut store, ttl));
    for call in sent {
        r.handle_call_result(ms(1), call, Ok(1));
    }
    fold(&mut r, &mut store, ttl);
    let mut r = Relay::recover(&s, rng(1), ms(2), store.clone()).expect("recovers");
    let Answer::Accepted { job } = r.handle_request(ms(3), request(None, 9)) else {
        panic!("not accepted")
    };
    assert_eq!(store.next_serial, 3);
    assert_eq!(job.serial(), 3, "not 0 again: {job}");
}

#[test]
fn a_replay_answers_after_recovery_until_its_ttl() {
    let s = settings(&config());
    let ttl = s.replay_ttl();
    let mut r = Relay::new(&s, rng(0));
    r.set_journal(true);
    let mut store = Stored::default();
    let Answer::Accepted { job } = r.handle_request(ms(0), request(Some(4), 1)) else {
        panic!("not accepted")
    };
    let sent = calls(&fold(&mut r, &mut store, ttl));
    r.handle_call_result(ms(10), sent[0], Ok(77));
    fold(&mut r, &mut store, ttl);
    assert_eq!(store.replays.len(), 1);
    let mut again = Relay::recover(&s, rng(1), ms(500), store.clone()).expect("recovers");
    assert_eq!(
        again.handle_request(ms(500), request(Some(4), 1)),
        Answer::Replayed { job, response: 77 }
    );
    let mut late = Relay::recover(&s, rng(1), ms(2_010), store).expect("recovers");
    assert!(
        matches!(
            late.handle_request(ms(2_010), request(Some(4), 1)),
            Answer::Accepted { .. }
        ),
        "the replay expired at finished_at + ttl"
    );
}

fn stored_job(serial: u32, slot: usize, attempts: u32) -> StoredJob<u64, u32> {
    StoredJob {
        job: JobId::new(serial, slot),
        route: resilient_relay::relay::RouteId::DEFAULT,
        key: None,
        client: 1,
        fingerprint: 0,
        payload: 0,
        accepted_at: Time::ZERO,
        redrives: 0,
        attempts,
    }
}

fn letter(serial: u32) -> DeadLetter<u64, u32> {
    DeadLetter {
        job: JobId::new(serial, 0),
        route: resilient_relay::relay::RouteId::DEFAULT,
        key: None,
        client: 1,
        fingerprint: 0,
        payload: 0,
        attempts: 3,
        reason: GiveUp::AttemptsExhausted,
        last_error: CallError::ServerError,
        accepted_at: Time::ZERO,
        dead_at: Time::ZERO,
        redrives: 0,
        late_success: None,
    }
}

fn recover(stored: Stored<u64, u32>) -> Result<TestRelay, RecoverError> {
    Relay::recover(&settings(&config()), rng(0), ms(0), stored)
}

/// Stored state that does not fit the settings (or contradicts itself) is
/// an error naming what to change, never a panic.
#[test]
fn stored_state_that_does_not_fit_is_an_error() {
    let with = |jobs: Vec<StoredJob<u64, u32>>| Stored {
        next_serial: 1_000,
        jobs,
        ..Stored::default()
    };
    let too_many: Vec<_> = (0..17).map(|i| stored_job(i, i as usize, 1)).collect();
    assert!(matches!(
        recover(with(too_many)),
        Err(RecoverError::TooManyJobs {
            stored: 17,
            jobs_max: 16
        })
    ));
    let waiting: Vec<_> = (0..7).map(|i| stored_job(i, i as usize, 0)).collect();
    let err = recover(with(waiting)).err().expect("queue of 6");
    assert!(matches!(
        err,
        RecoverError::QueueTooSmall {
            waiting: 7,
            capacity: 6,
            ..
        }
    ));
    assert!(err.to_string().contains("relay.queue.capacity"), "{err}");
    assert!(err.to_string().contains("route `default`"), "{err}");
    assert!(matches!(
        recover(with(vec![stored_job(0, 3, 1), stored_job(1, 3, 1)])),
        Err(RecoverError::DuplicateSlot { .. })
    ));
    assert!(matches!(
        recover(with(vec![stored_job(0, 4_000_000_000, 1)])),
        Err(RecoverError::SlotOutOfRange { .. })
    ));
    let ahead = Stored {
        next_serial: 2,
        jobs: vec![stored_job(5, 0, 0)],
        ..Stored::default()
    };
    assert!(matches!(
        recover(ahead),
        Err(RecoverError::SerialAhead { .. })
    ));
    let mut keyed = vec![stored_job(0, 0, 0), stored_job(1, 1, 0)];
    for j in &mut keyed {
        j.key = Some(3);
    }
    assert!(matches!(
        recover(with(keyed)),
        Err(RecoverError::DuplicateKey { .. })
    ));
    let letters = Stored {
        next_serial: 100,
        letters: (0..5).map(letter).collect(),
        ..Stored::default()
    };
    assert!(matches!(
        recover(letters),
        Err(RecoverError::LettersDoNotFit { capacity: 4, .. })
    ));
    let twice = Stored {
        next_serial: 100,
        letters: vec![letter(1), letter(1)],
        ..Stored::default()
    };
    assert!(matches!(
        recover(twice),
        Err(RecoverError::DuplicateLetter { .. })
    ));
    let exhausted = Stored::<u64, u32> {
        next_serial: u32::MAX,
        ..Stored::default()
    };
    assert!(matches!(
        recover(exhausted),
        Err(RecoverError::SerialsExhausted)
    ));
}

/// The last serial is never handed out: the relay refuses instead of
/// wrapping back to ids it gave before.
#[test]
fn job_serials_do_not_wrap() {
    let stored = Stored {
        next_serial: u32::MAX - 1,
        ..Stored::default()
    };
    let mut r = recover(stored).expect("one serial left");
    let Answer::Accepted { job } = r.handle_request(ms(1), request(None, 1)) else {
        panic!("the last serial is usable")
    };
    assert_eq!(job.serial(), u32::MAX - 1);
    assert!(matches!(
        r.handle_request(ms(1), request(None, 2)),
        Answer::Refused {
            why: Refusal::Unavailable,
            ..
        }
    ));
}

/// A job whose acceptance could not be made durable is taken back: its
/// worker, key and queue place are free again, and its call is not sent.
#[test]
fn a_retracted_job_leaves_no_trace() {
    let s = settings(&config());
    let mut r = Relay::new(&s, rng(0));
    r.set_journal(true);
    let Answer::Accepted { job } = r.handle_request(ms(0), request(Some(8), 1)) else {
        panic!("not accepted")
    };
    assert_eq!(r.in_flight(), 1);
    assert!(r.retract(ms(0), job));
    assert_eq!((r.in_flight(), r.live_jobs()), (0, 0));
    let outputs: Vec<_> = std::iter::from_fn(|| r.poll_output()).collect();
    assert!(
        calls(&outputs).is_empty(),
        "its call is dropped: {outputs:?}"
    );
    assert!(r.job_status(job).is_none());
    assert_eq!(r.stats().accepted, 0);
    assert!(
        matches!(
            r.handle_request(ms(1), request(Some(8), 1)),
            Answer::Accepted { .. }
        ),
        "its key is free again"
    );
    assert!(!r.retract(ms(1), job), "a job taken back is gone");
}

/// Another replica's stored job is adopted under its serial and runs.
#[test]
fn an_adopted_job_keeps_its_serial_and_runs_again() {
    let s = settings(&config());
    let mut r = Relay::new(&s, rng(0));
    r.set_journal(true);
    r.handle_request(ms(0), request(None, 1));
    let mut job = stored_job(41, 9, 2);
    job.key = Some(5);
    let id = r.adopt(ms(1), job).expect("room");
    assert_eq!(id.serial(), 41);
    let status = r.job_status(id).expect("live");
    assert!(status.redelivered);
    assert_eq!(
        status.state,
        JobState::InFlight,
        "the second worker took it"
    );
    let records: Vec<_> = std::iter::from_fn(|| r.poll_record()).collect();
    assert!(
        records.contains(&Record::Started {
            job: id,
            attempt: 3
        }),
        "its next attempt is journaled: {records:?}"
    );
    let Answer::Accepted { job: next } = r.handle_request(ms(2), request(None, 2)) else {
        panic!("not accepted")
    };
    assert!(next.serial() > 41, "local ids stay above adopted ones");
    let mut same_key = stored_job(50, 0, 0);
    same_key.key = Some(5);
    assert_eq!(r.adopt(ms(3), same_key), Err(Refusal::Conflict));
}

/// The fold keeps only what a restart needs.
#[test]
fn the_fold_forgets_finished_jobs_and_removed_letters() {
    let s = settings(&config());
    let ttl = s.replay_ttl();
    let mut store = Stored::default();
    let j = JobId::new(0, 0);
    store.apply(
        Record::Accepted {
            job: j,
            route: resilient_relay::relay::RouteId::DEFAULT,
            key: Some(1u64),
            client: 1,
            fingerprint: 2,
            payload: 3u32,
            accepted_at: ms(0),
            redrives: 0,
        },
        ttl,
    );
    store.apply(Record::Started { job: j, attempt: 1 }, ttl);
    assert_eq!(store.jobs[0].attempts, 1);
    store.apply(
        Record::Finished {
            job: j,
            key: Some(1),
            fingerprint: 2,
            attempts: 1,
            finished_at: ms(5),
            outcome: Outcome::Succeeded { response: 4 },
        },
        ttl,
    );
    assert!(store.jobs.is_empty());
    assert_eq!(
        store.replays,
        vec![StoredReplay {
            key: 1,
            fingerprint: 2,
            job: j,
            response: 4,
            finished_at: ms(5)
        }]
    );
}

// ---- The simulator's store and crash model ---------------------------------

mod simulated {
    use resilient_relay::sim::{simulate, Scenario, SimOptions, Summary};

    /// 200 req/s of keyed requests for 25 s into a relay whose calls take
    /// about 300 ms (so about 60 are in flight at any time), no attempt
    /// timeout short enough to retry, and patient clients; the relay
    /// crashes at 10 s and is back 2 s later. Everything has ended by 30 s.
    fn scenario(store: &str) -> Scenario {
        let text = format!(
            r#"
name = "crash"
seed = 3
horizon_s = 30
{store}
[[faults.crash]]
at_s = 10
restart_after_s = 2

[relay]
workers = 200
jobs_max = 10000
queue = {{ capacity = 2000, retry_after_ms = 500 }}

[relay.retry]
attempts_max = 3
attempt_timeout_ms = 20000

[downstream]
latency = {{ kind = "uniform", min_ms = 200, max_ms = 400 }}

[[clients]]
kind = "open-loop"
schedule = [{{ until_s = 25, per_s = 200 }}]
clients = 100
retry = {{ attempts_max = 20, keyed = true, backoff = {{ kind = "constant", base_ms = 500, cap_ms = 500 }} }}
"#
        );
        Scenario::from_toml(&text, "crash.toml").expect("valid scenario")
    }

    fn run(store: &str) -> Summary {
        let s = scenario(store);
        simulate(&s, &SimOptions::seed(s.seed))
            .expect("the run keeps every invariant")
            .summary
    }

    const EMBEDDED: &str =
        "[store]\nkind = \"embedded\"\ncommit_ms = { kind = \"constant\", ms = 2 }";

    /// Nothing that got a 202 is lost (the run would stop with a violation);
    /// the jobs in flight at the crash run again, and only those can land
    /// twice at the downstream.
    #[test]
    fn a_durable_store_loses_no_accepted_job() {
        let s = run(EMBEDDED);
        assert_eq!((s.crashes, s.jobs_lost), (1, 0), "{s}");
        assert!(s.jobs_recovered >= 30, "about 60 jobs were live: {s}");
        assert!(s.jobs_redelivered >= 30, "{s}");
        assert!(
            s.duplicate_side_effects > 0,
            "in-flight work ran twice: {s}"
        );
        assert!(
            s.duplicate_side_effects <= s.jobs_redelivered,
            "duplicates only from redelivered jobs: {s}"
        );
        assert!(s.refused_while_down > 0, "{s}");
        assert_eq!(
            (s.client_still_waiting, s.still_in_flight),
            (0, 0),
            "every client heard of its job: {s}"
        );
    }

    /// With a shared store another replica answers at once, and adopts
    /// the crashed one's jobs when their leases expire; every client hears
    /// of its job, under the id it was given.
    #[test]
    fn a_shared_store_fails_over_and_adopts_the_leased_jobs() {
        let s = run("[store]\nkind = \"shared\"\ncommit_ms = { kind = \"constant\", ms = 4 }");
        assert_eq!((s.jobs_lost, s.refused_while_down), (0, 0), "{s}");
        assert!(s.jobs_redelivered >= 30, "{s}");
        assert!(s.duplicate_side_effects <= s.jobs_redelivered, "{s}");
        assert_eq!((s.client_still_waiting, s.still_in_flight), (0, 0), "{s}");
    }

    /// In memory, the jobs live at the crash are gone, and their clients
    /// wait for news that never comes.
    #[test]
    fn a_memory_relay_loses_its_live_jobs() {
        let s = run("");
        assert!(s.jobs_lost >= 30, "{s}");
        assert_eq!((s.jobs_recovered, s.commits), (0, 0), "{s}");
        assert_eq!(s.client_still_waiting, s.jobs_lost, "{s}");
    }

    /// Every answer and call waits for a commit: the median client latency
    /// grows by at least the two commits on its path (the 202's, then the
    /// success's) with 10 ms commits.
    #[test]
    fn the_commit_wait_shows_in_client_latency() {
        let memory = run("");
        let slow = run("[store]\nkind = \"shared\"\ncommit_ms = { kind = \"constant\", ms = 10 }");
        let extra = slow.client_latency.p50_ms - memory.client_latency.p50_ms;
        assert!(extra >= 19.0, "commit wait added {extra} ms");
        assert!(slow.commits > 0);
    }

    #[test]
    fn a_crash_run_is_deterministic() {
        assert_eq!(run(EMBEDDED), run(EMBEDDED));
    }

    /// One worker, 100 ms calls and 40 req/s until 4.2 s: about ten jobs
    /// wait in the queue (none longer than 300 ms) when the relay crashes
    /// at 4 s. Their leases expire 1 s later, when the survivor's queue is
    /// empty and each is too old: each is shed as it is adopted, and the
    /// next adopted job takes the slot it just left. The driver must hear
    /// of one job's end before it hands out its slot again, and the client
    /// of every shed job hears that it failed.
    fn shed_at_adoption() -> Scenario {
        let text = r#"
name = "shed-at-adoption"
seed = 11
horizon_s = 10
[store]
kind = "shared"
[[faults.crash]]
at_s = 4
restart_after_s = 1

[relay]
workers = 1
jobs_max = 100
queue = { capacity = 60, retry_after_ms = 500, shed_after_ms = 300, shed_to = "fail" }

[relay.retry]
attempts_max = 1

[downstream]
latency = { kind = "constant", ms = 100 }

[[clients]]
kind = "open-loop"
schedule = [{ until_s = 4.2, per_s = 40 }]
clients = 50
"#;
        Scenario::from_toml(text, "shed-at-adoption.toml").expect("valid scenario")
    }

    #[test]
    fn leased_jobs_shed_as_they_are_adopted_free_their_slots_in_order() {
        let s = shed_at_adoption();
        let summary = simulate(&s, &SimOptions::seed(s.seed))
            .unwrap_or_else(|e| panic!("seed {}: {e}", s.seed))
            .summary;
        assert!(
            summary.jobs_recovered >= 5,
            "seed {}: the queued jobs were leased and adopted: {summary}",
            s.seed
        );
        assert_eq!(
            (summary.client_still_waiting, summary.still_in_flight),
            (0, 0),
            "seed {}: every client heard of its job: {summary}",
            s.seed
        );
    }

    /// The swarm's shrunk case of the same: `job 703-0 accepted while job
    /// 702-0 holds its slot` at the restart after the crash.
    const SWARM_SLOT: &str = r#"
name = "swarm-8569042435221559155"
description = "drawn by `swarm`"
seed = 8569042435221559155
horizon_s = 24.0

[relay]
workers = 2
jobs_max = 11
history_max = 0

[relay.queue]
capacity = 9
retry_after_ms = 151.76067717728213
shed_after_ms = 20.155505965614026
shed_to = "fail"

[relay.retry]
attempts_max = 2
attempt_timeout_ms = 0.0
retry_on = ["timeout", "server-error", "throttled"]

[relay.retry.backoff]
kind = "equal-jitter"
base_ms = 15.457705723898174
cap_ms = 116.4455296716671
multiplier = 1.9804719754212825

[relay.breaker]
success_threshold = 5
open_ms = 205.41500205724915
half_open_probes_max = 1
slow_call_ms = 0.0
slow_call_rate = 1.0

[relay.breaker.trip]
kind = "consecutive-failures"
failures = 1

[relay.idempotency]
ttl_ms = 55636.53136250188
keys_max = 476
required = false
key_bytes_max = 255
when_full = "refuse"

[relay.dlq]
capacity = 1
bytes_max = 67108864
when_full = "drop-oldest"

[downstream]
failure_rate = 0.15257771855206745
fail_fast_ms = 1.0
honours_idempotency_key = false
outages = []
load_slope_ms = 1.6938807186058136

[downstream.latency]
kind = "exponential"
mean_ms = 18.338961549341782

[[downstream.brownouts]]
start_s = 9.753045810731074
end_s = 11.671173517458234
failure_rate = 0.2543030722163917
latency_factor = 1.2952997184925454

[store]
kind = "shared"

[[faults.crash]]
at_s = 17.1379738275255
restart_after_s = 2.9019620788762914

[[clients]]
kind = "closed-loop"
population = 2
think_ms = 52.63934266178078
requests_per_client = 500000
start_spread_ms = 3.6811032222063615

[clients.retry]
attempts_max = 1
timeout_ms = 0.0

[clients.retry.backoff]
kind = "none"
base_ms = 200.73562773230134
cap_ms = 4042.2193881316507
multiplier = 2.93715065063686

[[clients]]
kind = "open-loop"
per_s = 8.339308169598173
schedule = []
clients = 171

[clients.retry]
attempts_max = 3
timeout_ms = 0.0

[clients.retry.backoff]
kind = "full-jitter"
base_ms = 19.680614420766318
cap_ms = 22.884865968628056
multiplier = 2.8297427379818263
"#;

    #[test]
    fn the_swarm_case_of_a_slot_reused_at_adoption_keeps_every_invariant() {
        let s = Scenario::from_toml(SWARM_SLOT, "swarm-bug-slot.toml").expect("valid scenario");
        let summary = simulate(&s, &SimOptions::seed(s.seed))
            .unwrap_or_else(|e| panic!("seed {}: {e}", s.seed))
            .summary;
        assert_eq!(summary.crashes, 1, "seed {}: {summary}", s.seed);
        assert!(summary.jobs_recovered >= 2, "seed {}: {summary}", s.seed);
    }

    /// A shared store, and the survivor crashes 50 ms after it adopted the
    /// first replica's jobs, while they still run (calls take 1.5 s on
    /// average; 40 workers keep up with 15 req/s). Each adopted job is one row of the store, known by its
    /// serial: the second survivor adopts it again, and it is not lost.
    const ADOPTED_TWICE: &str = r#"
name = "adopted-twice"
seed = 1
horizon_s = 40
[relay]
workers = 40
[store]
kind = "shared"
[[faults.crash]]
at_s = 5
restart_after_s = 2
[[faults.crash]]
at_s = 7.05
restart_after_s = 2
[downstream]
latency = { kind = "exponential", mean_ms = 1500 }
[[clients]]
kind = "open-loop"
schedule = [{ until_s = 30, per_s = 15 }]
"#;

    #[test]
    fn a_job_adopted_then_crashed_again_is_adopted_again() {
        let s = Scenario::from_toml(ADOPTED_TWICE, "adopted-twice.toml").expect("valid scenario");
        for seed in 1..=4 {
            let summary = simulate(&s, &SimOptions::seed(seed))
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
                .summary;
            assert_eq!(
                (summary.crashes, summary.jobs_lost),
                (2, 0),
                "seed {seed}: {summary}"
            );
            assert!(summary.jobs_recovered >= 4, "seed {seed}: {summary}");
            assert_eq!(
                (summary.client_still_waiting, summary.still_in_flight),
                (0, 0),
                "seed {seed}: every client heard of its job: {summary}"
            );
        }
    }
}
