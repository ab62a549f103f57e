//! One run: clients, the real [`Relay`], and the downstream, on a virtual
//! clock, from one seed.
//!
//! The loop pops the next event, hands it to whoever it concerns, and then
//! performs what the relay asks for (start a call, report an outcome) by
//! scheduling more events. The relay's own timers are folded in as a single
//! wake-up event armed at `relay.poll_timeout()`. Every step is checked by
//! the outside [`Checker`]; the first violation ends the run.

use super::clients::{Arrivals, ClientsConfig};
use super::downstream::Downstream;
use super::invariants::{Checker, Violation};
use super::scenario::Scenario;
use super::scheduler::Scheduler;
use super::summary::{Counters, Summary};
use super::trace::{SimRecord, Trace, TraceRecord};
use crate::relay::backoff::{Backoff, BackoffState};
use crate::relay::config_error::ms_to_nanos;
use crate::relay::job::{CallId, JobId, Outcome};
use crate::relay::retry::CallError;
use crate::relay::stats::{LatencyHistogram, Refusal};
use crate::relay::{Answer, Event, Output, Relay, Request};
use crate::rng::{exponential, unit, Domain, Seed};
use crate::time::Time;
use slab::Slab;
use std::time::Duration;

/// How to run a scenario, beyond what the scenario says.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    /// Keep up to this many trace records (0: no trace).
    pub trace_records_max: usize,
    /// Count downstream calls per bucket of this many milliseconds.
    pub calls_bucket_ms: Option<f64>,
}

impl SimOptions {
    pub fn seed(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            trace_records_max: 0,
            calls_bucket_ms: None,
        }
    }
}

/// Everything a run produced.
pub struct SimResult {
    pub summary: Summary,
    pub trace: Option<Trace>,
    /// Downstream calls started per bucket, if asked for.
    pub calls_per_bucket: Vec<u32>,
    /// Client-observed latency of logical requests that succeeded.
    pub client_latency: LatencyHistogram,
    /// Accepted → success latency per job (the relay's RED histogram).
    pub job_latency: LatencyHistogram,
}

/// A run stopped by an invariant violation; says how to reproduce it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{violation} (scenario `{scenario}`, seed {seed})")]
pub struct SimFailure {
    pub scenario: String,
    pub seed: u64,
    pub violation: Violation,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    /// An open-loop source's next logical request.
    Arrival {
        source: u16,
    },
    /// A closed-loop client starts its next logical request.
    Start {
        source: u16,
        member: u32,
    },
    /// Send (or re-send) a logical request; `key` guards against reuse of the slot.
    Send {
        slot: u32,
        key: u64,
    },
    ClientTimeout {
        slot: u32,
        key: u64,
        send: u32,
    },
    /// A downstream call answers. Flattened (not a `CallId`) to keep events
    /// at 24 bytes: the heap holds one per call in flight.
    CallDone {
        job: JobId,
        attempt: u32,
        ok: bool,
        key: u64,
    },
    RelayWake,
}

struct Source {
    arrivals: Option<Arrivals>,
    clients: u32,
    sent: u64,
    retry_backoff: Backoff,
    attempts_max: u32,
    timeout: Option<Duration>,
    think_ms: f64,
    /// Closed loop: logical requests each member still has to send.
    remaining: Vec<u32>,
    requests_per_client: u32,
}

/// A logical request: one key, possibly many sends.
struct Logical {
    key: u64,
    source: u16,
    member: u32,
    client: u32,
    created: Time,
    sends: u32,
    backoff: BackoffState,
    /// The job this request waits on, or [`NO_JOB`].
    job: JobId,
}

const NO_MEMBER: u32 = u32::MAX;
const NO_OWNER: u32 = u32::MAX;
const NO_JOB: JobId = JobId(u64::MAX);
/// A call without an idempotency key (keys are dense request numbers).
const NO_KEY: u64 = u64::MAX;

pub struct Simulation {
    scenario_name: String,
    seed: u64,
    seed_tree: Seed,
    /// When the last event that changed anything happened.
    last_active: Time,
    horizon: Option<Time>,
    deadline: Option<Duration>,
    sched: Scheduler<Ev>,
    relay: Relay<u64, ()>,
    downstream: Downstream,
    sources: Vec<Source>,
    requests: Slab<Logical>,
    next_key: u64,
    /// Job slot → logical request slot.
    job_owner: Vec<u32>,
    relay_wake: Option<Time>,
    checker: Checker,
    trace: Option<Trace>,
    c: Counters,
    client_latency: LatencyHistogram,
    bucket_ns: Option<u64>,
    calls_per_bucket: Vec<u32>,
}

