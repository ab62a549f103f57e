//! The relay: every pattern composed into one sans-IO state machine.
//!
//! A request passes, in order: rate limit → idempotency → admission (bounded
//! queue, bounded job table) → queue → a worker slot → the breaker → a
//! downstream attempt with a timeout → on failure the retry policy and its
//! backoff → the retry lane (served before the queue) → … → at the end,
//! success (answer stored for replays) or the dead-letter queue. The driver
//! (simulator or server) feeds it requests, call results and wake-ups, and
//! performs what comes out of [`Relay::poll_output`]: start a call, report
//! an outcome.
//!
//! The queue bounds admissions only. A job, once accepted, is dead-lettered
//! only because an attempt failed and the retry policy gave up, never for
//! want of room: its retries wait in the [`RetryLane`], which the job table
//! bounds.
//!
//! A success that arrives after its attempt timed out is not thrown away:
//! if the job is still waiting to retry (backing off or in the retry lane),
//! it completes the job; if a retry is already on its way, or the job has
//! ended, it is recorded on the job (its status, its dead letter) and
//! counted, so a later redrive knows the work may be done.
//!
//! Overload options, all off by default: a job that waited in the queue
//! too long is shed before it costs a call ([`super::age_shedding`]); the
//! queue serves newest first past a watermark (adaptive LIFO); an adaptive
//! limit ([`super::concurrency_limit`]) bounds calls in flight below the
//! workers; a throttled attempt's retry waits at least the downstream's
//! `Retry-After` ([`Relay::handle_call_result_with`]).
//!
//! Invariants asserted here, always on: time never goes backwards, the queue
//! never exceeds its capacity, calls in flight never exceed the workers (nor
//! the concurrency limit when a call starts), the job table (and so the
//! retry lane) never exceeds `jobs_max`.

use super::age_shedding::{AgeShedding, ShedTo};
use super::answer::{Answer, Refusal, Request};
use super::backoff::BackoffState;
use super::breaker::{Breaker, BreakerState, Permit, Transition};
use super::concurrency_limit::{ConcurrencyLimit, Sample};
use super::config::RelaySettings;
use super::dlq::{ByteSize, DeadLetter, DeadLetterQueue, Dropped, RedriveError};
use super::fallback::FallbackFrom;
use super::hedge::{Flight, HedgeCounts, Hedger};
use super::idempotency::{Begin, IdempotencyStore, ReplayWindow};
use super::job::{CallId, JobId, JobState, JobStatus, LateSuccess, Outcome};
use super::journal::{Journal, Record};
use super::queue::Served;
use super::rate_limit::RateLimiter;
use super::recovery::{RecoverError, Stored, StoredJob};
use super::retry::{CallError, GiveUp, RETRY_AFTER_MAX};
use super::retry_gate::DeniedCounts;
use super::route::{Route, RouteId, RouteStats};
use super::stats::Stats;
use super::workers::WorkerPool;
use crate::rng::Stream;
use crate::time::Time;
use rustc_hash::FxHashMap;
use serde::Serialize;
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

/// What an idempotency key must be.
pub trait Key: Clone + Eq + Hash + Debug {}
impl<T: Clone + Eq + Hash + Debug> Key for T {}

/// What a payload (and a downstream answer) must be; its size counts
/// against the dead-letter queue's byte bound.
pub trait Payload: Clone + Debug + ByteSize {}
impl<T: Clone + Debug + ByteSize> Payload for T {}

/// Observations for traces, logs and checkers; nothing to perform.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    AttemptFailed {
        job: JobId,
        attempt: u32,
        error: CallError,
    },
    RetryScheduled {
        job: JobId,
        retry: u32,
        at: Time,
    },
    /// The job's backoff ended: it waits in the retry lane for a worker.
    Requeued {
        job: JobId,
    },
    /// A failure answered an attempt that had already timed out: ignored.
    LateResult {
        job: JobId,
        attempt: u32,
    },
    /// A success answered an attempt that had already timed out.
    LateSuccess {
        job: JobId,
        attempt: u32,
        fate: LateFate,
    },
    Breaker {
        #[serde(skip_serializing_if = "RouteId::is_default")]
        route: RouteId,
        from: BreakerState,
        to: BreakerState,
    },
    /// A dead letter was re-sent as a new job.
    Redriven {
        letter: JobId,
        job: JobId,
    },
    /// A job waited in the queue longer than `shed_after_ms`: it leaves the
    /// queue without a call, and its `Finished` follows.
    Shed {
        job: JobId,
        to: ShedTo,
    },
    /// Attempt `attempt` of a job already in flight starts as a hedge; its
    /// `Call` follows.
    HedgeSent {
        job: JobId,
        attempt: u32,
    },
    /// Another attempt of the job won: the relay stopped waiting for this
    /// one (its worker is free; a later answer is late).
    HedgeAbandoned {
        job: JobId,
        attempt: u32,
    },
}

/// What became of a late success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LateFate {
    /// The job was waiting to retry: this answer completed it, and no retry
    /// is sent.
    CompletedJob,
    /// A retry was already on its way, or the job had ended: recorded on the
    /// job, its remembered status or its dead letter.
    Recorded,
    /// The job had ended and is kept nowhere any more: this event and the
    /// count are the only record.
    JobForgotten,
}

/// A job that ended, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished<K, P> {
    pub job: JobId,
    pub route: RouteId,
    pub key: Option<K>,
    pub attempts: u32,
    /// From acceptance to the end.
    pub latency: Duration,
    pub outcome: Outcome<P>,
    /// A job that failed for good, answered from its route's fallback
    /// (its dead letter, if any, still keeps the work).
    pub fallback: Option<(P, FallbackFrom)>,
}

/// What the relay wants its driver to do or know.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<K, P> {
    /// Start a downstream attempt; report back with [`Relay::handle_call_result`].
    Call {
        call: CallId,
        /// Which downstream to call.
        route: RouteId,
        key: Option<K>,
        payload: P,
        timeout: Option<Duration>,
    },
    /// A job ended; `Succeeded` answers are also kept for replays.
    Finished(Finished<K, P>),
    /// A letter the dead-letter queue could not keep (it was full under
    /// `refuse`, or this was its oldest letter under `drop-oldest`): it is
    /// not stored anywhere else, so the driver must record it (count it,
    /// log it).
    Overflowed(Box<DeadLetter<K, P>>),
    /// The idempotency store was full and forgot this completed key before
    /// its TTL: a repeat of it will start a new job.
    Forgotten {
        key: K,
    },
    Event(Event),
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Queued,
    InFlight {
        permit: Permit,
        started: Time,
    },
    BackingOff {
        until: Time,
    },
    /// Backoff over; waiting in the retry lane.
    RetryQueued,
}

#[derive(Clone, Debug)]
struct Job<K, P> {
    id: JobId,
    route: RouteId,
    key: Option<K>,
    client: u64,
    fingerprint: u64,
    payload: P,
    accepted_at: Time,
    attempts: u32,
    stage: Stage,
    backoff: BackoffState,
    last_error: Option<CallError>,
    redrives: u32,
    /// Recovered after a crash with an attempt already started: the
    /// downstream may do its work twice.
    redelivered: bool,
}

/// One route's state, for views and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteState {
    pub queued: usize,
    pub retry_lane: usize,
    pub in_flight: usize,
    pub slots: usize,
    pub breaker: Option<BreakerState>,
    pub fallback_cached: usize,
}

/// Where a request goes: its route, and what that route's fallback cache
/// knows it by (the driver derives it from the part of the request the
/// route's settings name; `None`: no cached answer can serve it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    pub route: RouteId,
    pub cache_key: Option<u64>,
}

/// A job about to be created: a request's, or a redriven letter's.
struct NewJob<K, P> {
    route: RouteId,
    cache_key: Option<u64>,
    key: Option<K>,
    client: u64,
    fingerprint: u64,
    payload: P,
    redrives: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    AttemptDeadline,
    RetryDue,
}

/// `(due, seq, job, attempt, kind)`: `seq` keeps equal times in arming order.
type Timer = Reverse<(Time, u64, JobId, u32, TimerKind)>;

/// `i mod n` for `i < 2n`, without a division (the pump asks on every step).
fn wrap(i: usize, n: usize) -> usize {
    if i >= n {
        i - n
    } else {
        i
    }
}

