//! Simulated clients: where requests come from and how they retry.
//!
//! Two shapes of population. Open-loop sources send at a rate that does not
//! care how the relay is doing (Poisson arrivals, a piecewise rate schedule
//! for spikes): the honest model for internet traffic, and the one that
//! exposes overload. Closed-loop populations have a fixed number of clients
//! that each wait for an answer, think, and send again: they slow down when
//! the relay does.
//!
//! Either way, a client that hears 429, 503 or 409, times out waiting, or
//! learns its job was dead-lettered, retries with its own backoff strategy
//! and the *same* idempotency key: that is what lets the relay turn a retry
//! into a replay instead of a second side effect.
//!
//! [`Clients`] is a sans-IO machine: it never sees the scheduler or the
//! relay. The event loop hands it timers, the relay's answers and finished
//! jobs; it hands back requests to send, timers to arm and trace records,
//! in the order it made them.

mod arrivals;
mod config;

pub use arrivals::Arrivals;
pub use config::{
    ClientRetryConfig, ClientsConfig, GateScope, RatePhase, POPULATION_MAX, REQUESTS_MAX,
};

use super::summary::PopulationCounts;
use super::trace::SimRecord;
use crate::relay::JobId;
use crate::relay::{Answer, Request};
use crate::relay::{Backoff, BackoffState};
use crate::relay::{Denied, DeniedCounts, RetryCause, RetryGate, RetryGateConfig, SendOutcome};
use crate::relay::{LatencyHistogram, Refusal};
use crate::rng::{exponential, unit, Domain, Seed, Streams};
use crate::time::ms_to_nanos;
use crate::time::Time;
use rustc_hash::FxHashMap;
use slab::Slab;
use std::collections::VecDeque;
use std::time::Duration;

/// A client's wake-up, armed by the event loop at the time the clients asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    /// An open-loop source's next logical request.
    Arrival { source: u16 },
    /// A closed-loop client starts its next logical request.
    Start { source: u16, member: u32 },
    /// Send (or re-send) a logical request; `key` guards against reuse of the slot.
    Send { slot: u32, key: u64 },
    /// Stop waiting for send number `send`'s outcome.
    Timeout { slot: u32, key: u64, send: u32 },
    /// The logical request's total deadline.
    Deadline { slot: u32, key: u64 },
}

/// What the clients ask of the event loop.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientOutput {
    Arm { at: Time, timer: ClientTimer },
    Record(SimRecord),
}

/// A request to hand to the relay; its answer goes back through
/// [`Clients::handle_answer`] with `slot`.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub slot: usize,
    /// The logical request's number and this send's (1 = first try): the
    /// send's identity, which keys its random draws.
    pub logical: u64,
    pub send: u32,
    pub request: Request<u64, ()>,
}

/// What a timer did.
#[derive(Clone, Debug)]
pub enum Woke {
    /// It was for a request that has moved on: nothing happened.
    Stale,
    /// The clients changed state, with nothing to send now.
    Changed,
    /// A request to send now.
    Send(Outgoing),
}

/// What the clients counted.
#[derive(Clone, Debug, Default)]
pub struct ClientStats {
    pub arrivals: u64,
    pub sends: u64,
    pub retries: u64,
    pub timeouts: u64,
    pub succeeded: u64,
    pub abandoned: u64,
    /// Of the abandoned, the ones given up at their deadline.
    pub deadline_abandoned: u64,
    /// Sends and retries the clients' retry gates did not allow, by reason.
    pub denied: DeniedCounts,
    /// When the last logical request got its final answer.
    pub done_last: Time,
    /// Creation → final answer of logical requests that succeeded.
    pub latency: LatencyHistogram,
    /// Per `[[clients]]` population, in scenario order.
    pub populations: Vec<PopulationCounts>,
}

impl ClientStats {
    /// Population `source`'s counts, grown on first use (a scenario has at
    /// most as many populations as `[[clients]]` tables).
    fn population(&mut self, source: u16) -> &mut PopulationCounts {
        let i = usize::from(source);
        if self.populations.len() <= i {
            self.populations.resize(i + 1, PopulationCounts::default());
        }
        &mut self.populations[i]
    }
}

