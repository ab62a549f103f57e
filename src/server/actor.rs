//! The one task that owns the relay.
//!
//! The relay is a single-threaded state machine; rather than lock it, one
//! task owns it and everything else talks to it by message, as the
//! simulator's event loop does: feed one input (a request, a downstream
//! answer, a wake-up), perform every output, keep one timer armed at
//! `poll_timeout`. Handlers reach it through a bounded inbox with a one-shot
//! reply each; a full inbox is answered at once (503), never waited on.
//!
//! With a durable store a turn ends differently: its journal records go to
//! the store's thread ([`Committer`]) and its outputs and answers wait in
//! [`Turn`]s until the commit is acknowledged, while the task goes on with
//! the next turns (a group commit then covers several). A failed commit
//! takes the turn's new jobs back (`Relay::retract`), their requests get
//! 503 `store-unavailable`, and `/ready` says so until a commit succeeds.

use super::calls::{CallDone, CallRequest, Callers};
use super::clock::Clock;
use super::limit_log::Acted;
use super::routes::RouteTable;
use super::store::committer::{Ack, Batch, Committer, PIPELINE_MAX};
use super::store::StoreError;
use super::telemetry::{AttemptEnd, Telemetry, TelemetryConfig};
use super::views::{
    DlqFill, DlqGauges, DlqPage, JobView, LetterView, RedriveReport, RedriveView, ReplayWindowView,
    RouteView, StatsView,
};
use crate::relay::{
    Answer, Event, Finished, JobId, Outcome, Output, Record, Relay, Request, Routing,
};
use crate::time::Time;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

/// An idempotency key as the server holds it: shared, so the relay's copies
/// of it (store, expiry queue, call, outcome) are reference counts, not
/// allocations.
pub type Key = Arc<str>;

/// The relay as the server holds it: shared string keys, byte payloads.
pub type ServerRelay = Relay<Key, Bytes>;

/// A request to the relay's task.
pub enum Command {
    Submit {
        request: Request<Key, Bytes>,
        /// Its route, and what the route's fallback cache knows it by.
        routing: Routing,
        cid: Arc<str>,
        reply: oneshot::Sender<Answer<Bytes>>,
    },
    Status {
        job: JobId,
        reply: oneshot::Sender<Option<JobView>>,
    },
    DeadLetters {
        after: Option<JobId>,
        limit: usize,
        reply: oneshot::Sender<DlqPage>,
    },
    DeadLetter {
        job: JobId,
        reply: oneshot::Sender<Option<LetterView>>,
    },
    /// Redrive these letters, or all of them.
    Redrive {
        letters: Option<Vec<JobId>>,
        cid: Arc<str>,
        reply: oneshot::Sender<RedriveReport>,
    },
    Stats {
        reply: oneshot::Sender<StatsView>,
    },
    /// Stop admitting; accepted work carries on. Answers the jobs still
    /// live, once the live-jobs gauge says so too.
    Drain {
        reply: oneshot::Sender<usize>,
    },
    /// End the task and say what was left.
    Stop {
        reply: oneshot::Sender<Leftovers>,
    },
    /// Take over jobs another replica left (its leases expired); the reply
    /// says, per job, whether the relay took it.
    Adopt {
        jobs: Vec<crate::relay::StoredJob<Key, Bytes>>,
        reply: oneshot::Sender<Vec<bool>>,
    },
    /// Take over dead letters another replica held (its lease expired);
    /// the reply says, per letter, whether the relay took it.
    AdoptLetters {
        letters: Vec<crate::relay::DeadLetter<Key, Bytes>>,
        reply: oneshot::Sender<Vec<bool>>,
    },
}

/// Gauges read without asking the task: whether it drains (for `/ready`)
/// and how many jobs are live (shutdown waits for zero). Plain atomics: the
/// task never waits on a lock that a reader could hold.
#[derive(Debug, Default)]
pub struct Gauges {
    pub draining: AtomicBool,
    pub live_jobs: AtomicUsize,
    /// Woken when the live jobs drop to zero.
    pub idle: Notify,
    /// The dead-letter queue's fill, for `/ready`.
    pub dlq: DlqGauges,
    /// The last commit to the store failed: new work is refused (503) and
    /// `/ready` is false until one succeeds.
    pub store_failing: Arc<AtomicBool>,
}