/// The earlier of two optional times.
fn earliest(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn refused<P>(why: Refusal, retry_after: Option<Duration>) -> Answer<P> {
    Answer::Refused {
        why,
        retry_after,
        job: None,
    }
}

/// The answer for a key the store already knows.
fn known_key<P>(known: Begin<P>) -> Answer<P> {
    match known {
        Begin::InFlight(job) => Answer::Refused {
            why: Refusal::Conflict,
            retry_after: None,
            job: Some(job),
        },
        Begin::Replay { job, response } => Answer::Replayed { job, response },
        Begin::Mismatch => refused(Refusal::Mismatch, None),
        Begin::Started | Begin::Full => unreachable!("not an answer about a known key"),
    }
}

pub struct Relay<K, P> {
    jobs_max: usize,
    history_max: usize,
    jobs: Slab<Job<K, P>>,
    serial: u32,
    /// At least one; see [`super::route`].
    routes: Vec<Route<P>>,
    /// The route the pump tries first next, so routes take turns.
    next_route: usize,
    /// Most jobs queued at once, over every route.
    queued_max_seen: usize,
    /// The common pool every call takes a worker from.
    workers: WorkerPool,
    idempotency: IdempotencyStore<K, P>,
    idempotency_required: bool,
    dlq: DeadLetterQueue<K, P>,
    timers: BinaryHeap<Timer>,
    timer_seq: u64,
    outputs: VecDeque<Output<K, P>>,
    history: VecDeque<JobId>,
    finished: FxHashMap<JobId, JobStatus<P>>,
    /// Late successes of live jobs, apart from the job records: they are
    /// rare, and every queued job would otherwise carry room for one. At
    /// most one entry per live job, so `jobs_max` bounds it.
    late_successes: FxHashMap<JobId, LateSuccess<P>>,
    /// Cache keys of live jobs whose route has a fallback cache, apart
    /// from the job records for the same reason; `jobs_max` bounds it.
    cache_keys: FxHashMap<JobId, u64>,
    rng: Stream,
    stats: Stats,
    draining: bool,
    now: Time,
    live_jobs_max_seen: usize,
    /// `None`: jobs are never shed by age.
    shedding: Option<AgeShedding>,
    /// `None`: only the workers bound calls in flight.
    limit: Option<ConcurrencyLimit>,
    /// The downstream's `Retry-After` on the answer being handled, read by
    /// the retry it schedules; empty outside [`Relay::handle_call_result_with`].
    throttle_wait: Option<Duration>,
    hedge: Option<Hedger>,
    /// `None`: nothing is journaled (no store).
    journal: Option<Journal<K, P>>,
}

impl<K: Key, P: Payload> Relay<K, P> {
    /// Builds a relay from checked settings; `rng` feeds the jitter.
    pub fn new(settings: &RelaySettings, rng: Stream) -> Self {
        let s = settings;
        assert!(
            s.jobs_max >= s.queue.capacity * s.routes.len() + s.workers,
            "checked by RelayConfig::check"
        );
        let stats = Stats {
            routes: vec![RouteStats::default(); s.routes.len()],
            ..Stats::default()
        };
        Relay {
            jobs_max: s.jobs_max,
            history_max: s.history_max,
            jobs: Slab::with_capacity(s.jobs_max.min(super::RESERVED_MAX)),
            serial: 0,
            routes: s
                .routes
                .iter()
                .map(|r| Route::new(r, &s.queue, s.jobs_max))
                .collect(),
            next_route: 0,
            queued_max_seen: 0,
            workers: WorkerPool::new(s.workers),
            idempotency: IdempotencyStore::new(&s.idempotency),
            idempotency_required: s.idempotency.required,
            dlq: DeadLetterQueue::new(&s.dlq),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            outputs: VecDeque::with_capacity(64),
            history: VecDeque::new(),
            finished: FxHashMap::default(),
            late_successes: FxHashMap::default(),
            cache_keys: FxHashMap::default(),
            rng,
            stats,
            draining: false,
            now: Time::ZERO,
            live_jobs_max_seen: 0,
            shedding: s.queue.shedding,
            limit: s.concurrency_limit.as_ref().map(ConcurrencyLimit::new),
            throttle_wait: None,
            hedge: s.hedge.as_ref().map(Hedger::new),
            journal: None,
        }
    }

    /// Turns the journal on or off (off by default). While on, every
    /// transition a store must keep comes out of [`Relay::poll_record`];
    /// the driver drains it every turn and makes the records durable before
    /// it performs that turn's outputs.
    pub fn set_journal(&mut self, on: bool) {
        match (on, self.journal.is_some()) {
            (true, false) => self.journal = Some(Journal::new(self.jobs_max)),
            (false, true) => self.journal = None,
            _ => {}
        }
    }

    /// The next record to make durable, in the order the transitions happened.
    pub fn poll_record(&mut self) -> Option<Record<K, P>> {
        self.journal.as_mut()?.pop()
    }

    /// Journals a record if the journal is on; `make` runs only then, so a
    /// relay without a store clones nothing.
    fn journal(&mut self, make: impl FnOnce() -> Record<K, P>) {
        if let Some(j) = &mut self.journal {
            j.push(make());
        }
    }

    /// Journals how a job ended.
    fn journal_finished(&mut self, now: Time, job: &Job<K, P>, outcome: &Outcome<P>) {
        self.journal(|| Record::Finished {
            job: job.id,
            key: job.key.clone(),
            fingerprint: job.fingerprint,
            attempts: job.attempts,
            finished_at: now,
            outcome: outcome.clone(),
        });
    }

    fn advance(&mut self, now: Time) {
        assert!(
            now >= self.now,
            "time went backwards: {} after {}",
            now,
            self.now
        );
        self.now = now;
    }

    /// Answers a request for the default route at once: accepted
    /// (queued), replayed, or refused.
    pub fn handle_request(&mut self, now: Time, req: Request<K, P>) -> Answer<P> {
        self.handle_request_to(now, Routing::default(), req)
    }

    /// Answers a request for a route at once: accepted (queued), replayed,
    /// answered from the route's fallback, or refused.
    pub fn handle_request_to(&mut self, now: Time, to: Routing, req: Request<K, P>) -> Answer<P> {
        self.advance(now);
        assert!(
            to.route.index() < self.routes.len(),
            "no route {:?}",
            to.route
        );
        self.stats.requests += 1;
        let answer = self.admit(now, to, req);
        let route = &mut self.stats.routes[to.route.index()];
        route.requests += 1;
        match &answer {
            Answer::Accepted { .. } => {
                self.stats.accepted += 1;
                route.accepted += 1;
            }
            Answer::Replayed { .. } => self.stats.replayed += 1,
            Answer::Fallback { .. } => {
                self.stats.fallbacks += 1;
                route.fallbacks_at_door += 1;
            }
            Answer::Refused { why, .. } => {
                self.stats.refused[*why] += 1;
                route.refused[*why] += 1;
            }
        }
        self.pump(now);
        answer
    }

    fn admit(&mut self, now: Time, to: Routing, req: Request<K, P>) -> Answer<P> {
        let r = to.route.index();
        if let Some(limiter) = &mut self.routes[r].limiter {
            if let Err(wait) = limiter.check(now, req.client) {
                return refused(Refusal::RateLimited, Some(wait));
            }
        }
        if req.key.is_none() && self.idempotency_required {
            return refused(Refusal::BadKey, None);
        }
        // The breaker is open: a job would only wait (or find the queue
        // full of jobs that wait). The fallback answers instead; a known key
        // is still answered as such. Nothing is recorded or evicted.
        // The breaker's clock is read lazily: a route whose callers are all
        // answered at the door has no job waiting, so nothing else would
        // move its breaker on to half-open when `open_ms` is over.
        let route = &mut self.routes[r];
        if let (Some(b), Some(_)) = (&mut route.breaker, &route.fallback) {
            b.handle_timeout(now);
        }
        if route.is_open() {
            let fallback = route.fallback.as_ref();
            if let Some((response, from)) = fallback.and_then(|f| f.answer(now, to.cache_key)) {
                let fallback = Answer::Fallback { response, from };
                return self.known(now, &req).map_or(fallback, known_key);
            }
        }
        // When no job can start, a known key is still answered (replay,
        // conflict, mismatch), but nothing is recorded or evicted.
        if let Some(blocked) = self.blocked(now, to.route) {
            return self.known(now, &req).map_or(blocked, known_key);
        }
        let id = JobId::new(self.serial, self.jobs.vacant_key());
        if let Some(key) = &req.key {
            let begun = self.idempotency.begin(now, key, req.fingerprint, id);
            if let Some(key) = self.idempotency.take_forgotten() {
                self.outputs.push_back(Output::Forgotten { key });
            }
            match begun {
                Begin::Started => {}
                Begin::Full => return refused(Refusal::KeysFull, Some(self.keys_retry_after(now))),
                known => return known_key(known),
            }
        }
        let new = NewJob {
            route: to.route,
            cache_key: to.cache_key,
            key: req.key,
            client: req.client,
            fingerprint: req.fingerprint,
            payload: req.payload,
            redrives: 0,
        };
        self.enqueue_new(now, new);
        Answer::Accepted { job: id }
    }

    /// What the idempotency records say of the request's key, if they know
    /// it; records nothing.
    fn known(&mut self, now: Time, req: &Request<K, P>) -> Option<Begin<P>> {
        let key = req.key.as_ref()?;
        self.idempotency.peek(now, key, req.fingerprint)
    }

    /// The queue's `Retry-After` hint (the same settings on every route).
    fn queue_retry_after(&self) -> Duration {
        self.routes[0].queue.retry_after()
    }

    /// Why a new job for `route` cannot start now, if it cannot.
    fn blocked(&self, now: Time, route: RouteId) -> Option<Answer<P>> {
        if self.draining {
            return Some(refused(
                Refusal::Unavailable,
                Some(self.queue_retry_after()),
            ));
        }
        if self.dlq.blocks_admission() {
            return Some(refused(Refusal::Unavailable, self.dlq_retry_after()));
        }
        if self.routes[route.index()].queue.is_full() || self.jobs.len() >= self.jobs_max {
            return Some(self.refuse_for_room(now, route));
        }
        if self.serials_exhausted() {
            return Some(refused(Refusal::Unavailable, None));
        }
        None
    }

    /// Every job serial has been handed out: a new job would repeat an id.
    /// `u32::MAX` itself is never used, so a store's next serial can say so.
    fn serials_exhausted(&self) -> bool {
        self.serial == u32::MAX
    }

    /// A full dead-letter queue (policy `refuse`) frees room only when
    /// letters are redriven: with a redrive under way they leave at the
    /// queue's pace, so the queue's hint is honest; without one, waiting
    /// frees nothing and no `Retry-After` is promised.
    fn dlq_retry_after(&self) -> Option<Duration> {
        (self.dlq.redrive_pending() > 0).then(|| self.queue_retry_after())
    }

    /// When a full idempotency store has room again: its oldest completed
    /// record's expiry (policy `refuse`), or the queue's hint when every
    /// record is in flight.
    fn keys_retry_after(&self, now: Time) -> Duration {
        match self.idempotency.room_at() {
            Some(at) => at.since(now).max(Duration::from_millis(1)),
            None => self.queue_retry_after(),
        }
    }

    /// 429 when the queue is simply full; 503 when it is full because the
    /// breaker stopped the workers.
    fn refuse_for_room(&self, now: Time, route: RouteId) -> Answer<P> {
        let hint = self.queue_retry_after();
        match &self.routes[route.index()].breaker {
            Some(b) if b.state() == BreakerState::Open => Answer::Refused {
                why: Refusal::Unavailable,
                retry_after: Some(hint.max(b.retry_after(now))),
                job: None,
            },
            _ => Answer::Refused {
                why: Refusal::Shed,
                retry_after: Some(hint),
                job: None,
            },
        }
    }

    fn enqueue_new(&mut self, now: Time, new: NewJob<K, P>) -> JobId {
        assert!(!self.serials_exhausted(), "callers check for serials left");
        let NewJob {
            route,
            cache_key,
            key,
            client,
            fingerprint,
            payload,
            redrives,
        } = new;
        let entry = self.jobs.vacant_entry();
        let id = JobId::new(self.serial, entry.key());
        self.serial += 1;
        if let Some(j) = &mut self.journal {
            j.push(Record::Accepted {
                job: id,
                route,
                key: key.clone(),
                client,
                fingerprint,
                payload: payload.clone(),
                accepted_at: now,
                redrives,
            });
        }
        if let (Some(k), Some(_)) = (cache_key, &self.routes[route.index()].fallback) {
            self.cache_keys.insert(id, k);
        }
        entry.insert(Job {
            id,
            route,
            key,
            client,
            fingerprint,
            payload,
            accepted_at: now,
            attempts: 0,
            stage: Stage::Queued,
            backoff: BackoffState::default(),
            last_error: None,
            redrives,
            redelivered: false,
        });
        assert!(self.jobs.len() <= self.jobs_max, "job table over its bound");
        self.live_jobs_max_seen = self.live_jobs_max_seen.max(self.jobs.len());
        self.offer(route, id);
        id
    }

    /// Queues a job of `route`; the caller checked for room.
    fn offer(&mut self, route: RouteId, id: JobId) {
        if self.routes[route.index()].queue.offer(id).is_err() {
            unreachable!("caller checked that the queue had room");
        }
        self.queued_max_seen = self.queued_max_seen.max(self.queue_len());
    }

    fn job_mut(&mut self, id: JobId) -> Option<&mut Job<K, P>> {
        self.jobs.get_mut(id.slot()).filter(|j| j.id == id)
    }

    /// Starts attempts while workers are free, work waits and the breaker
    /// allows. Retries go first: they are older, and serving them keeps the
    /// jobs in the system bounded (see [`RetryLane`]).
    fn pump(&mut self, now: Time) {
        self.pump_noting(now, &mut Vec::new());
    }

    /// [`Relay::pump`], keeping what became of the redrives it moved.
    fn pump_noting(&mut self, now: Time, tried: &mut Vec<(JobId, Result<JobId, RedriveError>)>) {
        self.step_redrives(now, tried);
        self.shed_expired(now);
        while self.workers.has_free_slot() && self.start_next(now) {}
        self.pump_hedges(now);
        // The attempts just started left room in the queue: pending
        // redrives take it before the next new request can.
        self.step_redrives(now, tried);
        self.drain_transitions();
        self.discard_stale_timers();
    }

    /// Drops timers at the top of the heap that no longer mean anything (an
    /// attempt that already ended), so `poll_timeout` does not wake the
    /// driver for nothing.
    fn discard_stale_timers(&mut self) {
        while let Some(Reverse((_, _, id, attempt, kind))) = self.timers.peek().copied() {
            if self.timer_is_live(id, attempt, kind) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Drops every stale timer; amortised by the bound in `arm`.
    fn compact_timers(&mut self) {
        let mut timers = std::mem::take(&mut self.timers).into_vec();
        timers
            .retain(|Reverse((_, _, id, attempt, kind))| self.timer_is_live(*id, *attempt, *kind));
        self.timers = BinaryHeap::from(timers);
    }

    /// Starts one attempt, of the first route in turn that has work
    /// waiting, a free slot and a breaker that allows it; the routes take
    /// turns so none waits behind another's backlog. False when none can.
    fn start_next(&mut self, now: Time) -> bool {
        let n = self.routes.len();
        for i in 0..n {
            let r = wrap(self.next_route + i, n);
            let route = &self.routes[r];
            if !route.has_waiting_work() || !route.slots.has_free_slot() {
                continue;
            }
            if !self.under_limit() {
                self.stats.calls_held_back += 1;
                return false;
            }
            let route = &mut self.routes[r];
            let permit = match &mut route.breaker {
                Some(b) => match b.allow(now) {
                    Some(p) => p,
                    None => continue,
                },
                None => Permit::UNGUARDED,
            };
            let next = match route.retry_lane.pop() {
                Some(id) => Some(id),
                None => self.serve_queue(r),
            };
            let Some(id) = next else { continue };
            self.next_route = wrap(r + 1, n);
            self.start_attempt(now, id, permit);
            return true;
        }
        false
    }

    /// The next queued job of route `r`: the oldest, or the newest past the
    /// LIFO watermark (counted as served out of order).
    fn serve_queue(&mut self, r: usize) -> Option<JobId> {
        let queue = &mut self.routes[r].queue;
        let (id, served) = queue.serve()?;
        if served == Served::OutOfOrder && !queue.is_empty() {
            self.stats.served_out_of_order += 1;
        }
        Some(id)
    }

    /// Whether the concurrency limit lets one more call start.
    fn under_limit(&self) -> bool {
        self.limit
            .as_ref()
            .is_none_or(|l| self.workers.busy() < l.limit())
    }

    /// Sheds every queued job that has waited longer than `shed_after_ms`.
    /// The queue is in order of arrival (a job enters it once, when it is
    /// accepted or redriven), so the expired jobs are at its front.
    fn shed_expired(&mut self, now: Time) {
        let Some(rule) = self.shedding else { return };
        for r in 0..self.routes.len() {
            self.shed_expired_of(now, rule, r);
        }
    }

    fn shed_expired_of(&mut self, now: Time, rule: AgeShedding, r: usize) {
        while let Some(&id) = self.routes[r].queue.front() {
            let Some(job) = self.jobs.get(id.slot()).filter(|j| j.id == id) else {
                unreachable!("queued job {id} is missing")
            };
            if !rule.is_expired(now, job.accepted_at) {
                break;
            }
            self.routes[r].queue.pop();
            self.shed(now, id, rule.to);
        }
    }

    /// Ends a job that was never called: a dead letter with reason `shed`
    /// (its `last_error` is `timeout`: its wait timed out), or a failure
    /// with no letter.
    fn shed(&mut self, now: Time, id: JobId, to: ShedTo) {
        self.stats.shed += 1;
        self.outputs
            .push_back(Output::Event(Event::Shed { job: id, to }));
        match to {
            ShedTo::DeadLetter => self.dead_letter(now, id, GiveUp::Shed, CallError::Timeout),
            ShedTo::Fail => self.fail(now, id, GiveUp::Shed),
        }
    }

    /// Ends a job as failed without a dead letter.
    fn fail(&mut self, now: Time, id: JobId, reason: GiveUp) {
        let (job, late, cache_key) = self.remove_job(id);
        if let Some(key) = &job.key {
            self.idempotency.release(key);
        }
        self.remember(now, &job, JobState::Shed, None, late);
        let outcome = Outcome::Failed { reason };
        self.journal_finished(now, &job, &outcome);
        let fallback = self.fallback_for(now, &job, cache_key);
        self.outputs.push_back(Output::Finished(Finished {
            job: id,
            route: job.route,
            key: job.key,
            attempts: job.attempts,
            latency: now.since(job.accepted_at),
            outcome,
            fallback,
        }));
    }

    /// When the oldest queued job becomes too old, if shedding is on and
    /// the queue holds a job.
    fn next_shed_at(&self) -> Option<Time> {
        let rule = self.shedding?;
        let oldest = self.routes.iter().filter_map(|r| {
            let id = *r.queue.front()?;
            let job = self.jobs.get(id.slot()).filter(|j| j.id == id)?;
            Some(job.accepted_at)
        });
        Some(rule.deadline(oldest.min()?) + Duration::from_nanos(1))
    }

    /// A call ended: the concurrency limit learns from it. `in_flight`
    /// counts the call itself.
    fn sample_limit(&mut self, rtt: Duration, in_flight: usize, result: Result<(), CallError>) {
        let Some(limit) = &mut self.limit else { return };
        let sample = match result {
            Ok(()) | Err(CallError::ClientError) => Sample::Ok,
            Err(CallError::Timeout) => Sample::Timeout,
            Err(CallError::ServerError | CallError::Throttled) => Sample::Dropped,
        };
        limit.on_sample(rtt, in_flight, sample);
    }

    fn timer_is_live(&self, id: JobId, attempt: u32, kind: TimerKind) -> bool {
        self.jobs.get(id.slot()).is_some_and(|j| {
            j.id == id
                && j.attempts == attempt
                && matches!(
                    (kind, j.stage),
                    (TimerKind::AttemptDeadline, Stage::InFlight { .. })
                        | (TimerKind::RetryDue, Stage::BackingOff { .. })
                )
        })
    }

    fn start_attempt(&mut self, now: Time, id: JobId, permit: Permit) {
        assert!(self.under_limit(), "pump checked the concurrency limit");
        let Some(job) = self.jobs.get_mut(id.slot()).filter(|j| j.id == id) else {
            unreachable!("queued job {id} is missing")
        };
        let r = job.route.index();
        let route = &mut self.routes[r];
        let acquired = self.workers.try_acquire() && route.slots.try_acquire();
        assert!(acquired, "pump checked for a free worker and slot");
        let timeout = route.attempt_timeout;
        job.attempts += 1;
        job.stage = Stage::InFlight {
            permit,
            started: now,
        };
        let attempt = job.attempts;
        let call = CallId { job: id, attempt };
        let (key, payload) = (job.key.clone(), job.payload.clone());
        if let Some(t) = timeout {
            self.arm(now + t, id, attempt, TimerKind::AttemptDeadline);
        }
        self.stats.attempts += 1;
        self.stats.routes[r].attempts += 1;
        self.journal(|| Record::Started { job: id, attempt });
        self.routes[r].retry.on_send(now, attempt > 1);
        self.outputs.push_back(Output::Call {
            call,
            route: RouteId(r as u16),
            key,
            payload,
            timeout,
        });
        if let Some(h) = &mut self.hedge {
            h.on_attempt_start(now, id, attempt);
        }
    }

    fn arm(&mut self, at: Time, job: JobId, attempt: u32, kind: TimerKind) {
        // Deadlines of attempts that ended early stay in the heap until they
        // surface; bound them by the live jobs (each has at most two timers).
        if self.timers.len() >= 4 * self.jobs.len() + 64 {
            self.compact_timers();
        }
        self.timer_seq += 1;
        self.timers
            .push(Reverse((at, self.timer_seq, job, attempt, kind)));
    }

    /// The downstream answered attempt `call`. An answer to an attempt that
    /// already timed out is late: a late failure is counted and ignored, a
    /// late success is used or recorded ([`Relay::late_success`]).
    pub fn handle_call_result(&mut self, now: Time, call: CallId, result: Result<P, CallError>) {
        self.handle_call_result_with(now, call, result, None);
    }

    /// [`Relay::handle_call_result`] with the downstream's `Retry-After`,
    /// if its answer carried one. Under `retry.honour_retry_after`, the
    /// retry of a throttled attempt waits at least that long (at most
    /// [`RETRY_AFTER_MAX`]); otherwise it is ignored.
    pub fn handle_call_result_with(
        &mut self,
        now: Time,
        call: CallId,
        result: Result<P, CallError>,
        retry_after: Option<Duration>,
    ) {
        let throttled = matches!(result, Err(CallError::Throttled));
        let honour = self
            .job_mut(call.job)
            .map(|j| j.route.index())
            .is_some_and(|r| self.routes[r].honour_retry_after);
        self.throttle_wait = retry_after.filter(|_| throttled && honour);
        self.on_call_result(now, call, result);
        self.throttle_wait = None;
    }

    fn on_call_result(&mut self, now: Time, call: CallId, result: Result<P, CallError>) {
        self.advance(now);
        let Some(result) = self.hedged_result(now, call, result) else {
            self.pump(now);
            return;
        };
        let current = self.job_mut(call.job).is_some_and(|j| {
            j.attempts == call.attempt && matches!(j.stage, Stage::InFlight { .. })
        });
        match (current, result) {
            (true, result) => self.finish_attempt(now, call.job, result),
            (false, Ok(response)) => {
                self.stats.late_results += 1;
                self.late_success(now, call, response);
            }
            (false, Err(_)) => {
                self.stats.late_results += 1;
                self.outputs.push_back(Output::Event(Event::LateResult {
                    job: call.job,
                    attempt: call.attempt,
                }));
            }
        }
        self.pump(now);
    }

    /// The downstream did the work of a timed-out attempt. If the job is
    /// still waiting to retry, the answer completes it: sending the retry
    /// would only do the work again. If a retry is in flight, or the job has
    /// ended, the answer cannot become the outcome; it is recorded where
    /// the job is still kept. The breaker and the retry budget already
    /// counted the attempt as the timeout it was, and are left alone.
    fn late_success(&mut self, now: Time, call: CallId, response: P) {
        let stage = self.job_mut(call.job).map(|j| j.stage);
        let fate = match stage {
            Some(Stage::BackingOff { .. } | Stage::RetryQueued) => LateFate::CompletedJob,
            _ => self.record_late_success(now, call, response.clone()),
        };
        let counter = match fate {
            LateFate::CompletedJob => &mut self.stats.late_successes_used,
            LateFate::Recorded | LateFate::JobForgotten => &mut self.stats.late_successes_recorded,
        };
        *counter += 1;
        self.outputs.push_back(Output::Event(Event::LateSuccess {
            job: call.job,
            attempt: call.attempt,
            fate,
        }));
        if fate == LateFate::CompletedJob {
            if let Some(r) = self.job_mut(call.job).map(|j| j.route.index()) {
                self.routes[r].retry_lane.remove(call.job);
            }
            self.succeed(now, call.job, response);
        }
    }

    /// Notes a late success on the live job, its dead letter or its
    /// remembered status, whichever still holds it.
    fn record_late_success(&mut self, now: Time, call: CallId, response: P) -> LateFate {
        let (job, attempt) = (call.job, call.attempt);
        if self.job_mut(job).is_some() {
            let mut slot = self.late_successes.remove(&job);
            LateSuccess::note(&mut slot, attempt, now, response);
            self.late_successes.extend(slot.map(|l| (job, l)));
            return LateFate::Recorded;
        }
        // The remembered status (read first by look-ups) and the dead
        // letter (what a redrive sees) both say so.
        let on_status = self.finished.get_mut(&job).map(|status| {
            LateSuccess::note(&mut status.late_success, attempt, now, response.clone());
        });
        let on_letter = self.dlq.note_late_success(job, attempt, now, response);
        if on_letter || on_status.is_some() {
            LateFate::Recorded
        } else {
            LateFate::JobForgotten
        }
    }

    fn finish_attempt(&mut self, now: Time, id: JobId, result: Result<P, CallError>) {
        let in_flight = self.workers.busy();
        let Some(job) = self.jobs.get_mut(id.slot()).filter(|j| j.id == id) else {
            unreachable!("in-flight job {id} is missing")
        };
        let Stage::InFlight { permit, started } = job.stage else {
            unreachable!("job {id} was not in flight")
        };
        let (attempts, last_error, r) = (job.attempts, job.last_error, job.route.index());
        self.release_worker(r);
        let ended = result.as_ref().map(drop).map_err(|e| *e);
        self.sample_limit(now.since(started), in_flight, ended);
        if let Some(b) = &mut self.routes[r].breaker {
            // A 4xx says the request was bad, not that the downstream is sick.
            let healthy = matches!(result, Ok(_) | Err(CallError::ClientError));
            b.on_result(now, permit, healthy, now.since(started));
        }
        self.stats.attempt_latency.record(now.since(started));
        match result {
            Ok(response) => {
                self.routes[r]
                    .retry
                    .on_success(now, last_error.filter(|_| attempts > 1));
                self.succeed(now, id, response);
            }
            Err(error) => {
                self.stats.attempt_errors[error] += 1;
                self.stats.routes[r].attempt_errors[error] += 1;
                if let Some(job) = self.jobs.get_mut(id.slot()) {
                    job.last_error = Some(error);
                }
                self.outputs.push_back(Output::Event(Event::AttemptFailed {
                    job: id,
                    attempt: attempts,
                    error,
                }));
                let decision = self.routes[r].retry.on_failure(now, attempts, error);
                self.count_denied();
                match decision {
                    Ok(()) => self.schedule_retry(now, id),
                    Err(why) => self.dead_letter(now, id, why, error),
                }
            }
        }
    }

    /// Arms the retry of a job whose attempt just failed (its `last_error`
    /// is already set by `finish_attempt`).
    fn schedule_retry(&mut self, now: Time, id: JobId) {
        let Some(job) = self.jobs.get_mut(id.slot()).filter(|j| j.id == id) else {
            return;
        };
        let backoff = self.routes[job.route.index()].backoff;
        let drawn = backoff.delay(job.attempts, &mut job.backoff, &mut self.rng);
        let delay = match self.throttle_wait.take() {
            Some(wait) if wait.min(RETRY_AFTER_MAX) > drawn => {
                self.stats.retry_after_honoured += 1;
                wait.min(RETRY_AFTER_MAX)
            }
            _ => drawn,
        };
        let at = now + delay;
        job.stage = Stage::BackingOff { until: at };
        let attempt = job.attempts;
        self.stats.retries += 1;
        self.arm(at, id, attempt, TimerKind::RetryDue);
        self.outputs.push_back(Output::Event(Event::RetryScheduled {
            job: id,
            retry: attempt,
            at,
        }));
    }

    /// Takes a job out of the table, with its late success and cache key.
    fn remove_job(&mut self, id: JobId) -> (Job<K, P>, Option<LateSuccess<P>>, Option<u64>) {
        let job = self.jobs.remove(id.slot());
        let late = if self.late_successes.is_empty() {
            None
        } else {
            self.late_successes.remove(&id)
        };
        let cache_key = if self.cache_keys.is_empty() {
            None
        } else {
            self.cache_keys.remove(&id)
        };
        (job, late, cache_key)
    }

    fn succeed(&mut self, now: Time, id: JobId, response: P) {
        let (job, late, cache_key) = self.remove_job(id);
        let latency = now.since(job.accepted_at);
        if let Some(key) = &job.key {
            self.idempotency.complete(now, key, response.clone());
        }
        let r = job.route.index();
        if let (Some(f), Some(k)) = (&mut self.routes[r].fallback, cache_key) {
            f.remember(now, k, &response);
        }
        self.stats.succeeded += 1;
        let route = &mut self.stats.routes[r];
        route.succeeded += 1;
        route.job_latency.record(latency);
        self.remember(now, &job, JobState::Succeeded, Some(response.clone()), late);
        let outcome = Outcome::Succeeded { response };
        self.journal_finished(now, &job, &outcome);
        self.outputs.push_back(Output::Finished(Finished {
            job: id,
            route: job.route,
            key: job.key,
            attempts: job.attempts,
            latency,
            outcome,
            fallback: None,
        }));
    }

    fn dead_letter(&mut self, now: Time, id: JobId, reason: GiveUp, last_error: CallError) {
        let (job, late, cache_key) = self.remove_job(id);
        if let Some(key) = &job.key {
            self.idempotency.release(key);
        }
        self.stats.dead_lettered[reason] += 1;
        self.stats.routes[job.route.index()].dead_lettered[reason] += 1;
        self.remember(now, &job, JobState::DeadLettered, None, late.clone());
        // A 4xx says the request was bad: a cached answer would hide that.
        let fallback = if last_error == CallError::ClientError {
            None
        } else {
            self.fallback_for(now, &job, cache_key)
        };
        let route = job.route;
        let latency = now.since(job.accepted_at);
        let (key, attempts) = (job.key.clone(), job.attempts);
        let outcome = Outcome::DeadLettered { reason, last_error };
        // The letter is journaled before the end of the job: a store that
        // kept only the first loses no job, it may run one twice.
        let finished = self.journal.is_some().then(|| Record::Finished {
            job: id,
            key: job.key.clone(),
            fingerprint: job.fingerprint,
            attempts,
            finished_at: now,
            outcome: outcome.clone(),
        });
        let letter = DeadLetter {
            job: id,
            route,
            key: job.key,
            client: job.client,
            fingerprint: job.fingerprint,
            payload: job.payload,
            attempts,
            reason,
            last_error,
            accepted_at: job.accepted_at,
            dead_at: now,
            redrives: job.redrives,
            late_success: late,
        };
        self.store_letter(letter);
        if let (Some(j), Some(r)) = (&mut self.journal, finished) {
            j.push(r);
        }
        self.outputs.push_back(Output::Finished(Finished {
            job: id,
            route,
            key,
            attempts,
            latency,
            outcome,
            fallback,
        }));
    }

    /// The fallback answer for a job that failed for good, counted, if its
    /// route has one for it.
    fn fallback_for(
        &mut self,
        now: Time,
        job: &Job<K, P>,
        key: Option<u64>,
    ) -> Option<(P, FallbackFrom)> {
        let r = job.route.index();
        let answer = self.routes[r].fallback.as_ref()?.answer(now, key)?;
        self.stats.fallbacks += 1;
        self.stats.routes[r].fallbacks_after_failure += 1;
        // Its status says so too (when the relay keeps finished statuses).
        if let Some(status) = self.finished.get_mut(&job.id) {
            status.fallback = Some(answer.clone());
        }
        Some(answer)
    }

    /// Gives back a call's worker and its route's slot.
    fn release_worker(&mut self, r: usize) {
        self.workers.release();
        self.routes[r].slots.release();
    }

    /// The retries every route's policy denied, by reason.
    fn count_denied(&mut self) {
        let mut denied = DeniedCounts::default();
        for route in &self.routes {
            for (why, n) in route.retry.denied() {
                denied[why] += n;
            }
        }
        self.stats.retries_denied = denied;
    }

    /// Keeps a finished job's status for look-ups, bounded by `history_max`.
    fn remember(
        &mut self,
        now: Time,
        job: &Job<K, P>,
        state: JobState,
        response: Option<P>,
        late_success: Option<LateSuccess<P>>,
    ) {
        if self.history_max == 0 {
            return;
        }
        if self.history.len() >= self.history_max {
            if let Some(old) = self.history.pop_front() {
                self.finished.remove(&old);
            }
        }
        let status = JobStatus {
            job: job.id,
            route: job.route,
            state,
            attempts: job.attempts,
            accepted_at: job.accepted_at,
            finished_at: Some(now),
            last_error: job.last_error,
            response,
            late_success,
            redelivered: job.redelivered,
            fallback: None,
        };
        self.history.push_back(job.id);
        self.finished.insert(job.id, status);
    }

    /// Fires due timers: attempt deadlines and retry wake-ups. Safe to call
    /// early or twice: stale timers do nothing.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
        for b in self.routes.iter_mut().filter_map(|r| r.breaker.as_mut()) {
            b.handle_timeout(now);
        }
        self.idempotency.handle_timeout(now);
        while let Some(Reverse((at, _, id, attempt, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.fire(now, id, attempt, kind);
        }
        self.expire_hedged(now);
        self.pump(now);
    }

    fn fire(&mut self, now: Time, id: JobId, attempt: u32, kind: TimerKind) {
        let Some(job) = self.job_mut(id) else { return };
        if job.attempts != attempt {
            return;
        }
        match (kind, job.stage) {
            (TimerKind::AttemptDeadline, Stage::InFlight { .. }) => {
                self.finish_attempt(now, id, Err(CallError::Timeout));
            }
            (TimerKind::RetryDue, Stage::BackingOff { .. }) => self.requeue(id),
            _ => {}
        }
    }

    /// A backoff ended: the job waits in the retry lane, never refused for
    /// want of queue room (it already holds its place in the job table).
    fn requeue(&mut self, id: JobId) {
        let Some(job) = self.job_mut(id) else { return };
        job.stage = Stage::RetryQueued;
        let r = job.route.index();
        self.routes[r].retry_lane.push(id);
        self.outputs
            .push_back(Output::Event(Event::Requeued { job: id }));
    }

    /// When [`Relay::handle_timeout`] next has work. Idempotency records
    /// expire lazily (on look-up), so they never wake the driver.
    pub fn poll_timeout(&self) -> Option<Time> {
        // Asked after every step: the patterns that are off cost a branch.
        let mut next = self.timers.peek().map(|Reverse((at, ..))| *at);
        if self.shedding.is_some() {
            next = earliest(next, self.next_shed_at());
        }
        if let Some(h) = &self.hedge {
            next = earliest(next, h.poll_timeout());
        }
        // A breaker's wake-up matters only to a route with work waiting.
        for r in &self.routes {
            if let Some(b) = &r.breaker {
                if r.has_waiting_work() {
                    next = earliest(next, b.poll_timeout());
                }
            }
        }
        next
    }

    /// The next thing for the driver to do or know.
    pub fn poll_output(&mut self) -> Option<Output<K, P>> {
        self.outputs.pop_front()
    }

    fn drain_transitions(&mut self) {
        for (r, route) in self.routes.iter_mut().enumerate() {
            let Some(b) = &mut route.breaker else {
                continue;
            };
            while let Some(Transition { from, to, .. }) = b.poll_transition() {
                let route = RouteId(r as u16);
                self.outputs
                    .push_back(Output::Event(Event::Breaker { route, from, to }));
            }
        }
    }

    /// Keeps a dead letter; every letter the queue could not keep is
    /// counted and handed to the driver.
    fn store_letter(&mut self, letter: DeadLetter<K, P>) {
        let id = letter.job;
        let mut journaled = self.journal.is_some().then(|| letter.clone());
        for (why, dropped) in self.dlq.push(letter) {
            match why {
                Dropped::Overflowed => self.stats.dlq_overflowed += 1,
                Dropped::Evicted => self.stats.dlq_evicted += 1,
            }
            if dropped.job == id {
                journaled = None;
            } else {
                self.journal(|| Record::LetterRemoved {
                    letter: dropped.job,
                });
            }
            self.outputs
                .push_back(Output::Overflowed(Box::new(dropped)));
        }
        if let Some(letter) = journaled {
            self.journal(|| Record::DeadLettered(Box::new(letter)));
        }
    }

    /// Redrives one dead letter now: a new job with the same key and payload.
    pub fn redrive(&mut self, now: Time, letter_id: JobId) -> Result<JobId, RedriveError> {
        self.advance(now);
        let moved = self.redrive_letter(now, letter_id);
        self.pump(now);
        moved
    }

    /// Whether `route`'s queue and the job table have room for one more job.
    fn has_room(&self, route: RouteId) -> bool {
        !self.routes[route.index()].queue.is_full()
            && self.jobs.len() < self.jobs_max
            && !self.serials_exhausted()
    }

    fn redrive_letter(&mut self, now: Time, letter_id: JobId) -> Result<JobId, RedriveError> {
        if self.draining {
            return Err(RedriveError::Draining);
        }
        let Some(route) = self.dlq.get(letter_id).map(|l| l.route) else {
            return Err(RedriveError::NotFound);
        };
        if route.index() >= self.routes.len() {
            // A letter of a route these settings no longer have: kept.
            return Err(RedriveError::NoRoute);
        }
        if !self.has_room(route) {
            return Err(RedriveError::Full);
        }
        let letter = self.dlq.take(letter_id).ok_or(RedriveError::NotFound)?;
        let id = JobId::new(self.serial, self.jobs.vacant_key());
        if let Some(key) = &letter.key {
            let begun = self.idempotency.begin(now, key, letter.fingerprint, id);
            if let Some(key) = self.idempotency.take_forgotten() {
                self.outputs.push_back(Output::Forgotten { key });
            }
            let refusal = match begun {
                Begin::Started => None,
                Begin::Full => Some(RedriveError::Full),
                _ => Some(RedriveError::KeyInUse),
            };
            if let Some(e) = refusal {
                self.dlq.restore(letter);
                return Err(e);
            }
        }
        let new = NewJob {
            route,
            cache_key: None,
            key: letter.key,
            client: letter.client,
            fingerprint: letter.fingerprint,
            payload: letter.payload,
            redrives: letter.redrives + 1,
        };
        let job = self.enqueue_new(now, new);
        self.stats.dlq_redriven += 1;
        // After the new job's `Accepted`: a store that kept only that one
        // still holds the work.
        self.journal(|| Record::LetterRemoved { letter: letter_id });
        self.outputs.push_back(Output::Event(Event::Redriven {
            letter: letter_id,
            job,
        }));
        Ok(job)
    }

    /// Redrives every dead letter held now, oldest first: as many as the
    /// queue has room for at once, the rest as room opens (see
    /// [`Relay::redrive_pending`]). Returns what became of the letters tried
    /// now; letters still waiting are not in it.
    pub fn redrive_all(&mut self, now: Time) -> Vec<(JobId, Result<JobId, RedriveError>)> {
        self.advance(now);
        self.dlq.schedule_all();
        let mut tried = Vec::new();
        self.pump_noting(now, &mut tried);
        tried
    }

    /// Moves pending redrives into the queue while it has room. A letter
    /// whose key is in use is left in the dead-letter queue (counted); one
    /// that found the idempotency store full waits for the next step.
    fn step_redrives(&mut self, now: Time, tried: &mut Vec<(JobId, Result<JobId, RedriveError>)>) {
        // The common case, on every step: no redrive under way.
        if self.dlq.redrive_pending() == 0 {
            return;
        }
        // Letters whose route's queue is full wait for the next step; the
        // others' routes may have room.
        let mut waiting = Vec::new();
        while !self.draining && self.has_job_room() {
            let Some(letter) = self.dlq.next_pending() else {
                break;
            };
            let route = self.dlq.get(letter).map_or(RouteId::DEFAULT, |l| l.route);
            if route.index() < self.routes.len() && !self.has_room(route) {
                waiting.push(letter);
                continue;
            }
            let result = self.redrive_letter(now, letter);
            match result {
                Err(RedriveError::Full) => {
                    self.dlq.schedule(letter);
                    break;
                }
                Err(_) => self.stats.dlq_redrive_skipped += 1,
                Ok(_) => {}
            }
            tried.push((letter, result));
        }
        for letter in waiting {
            self.dlq.schedule(letter);
        }
    }

    /// Whether a new job fits: the job table has room, serials are left and
    /// some route's queue has room.
    fn has_job_room(&self) -> bool {
        self.jobs.len() < self.jobs_max
            && !self.serials_exhausted()
            && self.routes.iter().any(|r| !r.queue.is_full())
    }

    /// Dead letters a redrive of all has still to move into the queue.
    pub fn redrive_pending(&self) -> usize {
        self.dlq.redrive_pending()
    }

    /// Stops admitting new requests; work already accepted carries on.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// A job's state: live, in the dead-letter queue, or remembered.
    pub fn job_status(&self, id: JobId) -> Option<JobStatus<P>> {
        if let Some(job) = self.jobs.get(id.slot()).filter(|j| j.id == id) {
            let state = match job.stage {
                Stage::Queued => JobState::Queued,
                Stage::InFlight { .. } => JobState::InFlight,
                Stage::BackingOff { .. } => JobState::BackingOff,
                Stage::RetryQueued => JobState::RetryQueued,
            };
            return Some(JobStatus {
                job: id,
                route: job.route,
                state,
                attempts: job.attempts,
                accepted_at: job.accepted_at,
                finished_at: None,
                last_error: job.last_error,
                response: None,
                late_success: self.late_successes.get(&id).cloned(),
                redelivered: job.redelivered,
                fallback: None,
            });
        }
        if let Some(status) = self.finished.get(&id) {
            return Some(status.clone());
        }
        self.dlq.get(id).map(|l| JobStatus {
            job: id,
            route: l.route,
            state: JobState::DeadLettered,
            attempts: l.attempts,
            accepted_at: l.accepted_at,
            finished_at: Some(l.dead_at),
            last_error: Some(l.last_error),
            response: None,
            late_success: l.late_success.clone(),
            redelivered: false,
            fallback: None,
        })
    }

    /// Every job not yet finished, oldest first, with its key and payload:
    /// what a driver must log or persist if it stops before they end.
    pub fn unfinished(&self) -> Vec<(JobStatus<P>, Option<&K>, &P)> {
        let mut jobs: Vec<_> = self
            .jobs
            .iter()
            .filter_map(|(_, j)| Some((self.job_status(j.id)?, j.key.as_ref(), &j.payload)))
            .collect();
        jobs.sort_by_key(|(s, ..)| s.job);
        jobs
    }

    pub fn dead_letters(&self) -> &DeadLetterQueue<K, P> {
        &self.dlq
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Jobs queued, over every route.
    pub fn queue_len(&self) -> usize {
        self.routes.iter().map(|r| r.queue.len()).sum()
    }

    pub fn queue_depth_max_seen(&self) -> usize {
        self.queued_max_seen
    }

    /// Room in the queues, over every route.
    pub fn queue_capacity(&self) -> usize {
        self.routes.iter().map(|r| r.queue.capacity()).sum()
    }

    /// Routes, the default one first.
    pub fn routes(&self) -> usize {
        self.routes.len()
    }

    /// A route's queue length, calls in flight, breaker state and fallback
    /// cache size.
    pub fn route_state(&self, route: RouteId) -> RouteState {
        let r = &self.routes[route.index()];
        RouteState {
            queued: r.queue.len(),
            retry_lane: r.retry_lane.len(),
            in_flight: r.slots.busy(),
            slots: r.slots.slots(),
            breaker: r.breaker.as_ref().map(Breaker::state),
            fallback_cached: r.fallback.as_ref().map_or(0, |f| f.cached()),
        }
    }

    /// Sets a route's static fallback answer (the settings hold its text;
    /// the driver makes it a payload).
    pub fn set_static_answer(&mut self, route: RouteId, answer: P) {
        if let Some(f) = &mut self.routes[route.index()].fallback {
            f.set_static(answer);
        }
    }

    /// Retries waiting for a worker (their backoff has ended).
    pub fn retry_lane_len(&self) -> usize {
        self.routes.iter().map(|r| r.retry_lane.len()).sum()
    }

    /// The most retries that waited for a worker at once.
    pub fn retry_lane_depth_max_seen(&self) -> usize {
        self.routes
            .iter()
            .map(|r| r.retry_lane.depth_max_seen())
            .sum()
    }

    /// Calls in flight (busy workers).
    pub fn in_flight(&self) -> usize {
        self.workers.busy()
    }

    /// The concurrency limit in force now, if one is configured.
    pub fn concurrency_limit(&self) -> Option<usize> {
        self.limit.as_ref().map(ConcurrencyLimit::limit)
    }

    /// The lowest and highest concurrency limit so far, if one is configured.
    pub fn concurrency_limit_seen(&self) -> Option<(usize, usize)> {
        self.limit.as_ref().map(|l| (l.min_seen(), l.max_seen()))
    }

    pub fn workers(&self) -> usize {
        self.workers.slots()
    }

    /// Jobs accepted and not yet finished.
    pub fn live_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// The most jobs alive at once so far.
    pub fn live_jobs_max_seen(&self) -> usize {
        self.live_jobs_max_seen
    }

    /// Hedges sent, won and refused; `None` without `[relay.hedge]`.
    pub fn hedge_counts(&self) -> Option<HedgeCounts> {
        self.hedge.as_ref().map(Hedger::counts)
    }

    /// Attempts of `job` in flight at once: more than one only while hedged.
    pub fn attempts_in_flight(&self, job: JobId) -> usize {
        let hedged = self.hedge.as_ref().map_or(0, |h| h.in_flight(job));
        let flying = self
            .jobs
            .get(job.slot())
            .is_some_and(|j| j.id == job && matches!(j.stage, Stage::InFlight { .. }));
        if hedged > 0 {
            hedged
        } else {
            usize::from(flying)
        }
    }

    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.routes[0].breaker.as_ref().map(Breaker::state)
    }

    pub fn idempotency_keys(&self) -> usize {
        self.idempotency.len()
    }

    /// Completed idempotency records forgotten before their TTL (store full).
    pub fn idempotency_evicted_early(&self) -> u64 {
        self.idempotency.evicted_early()
    }

    /// How far back a replay really reaches, which a full store shortens
    /// below its TTL.
    pub fn replay_window(&self, now: Time) -> ReplayWindow {
        self.idempotency.window(now)
    }

    /// New clients refused because every rate-limit bucket was in use.
    pub fn rate_limit_table_full(&self) -> u64 {
        self.routes
            .iter()
            .filter_map(|r| r.limiter.as_ref())
            .map(RateLimiter::table_full)
            .sum()
    }

    /// Bytes the queue holds right now: its ring buffer plus the job records
    /// of queued jobs (payload bytes are the caller's to add).
    pub fn queue_bytes(&self) -> usize {
        self.queue_len() * (std::mem::size_of::<JobId>() + std::mem::size_of::<Job<K, P>>())
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// The serial the next job will get.
    pub fn next_serial(&self) -> u32 {
        self.serial
    }

    /// Adds an earlier life's counts to this relay's (after a restart).
    pub fn carry_stats(&mut self, earlier: &Stats) {
        self.stats.absorb(earlier);
    }
}

/// Hedged requests ([`super::hedge`]). While a job is hedged, the hedger
/// holds every attempt of it in flight (permit, start, deadline); the job's
/// stage stays `InFlight` and its relay timers are stale. The first success
/// ends the job through `finish_attempt`; a failure ends only its attempt
/// while another is still in flight, and the last one goes through
/// `finish_attempt` (retry or dead letter) like any other attempt.
impl<K: Key, P: Payload> Relay<K, P> {
    /// Sends hedges for attempts whose delay is over, while workers are
    /// free after the waiting work.
    fn pump_hedges(&mut self, now: Time) {
        if self.hedge.is_none() {
            return;
        }
        self.compact_hedge_checks();
        while let Some((id, attempt)) = self.hedge.as_mut().and_then(|h| h.pop_due(now)) {
            let Some(Stage::InFlight { permit, started }) = self
                .job_mut(id)
                .filter(|j| j.attempts == attempt)
                .map(|j| j.stage)
            else {
                continue;
            };
            let r = self.jobs[id.slot()].route.index();
            if attempt >= self.routes[r].retry.attempts_max() {
                if let Some(h) = &mut self.hedge {
                    h.out_of_attempts();
                }
                continue;
            }
            // A hedge is a call like any other: it needs a free worker and
            // room under the concurrency limit.
            let room = self.workers.has_free_slot()
                && self.routes[r].slots.has_free_slot()
                && self.under_limit();
            let route = &mut self.routes[r];
            let Some(h) = &mut self.hedge else { return };
            if h.permit(id).is_err() {
                continue;
            }
            let closed = route
                .breaker
                .as_ref()
                .is_none_or(|b| b.state() == BreakerState::Closed);
            let hedge_permit = match &mut route.breaker {
                _ if !closed || !room => None,
                Some(b) => b.allow(now),
                None => Some(Permit::UNGUARDED),
            };
            match hedge_permit {
                Some(p) => self.start_hedge(now, id, (permit, started), p),
                None => h.skipped(),
            }
        }
    }

    /// Bounds the hedger's pending checks by the attempts in flight.
    fn compact_hedge_checks(&mut self) {
        let Some(mut h) = self.hedge.take() else {
            return;
        };
        if h.checks_len() > 4 * self.workers.slots() + 64 {
            h.retain_checks(|id, attempt| {
                self.jobs.get(id.slot()).is_some_and(|j| {
                    j.id == id && j.attempts == attempt && matches!(j.stage, Stage::InFlight { .. })
                })
            });
        }
        self.hedge = Some(h);
    }

    /// Starts attempt `attempts + 1` of an in-flight job beside the one
    /// out since `started`.
    fn start_hedge(&mut self, now: Time, id: JobId, hedged: (Permit, Time), permit: Permit) {
        let Some(job) = self.jobs.get_mut(id.slot()).filter(|j| j.id == id) else {
            return;
        };
        let r = job.route.index();
        let route = &mut self.routes[r];
        let acquired = self.workers.try_acquire() && route.slots.try_acquire();
        assert!(acquired, "pump_hedges checked for a free worker and slot");
        let timeout = route.attempt_timeout;
        let first = Flight {
            attempt: job.attempts,
            permit: hedged.0,
            started: hedged.1,
            deadline: timeout.map(|t| hedged.1 + t),
        };
        job.attempts += 1;
        job.stage = Stage::InFlight {
            permit,
            started: now,
        };
        let attempt = job.attempts;
        let (key, payload) = (job.key.clone(), job.payload.clone());
        let hedge = Flight {
            attempt,
            permit,
            started: now,
            deadline: timeout.map(|t| now + t),
        };
        if let Some(h) = &mut self.hedge {
            h.sent(id, first, hedge);
            h.on_attempt_start(now, id, attempt);
        }
        self.stats.attempts += 1;
        self.stats.routes[r].attempts += 1;
        self.journal(|| Record::Started { job: id, attempt });
        self.outputs
            .push_back(Output::Event(Event::HedgeSent { job: id, attempt }));
        self.outputs.push_back(Output::Call {
            call: CallId { job: id, attempt },
            route: RouteId(r as u16),
            key,
            payload,
            timeout,
        });
    }

    /// Takes a result the hedger owns; hands back any other. A success of
    /// an attempt the relay waits for also feeds the percentile delay.
    fn hedged_result(
        &mut self,
        now: Time,
        call: CallId,
        result: Result<P, CallError>,
    ) -> Option<Result<P, CallError>> {
        let Some(h) = self.hedge.as_mut() else {
            return Some(result);
        };
        if !h.is_hedged(call.job) {
            let started = self.jobs.get(call.job.slot()).and_then(|j| match j.stage {
                Stage::InFlight { started, .. }
                    if j.id == call.job && j.attempts == call.attempt =>
                {
                    Some(started)
                }
                _ => None,
            });
            if let (Some(started), Ok(_), Some(h)) = (started, &result, &mut self.hedge) {
                h.on_success(now.since(started));
            }
            return Some(result);
        }
        match h.take_flight(call.job, call.attempt) {
            Some(flight) => self.flight_ended(now, call.job, flight, result),
            None => self.late_answer(now, call, result),
        }
        None
    }

    /// An answer to an attempt of a hedged job that already timed out.
    fn late_answer(&mut self, now: Time, call: CallId, result: Result<P, CallError>) {
        self.stats.late_results += 1;
        match result {
            Ok(response) => self.late_success(now, call, response),
            Err(_) => self.outputs.push_back(Output::Event(Event::LateResult {
                job: call.job,
                attempt: call.attempt,
            })),
        }
    }

    /// Flights whose deadline passed time out, one by one.
    fn expire_hedged(&mut self, now: Time) {
        while let Some((id, flight)) = self.hedge.as_mut().and_then(|h| h.pop_expired(now)) {
            self.flight_ended(now, id, flight, Err(CallError::Timeout));
        }
    }

    fn flight_ended(&mut self, now: Time, id: JobId, flight: Flight, result: Result<P, CallError>) {
        let Some(h) = &mut self.hedge else { return };
        match result {
            Ok(response) => {
                h.on_success(now.since(flight.started));
                let r = self.jobs[id.slot()].route.index();
                for lost in h.end(id, Some(flight.attempt)) {
                    self.workers.release();
                    self.routes[r].slots.release();
                    self.outputs.push_back(Output::Event(Event::HedgeAbandoned {
                        job: id,
                        attempt: lost.attempt,
                    }));
                }
                self.finish_flight(now, id, flight, Ok(response));
            }
            Err(error) if h.in_flight(id) > 0 => self.flight_failed(now, id, flight, error),
            Err(error) => {
                h.end(id, None);
                self.finish_flight(now, id, flight, Err(error));
            }
        }
    }

    /// Ends the job's attempt as `flight` through the common path.
    fn finish_flight(
        &mut self,
        now: Time,
        id: JobId,
        flight: Flight,
        result: Result<P, CallError>,
    ) {
        if let Some(job) = self.job_mut(id) {
            job.stage = Stage::InFlight {
                permit: flight.permit,
                started: flight.started,
            };
            self.finish_attempt(now, id, result);
        }
    }

    /// One attempt of a hedged job failed while another is in flight: it
    /// is counted like any failure, but no retry is made yet.
    fn flight_failed(&mut self, now: Time, id: JobId, flight: Flight, error: CallError) {
        let r = self.jobs[id.slot()].route.index();
        self.release_worker(r);
        self.stats.routes[r].attempt_errors[error] += 1;
        if let Some(b) = &mut self.routes[r].breaker {
            let healthy = error == CallError::ClientError;
            b.on_result(now, flight.permit, healthy, now.since(flight.started));
        }
        self.stats.attempt_latency.record(now.since(flight.started));
        self.stats.attempt_errors[error] += 1;
        if let Some(job) = self.job_mut(id) {
            job.last_error = Some(error);
        }
        self.outputs.push_back(Output::Event(Event::AttemptFailed {
            job: id,
            attempt: flight.attempt,
            error,
        }));
    }
}

/// Durability ([`super::journal`], [`super::recovery`]): a relay rebuilt
/// from what a store kept, a job adopted from another replica, and a job
/// taken back because its acceptance could not be made durable.
impl<K: Key, P: Payload> Relay<K, P> {
    /// A relay rebuilt from `stored`: unfinished jobs queue again (in their
    /// old slots, so their ids and status URLs stay valid), keeping their
    /// attempt count; those with attempts > 0 are marked possibly run twice
    /// and wait in the retry lane, ahead of new work; letters and replay
    /// records are back; ids continue from `next_serial`. The relay comes
    /// back with its journal on, and has already started what it can: the
    /// driver drains its records and outputs as after any turn.
    ///
    /// Errors (not panics) when the stored state does not fit the settings
    /// or contradicts itself. Replays that do not fit the idempotency store
    /// are left out, oldest first, as a full store would forget them.
    pub fn recover(
        settings: &RelaySettings,
        rng: Stream,
        now: Time,
        stored: Stored<K, P>,
    ) -> Result<Relay<K, P>, RecoverError> {
        check_stored(settings, &stored)?;
        let mut relay = Relay::new(settings, rng);
        relay.now = now;
        relay.serial = stored.next_serial;
        relay.restore_jobs(now, stored.jobs)?;
        for letter in stored.letters {
            let dropped = relay.dlq.push(letter);
            if !dropped.is_empty() {
                return Err(RecoverError::LettersDoNotFit {
                    letters: relay.dlq.len() + dropped.len(),
                    capacity: relay.dlq.capacity(),
                    bytes_max: relay.dlq.bytes_max(),
                });
            }
        }
        let ttl = settings.replay_ttl();
        let mut replays = stored.replays;
        replays.sort_by_key(|r| r.finished_at);
        for r in replays.into_iter().filter(|r| r.finished_at + ttl > now) {
            let begun = relay.idempotency.begin(now, &r.key, r.fingerprint, r.job);
            if matches!(begun, Begin::Started) {
                relay
                    .idempotency
                    .complete(r.finished_at, &r.key, r.response);
            }
            relay.idempotency.take_forgotten();
        }
        relay.set_journal(true);
        relay.pump(now);
        Ok(relay)
    }

    /// Puts unfinished jobs back in their slots: never called, in the
    /// queue; called, in the retry lane and marked redelivered.
    fn restore_jobs(&mut self, now: Time, jobs: Vec<StoredJob<K, P>>) -> Result<(), RecoverError> {
        let mut table = Vec::with_capacity(jobs.len());
        for stored in jobs {
            let id = stored.job;
            if let Some(key) = &stored.key {
                let begun = self.idempotency.begin(now, key, stored.fingerprint, id);
                if !matches!(begun, Begin::Started) {
                    return Err(RecoverError::DuplicateKey { job: id });
                }
            }
            let job = self.stored_job(id, stored);
            self.place(&job);
            table.push((id.slot(), job));
        }
        self.jobs = table.into_iter().collect();
        self.live_jobs_max_seen = self.jobs.len();
        Ok(())
    }

    /// A stored job as a live one, counted as recovered.
    fn stored_job(&mut self, id: JobId, s: StoredJob<K, P>) -> Job<K, P> {
        let redelivered = s.attempts > 0;
        self.stats.recovered_jobs += 1;
        self.stats.redelivered_jobs += u64::from(redelivered);
        Job {
            id,
            route: s.route,
            key: s.key,
            client: s.client,
            fingerprint: s.fingerprint,
            payload: s.payload,
            accepted_at: s.accepted_at,
            attempts: s.attempts,
            stage: if redelivered {
                Stage::RetryQueued
            } else {
                Stage::Queued
            },
            backoff: BackoffState::default(),
            last_error: None,
            redrives: s.redrives,
            redelivered,
        }
    }

    /// Queues a job as its stage says; the caller checked for room.
    fn place(&mut self, job: &Job<K, P>) {
        if job.stage == Stage::RetryQueued {
            self.routes[job.route.index()].retry_lane.push(job.id);
        } else {
            self.offer(job.route, job.id);
        }
    }

    /// Takes one stored job into this running relay (another replica's job
    /// whose lease expired). It keeps the stored serial; the slot is this
    /// relay's, so the returned id may differ from the stored one in its
    /// slot (stores key jobs by serial). Nothing is journaled for it: the
    /// store that handed it over already holds it; its attempts are
    /// journaled as they start.
    pub fn adopt(&mut self, now: Time, job: StoredJob<K, P>) -> Result<JobId, Refusal> {
        self.advance(now);
        if job.route.index() >= self.routes.len() {
            return Err(Refusal::Unavailable);
        }
        if let Some(Answer::Refused { why, .. }) = self.blocked(now, job.route) {
            return Err(why);
        }
        let serial = job.job.serial();
        if serial == u32::MAX {
            return Err(Refusal::Unavailable);
        }
        let id = JobId::new(serial, self.jobs.vacant_key());
        if job.attempts == 0 && self.routes[job.route.index()].queue.is_full() {
            return Err(Refusal::Shed);
        }
        if let Some(key) = &job.key {
            match self.idempotency.begin(now, key, job.fingerprint, id) {
                Begin::Started => {}
                Begin::Full => return Err(Refusal::KeysFull),
                Begin::Mismatch => return Err(Refusal::Mismatch),
                Begin::InFlight(_) | Begin::Replay { .. } => return Err(Refusal::Conflict),
            }
            if let Some(key) = self.idempotency.take_forgotten() {
                self.outputs.push_back(Output::Forgotten { key });
            }
        }
        self.serial = self.serial.max(serial + 1);
        let job = self.stored_job(id, job);
        self.place(&job);
        self.jobs.insert(job);
        assert!(self.jobs.len() <= self.jobs_max, "job table over its bound");
        self.live_jobs_max_seen = self.live_jobs_max_seen.max(self.jobs.len());
        self.pump(now);
        Ok(id)
    }

    /// Takes one stored dead letter into this running relay (another
    /// replica's, whose lease expired), if it fits without evicting one of
    /// this relay's. Nothing is journaled: the store holds it already.
    pub fn adopt_letter(&mut self, now: Time, letter: DeadLetter<K, P>) -> bool {
        self.advance(now);
        self.dlq.admit(letter).is_ok()
    }

    /// Takes back a job whose `Accepted` record could not be made durable.
    /// Valid only before any of its outputs were performed: the driver
    /// answers its request as refused and drops its call. Its key is
    /// released; counted as refused (`unavailable`) instead of accepted.
    /// A redriven job's letter is not restored here: the store still holds
    /// it, and it is back at the next recovery. Returns whether the job was live.
    pub fn retract(&mut self, now: Time, id: JobId) -> bool {
        self.advance(now);
        if self.job_mut(id).is_none() {
            return false;
        }
        let (job, ..) = self.remove_job(id);
        let r = job.route.index();
        match job.stage {
            Stage::Queued => {
                self.routes[r].queue.remove(&id);
            }
            Stage::RetryQueued => {
                self.routes[r].retry_lane.remove(id);
            }
            Stage::InFlight { permit, .. } => {
                let hedged = self.hedge.as_mut().map(|h| h.end(id, None));
                let flights = hedged.map_or(1, |lost| lost.len().max(1));
                for _ in 0..flights {
                    self.release_worker(r);
                }
                if let Some(b) = &mut self.routes[r].breaker {
                    b.forget(permit);
                }
            }
            Stage::BackingOff { .. } => {}
        }
        if let Some(key) = &job.key {
            self.idempotency.release(key);
        }
        self.outputs
            .retain(|o| !matches!(o, Output::Call { call, .. } if call.job == id));
        if job.redrives > 0 {
            self.stats.dlq_redriven = self.stats.dlq_redriven.saturating_sub(1);
        } else {
            self.stats.accepted = self.stats.accepted.saturating_sub(1);
            self.stats.refused[Refusal::Unavailable] += 1;
        }
        self.pump(now);
        true
    }
}

/// Checks what does not fit the settings or contradicts itself, before
/// anything is built.
fn check_stored<K, P>(settings: &RelaySettings, stored: &Stored<K, P>) -> Result<(), RecoverError> {
    let next = stored.next_serial;
    if next == u32::MAX {
        return Err(RecoverError::SerialsExhausted);
    }
    let ids = stored
        .jobs
        .iter()
        .map(|j| j.job)
        .chain(stored.letters.iter().map(|l| l.job))
        .chain(stored.replays.iter().map(|r| r.job));
    if let Some(job) = ids.into_iter().find(|j| j.serial() >= next) {
        return Err(RecoverError::SerialAhead {
            job,
            next_serial: next,
        });
    }
    let jobs_max = settings.jobs_max;
    if stored.jobs.len() > jobs_max {
        return Err(RecoverError::TooManyJobs {
            stored: stored.jobs.len(),
            jobs_max,
        });
    }
    // Jobs never called wait in their route's queue.
    let mut waiting = vec![0usize; settings.routes.len()];
    for j in &stored.jobs {
        let Some(w) = waiting.get_mut(j.route.index()) else {
            return Err(RecoverError::UnknownRoute {
                job: j.job,
                route: j.route.0,
                routes: settings.routes.len(),
            });
        };
        *w += usize::from(j.attempts == 0);
    }
    let capacity = settings.queue.capacity;
    let full = waiting
        .iter()
        .zip(&settings.routes)
        .find(|(w, _)| **w > capacity);
    if let Some((&waiting, route)) = full {
        return Err(RecoverError::QueueTooSmall {
            route: route.name().to_owned(),
            waiting,
            capacity,
        });
    }
    let mut slots: FxHashMap<usize, JobId> = FxHashMap::default();
    for j in &stored.jobs {
        if j.job.slot() >= jobs_max {
            return Err(RecoverError::SlotOutOfRange {
                job: j.job,
                jobs_max,
            });
        }
        if let Some(first) = slots.insert(j.job.slot(), j.job) {
            return Err(RecoverError::DuplicateSlot {
                first,
                second: j.job,
            });
        }
    }
    let keys = stored.jobs.iter().filter(|j| j.key.is_some()).count();
    if keys > settings.idempotency.keys_max {
        return Err(RecoverError::KeysDoNotFit {
            keys,
            keys_max: settings.idempotency.keys_max,
        });
    }
    let mut letters = std::collections::BTreeSet::new();
    if let Some(l) = stored.letters.iter().find(|l| !letters.insert(l.job)) {
        return Err(RecoverError::DuplicateLetter { letter: l.job });
    }
    Ok(())
}