struct Source {
    arrivals: Option<Arrivals>,
    clients: u32,
    sent: u64,
    retry_backoff: Backoff,
    attempts_max: u32,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    keyed: bool,
    honour_retry_after: bool,
    think_ms: f64,
    /// The retry gate's controls, if any; `gates` holds one per scope,
    /// made on first use (at most one per client id of the population).
    gate: Option<RetryGateConfig>,
    gate_scope: GateScope,
    gates: Vec<Option<RetryGate>>,
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
    /// When the latest send left the client.
    sent_at: Time,
    /// Why the latest send was a retry (for the gate's bookkeeping).
    cause: RetryCause,
    backoff: BackoffState,
    /// The job this request waits on, or [`NO_JOB`].
    job: JobId,
}

const NO_MEMBER: u32 = u32::MAX;
const NO_OWNER: u32 = u32::MAX;
const NO_JOB: JobId = JobId(u64::MAX);

/// How a logical request ended, for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Succeeded,
    Replayed,
    /// Answered from the route's fallback, not by the downstream.
    Fallback,
    Abandoned,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Ending::Succeeded => "succeeded",
            Ending::Replayed => "replayed",
            Ending::Fallback => "fallback",
            Ending::Abandoned => "abandoned",
        }
    }
}

/// Every client population of a run.
pub struct Clients {
    /// The run seed's key, expanded once: sends and retries make streams.
    seed: Streams,
    horizon: Option<Time>,
    sources: Vec<Source>,
    /// Requests waiting for their final answer; bounded by the populations'
    /// sizes and `requests_max`, which validation bounds.
    requests: Slab<Logical>,
    next_key: u64,
    /// Job slot → logical request slot.
    job_owner: Vec<u32>,
    /// Logical request slot → news of a job's end that overtook the answer
    /// accepting it (the two cross the network separately): the outcome,
    /// applied when the answer naming that job arrives. At most one per
    /// waiting request (a later one replaces it); rare, so kept apart from
    /// the requests rather than as room in each.
    early_news: FxHashMap<usize, (JobId, bool)>,
    out: VecDeque<ClientOutput>,
    stats: ClientStats,
}

impl Clients {
    /// The populations of a validated scenario; their first timers are
    /// waiting in [`Clients::poll_output`].
    pub fn new(configs: &[ClientsConfig], seed: Seed, horizon: Option<Time>) -> Clients {
        let sources = configs
            .iter()
            .enumerate()
            .map(|(i, c)| source(c, seed, i))
            .collect();
        let seed = seed.streams();
        let mut clients = Clients {
            seed,
            horizon,
            sources,
            requests: Slab::new(),
            next_key: 0,
            job_owner: Vec::new(),
            early_news: FxHashMap::default(),
            out: VecDeque::new(),
            stats: ClientStats::default(),
        };
        clients.arm_first_timers(configs);
        clients
    }

    fn arm_first_timers(&mut self, configs: &[ClientsConfig]) {
        for (i, cfg) in configs.iter().enumerate() {
            let source = i as u16;
            match cfg {
                ClientsConfig::OpenLoop { .. } => {
                    let s = &mut self.sources[i];
                    if let Some(at) = s.arrivals.as_mut().and_then(|a| a.next_after(Time::ZERO)) {
                        self.arm(at, ClientTimer::Arrival { source });
                    }
                }
                ClientsConfig::ClosedLoop {
                    population,
                    start_spread_ms,
                    ..
                } => {
                    for member in 0..*population {
                        let index = member_index(source, member);
                        let mut rng = self.seed.step_stream(Domain::Member, index, 0);
                        let at = Time::from_secs_f64(unit(&mut rng) * start_spread_ms / 1e3);
                        self.arm(at, ClientTimer::Start { source, member });
                    }
                }
            }
        }
    }

    /// The next thing to do, in the order the clients decided it.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Logical requests still waiting for a final answer.
    pub fn waiting(&self) -> usize {
        self.requests.len()
    }