/// Work still unfinished when the task ended.
#[derive(Clone, Debug, Default)]
pub struct Leftovers {
    /// Jobs accepted and not finished: `(job, state, attempts, correlation id)`.
    /// Unfinished jobs: status, correlation id, payload (lossy UTF-8).
    pub live: Vec<(JobView, Option<Arc<str>>, String)>,
    pub dead_letters: Vec<LetterView>,
    pub succeeded: u64,
    pub dead_lettered: u64,
}

pub struct RelayActor {
    relay: ServerRelay,
    clock: Clock,
    callers: Callers,
    /// The routes' names, for logs, spans and views.
    routes: RouteTable,
    commands: mpsc::Receiver<Command>,
    results: mpsc::Receiver<CallDone>,
    results_tx: mpsc::Sender<CallDone>,
    /// Answers that came back at once (zero-delay built-in downstream).
    ready: VecDeque<CallDone>,
    /// Correlation id of every live job and every dead letter.
    cids: FxHashMap<JobId, Arc<str>>,
    gauges: Arc<Gauges>,
    /// Set by a `Stop` command: answer it and end after this turn.
    stop: Option<oneshot::Sender<Leftovers>>,
    /// A full idempotency store forgets a key per new one: one log line per
    /// interval says how many, rather than one line each.
    forgotten: Acted,
    /// Dead letters not kept (full queue, or evicted as the oldest): the
    /// same, one line per interval.
    dropped_letters: Acted,
    /// The store's thread and the turns waiting for it; `None`: memory.
    durable: Option<Durable>,
    /// The current turn's answers, held until its records are committed.
    replies: Vec<Reply>,
    /// A span per job, when `[telemetry]` asks; else every call is a no-op.
    telemetry: Telemetry,
}

/// Turns committed in order, their outputs performed on acknowledgement.
struct Durable {
    committer: Committer,
    pending: VecDeque<Turn>,
}

/// What a turn does once its records are durable.
struct Turn {
    outputs: Vec<Output<Key, Bytes>>,
    replies: Vec<Reply>,
    /// It sent records of its own (else it only waits for earlier turns).
    awaits: bool,
}

/// An answer held back until the turn's records are committed.
enum Reply {
    Submit(oneshot::Sender<Answer<Bytes>>, Answer<Bytes>),
    Redrive(oneshot::Sender<RedriveReport>, RedriveReport),
}

impl Reply {
    fn send(self) {
        // A client that hung up still has its job: the answer is just not read.
        match self {
            Reply::Submit(tx, answer) => {
                let _ = tx.send(answer);
            }
            Reply::Redrive(tx, report) => {
                let _ = tx.send(report);
            }
        }
    }
}

/// How often a repeated warning may be logged, in relay milliseconds.
const WARN_INTERVAL_MS: u64 = super::limit_log::LOG_INTERVAL.as_millis() as u64;

/// Inputs handled before the outputs are performed and the timer re-armed.
const BATCH_MAX: usize = 64;

/// How long the task's end waits for its last spans to be exported.
pub const TELEMETRY_FLUSH_MAX: std::time::Duration = std::time::Duration::from_secs(2);

