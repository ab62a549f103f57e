//! The store model: what survives a relay crash, and what durability costs.
//!
//! `[store]` picks what the simulated relay keeps its promises in, and
//! `[[faults.crash]]` when the relay process dies:
//!
//! - `memory` (the default): nothing survives a crash; the restarted relay
//!   starts empty (its ids continue, only so the run can tell jobs apart).
//! - `embedded` (a local crash-safe file, e.g. SQLite) and `shared` (a
//!   database other replicas share, e.g. PostgreSQL): the relay journals
//!   its transitions, and the driver holds every output of a turn (answers,
//!   calls, news of finished jobs) until that turn's records are committed.
//!   Commits are group commits, one at a time: records that arrive while
//!   one is under way wait for the next, which takes them all. A commit
//!   takes `commit_ms`. A crash loses the commit under way and everything in
//!   memory. `embedded`: the relay is down for `restart_after_s` (sends are
//!   refused connections, which clients retry), then restarts from what was
//!   committed. `shared`: another replica serves at once from the shared
//!   state (letters, replays, serials), and the crashed replica's jobs wait
//!   `restart_after_s` for their lease to expire, when the survivor adopts
//!   them ([`crate::relay::Relay::adopt`]). One relay stands for the
//!   survivor: per-replica state (breaker, rate limit, budgets) starts
//!   afresh, and the keys of leased jobs are not held while they wait.

use crate::fault::{Latency, LatencyConfig};
use crate::relay::{
    ensure, ConfigError, DeadLetter, JobId, Outcome, Record, Stored, StoredJob, StoredReplay,
};
use crate::rng::Stream;
use crate::time::{ms_to_nanos, Time};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// What the relay keeps its promises in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// In memory only: a crash loses every job, letter and replay record.
    #[default]
    Memory,
    /// A crash-safe local store (the server's `sqlite:PATH`).
    Embedded,
    /// A database shared by replicas (the server's `postgres://…`).
    Shared,
}

/// `[store]` in a scenario.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// How long one (group) commit takes; absent: no time at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_ms: Option<LatencyConfig>,
}

impl StoreConfig {
    pub fn is_default(&self) -> bool {
        *self == StoreConfig::default()
    }

    /// Whether the relay journals and its outputs wait for commits.
    pub fn is_durable(&self) -> bool {
        self.kind != StoreKind::Memory
    }

    /// `commit_ms` is checked whatever the kind, and ignored by `memory`
    /// (which commits nothing), so a sweep can cross kinds and latencies.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.commit_ms {
            Some(c) => c.validate().map_err(|e| e.within("commit_ms")),
            None => Ok(()),
        }
    }
}

/// One relay crash: at `at_s`, back after `restart_after_s`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashConfig {
    pub at_s: f64,
    pub restart_after_s: f64,
}

/// Crashes a scenario may ask for.
pub const CRASHES_MAX: usize = 64;

/// `[faults]` in a scenario: faults of the relay itself (the downstream's
/// are under `[downstream]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crash: Vec<CrashConfig>,
}

impl FaultsConfig {
    pub fn is_empty(&self) -> bool {
        self.crash.is_empty()
    }

    /// Crashes in time order, each after the relay is back from the last.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.crash.len() <= CRASHES_MAX,
            "crash",
            format!("at most {CRASHES_MAX} crashes"),
        )?;
        let mut up_at = 0.0;
        for (i, c) in self.crash.iter().enumerate() {
            let field = |f: &str| format!("crash[{i}].{f}");
            ensure(
                c.at_s.is_finite() && c.at_s >= up_at,
                &field("at_s"),
                format!(
                    "must be ≥ {up_at} s (crashes in time order, each after the relay is back from the one before), got {}",
                    c.at_s
                ),
            )?;
            ensure(
                c.restart_after_s.is_finite() && (0.0..=3600.0).contains(&c.restart_after_s),
                &field("restart_after_s"),
                format!("must be between 0 and 3600 s, got {}", c.restart_after_s),
            )?;
            up_at = c.at_s + c.restart_after_s;
        }
        Ok(())
    }
}

/// What has been committed: the journal folded as [`Stored::apply`] folds
/// it, indexed so that a long run stays linear (a test checks the two agree).
/// A job is one row, known by its serial as the real stores know it: a
/// replica that adopts it gives it a new slot, not a new row.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    next_serial: u32,
    jobs: BTreeMap<u32, StoredJob<u64, ()>>,
    letters: BTreeMap<JobId, DeadLetter<u64, ()>>,
    replays: FxHashMap<u64, StoredReplay<u64, ()>>,
    /// Replays by expiry (`finished_at + ttl`), in finishing order; entries
    /// whose key has since moved on are skipped.
    expiry: VecDeque<(Time, u64, JobId)>,
}