    /// A timer the clients armed fires at `now`.
    pub fn handle_timer(&mut self, now: Time, timer: ClientTimer) -> Woke {
        match timer {
            ClientTimer::Arrival { source } => {
                let s = &mut self.sources[usize::from(source)];
                let client = (s.sent % u64::from(s.clients)) as u32;
                s.sent += 1;
                if let Some(next) = s.arrivals.as_mut().and_then(|a| a.next_after(now)) {
                    if self.horizon.is_none_or(|h| next <= h) {
                        self.arm(next, ClientTimer::Arrival { source });
                    }
                }
                let slot = self.new_logical(now, source, NO_MEMBER, client);
                self.try_send(now, slot)
            }
            ClientTimer::Start { source, member } => {
                let slot = self.new_logical(now, source, member, member);
                self.try_send(now, slot)
            }
            ClientTimer::Send { slot, key } => match self.live_slot(slot, key) {
                Some(slot) => self.try_send(now, slot),
                None => Woke::Stale,
            },
            ClientTimer::Deadline { slot, key } => {
                let Some(slot) = self.live_slot(slot, key) else {
                    return Woke::Stale;
                };
                self.stats.deadline_abandoned += 1;
                self.record(SimRecord::ClientDeadline { request: key });
                self.done(now, slot, Ending::Abandoned);
                Woke::Changed
            }
            ClientTimer::Timeout { slot, key, send } => {
                let Some(slot) = self.live_slot(slot, key) else {
                    return Woke::Stale;
                };
                if self.requests[slot].sends != send {
                    return Woke::Stale;
                }
                self.stats.timeouts += 1;
                self.record(SimRecord::ClientTimeout { request: key, send });
                // The client stops waiting on this job: its outcome no longer
                // reaches the client, whose next send will find it (409 or a
                // replay). One retry chain per request, never two.
                self.requests[slot].job = NO_JOB;
                self.outcome(now, slot, SendOutcome::Timeout);
                self.retry(now, slot, None, RetryCause::Timeout);
                Woke::Changed
            }
        }
    }

    /// The relay's immediate answer to the request sent from `slot`.
    pub fn handle_answer(&mut self, now: Time, slot: usize, answer: &Answer<()>) {
        let (name, job) = answer_name(answer);
        let (key, send) = (self.requests[slot].key, self.requests[slot].sends);
        self.record(SimRecord::Answer {
            request: key,
            answer: name,
            job,
        });
        match answer {
            Answer::Accepted { job } => {
                self.own(*job, slot);
                self.requests[slot].job = *job;
                if let Some((early, succeeded)) = self.early_news.remove(&slot) {
                    if early == *job {
                        self.job_outcome(now, slot, succeeded);
                        return;
                    }
                }
                let source = &self.sources[usize::from(self.requests[slot].source)];
                if let Some(t) = source.timeout {
                    let timer = ClientTimer::Timeout {
                        slot: slot as u32,
                        key,
                        send,
                    };
                    // The attempt's clock runs from the send, not from
                    // when the answer made it back through the network.
                    self.arm((self.requests[slot].sent_at + t).max(now), timer);
                }
            }
            Answer::Replayed { .. } => {
                self.outcome(now, slot, self.success(slot));
                self.done(now, slot, Ending::Replayed)
            }
            Answer::Fallback { .. } => {
                self.outcome(now, slot, self.success(slot));
                self.done(now, slot, Ending::Fallback)
            }
            Answer::Refused {
                why: Refusal::Mismatch | Refusal::BadKey,
                ..
            } => {
                self.outcome(now, slot, SendOutcome::Failure);
                self.done(now, slot, Ending::Abandoned)
            }
            Answer::Refused {
                why, retry_after, ..
            } => {
                let throttled = matches!(
                    why,
                    Refusal::Shed | Refusal::RateLimited | Refusal::Unavailable
                );
                let outcome = if throttled {
                    SendOutcome::Throttled
                } else {
                    SendOutcome::Failure
                };
                self.outcome(now, slot, outcome);
                self.retry(now, slot, *retry_after, RetryCause::Error)
            }
        }
    }

    /// The relay's answer to send `send` of logical request `key`, arriving
    /// after the network: ignored if the client has moved on since.
    pub fn handle_answer_later(
        &mut self,
        now: Time,
        slot: usize,
        key: u64,
        send: u32,
        answer: &Answer<()>,
    ) {
        let live = self.live_slot(slot as u32, key);
        if live.is_some_and(|s| self.requests[s].sends == send) {
            self.handle_answer(now, slot, answer);
        }
    }