impl RelayActor {
    /// Relay time in milliseconds, for the log gates.
    fn now_ms(&mut self) -> u64 {
        u64::try_from(self.clock.now().since(Time::ZERO).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn new(
        relay: ServerRelay,
        callers: Callers,
        commands: mpsc::Receiver<Command>,
        results_max: usize,
        gauges: Arc<Gauges>,
    ) -> RelayActor {
        let (results_tx, results) = mpsc::channel(results_max.max(1));
        RelayActor {
            relay,
            clock: Clock::start(),
            callers,
            routes: RouteTable::default(),
            commands,
            results,
            results_tx,
            ready: VecDeque::new(),
            cids: FxHashMap::default(),
            gauges,
            stop: None,
            forgotten: Acted::default(),
            dropped_letters: Acted::default(),
            durable: None,
            replies: Vec::new(),
            telemetry: Telemetry::off(),
        }
    }

    /// Names the relay's routes (without, its one route is `default`).
    pub fn with_routes(mut self, routes: RouteTable) -> RelayActor {
        self.routes = routes;
        self
    }

    /// Exports a span per job to `config`'s collector, with at most
    /// `jobs_max` (the relay's bound on live jobs) open at once. After
    /// [`RelayActor::with_store`], whose clock the spans' times come from.
    pub fn with_telemetry(
        mut self,
        config: &TelemetryConfig,
        jobs_max: usize,
    ) -> anyhow::Result<RelayActor> {
        self.telemetry = Telemetry::start(config, jobs_max, &mut self.clock)?;
        Ok(self)
    }

    /// Ends the open spans and exports what is left, off the runtime's threads.
    async fn close_telemetry(&mut self) {
        if !self.telemetry.is_on() {
            return;
        }
        let telemetry = std::mem::take(&mut self.telemetry);
        let now = self.clock.now();
        let close = move || telemetry.close(now, TELEMETRY_FLUSH_MAX);
        let _ = tokio::task::spawn_blocking(close).await;
    }

    /// Commits every turn's records through `committer` before its outputs
    /// and answers; `clock` carries relay time on from the store's epoch.
    /// The relay must journal (a recovered relay does).
    pub fn with_store(mut self, committer: Committer, clock: Clock) -> RelayActor {
        self.relay.set_journal(true);
        self.clock = clock;
        self.durable = Some(Durable {
            committer,
            pending: VecDeque::new(),
        });
        self
    }

    /// Runs until a `Stop` command, or until every handle is gone; returns
    /// what was left unfinished.
    pub async fn run(mut self) -> Leftovers {
        let sleep = tokio::time::sleep_until(self.clock.far_future());
        tokio::pin!(sleep);
        let mut armed: Option<Time> = None;
        // A recovered relay has work under way before any input: its first
        // turn is taking that, and arming its timer.
        let mut started = false;
        loop {
            let room = self
                .durable
                .as_ref()
                .is_none_or(|d| d.pending.len() < PIPELINE_MAX);
            if !started {
                started = true;
            } else if room && !self.ready.is_empty() {
                // Answers that came back at once, fed in as a turn of their own.
                while let Some(done) = self.ready.pop_front() {
                    self.on_result(done);
                }
            } else {
                tokio::select! {
                    biased;
                    ack = next_ack(&mut self.durable) => self.on_ack(ack),
                    Some(done) = self.results.recv(), if room => self.on_result(done),
                    () = &mut sleep, if armed.is_some() && room => {
                        let due = armed.take().unwrap_or(Time::ZERO);
                        let now = self.clock.now_at_least(due);
                        self.relay.handle_timeout(now);
                    }
                    command = self.commands.recv(), if room => match command {
                        Some(c) => self.on_command(c),
                        None => {
                            self.end_turn();
                            self.flush().await;
                            self.close_telemetry().await;
                            return self.leftovers();
                        }
                    },
                }
            }
            if room {
                self.absorb_more();
            }
            self.end_turn();
            if let Some(reply) = self.stop.take() {
                self.flush().await;
                let left = self.leftovers();
                let _ = reply.send(left.clone());
                self.close_telemetry().await;
                return left;
            }
            let next = self.relay.poll_timeout();
            if next != armed {
                if let Some(t) = next {
                    sleep.as_mut().reset(self.clock.instant_at(t));
                }
                armed = next;
            }
            self.gauges
                .dlq
                .publish(&DlqFill::new(self.relay.dead_letters()));
            let live = self.relay.live_jobs();
            let before = self.gauges.live_jobs.swap(live, Ordering::Relaxed);
            if live == 0 && before != 0 {
                self.gauges.idle.notify_waiters();
            }
        }
    }

    /// Takes whatever else is already waiting, up to a batch, so that a
    /// burst costs one pass over the outputs instead of one per input.
    fn absorb_more(&mut self) {
        for _ in 0..BATCH_MAX {
            if self.stop.is_some() {
                return;
            }
            if let Ok(done) = self.results.try_recv() {
                self.on_result(done);
            } else if let Ok(c) = self.commands.try_recv() {
                self.on_command(c);
            } else {
                return;
            }
        }
    }

    /// Ends a turn: performs its outputs now (memory store, or nothing to
    /// make durable and nothing waiting before it), or sends its records to
    /// the store and holds its outputs and answers until the commit.
    fn end_turn(&mut self) {
        if self.durable.is_none() {
            self.perform_outputs();
            return;
        }
        let records: Vec<Record<Key, Bytes>> =
            std::iter::from_fn(|| self.relay.poll_record()).collect();
        let outputs: Vec<_> = std::iter::from_fn(|| self.relay.poll_output()).collect();
        let replies = std::mem::take(&mut self.replies);
        let Some(d) = &mut self.durable else { return };
        if records.is_empty() && d.pending.is_empty() {
            self.perform_turn(outputs, replies);
            return;
        }
        if records.is_empty() && outputs.is_empty() && replies.is_empty() {
            return;
        }
        let awaits = !records.is_empty();
        let turn = Turn {
            outputs,
            replies,
            awaits,
        };
        if awaits && d.committer.send(Batch(records)).is_err() {
            let gone = StoreError::Unavailable {
                url: "the store's thread".to_owned(),
                detail: "it has stopped".to_owned(),
            };
            self.gauges.store_failing.store(true, Ordering::Relaxed);
            self.fail_turn(turn, &gone);
            return;
        }
        d.pending.push_back(turn);
    }

    /// A commit was acknowledged: performs its turn, and the turns behind
    /// it that had nothing of their own to commit.
    fn on_ack(&mut self, ack: Ack) {
        let Some(d) = &mut self.durable else { return };
        let Some(turn) = d.pending.pop_front() else {
            return;
        };
        match ack {
            Ok(()) => self.perform_turn(turn.outputs, turn.replies),
            Err(e) => self.fail_turn(turn, &e),
        }
        while let Some(d) = &mut self.durable {
            if d.pending.front().is_none_or(|t| t.awaits) {
                break;
            }
            if let Some(next) = d.pending.pop_front() {
                self.perform_turn(next.outputs, next.replies);
            }
        }
    }

    /// The turn's records were not committed: its new jobs are taken back
    /// and their requests answered 503 (by dropping the reply while
    /// `store_failing` is set, which the store's thread did before it
    /// acknowledged); the rest is performed, its records being retried by
    /// the store's thread.
    fn fail_turn(&mut self, turn: Turn, e: &StoreError) {
        tracing::debug!(error = %e, "a turn was not committed: its new jobs are taken back");
        let now = self.clock.now();
        let mut retracted = Vec::new();
        let mut replies = Vec::new();
        for reply in turn.replies {
            match reply {
                Reply::Submit(_, Answer::Accepted { job }) => {
                    self.relay.retract(now, job);
                    self.cids.remove(&job);
                    self.telemetry.job_retracted(now, job);
                    retracted.push(job);
                }
                other => replies.push(other),
            }
        }
        let outputs = turn
            .outputs
            .into_iter()
            .filter(|o| !matches!(o, Output::Call { call, .. } if retracted.contains(&call.job)))
            .collect();
        self.perform_turn(outputs, replies);
    }

    fn perform_turn(&mut self, outputs: Vec<Output<Key, Bytes>>, replies: Vec<Reply>) {
        for out in outputs {
            self.perform(out);
        }
        for reply in replies {
            reply.send();
        }
    }

    /// Waits until every turn sent to the store is acknowledged (at stop).
    async fn flush(&mut self) {
        while self.durable.as_ref().is_some_and(|d| !d.pending.is_empty()) {
            let ack = next_ack(&mut self.durable).await;
            self.on_ack(ack);
            self.end_turn();
        }
    }

    fn on_result(&mut self, done: CallDone) {
        let now = self.clock.now();
        let end = match &done.result {
            Ok(_) => AttemptEnd::Ok,
            Err(e) => AttemptEnd::Failed(*e),
        };
        let (job, attempt) = (done.call.job, done.call.attempt);
        self.telemetry
            .attempt_done(&mut self.clock, job, attempt, end);
        self.relay
            .handle_call_result_with(now, done.call, done.result, done.retry_after);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Submit {
                request,
                routing,
                cid,
                reply,
            } => self.submit(request, routing, cid, reply),
            Command::Status { job, reply } => {
                let routes = &self.routes;
                let view = self
                    .relay
                    .job_status(job)
                    .as_ref()
                    .map(|s| JobView::new(s, routes));
                let _ = reply.send(view);
            }
            Command::DeadLetters {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.dlq_page(after, limit));
            }
            Command::DeadLetter { job, reply } => {
                let letter = self.relay.dead_letters().get(job);
                let _ = reply.send(letter.map(|l| LetterView::new(l, true, &self.routes)));
            }
            Command::Redrive {
                letters,
                cid,
                reply,
            } => {
                let reply = Reply::Redrive(reply, self.redrive(letters, &cid));
                if self.durable.is_some() {
                    self.replies.push(reply);
                } else {
                    reply.send();
                }
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::Drain { reply } => {
                self.relay.start_draining();
                self.gauges.draining.store(true, Ordering::Relaxed);
                let live = self.relay.live_jobs();
                // Published before the answer, so a waiter on `idle` sees
                // the jobs accepted just before the drain.
                self.gauges.live_jobs.store(live, Ordering::Relaxed);
                tracing::info!(live_jobs = live, "draining: no new work admitted");
                let _ = reply.send(live);
            }
            Command::Stop { reply } => self.stop = Some(reply),
            Command::Adopt { jobs, reply } => {
                let now = self.clock.now();
                let taken = jobs
                    .into_iter()
                    .map(|job| self.relay.adopt(now, job).is_ok())
                    .collect();
                let _ = reply.send(taken);
            }
            Command::AdoptLetters { letters, reply } => {
                let now = self.clock.now();
                let taken = letters
                    .into_iter()
                    .map(|letter| self.relay.adopt_letter(now, letter))
                    .collect();
                let _ = reply.send(taken);
            }
        }
    }

    fn submit(
        &mut self,
        request: Request<Key, Bytes>,
        routing: Routing,
        cid: Arc<str>,
        reply: oneshot::Sender<Answer<Bytes>>,
    ) {
        let now = self.clock.now();
        let key = if self.telemetry.is_on() {
            request.key.clone()
        } else {
            None
        };
        let answer = self.relay.handle_request_to(now, routing, request);
        if let Answer::Accepted { job } = &answer {
            self.cids.insert(*job, cid);
            let route = self.routes.name(routing.route);
            self.telemetry
                .job_accepted(now, *job, key.as_deref(), &route);
        }
        let reply = Reply::Submit(reply, answer);
        if self.durable.is_some() {
            self.replies.push(reply);
        } else {
            reply.send();
        }
    }

    /// Redrives the letters named, or all of them (those without room now
    /// move as the queue makes room). Correlation ids follow the letters in
    /// [`RelayActor::event`], whichever way they move.
    fn redrive(&mut self, letters: Option<Vec<JobId>>, cid: &Arc<str>) -> RedriveReport {
        let now = self.clock.now();
        let results: Vec<_> = match letters {
            Some(ids) => ids
                .into_iter()
                .map(|id| (id, self.relay.redrive(now, id)))
                .collect(),
            None => self.relay.redrive_all(now),
        };
        for (letter, result) in &results {
            if let Err(e) = result {
                tracing::info!(%letter, error = %e, redrive_cid = %cid, "dead letter not redriven");
            }
        }
        let scheduled = self.relay.redrive_pending();
        tracing::info!(
            redrive_cid = %cid,
            moved = results.iter().filter(|(_, r)| r.is_ok()).count(),
            scheduled,
            "redrive requested"
        );
        let views = results
            .into_iter()
            .map(|(letter, r)| RedriveView::new(letter, r))
            .collect();
        RedriveReport::new(views, scheduled)
    }

    fn dlq_page(&self, after: Option<JobId>, limit: usize) -> DlqPage {
        let dlq = self.relay.dead_letters();
        let mut letters: Vec<LetterView> = dlq
            .list()
            .filter(|l| after.is_none_or(|a| l.job > a))
            .take(limit.saturating_add(1))
            .map(|l| LetterView::new(l, false, &self.routes))
            .collect();
        let more = letters.len() > limit;
        letters.truncate(limit);
        DlqPage {
            size: dlq.len(),
            capacity: dlq.capacity(),
            bytes: dlq.bytes(),
            bytes_max: dlq.bytes_max(),
            overflowed: dlq.overflowed(),
            evicted: dlq.evicted(),
            next_after: if more {
                letters.last().map(|l| l.job)
            } else {
                None
            },
            letters,
        }
    }

    fn stats(&mut self) -> StatsView {
        let now = self.clock.now();
        let r = &self.relay;
        StatsView {
            uptime_s: now.as_secs_f64(),
            red: r.stats().snapshot(now),
            queue_depth: r.queue_len(),
            queue_capacity: r.queue_capacity(),
            queue_depth_max_seen: r.queue_depth_max_seen(),
            in_flight: r.in_flight(),
            workers: r.workers(),
            concurrency_limit: r.concurrency_limit().zip(r.concurrency_limit_seen()).map(
                |(limit, (min_seen, max_seen))| crate::server::views::LimitGauge {
                    limit,
                    min_seen,
                    max_seen,
                },
            ),
            live_jobs: r.live_jobs(),
            hedges: r.hedge_counts(),
            breaker: r.breaker_state(),
            dlq_size: r.dead_letters().len(),
            dlq_capacity: r.dead_letters().capacity(),
            dlq: DlqFill::new(r.dead_letters()),
            idempotency_keys: r.idempotency_keys(),
            replay_window: ReplayWindowView::new(
                &r.replay_window(now),
                r.idempotency_evicted_early(),
            ),
            rate_limit_table_full: r.rate_limit_table_full(),
            draining: r.is_draining(),
            retry_lane: r.retry_lane_len(),
            dlq_late_answers_dropped: r.dead_letters().late_answers_dropped(),
            http_rejected: Default::default(),
            connections: Default::default(),
            routes: self.route_views(),
        }
    }

    /// Each route's counts and state, and its letters in the queue.
    fn route_views(&self) -> Vec<RouteView> {
        let r = &self.relay;
        let mut letters = vec![0usize; r.routes()];
        for l in r.dead_letters().list() {
            if let Some(n) = letters.get_mut(l.route.index()) {
                *n += 1;
            }
        }
        let stats = r.stats();
        // Each route has a queue of the same capacity.
        let capacity = r.queue_capacity() / r.routes().max(1);
        (0..r.routes())
            .filter_map(|i| {
                let id = crate::relay::RouteId(u16::try_from(i).ok()?);
                let state = r.route_state(id);
                let counts = stats.routes.get(i)?;
                let name = self.routes.name(id).to_string();
                Some(RouteView::new(name, counts, &state, capacity, letters[i]))
            })
            .collect()
    }

    /// Performs everything the relay asked for; answers that came back at
    /// once are fed in and their outputs performed in turn (memory store:
    /// with a durable one they are a turn of their own).
    fn perform_outputs(&mut self) {
        loop {
            while let Some(out) = self.relay.poll_output() {
                self.perform(out);
            }
            let Some(done) = self.ready.pop_front() else {
                return;
            };
            self.on_result(done);
        }
    }

    fn perform(&mut self, out: Output<Key, Bytes>) {
        match out {
            Output::Call {
                call,
                key,
                payload,
                timeout,
                route,
            } => {
                let cid = self.cids.get(&call.job).cloned();
                let name = self.routes.name(route);
                tracing::debug!(cid = cid.as_deref(), job = %call.job, attempt = call.attempt, route = &*name, "calling downstream");
                let breaker = self.relay.route_state(route).breaker;
                self.telemetry
                    .attempt_started(&mut self.clock, call, &name, breaker);
                let request = CallRequest {
                    call,
                    key,
                    payload,
                    timeout,
                    correlation_id: cid,
                };
                if let Some(done) = self.callers.start(route, request, &self.results_tx) {
                    self.ready.push_back(done);
                }
            }
            Output::Finished(done) => self.finished(done),
            Output::Forgotten { key } => {
                let now = self.now_ms();
                if let Some((keys, _)) = self.forgotten.note(now, WARN_INTERVAL_MS) {
                    tracing::warn!(
                        key = &*key,
                        keys,
                        "idempotency store full: forgot completed keys before their TTL \
                         (this one, and the count since the last such line)"
                    );
                }
            }
            Output::Overflowed(letter) => {
                let cid = self.cids.remove(&letter.job);
                let now = self.now_ms();
                if let Some((letters, _)) = self.dropped_letters.note(now, WARN_INTERVAL_MS) {
                    let dlq = self.relay.dead_letters();
                    tracing::warn!(
                        cid = cid.as_deref(),
                        job = %letter.job,
                        key = letter.key.as_deref(),
                        attempts = letter.attempts,
                        reason = letter.reason.name(),
                        payload_bytes = letter.payload.len(),
                        payload = super::payload_log::field(&letter.payload),
                        letters,
                        when_full = dlq.when_full().name(),
                        overflowed_total = dlq.overflowed(),
                        evicted_total = dlq.evicted(),
                        "dead-letter queue full: letters not kept (this one, and the count \
                         since the last such line; payloads only with --log-payloads)"
                    );
                }
            }
            Output::Event(e) => self.event(e),
        }
    }

    fn finished(&mut self, done: Finished<Key, Bytes>) {
        self.telemetry.job_finished(&mut self.clock, &done);
        let (job, key, attempts, latency) = (done.job, done.key, done.attempts, done.latency);
        let latency_ms = crate::time::duration_ms(latency);
        match done.outcome {
            Outcome::Succeeded { .. } => {
                let cid = self.cids.remove(&job);
                tracing::debug!(cid = cid.as_deref(), %job, key = key.as_deref(), attempts, latency_ms, "job succeeded");
            }
            Outcome::DeadLettered { reason, last_error } => {
                // The letter keeps its correlation id while it waits in the queue.
                let kept = self.relay.dead_letters().get(job).is_some();
                let cid = if kept {
                    self.cids.get(&job).cloned()
                } else {
                    self.cids.remove(&job)
                };
                tracing::warn!(
                    cid = cid.as_deref(),
                    %job,
                    key = key.as_deref(),
                    attempts,
                    latency_ms,
                    reason = reason.name(),
                    last_error = last_error.name(),
                    "job dead-lettered"
                );
            }
            Outcome::Failed { reason } => {
                let cid = self.cids.remove(&job);
                tracing::warn!(cid = cid.as_deref(), %job, key = key.as_deref(), attempts, latency_ms, reason = reason.name(), "job failed");
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Breaker {
                route, from, to, ..
            } => {
                let route = self.routes.name(route);
                tracing::warn!(route = &*route, ?from, ?to, "circuit breaker changed state");
            }
            Event::AttemptFailed {
                job,
                attempt,
                error,
            } => {
                let cid = self.cids.get(&job);
                tracing::debug!(cid = cid.map(|c| &**c), %job, attempt, error = error.name(), "attempt failed");
                let end = AttemptEnd::Failed(error);
                self.telemetry
                    .attempt_done(&mut self.clock, job, attempt, end);
            }
            Event::HedgeAbandoned { job, attempt } => {
                tracing::trace!(event = ?e, "relay event");
                let end = AttemptEnd::Abandoned;
                self.telemetry
                    .attempt_done(&mut self.clock, job, attempt, end);
            }
            Event::Redriven { letter, job } => {
                let cid = self.cids.remove(&letter);
                tracing::info!(%letter, %job, cid = cid.as_deref(), "dead letter redriven");
                if let Some(cid) = cid {
                    self.cids.insert(job, cid);
                }
            }
            other => tracing::trace!(event = ?other, "relay event"),
        }
    }

    /// Everything unfinished, for the shutdown log.
    fn leftovers(&self) -> Leftovers {
        let live = self
            .relay
            .unfinished()
            .into_iter()
            .map(|(status, _, payload)| {
                let cid = self.cids.get(&status.job).cloned();
                (
                    JobView::new(&status, &self.routes),
                    cid,
                    String::from_utf8_lossy(payload).into_owned(),
                )
            })
            .collect();
        let stats = self.relay.stats();
        Leftovers {
            live,
            dead_letters: self
                .relay
                .dead_letters()
                .list()
                .map(|l| LetterView::new(l, true, &self.routes))
                .collect(),
            succeeded: stats.succeeded,
            dead_lettered: stats.dead_lettered_total(),
        }
    }
}

/// The next acknowledgement from the store's thread; never resolves with
/// a memory store or nothing waiting. A thread that is gone fails each turn.
async fn next_ack(durable: &mut Option<Durable>) -> Ack {
    match durable {
        Some(d) if !d.pending.is_empty() => match d.committer.acks.recv().await {
            Some(ack) => ack,
            None => Err(Arc::new(StoreError::Unavailable {
                url: "the store's thread".to_owned(),
                detail: "it has stopped".to_owned(),
            })),
        },
        _ => std::future::pending().await,
    }
}

/// Why the relay's task could not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the relay's inbox is full")]
    Full,
    #[error("the relay has stopped")]
    Stopped,
    #[error("the store cannot commit: new work is refused until it can")]
    Store,
}

/// How handlers talk to the relay's task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RelayHandle {
    tx: mpsc::Sender<Command>,
    pub gauges: Arc<Gauges>,
}