impl Durable {
    pub fn apply(&mut self, record: Record<u64, ()>, ttl: Duration) {
        match record {
            Record::Accepted {
                job,
                key,
                client,
                fingerprint,
                payload,
                accepted_at,
                redrives,
                route,
            } => {
                self.see(job);
                self.expire(accepted_at);
                if let Some(k) = key {
                    self.replays.remove(&k);
                }
                let stored = StoredJob {
                    job,
                    route,
                    key,
                    client,
                    fingerprint,
                    payload,
                    accepted_at,
                    redrives,
                    attempts: 0,
                };
                self.jobs.insert(job.serial(), stored);
            }
            Record::Started { job, attempt } => {
                if let Some(j) = self.jobs.get_mut(&job.serial()) {
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
                self.expire(finished_at);
                self.jobs.remove(&job.serial());
                if let (Some(key), Outcome::Succeeded { response }) = (key, outcome) {
                    let replay = StoredReplay {
                        key,
                        fingerprint,
                        job,
                        response,
                        finished_at,
                    };
                    self.replays.insert(key, replay);
                    self.expiry.push_back((finished_at + ttl, key, job));
                }
            }
            Record::DeadLettered(letter) => {
                self.see(letter.job);
                self.expire(letter.dead_at);
                self.letters.insert(letter.job, *letter);
            }
            Record::LetterRemoved { letter } => {
                self.letters.remove(&letter);
            }
        }
    }

    fn see(&mut self, job: JobId) {
        self.next_serial = self.next_serial.max(job.serial().saturating_add(1));
    }

    fn expire(&mut self, now: Time) {
        while let Some(&(at, key, job)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            if self.replays.get(&key).is_some_and(|r| r.job == job) {
                self.replays.remove(&key);
            }
        }
    }

    /// Whether `job` was accepted durably and has not finished.
    pub fn holds(&self, job: JobId) -> bool {
        self.jobs.contains_key(&job.serial())
    }

    /// A replica adopted the job's row under the id `job`: a later
    /// fail-over hands it on under that id.
    pub fn adopted(&mut self, job: JobId) {
        if let Some(j) = self.jobs.get_mut(&job.serial()) {
            j.job = job;
        }
    }

    /// What a relay restarts from.
    pub fn stored(&self) -> Stored<u64, ()> {
        let mut replays: Vec<_> = self.replays.values().cloned().collect();
        replays.sort_by_key(|r| (r.finished_at, r.job));
        Stored {
            next_serial: self.next_serial,
            jobs: self.jobs.values().cloned().collect(),
            letters: self.letters.values().cloned().collect(),
            replays,
        }
    }
}

/// A group commit: records to make durable, and what waits for them.
#[derive(Debug)]
pub struct Group<E> {
    pub records: Vec<Record<u64, ()>>,
    pub effects: Vec<E>,
}

impl<E> Default for Group<E> {
    fn default() -> Self {
        Group {
            records: Vec::new(),
            effects: Vec::new(),
        }
    }
}

/// The store as the driver sees it: what is committed, the commit under
/// way, and the group that waits for it. `E` is what the driver holds back.
pub struct SimStore<E> {
    pub config: StoreConfig,
    commit: Option<Latency>,
    rng: Stream,
    ttl: Duration,
    pub durable: Durable,
    /// The commit under way: done at `.0`.
    pub in_commit: Option<(Time, Group<E>)>,
    pub next: Group<E>,
    pub commits: u64,
}

impl<E> SimStore<E> {
    pub fn new(config: StoreConfig, ttl: Duration, rng: Stream) -> SimStore<E> {
        SimStore {
            config,
            commit: config.commit_ms.map(Latency::new),
            rng,
            ttl,
            durable: Durable::default(),
            in_commit: None,
            next: Group::default(),
            commits: 0,
        }
    }

    /// Whether an output must wait: a commit is under way or records wait.
    pub fn holds_back(&self) -> bool {
        self.in_commit.is_some() || !self.next.records.is_empty()
    }

    /// Starts the waiting group's commit if none is under way and it has
    /// records; returns when it will be done.
    pub fn start_commit(&mut self, now: Time) -> Option<Time> {
        if self.in_commit.is_some() || self.next.records.is_empty() {
            return None;
        }
        let ms = self.commit.map_or(0.0, |l| l.draw_ms(&mut self.rng));
        let done = now + Duration::from_nanos(ms_to_nanos(ms));
        self.in_commit = Some((done, std::mem::take(&mut self.next)));
        self.commits += 1;
        Some(done)
    }