    /// The news that job `job`, created from logical request slot `slot`,
    /// finished, arriving after the network.
    /// The news can overtake the answer that accepted the job: it is then
    /// kept until that answer arrives, so no outcome is ever lost to the
    /// order of two messages.
    pub fn handle_job_news(&mut self, now: Time, slot: usize, job: JobId, succeeded: bool) {
        let Some(l) = self.requests.get_mut(slot) else {
            return;
        };
        if l.job == job {
            self.job_outcome(now, slot, succeeded);
        } else if l.job == NO_JOB {
            self.early_news.insert(slot, (job, succeeded));
        }
    }

    /// Job `job` finished; a client still waiting on it hears the outcome.
    pub fn handle_job_finished(&mut self, now: Time, job: JobId, succeeded: bool) {
        let owner = self.job_owner.get(job.slot()).copied().unwrap_or(NO_OWNER) as usize;
        if self.requests.get(owner).is_none_or(|l| l.job != job) {
            return;
        }
        self.job_outcome(now, owner, succeeded);
    }

    fn job_outcome(&mut self, now: Time, slot: usize, succeeded: bool) {
        if succeeded {
            self.outcome(now, slot, self.success(slot));
            self.done(now, slot, Ending::Succeeded);
        } else {
            self.requests[slot].job = NO_JOB;
            self.outcome(now, slot, SendOutcome::Failure);
            self.retry(now, slot, None, RetryCause::Error);
        }
    }

    /// The gate logical request `slot` answers to, made on first use;
    /// `None` when its population has no retry controls.
    fn gate_of(&mut self, slot: usize) -> Option<&mut RetryGate> {
        let l = &self.requests[slot];
        let s = &mut self.sources[usize::from(l.source)];
        let cfg = s.gate?;
        let i = match s.gate_scope {
            GateScope::Shared => 0,
            GateScope::PerClient => l.client as usize,
        };
        if i >= s.gates.len() {
            s.gates.resize(i + 1, None);
        }
        Some(s.gates[i].get_or_insert_with(|| RetryGate::new(&cfg)))
    }

    /// Tells the gate how the latest send of `slot` ended.
    fn outcome(&mut self, now: Time, slot: usize, outcome: SendOutcome) {
        if let Some(g) = self.gate_of(slot) {
            g.on_outcome(now, outcome);
        }
    }

    /// The success of `slot`'s latest send, as its gate counts it.
    fn success(&self, slot: usize) -> SendOutcome {
        let l = &self.requests[slot];
        if l.sends > 1 {
            SendOutcome::RetrySuccess { cause: l.cause }
        } else {
            SendOutcome::Success
        }
    }

    /// The gate refused send `send` of `slot`: counted by reason.
    fn denied(&mut self, slot: usize, send: u32, why: Denied) {
        let (request, source) = (self.requests[slot].key, self.requests[slot].source);
        self.stats.denied[why] += 1;
        self.stats.population(source).denied[why] += 1;
        self.record(SimRecord::ClientRetryDenied {
            request,
            send,
            reason: why.name(),
        });
    }

    /// Sends `slot` again unless adaptive throttling rejects it locally
    /// (the send is then used up and fails like a throttled answer).
    fn try_send(&mut self, now: Time, slot: usize) -> Woke {
        let l = &self.requests[slot];
        let (key, send, retry) = (l.key, l.sends + 1, l.sends > 0);
        let index = member_index(l.source, l.client);
        let seed = self.seed;
        if let Some(gate) = self.gate_of(slot) {
            // The client's own stream, at a position fixed by the send.
            let draw = if gate.throttles() {
                let step = key.saturating_mul(128) + u64::from(send);
                unit(&mut seed.step_stream(Domain::ClientGate, index, step))
            } else {
                0.0
            };
            if let Err(why) = gate.admit(now, draw) {
                gate.on_outcome(now, SendOutcome::Throttled);
                self.requests[slot].sends = send;
                self.denied(slot, send, why);
                self.retry(now, slot, None, RetryCause::Error);
                return Woke::Changed;
            }
            gate.on_send(now, retry);
        }
        Woke::Send(self.send(now, slot))
    }