/// Buckets kept for a calls-per-bucket series.
const BUCKETS_MAX: usize = 10_000_000;

impl Simulation {
    /// Sets up a run of a validated scenario.
    pub fn new(scenario: &Scenario, opts: &SimOptions) -> Simulation {
        let seed = Seed(opts.seed);
        let relay = Relay::new(&scenario.relay, seed.stream(Domain::Relay, 0));
        let sources = scenario
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| source(c, seed, i))
            .collect();
        let mut sim = Simulation {
            scenario_name: scenario.name.clone(),
            seed: opts.seed,
            seed_tree: seed,
            last_active: Time::ZERO,
            horizon: (scenario.horizon_s > 0.0).then(|| Time::from_secs_f64(scenario.horizon_s)),
            deadline: scenario
                .deadline_ms
                .map(|d| Duration::from_nanos(ms_to_nanos(d))),
            sched: Scheduler::new(),
            relay,
            downstream: Downstream::new(&scenario.downstream, seed.stream(Domain::Downstream, 0)),
            sources,
            requests: Slab::new(),
            next_key: 0,
            job_owner: Vec::new(),
            relay_wake: None,
            checker: Checker::new(scenario.relay.idempotency.ttl_ms),
            trace: (opts.trace_records_max > 0).then(|| Trace::new(opts.trace_records_max)),
            c: Counters::default(),
            client_latency: LatencyHistogram::new(),
            bucket_ns: opts
                .calls_bucket_ms
                .map(|ms| crate::relay::config_error::ms_to_nanos(ms).max(1)),
            calls_per_bucket: Vec::new(),
        };
        sim.schedule_first_events(scenario);
        sim
    }

    fn schedule_first_events(&mut self, scenario: &Scenario) {
        for (i, cfg) in scenario.clients.iter().enumerate() {
            let s = &mut self.sources[i];
            match cfg {
                ClientsConfig::OpenLoop { .. } => {
                    if let Some(t) = s.arrivals.as_mut().and_then(|a| a.next_after(Time::ZERO)) {
                        self.sched.schedule(t, Ev::Arrival { source: i as u16 });
                    }
                }
                ClientsConfig::ClosedLoop {
                    population,
                    start_spread_ms,
                    ..
                } => {
                    for member in 0..*population {
                        let mut rng = self.seed_tree.step_stream(
                            Domain::Member,
                            member_index(i as u16, member),
                            0,
                        );
                        let at = Time::from_secs_f64(unit(&mut rng) * start_spread_ms / 1e3);
                        self.sched.schedule(
                            at,
                            Ev::Start {
                                source: i as u16,
                                member,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Runs to the horizon (or until nothing is left to happen).
    pub fn run(mut self) -> Result<SimResult, SimFailure> {
        let outcome = self.event_loop();
        if let Err(violation) = outcome {
            return Err(SimFailure {
                scenario: self.scenario_name,
                seed: self.seed,
                violation,
            });
        }
        Ok(self.finish())
    }

    fn event_loop(&mut self) -> Result<(), Violation> {
        while let Some(at) = self.sched.peek_time() {
            if self.horizon.is_some_and(|h| at > h) {
                break;
            }
            let Some((now, ev)) = self.sched.pop() else {
                break;
            };
            self.c.events += 1;
            self.integrate_live_jobs(now);
            self.dispatch(now, ev)?;
            self.perform_outputs(now)?;
            let queue_bytes = self.relay.queue_bytes() as u64;
            self.c.queue_bytes_max = self.c.queue_bytes_max.max(queue_bytes);
            self.checker.bounds(
                now,
                (self.relay.queue_len(), self.relay.queue_capacity()),
                (self.relay.in_flight(), self.relay.workers()),
            )?;
            self.arm_relay_wake(now);
        }
        let end = self.horizon.unwrap_or(self.last_active);
        self.integrate_live_jobs(end);
        self.checker.at_end(end, self.relay.live_jobs())
    }

    /// Accumulates ∫ live jobs dt, for the time-average number in system.
    fn integrate_live_jobs(&mut self, now: Time) {
        let dt = now
            .as_nanos()
            .saturating_sub(self.c.live_area_until.as_nanos());
        self.c.live_area_job_ns += self.relay.live_jobs() as f64 * dt as f64;
        self.c.live_area_until = now;
    }

    fn dispatch(&mut self, now: Time, ev: Ev) -> Result<(), Violation> {
        match ev {
            Ev::Arrival { source } => {
                let s = &mut self.sources[usize::from(source)];
                let client = (s.sent % u64::from(s.clients)) as u32;
                s.sent += 1;
                if let Some(next) = s.arrivals.as_mut().and_then(|a| a.next_after(now)) {
                    if self.horizon.is_none_or(|h| next <= h) {
                        self.sched.schedule(next, Ev::Arrival { source });
                    }
                }
                self.last_active = now;
                let slot = self.new_logical(now, source, NO_MEMBER, client);
                self.send(now, slot)
            }
            Ev::Start { source, member } => {
                self.last_active = now;
                let slot = self.new_logical(now, source, member, member);
                self.send(now, slot)
            }
            Ev::Send { slot, key } => match self.live_slot(slot, key) {
                Some(slot) => {
                    self.last_active = now;
                    self.send(now, slot)
                }
                None => Ok(()),
            },
            Ev::ClientTimeout { slot, key, send } => {
                let Some(slot) = self.live_slot(slot, key) else {
                    return Ok(());
                };
                if self.requests[slot].sends != send {
                    return Ok(());
                }
                self.last_active = now;
                self.c.client_timeouts += 1;
                self.record(now, SimRecord::ClientTimeout { request: key, send });
                // The client stops waiting on this job: its outcome no longer
                // reaches the client, whose next send will find it (409 or a
                // replay). One retry chain per request, never two.
                self.requests[slot].job = NO_JOB;
                self.client_retry(now, slot);
                Ok(())
            }
            Ev::CallDone {
                job,
                attempt,
                ok,
                key,
            } => {
                let call = CallId { job, attempt };
                self.last_active = now;
                self.c.model_call_completions += 1;
                let duplicate = self.downstream.finish((key != NO_KEY).then_some(key), ok);
                self.record(
                    now,
                    SimRecord::CallDone {
                        job: call.job,
                        attempt: call.attempt,
                        ok,
                        duplicate,
                    },
                );
                let result = if ok {
                    Ok(())
                } else {
                    Err(CallError::ServerError)
                };
                self.relay.handle_call_result(now, call, result);
                Ok(())
            }
            Ev::RelayWake => {
                if self.relay_wake == Some(now) {
                    self.relay_wake = None;
                }
                if self.relay.poll_timeout().is_some_and(|t| t <= now) {
                    self.last_active = now;
                    self.relay.handle_timeout(now);
                }
                Ok(())
            }
        }
    }

    fn live_slot(&self, slot: u32, key: u64) -> Option<usize> {
        let slot = slot as usize;
        self.requests
            .get(slot)
            .filter(|l| l.key == key)
            .map(|_| slot)
    }

    fn new_logical(&mut self, now: Time, source: u16, member: u32, client: u32) -> usize {
        self.c.arrivals += 1;
        self.c.population(source).requests += 1;
        let key = self.next_key;
        self.next_key += 1;
        self.requests.insert(Logical {
            key,
            source,
            member,
            client,
            created: now,
            sends: 0,
            backoff: BackoffState::default(),
            job: NO_JOB,
        })
    }

    /// Sends logical request `slot` to the relay and acts on the answer.
    fn send(&mut self, now: Time, slot: usize) -> Result<(), Violation> {
        let l = &mut self.requests[slot];
        l.sends += 1;
        // Client ids are unique across populations: the population in the high bits.
        let client = (u64::from(l.source) << 32) | u64::from(l.client);
        let (key, send) = (l.key, l.sends);
        self.c.sends += 1;
        self.record(
            now,
            SimRecord::Send {
                request: key,
                client,
                send,
            },
        );
        let answer = self.relay.handle_request(
            now,
            Request {
                client,
                key: Some(key),
                fingerprint: key,
                payload: (),
            },
        );
        let (name, job) = answer_name(&answer);
        self.record(
            now,
            SimRecord::Answer {
                request: key,
                answer: name,
                job,
            },
        );
        match answer {
            Answer::Accepted { job } => {
                self.checker.accepted(now, job)?;
                self.own(job, slot);
                self.requests[slot].job = job;
                let source = &self.sources[usize::from(self.requests[slot].source)];
                if let Some(t) = source.timeout {
                    self.sched.schedule(
                        now + t,
                        Ev::ClientTimeout {
                            slot: slot as u32,
                            key,
                            send,
                        },
                    );
                }
            }
            Answer::Replayed { .. } => self.client_done(now, slot, "replayed"),
            Answer::Refused {
                why: Refusal::Mismatch | Refusal::BadKey,
                ..
            } => self.client_done(now, slot, "abandoned"),
            Answer::Refused { .. } => self.client_retry(now, slot),
        }
        Ok(())
    }

    fn own(&mut self, job: JobId, slot: usize) {
        let i = job.slot();
        if i >= self.job_owner.len() {
            self.job_owner
                .resize((i + 1).max(self.job_owner.len() * 2), NO_OWNER);
        }
        self.job_owner[i] = slot as u32;
    }

    /// Schedules the next send after the client's backoff, or gives up.
    fn client_retry(&mut self, now: Time, slot: usize) {
        let l = &mut self.requests[slot];
        let s = &mut self.sources[usize::from(l.source)];
        if l.sends >= s.attempts_max {
            self.client_done(now, slot, "abandoned");
            return;
        }
        // Each logical request draws its jitter from its own stream, at a
        // position fixed by the send number.
        let mut rng = self
            .seed_tree
            .step_stream(Domain::Client, l.key, u64::from(l.sends));
        let at = now + s.retry_backoff.delay(l.sends, &mut l.backoff, &mut rng);
        let (key, send) = (l.key, l.sends + 1);
        self.c.client_retries += 1;
        self.record(
            now,
            SimRecord::ClientRetry {
                request: key,
                send,
                at,
            },
        );
        self.sched.schedule(
            at,
            Ev::Send {
                slot: slot as u32,
                key,
            },
        );
    }

    /// The client has its final answer (or gave up); closed-loop clients think and go again.
    fn client_done(&mut self, now: Time, slot: usize, outcome: &'static str) {
        let l = self.requests.remove(slot);
        let latency = now.since(l.created);
        self.c.client_done_last = now;
        if outcome == "abandoned" {
            self.c.client_abandoned += 1;
        } else {
            self.c.client_succeeded += 1;
            self.c.population(l.source).client_succeeded += 1;
            self.client_latency.record(latency);
        }
        self.record(
            now,
            SimRecord::ClientDone {
                request: l.key,
                outcome,
                latency_ms: ms(latency),
            },
        );
        if l.member == NO_MEMBER {
            return;
        }
        let s = &mut self.sources[usize::from(l.source)];
        let left = &mut s.remaining[l.member as usize];
        *left = left.saturating_sub(1);
        if *left > 0 {
            let step = u64::from(s.requests_per_client - *left);
            let mut rng =
                self.seed_tree
                    .step_stream(Domain::Member, member_index(l.source, l.member), step);
            let think = exponential(&mut rng, s.think_ms / 1e3);
            let at = Time::from_nanos(now.as_nanos() + crate::time::secs_to_nanos(think));
            self.sched.schedule(
                at,
                Ev::Start {
                    source: l.source,
                    member: l.member,
                },
            );
        }
    }

    /// Performs everything the relay asked for since the last step.
    fn perform_outputs(&mut self, now: Time) -> Result<(), Violation> {
        while let Some(out) = self.relay.poll_output() {
            match out {
                Output::Call { call, key, .. } => self.start_call(now, call, key)?,
                Output::Finished {
                    job,
                    key,
                    attempts,
                    latency,
                    outcome,
                } => self.job_finished(now, job, key, attempts, latency, outcome)?,
                Output::Overflowed(letter) => {
                    self.c.dlq_overflowed += 1;
                    self.record(now, SimRecord::DlqOverflow { job: letter.job });
                }
                Output::Forgotten { key } => self.checker.key_forgotten(key),
                Output::Event(e) => {
                    match e {
                        Event::Breaker { from, to } => {
                            self.checker.breaker(now, from, to)?;
                            self.c.breaker_transitions += 1;
                        }
                        Event::AttemptFailed { .. } => self.checker.attempt_ended(),
                        Event::Requeued { .. } | Event::Replayed { .. } => self.checker.enqueued(),
                        _ => {}
                    }
                    self.record_relay(now, e);
                }
            }
        }
        Ok(())
    }

    fn start_call(&mut self, now: Time, call: CallId, key: Option<u64>) -> Result<(), Violation> {
        let key = key.unwrap_or(NO_KEY);
        if key == NO_KEY {
            self.checker.call_started_without_key();
        } else {
            self.checker.call_started(now, key)?;
        }
        self.record(
            now,
            SimRecord::Call {
                job: call.job,
                attempt: call.attempt,
            },
        );
        if let Some(b) = self.bucket_ns {
            let i = (now.as_nanos() / b) as usize;
            if i < BUCKETS_MAX {
                if i >= self.calls_per_bucket.len() {
                    self.calls_per_bucket.resize(i + 1, 0);
                }
                self.calls_per_bucket[i] += 1;
            }
        }
        let plan = self.downstream.start(now);
        self.sched.schedule(
            plan.done_at,
            Ev::CallDone {
                job: call.job,
                attempt: call.attempt,
                ok: plan.result.is_ok(),
                key,
            },
        );
        Ok(())
    }

    fn job_finished(
        &mut self,
        now: Time,
        job: JobId,
        key: Option<u64>,
        attempts: u32,
        latency: Duration,
        outcome: Outcome<()>,
    ) -> Result<(), Violation> {
        self.checker.finished(now, job)?;
        let success = outcome.is_success();
        if success {
            self.checker.attempt_ended();
            if let Some(k) = key {
                self.checker.key_succeeded(now, k);
            }
            if self.deadline.is_some_and(|d| latency > d) {
                self.c.deadline_missed += 1;
            }
        }
        let name = if success {
            "succeeded"
        } else {
            "dead-lettered"
        };
        self.record(
            now,
            SimRecord::Finished {
                job,
                outcome: name,
                attempts,
                latency_ms: ms(latency),
            },
        );
        let owner = self.job_owner.get(job.slot()).copied().unwrap_or(NO_OWNER);
        let waiting = self
            .requests
            .get(owner as usize)
            .is_some_and(|l| l.job == job);
        if waiting {
            if success {
                self.client_done(now, owner as usize, "succeeded");
            } else {
                self.requests[owner as usize].job = NO_JOB;
                self.client_retry(now, owner as usize);
            }
        }
        Ok(())
    }

    /// Keeps one wake-up armed at the relay's next timer.
    fn arm_relay_wake(&mut self, now: Time) {
        let Some(t) = self.relay.poll_timeout() else {
            return;
        };
        if self.relay_wake.is_none_or(|w| t < w) {
            let at = t.max(now);
            self.sched.schedule(at, Ev::RelayWake);
            self.relay_wake = Some(at);
        }
    }

    fn record(&mut self, now: Time, r: SimRecord) {
        if let Some(t) = &mut self.trace {
            t.push(now, TraceRecord::Sim(r));
        }
    }

    fn record_relay(&mut self, now: Time, e: Event) {
        if let Some(t) = &mut self.trace {
            t.push(now, TraceRecord::Relay(e));
        }
    }

    fn finish(self) -> SimResult {
        let end = match self.horizon {
            Some(h) => h,
            None => self.last_active,
        };
        let summary = Summary::collect(
            &self.scenario_name,
            self.seed,
            end,
            &self.c,
            &self.relay,
            &self.downstream,
            self.requests.len() as u64,
            &self.client_latency,
            self.sched.len_max_seen(),
            self.checker.checks,
        );
        SimResult {
            summary,
            trace: self.trace,
            calls_per_bucket: self.calls_per_bucket,
            client_latency: self.client_latency,
            job_latency: self.relay.stats().job_latency.clone(),
        }
    }

    /// The relay being driven, for inspection after a run.
    pub fn relay(&self) -> &Relay<u64, ()> {
        &self.relay
    }
}

fn source(cfg: &ClientsConfig, seed: Seed, index: usize) -> Source {
    let retry = cfg.retry();
    let mut source = Source {
        arrivals: None,
        clients: 1,
        sent: 0,
        retry_backoff: Backoff::new(&retry.backoff),
        attempts_max: retry.attempts_max,
        timeout: (retry.timeout_ms > 0.0)
            .then(|| Duration::from_nanos(ms_to_nanos(retry.timeout_ms))),
        think_ms: 0.0,
        remaining: Vec::new(),
        requests_per_client: 0,
    };
    match cfg {
        ClientsConfig::OpenLoop {
            per_s,
            schedule,
            requests_max,
            clients,
            ..
        } => {
            let stream = seed.stream(Domain::Arrivals, index as u64);
            source.arrivals = Some(Arrivals::new(*per_s, schedule, *requests_max, stream));
            source.clients = (*clients).max(1);
        }
        ClientsConfig::ClosedLoop {
            population,
            think_ms,
            requests_per_client,
            ..
        } => {
            source.clients = *population;
            source.think_ms = *think_ms;
            source.remaining = vec![*requests_per_client; *population as usize];
            source.requests_per_client = *requests_per_client;
        }
    }
    source
}

/// Stream index of member `member` of population `source`.
fn member_index(source: u16, member: u32) -> u64 {
    (u64::from(source) << 32) | u64::from(member)
}

fn answer_name(a: &Answer<()>) -> (&'static str, Option<JobId>) {
    match a {
        Answer::Accepted { job } => ("accepted", Some(*job)),
        Answer::Replayed { job, .. } => ("replayed", Some(*job)),
        Answer::Refused { why, job, .. } => (why.name(), *job),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// Runs `scenario` with `opts`.
pub fn simulate(scenario: &Scenario, opts: &SimOptions) -> Result<SimResult, SimFailure> {
    Simulation::new(scenario, opts).run()
}