impl RelayHandle {
    /// A task owning `relay` (not yet spawned) and its handle.
    pub fn new(
        relay: ServerRelay,
        callers: impl Into<Callers>,
        commands_max: usize,
        results_max: usize,
    ) -> (RelayHandle, RelayActor) {
        let (tx, rx) = mpsc::channel(commands_max.max(1));
        let gauges = Arc::new(Gauges::default());
        let actor = RelayActor::new(relay, callers.into(), rx, results_max, gauges.clone());
        (RelayHandle { tx, gauges }, actor)
    }

    /// Sends the command `make` builds and waits for its reply. Never waits
    /// for room in the inbox: a full inbox is an answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(make(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Unavailable::Full,
            mpsc::error::TrySendError::Closed(_) => Unavailable::Stopped,
        })?;
        answer.await.map_err(|_| {
            if self.gauges.store_failing.load(Ordering::Relaxed) {
                Unavailable::Store
            } else {
                Unavailable::Stopped
            }
        })
    }

    /// Stops admitting. Resolves once the task has taken the command, so
    /// every request sent before it is counted, and [`RelayHandle::idle`]
    /// waits for those jobs too; answers how many are live.
    pub async fn drain(&self) -> Result<usize, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.tell(Command::Drain { reply }).await?;
        answer.await.map_err(|_| Unavailable::Stopped)
    }

    /// Hands over jobs to adopt from a thread outside the runtime (the
    /// replica's reaper), waiting for room and for the answer; `None` once
    /// the task has stopped.
    pub fn adopt_blocking(
        &self,
        jobs: Vec<crate::relay::StoredJob<Key, Bytes>>,
    ) -> Option<Vec<bool>> {
        let (reply, answer) = oneshot::channel();
        self.tx.blocking_send(Command::Adopt { jobs, reply }).ok()?;
        answer.blocking_recv().ok()
    }

    /// As [`RelayHandle::adopt_blocking`], for dead letters.
    pub fn adopt_letters_blocking(
        &self,
        letters: Vec<crate::relay::DeadLetter<Key, Bytes>>,
    ) -> Option<Vec<bool>> {
        let (reply, answer) = oneshot::channel();
        let command = Command::AdoptLetters { letters, reply };
        self.tx.blocking_send(command).ok()?;
        answer.blocking_recv().ok()
    }

    /// Redrives `letters` from a thread outside the runtime (the replica's
    /// lease thread, for another replica's request), waiting for the report.
    pub fn redrive_blocking(&self, letters: Vec<JobId>, cid: Arc<str>) -> Option<RedriveReport> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Redrive {
            letters: Some(letters),
            cid,
            reply,
        };
        self.tx.blocking_send(command).ok()?;
        answer.blocking_recv().ok()
    }

    /// Sends a command that has no reply; waits for room (shutdown only).
    pub async fn tell(&self, command: Command) -> Result<(), Unavailable> {
        self.tx
            .send(command)
            .await
            .map_err(|_| Unavailable::Stopped)
    }

    pub fn is_draining(&self) -> bool {
        self.gauges.draining.load(Ordering::Relaxed)
    }

    /// Jobs accepted and not finished, as of the task's last turn.
    pub fn live_jobs(&self) -> usize {
        self.gauges.live_jobs.load(Ordering::Relaxed)
    }

    /// Resolves once no job is live.
    pub async fn idle(&self) {
        loop {
            let woken = self.gauges.idle.notified();
            tokio::pin!(woken);
            // Registered before the check, so a wake-up in between is not missed.
            woken.as_mut().enable();
            if self.live_jobs() == 0 {
                return;
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gate_lets_one_line_through_per_interval_and_counts_the_rest() {
        let gate = Acted::default();
        let admit = |ms| gate.note(ms, WARN_INTERVAL_MS).map(|(since, _)| since);
        assert_eq!(admit(0), Some(1), "the first occurrence is logged");
        let held: Vec<Option<u64>> = (1..1000).map(admit).collect();
        assert!(held.iter().all(Option::is_none), "nothing more within 10 s");
        assert_eq!(admit(9_999), None);
        assert_eq!(admit(10_000), Some(1001), "then the count since");
        assert_eq!(admit(10_001), None);
    }
}