    fn arm(&mut self, at: Time, timer: ClientTimer) {
        self.out.push_back(ClientOutput::Arm { at, timer });
    }

    fn record(&mut self, r: SimRecord) {
        self.out.push_back(ClientOutput::Record(r));
    }

    fn live_slot(&self, slot: u32, key: u64) -> Option<usize> {
        let slot = slot as usize;
        self.requests
            .get(slot)
            .filter(|l| l.key == key)
            .map(|_| slot)
    }

    fn new_logical(&mut self, now: Time, source: u16, member: u32, client: u32) -> usize {
        self.stats.arrivals += 1;
        self.stats.population(source).requests += 1;
        let key = self.next_key;
        self.next_key += 1;
        let slot = self.requests.insert(Logical {
            key,
            source,
            member,
            client,
            created: now,
            sends: 0,
            sent_at: now,
            cause: RetryCause::Error,
            backoff: BackoffState::default(),
            job: NO_JOB,
        });
        if let Some(d) = self.sources[usize::from(source)].deadline {
            let timer = ClientTimer::Deadline {
                slot: slot as u32,
                key,
            };
            self.arm(now + d, timer);
        }
        slot
    }

    /// One more send of logical request `slot`.
    fn send(&mut self, now: Time, slot: usize) -> Outgoing {
        let l = &mut self.requests[slot];
        l.sends += 1;
        l.sent_at = now;
        let keyed = self.sources[usize::from(l.source)].keyed;
        // Client ids are unique across populations: the population in the high bits.
        let client = (u64::from(l.source) << 32) | u64::from(l.client);
        let (key, send) = (l.key, l.sends);
        self.stats.sends += 1;
        self.record(SimRecord::Send {
            request: key,
            client,
            send,
        });
        Outgoing {
            slot,
            logical: key,
            send,
            request: Request {
                client,
                key: keyed.then_some(key),
                fingerprint: key,
                payload: (),
            },
        }
    }

    fn own(&mut self, job: JobId, slot: usize) {
        let i = job.slot();
        if i >= self.job_owner.len() {
            self.job_owner.resize(i + 1, NO_OWNER);
        }
        self.job_owner[i] = slot as u32;
    }

    /// Arms the next send after the client's backoff (and, when it honours
    /// them, at least the relay's `retry_after`), or gives up.
    fn retry(&mut self, now: Time, slot: usize, retry_after: Option<Duration>, cause: RetryCause) {
        let l = &self.requests[slot];
        if l.sends >= self.sources[usize::from(l.source)].attempts_max {
            self.done(now, slot, Ending::Abandoned);
            return;
        }
        let next = l.sends + 1;
        if let Some(gate) = self.gate_of(slot) {
            if let Err(why) = gate.allow_retry(now, cause) {
                self.denied(slot, next, why);
                self.done(now, slot, Ending::Abandoned);
                return;
            }
        }
        let l = &mut self.requests[slot];
        l.cause = cause;
        let s = &mut self.sources[usize::from(l.source)];
        // Each logical request draws its jitter from its own stream, at a
        // position fixed by the send number.
        let mut rng = self
            .seed
            .step_stream(Domain::Client, l.key, u64::from(l.sends));
        let mut at = now + s.retry_backoff.delay(l.sends, &mut l.backoff, &mut rng);
        if let Some(wait) = retry_after.filter(|_| s.honour_retry_after) {
            at = at.max(now + wait);
        }
        let (key, send) = (l.key, l.sends + 1);
        self.stats.retries += 1;
        self.record(SimRecord::ClientRetry {
            request: key,
            send,
            at,
        });
        let timer = ClientTimer::Send {
            slot: slot as u32,
            key,
        };
        self.arm(at, timer);
    }

    /// The client has its final answer (or gave up); closed-loop clients think and go again.
    fn done(&mut self, now: Time, slot: usize, ending: Ending) {
        let l = self.requests.remove(slot);
        self.early_news.remove(&slot);
        let latency = now.since(l.created);
        self.stats.done_last = now;
        if ending == Ending::Abandoned {
            self.stats.abandoned += 1;
        } else {
            self.stats.succeeded += 1;
            self.stats.population(l.source).client_succeeded += 1;
            self.stats.latency.record(latency);
        }
        self.record(SimRecord::ClientDone {
            request: l.key,
            outcome: ending.name(),
            latency_ms: crate::time::duration_ms(latency),
        });
        if l.member != NO_MEMBER {
            self.think(now, l.source, l.member);
        }
    }