    /// The commit under way is done: its records are durable; returns what
    /// waited for them.
    pub fn finish_commit(&mut self) -> Vec<E> {
        let Some((_, group)) = self.in_commit.take() else {
            return Vec::new();
        };
        for r in group.records {
            self.durable.apply(r, self.ttl);
        }
        group.effects
    }

    /// A crash: the commit under way and the waiting group are lost;
    /// returns what waited, so the driver can fail it.
    pub fn crash(&mut self) -> Vec<E> {
        let mut lost = self.in_commit.take().map_or(Vec::new(), |(_, g)| g.effects);
        lost.append(&mut std::mem::take(&mut self.next).effects);
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{Answer, CallError, CallId, Output, Relay, RelayConfig, Request};
    use crate::rng::{Domain, Seed};

    /// The indexed fold agrees with the reference fold over a relay's
    /// journal: keyed and keyless jobs, retries, dead letters, redrives,
    /// replays that expire and keys used again.
    #[test]
    fn the_indexed_fold_agrees_with_the_reference() {
        let mut cfg = RelayConfig {
            workers: 3,
            jobs_max: 40,
            breaker: None,
            ..RelayConfig::default()
        };
        cfg.queue.capacity = 20;
        cfg.retry.attempts_max = 2;
        cfg.idempotency.ttl_ms = 300.0;
        cfg.dlq.capacity = 5;
        let settings = cfg.check().expect("valid");
        let ttl = settings.replay_ttl();
        let mut relay: Relay<u64, ()> = Relay::new(&settings, Seed(3).stream(Domain::Relay, 0));
        relay.set_journal(true);
        let (mut reference, mut indexed) = (Stored::default(), Durable::default());
        let mut rng = Seed(3).stream(Domain::Experiment, 0);
        let mut calls: Vec<CallId> = Vec::new();
        let (mut letters_seen, mut replays_seen) = (false, false);
        for step in 0..3_000u64 {
            let now = Time::from_millis(step * 7);
            let roll = crate::rng::unit(&mut rng);
            if roll < 0.4 {
                let key = (roll < 0.3).then_some(step % 13);
                let req = Request {
                    client: 1,
                    key,
                    fingerprint: 0,
                    payload: (),
                };
                let _: Answer<()> = relay.handle_request(now, req);
            } else if roll < 0.8 && !calls.is_empty() {
                let call = calls.remove(0);
                let result = if roll < 0.6 {
                    Ok(())
                } else {
                    Err(CallError::ServerError)
                };
                relay.handle_call_result(now, call, result);
            } else if roll < 0.82 {
                relay.redrive_all(now);
            } else {
                relay.handle_timeout(now);
            }
            while let Some(o) = relay.poll_output() {
                if let Output::Call { call, .. } = o {
                    calls.push(call);
                }
            }
            while let Some(r) = relay.poll_record() {
                reference.apply(r.clone(), ttl);
                indexed.apply(r, ttl);
            }
            let mut got = indexed.stored();
            let mut want = reference.clone();
            want.replays.sort_by_key(|r| (r.finished_at, r.job));
            got.replays.sort_by_key(|r| (r.finished_at, r.job));
            assert_eq!(got, want, "after step {step}");
            letters_seen |= !want.letters.is_empty();
            replays_seen |= !want.replays.is_empty();
        }
        assert!(
            letters_seen && replays_seen,
            "the run exercised letters and replays"
        );
    }

    #[test]
    fn crashes_must_come_in_order_after_each_restart() {
        let faults = |v: &[(f64, f64)]| FaultsConfig {
            crash: v
                .iter()
                .map(|&(at_s, restart_after_s)| CrashConfig {
                    at_s,
                    restart_after_s,
                })
                .collect(),
        };
        assert!(faults(&[(1.0, 2.0), (3.0, 0.0)]).validate().is_ok());
        let err = faults(&[(1.0, 2.0), (2.5, 1.0)]).validate().unwrap_err();
        assert_eq!(err.field, "crash[1].at_s");
        let err = faults(&[(1.0, -1.0)]).validate().unwrap_err();
        assert_eq!(err.field, "crash[0].restart_after_s");
    }

    #[test]
    fn a_bad_commit_latency_names_its_field() {
        let cfg = StoreConfig {
            kind: StoreKind::Embedded,
            commit_ms: Some(LatencyConfig::Constant { ms: -1.0 }),
        };
        assert_eq!(cfg.validate().unwrap_err().field, "commit_ms.latency.ms");
    }
}