    /// A closed-loop member with requests left thinks, then starts the next.
    fn think(&mut self, now: Time, source: u16, member: u32) {
        let s = &mut self.sources[usize::from(source)];
        let left = &mut s.remaining[member as usize];
        *left = left.saturating_sub(1);
        if *left == 0 {
            return;
        }
        let step = u64::from(s.requests_per_client - *left);
        let index = member_index(source, member);
        let mut rng = self.seed.step_stream(Domain::Member, index, step);
        let think = exponential(&mut rng, s.think_ms / 1e3);
        let at = Time::from_nanos(now.as_nanos() + crate::time::secs_to_nanos(think));
        self.arm(at, ClientTimer::Start { source, member });
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
        deadline: (retry.deadline_ms > 0.0)
            .then(|| Duration::from_nanos(ms_to_nanos(retry.deadline_ms))),
        keyed: retry.keyed,
        honour_retry_after: retry.honour_retry_after,
        gate: retry.has_gate().then(|| retry.gate()),
        gate_scope: retry.gate_scope,
        gates: Vec::new(),
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

/// The trace's name of an answer, and the job it names.
pub fn answer_name(a: &Answer<()>) -> (&'static str, Option<JobId>) {
    match a {
        Answer::Accepted { job } => ("accepted", Some(*job)),
        Answer::Replayed { job, .. } => ("replayed", Some(*job)),
        Answer::Fallback { .. } => ("fallback", None),
        Answer::Refused { why, job, .. } => (why.name(), *job),
    }
}

#[cfg(test)]
mod tests {
    //! The machine alone, without an event loop: timers in, answers in,
    //! requests, timers and records out.

    use super::*;
    use crate::relay::{BackoffConfig, BackoffKind};

    fn retry(attempts_max: u32, timeout_ms: f64) -> ClientRetryConfig {
        ClientRetryConfig {
            attempts_max,
            backoff: BackoffConfig {
                kind: BackoffKind::Constant,
                base_ms: 100.0,
                cap_ms: 100.0,
                multiplier: 2.0,
            },
            timeout_ms,
            ..ClientRetryConfig::default()
        }
    }

    fn one_client(retry: ClientRetryConfig, requests_per_client: u32) -> Clients {
        let cfg = ClientsConfig::ClosedLoop {
            population: 1,
            think_ms: 0.0,
            requests_per_client,
            start_spread_ms: 0.0,
            retry,
        };
        cfg.validate(0.0).expect("valid");
        Clients::new(&[cfg], Seed(1), None)
    }

    fn drain(c: &mut Clients) -> Vec<ClientOutput> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn timers(out: &[ClientOutput]) -> Vec<(Time, ClientTimer)> {
        out.iter()
            .filter_map(|o| match o {
                ClientOutput::Arm { at, timer } => Some((*at, *timer)),
                ClientOutput::Record(_) => None,
            })
            .collect()
    }

    fn sent(woke: Woke) -> Outgoing {
        match woke {
            Woke::Send(out) => out,
            other => panic!("expected a send, got {other:?}"),
        }
    }

    /// The first request starts and the relay accepts it as `job`;
    /// returns its slot and the timers it armed.
    fn first_accepted(c: &mut Clients, job: JobId) -> (usize, Vec<(Time, ClientTimer)>) {
        drain(c);
        let out = sent(c.handle_timer(Time::ZERO, START));
        c.handle_answer(Time::ZERO, out.slot, &Answer::Accepted { job });
        (out.slot, timers(&drain(c)))
    }

    const START: ClientTimer = ClientTimer::Start {
        source: 0,
        member: 0,
    };

    #[test]
    fn a_refused_request_is_retried_after_its_backoff_with_the_same_key() {
        let mut c = one_client(retry(2, 0.0), 1);
        assert_eq!(timers(&drain(&mut c)), vec![(Time::ZERO, START)]);
        let first = sent(c.handle_timer(Time::ZERO, START));
        assert_eq!(first.request.key, Some(0));
        let shed = Answer::Refused {
            why: Refusal::Shed,
            job: None,
            retry_after: None,
        };
        c.handle_answer(Time::ZERO, first.slot, &shed);
        let armed = timers(&drain(&mut c));
        let retry = ClientTimer::Send {
            slot: first.slot as u32,
            key: 0,
        };
        assert_eq!(armed, vec![(Time::from_millis(100), retry)]);
        let second = sent(c.handle_timer(Time::from_millis(100), retry));
        assert_eq!(second.request.key, Some(0), "the same idempotency key");
        c.handle_answer(Time::from_millis(100), second.slot, &shed);
        let last = drain(&mut c);
        assert!(timers(&last).is_empty(), "two sends were all it had");
        assert_eq!((c.stats().abandoned, c.stats().sends), (1, 2));
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn a_timeout_retries_once_and_a_stale_timeout_does_nothing() {
        let mut c = one_client(retry(3, 50.0), 1);
        let job = JobId(7);
        let (slot, armed) = first_accepted(&mut c, job);
        let timeout = ClientTimer::Timeout {
            slot: slot as u32,
            key: 0,
            send: 1,
        };
        assert_eq!(armed, vec![(Time::from_millis(50), timeout)]);
        assert!(matches!(
            c.handle_timer(Time::from_millis(50), timeout),
            Woke::Changed
        ));
        assert_eq!(c.stats().timeouts, 1);
        let resend = ClientTimer::Send {
            slot: slot as u32,
            key: 0,
        };
        assert_eq!(
            timers(&drain(&mut c)),
            vec![(Time::from_millis(150), resend)]
        );
        // The job finishing now no longer reaches the client: it stopped waiting.
        c.handle_job_finished(Time::from_millis(60), job, true);
        assert!(drain(&mut c).is_empty());
        let again = sent(c.handle_timer(Time::from_millis(150), resend));
        assert_eq!(again.request.key, Some(0));
        assert!(
            matches!(c.handle_timer(Time::from_millis(150), timeout), Woke::Stale),
            "the first send's timeout is for a send that is over"
        );
    }

    #[test]
    fn news_of_the_end_that_overtakes_the_acceptance_is_not_lost() {
        // The answer accepting a job and the news that it finished cross the
        // network separately; the news may arrive first.
        let mut c = one_client(retry(1, 0.0), 1);
        drain(&mut c);
        let out = sent(c.handle_timer(Time::ZERO, START));
        let job = JobId(5);
        c.handle_job_news(Time::from_millis(30), out.slot, job, true);
        assert_eq!(
            c.waiting(),
            1,
            "not accepted yet as far as the client knows"
        );
        c.handle_answer(Time::from_millis(40), out.slot, &Answer::Accepted { job });
        assert_eq!((c.waiting(), c.stats().succeeded), (0, 1));
        // News of some other job does not end a request accepted later.
        let mut c = one_client(retry(1, 0.0), 1);
        drain(&mut c);
        let out = sent(c.handle_timer(Time::ZERO, START));
        c.handle_job_news(Time::from_millis(30), out.slot, JobId(9), true);
        c.handle_answer(Time::from_millis(40), out.slot, &Answer::Accepted { job });
        assert_eq!((c.waiting(), c.stats().succeeded), (1, 0));
    }

    #[test]
    fn a_closed_loop_client_starts_its_next_request_when_one_succeeds() {
        let mut c = one_client(retry(1, 0.0), 2);
        let job = JobId(3);
        let (_, armed) = first_accepted(&mut c, job);
        assert!(armed.is_empty(), "no timeout: the client waits");
        c.handle_job_finished(Time::from_millis(20), job, true);
        let next = drain(&mut c);
        assert!(next.iter().any(|o| matches!(
            o,
            ClientOutput::Record(SimRecord::ClientDone {
                outcome: "succeeded",
                ..
            })
        )));
        assert_eq!(timers(&next), vec![(Time::from_millis(20), START)]);
        assert_eq!(c.stats().succeeded, 1);
        assert_eq!(c.stats().latency.count(), 1);
    }
}
