//! One run: clients, the real [`Relay`], and the downstream, on a virtual
//! clock, from one seed.
//!
//! The loop pops the next event, hands it to whoever it concerns (the
//! [`Clients`] machine, the relay, the downstream), and then performs what
//! they ask for (send a request, start a call, arm a timer) by scheduling
//! more events. The relay's own timers are folded in as a single wake-up
//! event armed at `relay.poll_timeout()`. Every step is checked by the
//! outside [`Checker`]; the first violation ends the run, and so does
//! reaching [`EVENTS_MAX`] events.

use super::clients::{ClientOutput, ClientTimer, Clients, Outgoing, Woke};
use super::invariants::{Checker, Violation};
use super::network::{after, call_step, ClientLeg, Network};
use super::origins::{Origin, Origins};
use super::routes::{Downstreams, RouteMix, RouteSummary};
use super::scenario::Scenario;
use super::scheduler::Scheduler;
use super::series::{Count, Series, SeriesRecorder};
use super::store::{SimStore, StoreKind};
use super::summary::{Counters, Summary};
use super::trace::{SimRecord, Trace, TraceRecord};
use crate::relay::{
    Answer, CallError, CallId, Event, Finished, GiveUp, JobId, LatencyHistogram, Outcome, Output,
    Refusal, Relay, RelaySettings, RouteId, Stats, Stored, StoredJob,
};
use crate::rng::{Domain, Seed};
use crate::time::{duration_ms, ms_to_nanos, Time};
use rustc_hash::FxHashMap;
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
    /// Keep a [`Series`] per bucket of this many milliseconds.
    pub series_bucket_ms: Option<f64>,
}

impl SimOptions {
    pub fn seed(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            trace_records_max: 0,
            calls_bucket_ms: None,
            series_bucket_ms: None,
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
    /// Counts per time bucket, if asked for.
    pub series: Option<Series>,
}

/// A run that did not end well; says which run, to reproduce it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{reason} (scenario `{scenario}`, seed {seed})")]
pub struct SimFailure {
    pub scenario: String,
    pub seed: u64,
    pub reason: Stop,
}

/// Why a run stopped early.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Stop {
    /// The outside checker caught a broken invariant.
    #[error("{0}")]
    Violation(Violation),
    /// The run reached its bound on events before its end.
    #[error(
        "stopped after {events_max} events at t = {at_s:.3} s: the run exceeds its event bound"
    )]
    EventsExhausted { events_max: u64, at_s: f64 },
}

impl From<Violation> for Stop {
    fn from(v: Violation) -> Stop {
        Stop::Violation(v)
    }
}

/// Events one run may process. Far above what any committed scenario
/// needs (tens of millions at most), low enough that a runaway run ends in
/// minutes and says so instead of never ending.
pub const EVENTS_MAX: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug)]
enum Ev {
    /// A timer the clients armed.
    Client(ClientTimer),
    /// A downstream call answers. Flattened (not a `CallId`) to keep events
    /// small: the heap holds one per call in flight.
    /// Without a relay↔downstream delay, the downstream's answer and the
    /// relay hearing it are one event. `key` is a [`LedgerKey`].
    /// `life` is the relay process that made the call: after a crash, the
    /// answer to a call of the dead process reaches no one.
    CallDone {
        job: JobId,
        attempt: u32,
        route: RouteId,
        result: Result<(), CallError>,
        life: u16,
        key: u64,
    },
    /// A call reaches the downstream (after the network).
    CallArrives {
        job: JobId,
        attempt: u32,
        route: RouteId,
        step: u32,
        life: u16,
        key: u64,
    },
    /// The downstream answers (its side effect lands now).
    CallLeaves {
        job: JobId,
        attempt: u32,
        route: RouteId,
        result: Result<(), CallError>,
        key: u64,
    },
    /// The downstream's answer reaches the relay.
    RelayHears {
        job: JobId,
        attempt: u32,
        route: RouteId,
        result: Result<(), CallError>,
        life: u16,
    },
    /// A client's request reaches the relay.
    RequestArrives {
        transit: u32,
    },
    /// The relay's answer reaches the client.
    AnswerArrives {
        transit: u32,
    },
    /// The news that a job finished reaches its client.
    JobNews {
        job: JobId,
        slot: u32,
        succeeded: bool,
    },
    RelayWake,
    /// The store's commit under way is done (if the relay made it in this life).
    Committed {
        life: u16,
    },
    /// Crash `index` of the scenario's `[[faults.crash]]`, and its restart.
    Crash {
        index: u8,
    },
    Restart {
        index: u8,
    },
}

/// What the driver does in the world on the relay's behalf, held until
/// the turn's records are committed when the store is durable.
#[derive(Debug)]
enum Effect {
    /// The relay's answer leaves for the client.
    Answer(AnswerInTransit),
    /// A call leaves for the downstream.
    Call {
        call: CallId,
        route: RouteId,
        key: u64,
        step: u64,
    },
    /// The news that a job finished leaves for its client (where it came
    /// from is looked up when it finished: its slot may be reused since).
    News {
        job: JobId,
        success: bool,
        origin: Option<Origin>,
    },
}

/// Whose side effect a call lands: the logical request number, with
/// [`KEYLESS`] set when the call carried no idempotency key; [`NO_KEY`]
/// when the call belongs to no known request.
const NO_KEY: u64 = u64::MAX;
const KEYLESS: u64 = 1 << 63;

/// The entity whose streams a call draws from: its logical request, or
/// the job itself for a call no request is known for.
fn draw_index(key: u64, job: JobId) -> u64 {
    let i = if key == NO_KEY { job.0 } else { key & !KEYLESS };
    i & ((1 << 48) - 1)
}

/// The relay's answer on its way to a client.
#[derive(Debug)]
struct AnswerInTransit {
    slot: usize,
    request: u64,
    send: u32,
    answer: Answer<()>,
}

pub struct Simulation {
    scenario_name: String,
    seed: u64,
    /// When the last event that changed anything happened.
    last_active: Time,
    horizon: Option<Time>,
    deadline: Option<Duration>,
    sched: Scheduler<Ev>,
    events_max: u64,
    relay: Relay<u64, ()>,
    downstreams: Downstreams,
    /// Which route each logical request takes.
    mix: RouteMix,
    clients: Clients,
    relay_wake: Option<Time>,
    checker: Checker,
    trace: Option<Trace>,
    c: Counters,
    bucket_ns: Option<u64>,
    calls_per_bucket: Vec<u32>,
    network: Network,
    /// Requests and answers on the wire: bounded by the sends in flight,
    /// which the populations bound.
    requests_in_transit: Slab<Outgoing>,
    answers_in_transit: Slab<AnswerInTransit>,
    /// Job slot → the send that created the job living there.
    origins: Origins,
    series: Option<SeriesRecorder>,
    relay_settings: RelaySettings,
    store: SimStore<Effect>,
    /// The relay process is down (crashed, not yet restarted).
    down: bool,
    /// Which relay process this is: 0, then one more per crash.
    life: u16,
    /// The serial the crashed relay would have given next.
    serial_at_crash: u32,
    /// The counts of the relay's earlier lives.
    carried: Stats,
    /// A shared store's jobs of a crashed replica, with where they came
    /// from, until their lease expires and another replica adopts them.
    leased: Vec<(StoredJob<u64, ()>, Option<Origin>)>,
    /// Origins of jobs the store still holds whose slot a newer job took
    /// (bounded by the store's unfinished jobs: each leaves as its job ends).
    displaced: FxHashMap<JobId, Origin>,
}

/// Buckets kept for a calls-per-bucket series.
const BUCKETS_MAX: usize = 10_000_000;

impl Simulation {
    /// Sets up a run of a validated scenario.
    pub fn new(scenario: &Scenario, opts: &SimOptions) -> Simulation {
        let seed = Seed(opts.seed);
        let relay_settings = scenario.relay.check().expect("the scenario was validated");
        let mut relay = Relay::new(&relay_settings, seed.stream(Domain::Relay, 0));
        relay.set_journal(scenario.store.is_durable());
        set_static_answers(&mut relay, &relay_settings);
        let store = SimStore::new(
            scenario.store,
            relay_settings.replay_ttl(),
            seed.stream(Domain::Store, 0),
        );
        let horizon = (scenario.horizon_s > 0.0).then(|| Time::from_secs_f64(scenario.horizon_s));
        let slots_reserved = scenario.relay.jobs_max.min(crate::relay::RESERVED_MAX);
        let mut sim = Simulation {
            scenario_name: scenario.name.clone(),
            seed: opts.seed,
            last_active: Time::ZERO,
            horizon,
            deadline: scenario
                .deadline_ms
                .map(|d| Duration::from_nanos(ms_to_nanos(d))),
            sched: Scheduler::new(),
            events_max: EVENTS_MAX,
            relay,
            downstreams: Downstreams::new(
                &scenario.downstream,
                &scenario.routes,
                &relay_settings,
                seed,
            ),
            mix: RouteMix::new(&scenario.routes, &relay_settings, seed),
            clients: Clients::new(&scenario.clients, seed, horizon),
            relay_wake: None,
            checker: Checker::new(scenario.relay.idempotency.ttl_ms).with_slots(slots_reserved),
            trace: (opts.trace_records_max > 0).then(|| Trace::new(opts.trace_records_max)),
            c: Counters::default(),
            bucket_ns: opts.calls_bucket_ms.map(|ms| ms_to_nanos(ms).max(1)),
            calls_per_bucket: Vec::new(),
            network: Network::new(&scenario.network, seed),
            requests_in_transit: Slab::new(),
            answers_in_transit: Slab::new(),
            origins: Origins::with_slots(slots_reserved),
            series: opts.series_bucket_ms.map(SeriesRecorder::new),
            relay_settings,
            store,
            down: false,
            life: 0,
            serial_at_crash: 0,
            carried: Stats::default(),
            leased: Vec::new(),
            displaced: FxHashMap::default(),
        };
        for (i, c) in scenario.faults.crash.iter().enumerate() {
            let index = i as u8;
            let at = Time::from_secs_f64(c.at_s);
            sim.sched.schedule(at, Ev::Crash { index });
            let back = Time::from_secs_f64(c.at_s + c.restart_after_s);
            sim.sched.schedule(back, Ev::Restart { index });
        }
        sim.drain_clients(Time::ZERO);
        sim
    }

    /// Lowers the bound on events (at most [`EVENTS_MAX`]).
    pub fn with_events_max(mut self, events_max: u64) -> Simulation {
        self.events_max = events_max.min(EVENTS_MAX);
        self
    }

    /// Runs to the horizon (or until nothing is left to happen).
    pub fn run(mut self) -> Result<SimResult, SimFailure> {
        let outcome = self.event_loop();
        if let Err(reason) = outcome {
            return Err(SimFailure {
                scenario: self.scenario_name,
                seed: self.seed,
                reason,
            });
        }
        Ok(self.finish())
    }

    fn event_loop(&mut self) -> Result<(), Stop> {
        while let Some(at) = self.sched.peek_time() {
            if self.horizon.is_some_and(|h| at > h) {
                break;
            }
            if self.c.events >= self.events_max {
                return Err(Stop::EventsExhausted {
                    events_max: self.events_max,
                    at_s: at.as_secs_f64(),
                });
            }
            let Some((now, ev)) = self.sched.pop() else {
                break;
            };
            self.c.events += 1;
            self.integrate_live_jobs(now);
            self.dispatch(now, ev)?;
            self.perform_outputs(now)?;
            self.start_commit(now);
            let queue_bytes = self.relay.queue_bytes() as u64;
            self.c.queue_bytes_max = self.c.queue_bytes_max.max(queue_bytes);
            self.checker.end_of_step(now)?;
            self.checker.bounds(
                now,
                (self.relay.queue_len(), self.relay.queue_capacity()),
                self.relay.retry_lane_len(),
                (self.relay.in_flight(), self.relay.workers()),
            )?;
            self.arm_relay_wake(now);
        }
        let end = self.horizon.unwrap_or(self.last_active);
        self.integrate_live_jobs(end);
        Ok(self.checker.at_end(end, self.relay.live_jobs())?)
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
            Ev::Client(timer) => {
                let woke = self.clients.handle_timer(now, timer);
                self.drain_clients(now);
                match woke {
                    Woke::Stale => Ok(()),
                    Woke::Changed => {
                        self.last_active = now;
                        Ok(())
                    }
                    Woke::Send(out) => {
                        self.last_active = now;
                        self.send(now, out)
                    }
                }
            }
            Ev::CallDone {
                job,
                attempt,
                route,
                result,
                life,
                key,
            } => {
                let call = CallId { job, attempt };
                self.last_active = now;
                self.call_leaves(now, (call, route), result, key)?;
                self.relay_hears(now, (call, route), result, life)
            }
            Ev::CallArrives {
                job,
                attempt,
                route,
                step,
                life,
                key,
            } => {
                self.last_active = now;
                let index = draw_index(key, job);
                let plan = self.downstream_starts(now, route, index, u64::from(step));
                let (_, back_ms) = self.network.relay_downstream(index, u64::from(step));
                let (result, key) = (plan.result, key);
                self.sched.schedule(
                    plan.done_at,
                    Ev::CallLeaves {
                        job,
                        attempt,
                        route,
                        result,
                        key,
                    },
                );
                let heard = after(plan.done_at, back_ms);
                self.sched.schedule(
                    heard,
                    Ev::RelayHears {
                        job,
                        attempt,
                        route,
                        result,
                        life,
                    },
                );
                Ok(())
            }
            Ev::CallLeaves {
                job,
                attempt,
                route,
                result,
                key,
            } => {
                self.last_active = now;
                self.call_leaves(now, (CallId { job, attempt }, route), result, key)
            }
            Ev::RelayHears {
                job,
                attempt,
                route,
                result,
                life,
            } => {
                self.last_active = now;
                self.relay_hears(now, (CallId { job, attempt }, route), result, life)
            }
            Ev::RequestArrives { transit } => {
                self.last_active = now;
                let out = self.requests_in_transit.remove(transit as usize);
                self.relay_receives(now, out)
            }
            Ev::AnswerArrives { transit } => {
                self.last_active = now;
                let a = self.answers_in_transit.remove(transit as usize);
                self.clients
                    .handle_answer_later(now, a.slot, a.request, a.send, &a.answer);
                self.drain_clients(now);
                Ok(())
            }
            Ev::JobNews {
                job,
                slot,
                succeeded,
            } => {
                self.last_active = now;
                self.clients
                    .handle_job_news(now, slot as usize, job, succeeded);
                self.drain_clients(now);
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
            Ev::Committed { life } => {
                if life == self.life {
                    self.last_active = now;
                    self.committed(now);
                }
                Ok(())
            }
            Ev::Crash { index } => {
                self.last_active = now;
                self.crash(now, index)
            }
            Ev::Restart { index } => {
                self.last_active = now;
                self.restart(now, index)
            }
        }
    }

    /// Puts a client's request on the wire to the relay (or hands it over
    /// at once when there is no client↔relay delay).
    fn send(&mut self, now: Time, out: Outgoing) -> Result<(), Violation> {
        if !self.network.has_client_relay() {
            return self.relay_receives(now, out);
        }
        let at = self
            .network
            .client_relay(now, out.logical, out.send, ClientLeg::Request);
        let transit = self.requests_in_transit.insert(out) as u32;
        self.sched.schedule(at, Ev::RequestArrives { transit });
        Ok(())
    }

    /// The relay takes a client's request and answers it.
    fn relay_receives(&mut self, now: Time, out: Outgoing) -> Result<(), Violation> {
        if self.down {
            self.refuse_while_down(now, out);
            return Ok(());
        }
        let keyed = out.request.key.is_some();
        let (slot, request, send) = (out.slot, out.logical, out.send);
        let routing = self.mix.routing(request);
        let answer = self.relay.handle_request_to(now, routing, out.request);
        if let Answer::Refused {
            why: Refusal::Shed | Refusal::RateLimited | Refusal::Unavailable,
            ..
        } = answer
        {
            self.count(now, Count::Refusal);
        }
        if let Answer::Accepted { job } = answer {
            self.set_origin(Origin {
                job,
                request,
                send,
                slot: slot as u32,
                keyed,
                client_job: job,
                adopted: false,
            });
        }
        let reply = AnswerInTransit {
            slot,
            request,
            send,
            answer: answer.clone(),
        };
        if self.hold_records() {
            self.store.next.effects.push(Effect::Answer(reply));
        } else {
            self.answer_leaves(now, reply, false);
        }
        if let Answer::Accepted { job } = answer {
            self.checker.accepted(now, job)?;
        }
        Ok(())
    }

    /// The relay's answer leaves for its client; `later`: it was held for
    /// a commit, and the client may have moved on since.
    fn answer_leaves(&mut self, now: Time, a: AnswerInTransit, later: bool) {
        if self.network.has_client_relay() {
            let at = self
                .network
                .client_relay(now, a.request, a.send, ClientLeg::Answer);
            let transit = self.answers_in_transit.insert(a) as u32;
            self.sched.schedule(at, Ev::AnswerArrives { transit });
        } else if later {
            self.clients
                .handle_answer_later(now, a.slot, a.request, a.send, &a.answer);
            self.drain_clients(now);
        } else {
            self.clients.handle_answer(now, a.slot, &a.answer);
            self.drain_clients(now);
        }
    }

    /// A send reaches a relay that is down: the connection is refused, an
    /// error the client retries like a 503.
    fn refuse_while_down(&mut self, now: Time, out: Outgoing) {
        self.c.refused_while_down += 1;
        self.count(now, Count::Refusal);
        let reply = AnswerInTransit {
            slot: out.slot,
            request: out.logical,
            send: out.send,
            answer: connection_refused(),
        };
        self.answer_leaves(now, reply, true);
    }

    /// Moves the relay's new journal records into the store's waiting
    /// group; returns whether outputs must now wait for a commit. Always
    /// false for a memory store (the relay journals nothing).
    fn hold_records(&mut self) -> bool {
        if !self.store.config.is_durable() {
            return false;
        }
        while let Some(r) = self.relay.poll_record() {
            self.store.next.records.push(r);
        }
        self.store.holds_back()
    }

    /// Starts a commit of the waiting records, if none is under way.
    fn start_commit(&mut self, now: Time) {
        if !self.store.config.is_durable() {
            return;
        }
        self.hold_records();
        if let Some(done) = self.store.start_commit(now) {
            self.sched.schedule(done, Ev::Committed { life: self.life });
        }
    }

    /// A commit is done: what waited for it happens now, and so does what
    /// waited behind it without records of its own.
    fn committed(&mut self, now: Time) {
        let mut effects = self.store.finish_commit();
        if self.store.next.records.is_empty() {
            effects.append(&mut self.store.next.effects);
        }
        self.start_commit(now);
        for e in effects {
            self.perform(now, e);
        }
    }

    fn perform(&mut self, now: Time, e: Effect) {
        match e {
            Effect::Answer(a) => self.answer_leaves(now, a, true),
            Effect::Call {
                call,
                route,
                key,
                step,
            } => self.call_leaves_relay(now, (call, route), key, step),
            Effect::News {
                job,
                success,
                origin,
            } => self.news_leaves(now, job, success, origin),
        }
    }

    /// The relay process dies: everything in memory and every commit not
    /// done is lost; answers held for a commit become connection errors.
    fn crash(&mut self, now: Time, index: u8) -> Result<(), Violation> {
        self.c.crashes += 1;
        let held = self.store.crash();
        let mut unanswered = Vec::new();
        for e in held {
            if let Effect::Answer(mut a) = e {
                if let Answer::Accepted { job } = a.answer {
                    unanswered.push(job);
                }
                a.answer = connection_refused();
                self.answer_leaves(now, a, true);
            }
        }
        let durable = self.store.config.is_durable();
        for (status, ..) in self.relay.unfinished() {
            let job = status.job;
            if self.store.durable.holds(job) || unanswered.contains(&job) {
                continue;
            }
            self.c.jobs_lost += 1;
            if durable {
                return Err(Violation {
                    at: now,
                    what: format!(
                        "job {job} was accepted (its 202 sent) and lost in crash {index}: its record was not committed"
                    ),
                });
            }
        }
        self.carried = self.relay.stats().clone();
        self.serial_at_crash = self.relay.next_serial();
        if self.store.config.kind == StoreKind::Shared {
            return self.fail_over(now, index);
        }
        let mut dead = Relay::new(
            &self.relay_settings,
            Seed(self.seed).stream(Domain::Relay, 0),
        );
        dead.carry_stats(&self.carried);
        self.relay = dead;
        self.down = true;
        self.life = self.life.wrapping_add(1);
        self.relay_wake = None;
        self.checker = self.checker.restarted(now, &Stored::default())?;
        Ok(())
    }

    /// The relay restarts from what the store kept.
    fn restart(&mut self, now: Time, index: u8) -> Result<(), Violation> {
        if self.store.config.kind == StoreKind::Shared {
            return self.adopt_leased(now);
        }
        let stored = if self.store.config.is_durable() {
            self.store.durable.stored()
        } else {
            Stored {
                next_serial: self.serial_at_crash,
                ..Stored::default()
            }
        };
        let checker = self.checker.restarted(now, &stored)?;
        self.relay = self.recovered(now, index, stored)?;
        self.checker = checker;
        self.down = false;
        Ok(())
    }

    /// A relay rebuilt from `stored`, carrying its earlier lives' counts.
    fn recovered(
        &mut self,
        now: Time,
        index: u8,
        stored: Stored<u64, ()>,
    ) -> Result<Relay<u64, ()>, Violation> {
        let rng = Seed(self.seed).stream(Domain::Relay, u64::from(index) + 1);
        let mut relay =
            Relay::recover(&self.relay_settings, rng, now, stored).map_err(|e| Violation {
                at: now,
                what: format!("the relay could not restart after crash {index}: {e}"),
            })?;
        relay.set_journal(self.store.config.is_durable());
        relay.carry_stats(&self.carried);
        set_static_answers(&mut relay, &self.relay_settings);
        Ok(relay)
    }

    /// A shared store: another replica serves at once, from the shared
    /// letters, replays and serials; the crashed replica's jobs wait for
    /// their lease to expire (`restart_after_s`).
    fn fail_over(&mut self, now: Time, index: u8) -> Result<(), Violation> {
        let mut stored = self.store.durable.stored();
        let jobs = std::mem::take(&mut stored.jobs);
        self.leased = jobs
            .into_iter()
            .map(|j| {
                let origin = self.origin(j.job);
                (j, origin)
            })
            .collect();
        self.life = self.life.wrapping_add(1);
        self.relay_wake = None;
        self.checker = self.checker.restarted(now, &stored)?;
        self.relay = self.recovered(now, index, stored)?;
        Ok(())
    }

    /// Leases expired: the surviving replica adopts the jobs under new
    /// slots; their clients still know them by their old ids. A job it has
    /// no room for (or whose key another job holds) is counted as lost,
    /// though a real reaper would try again.
    ///
    /// Each adoption is an input like a request: its outputs are performed
    /// before the next. An adopted job may end at once (too old, it is shed)
    /// and the next one take its slot; the checker and the job's client
    /// must hear of that end before the slot changes hands.
    fn adopt_leased(&mut self, now: Time) -> Result<(), Violation> {
        for (job, origin) in std::mem::take(&mut self.leased) {
            let in_lane = job.attempts > 0;
            self.displaced.remove(&job.job);
            match self.relay.adopt(now, job) {
                Ok(id) => {
                    self.store.durable.adopted(id);
                    self.checker.adopted(now, id, in_lane)?;
                    if let Some(o) = origin {
                        self.set_origin(Origin {
                            job: id,
                            adopted: true,
                            ..o
                        });
                    }
                }
                Err(_) => self.c.jobs_lost += 1,
            }
            self.perform_outputs(now)?;
        }
        Ok(())
    }

    fn set_origin(&mut self, o: Origin) {
        // A job that ended in memory but not yet in the store may come back
        // after a crash: keep its origin while a new job uses its slot.
        if let Some(old) = self.origins.set(o) {
            if self.store.durable.holds(old.job) {
                self.displaced.insert(old.job, old);
            }
        }
    }

    /// The send that created `job`, if the clients created it.
    fn origin(&self, job: JobId) -> Option<Origin> {
        self.origins
            .get(job)
            .or_else(|| self.displaced.get(&job).copied())
    }

    fn count(&mut self, now: Time, what: Count) {
        if let Some(s) = &mut self.series {
            s.count(now, what);
        }
    }

    /// A call starts at the downstream, with draws keyed by its identity.
    fn downstream_starts(
        &mut self,
        now: Time,
        route: RouteId,
        index: u64,
        step: u64,
    ) -> crate::fault::CallPlan {
        let plan = self.downstreams.start(route, now, index, step);
        let level = self.downstreams.in_progress();
        if let Some(s) = &mut self.series {
            s.count(now, Count::Call);
            s.in_progress(now, level);
        }
        plan
    }

    /// The relay hears how a call went.
    fn relay_hears(
        &mut self,
        now: Time,
        (call, route): (CallId, RouteId),
        result: Result<(), CallError>,
        life: u16,
    ) -> Result<(), Violation> {
        if life != self.life {
            return Ok(());
        }
        if result.is_ok() {
            self.checker.success_answered(now, call)?;
        }
        let retry_after = (result == Err(CallError::Throttled))
            .then(|| self.downstreams.throttle_retry_after(route));
        self.relay
            .handle_call_result_with(now, call, result, retry_after);
        Ok(())
    }

    /// The downstream answers a call; a success lands its side effect.
    fn call_leaves(
        &mut self,
        now: Time,
        (call, route): (CallId, RouteId),
        result: Result<(), CallError>,
        key: u64,
    ) -> Result<(), Violation> {
        self.c.model_call_completions += 1;
        let landed = result.is_ok();
        self.c.call_successes += u64::from(landed);
        let request = (key != NO_KEY).then_some(key & !KEYLESS);
        let duplicate = self
            .downstreams
            .finish(route, request, key & KEYLESS == 0, landed);
        let level = self.downstreams.in_progress();
        if let Some(s) = &mut self.series {
            s.in_progress(now, level);
        }
        self.record(
            now,
            SimRecord::CallDone {
                job: call.job,
                attempt: call.attempt,
                ok: landed,
                error: result.err(),
                duplicate,
            },
        );
        Ok(())
    }

    /// Arms the timers and keeps the records the clients asked for, in order.
    fn drain_clients(&mut self, now: Time) {
        while let Some(out) = self.clients.poll_output() {
            match out {
                ClientOutput::Arm { at, timer } => self.sched.schedule(at, Ev::Client(timer)),
                ClientOutput::Record(r) => {
                    if self.series.is_some() {
                        self.count_record(now, &r);
                    }
                    self.record(now, r);
                }
            }
        }
    }

    /// Adds a client's record to the series.
    fn count_record(&mut self, now: Time, r: &SimRecord) {
        if let Some(what) = Count::of_client_record(r) {
            self.count(now, what);
        }
    }

    /// Performs everything the relay asked for since the last step.
    fn perform_outputs(&mut self, now: Time) -> Result<(), Violation> {
        self.hold_records();
        while let Some(out) = self.relay.poll_output() {
            match out {
                Output::Call {
                    call, route, key, ..
                } => self.start_call(now, (call, route), key)?,
                Output::Finished(done) => self.job_finished(now, done)?,
                Output::Overflowed(letter) => {
                    self.c.dlq_overflowed += 1;
                    self.record(now, SimRecord::DlqOverflow { job: letter.job });
                }
                Output::Forgotten { key } => self.checker.key_forgotten(key),
                Output::Event(e) => {
                    match e {
                        Event::Breaker { route, from, to } => {
                            self.checker.breaker(now, route, from, to)?;
                            self.c.breaker_transitions += 1;
                        }
                        Event::AttemptFailed { job, attempt, .. } => {
                            self.checker.attempt_failed(job, attempt);
                        }
                        Event::Requeued { job } => self.checker.requeued(now, job)?,
                        Event::Redriven { .. } => self.checker.enqueued(),
                        Event::Shed { job, .. } => self.checker.shed(now, job)?,
                        Event::HedgeSent { job, attempt } => {
                            self.checker.hedge_sent(now, job, attempt)?;
                        }
                        Event::HedgeAbandoned { .. } => self.checker.attempt_abandoned(),
                        Event::LateSuccess { job, attempt, fate } => {
                            let shown =
                                self.relay.job_status(job).map(|s| s.late_success.is_some());
                            let call = CallId { job, attempt };
                            self.checker.late_success(now, call, fate, shown)?;
                        }
                        _ => {}
                    }
                    self.record_relay(now, e);
                }
            }
        }
        Ok(())
    }

    fn start_call(
        &mut self,
        now: Time,
        (call, route): (CallId, RouteId),
        key: Option<u64>,
    ) -> Result<(), Violation> {
        self.checker.call_started(now, call, key)?;
        // The side effect belongs to the logical request, keyed or not.
        let (key, send) = match self.origin(call.job) {
            Some(o) if o.keyed => (o.request, o.send),
            Some(o) => (o.request | KEYLESS, o.send),
            None => (key.unwrap_or(NO_KEY), 0),
        };
        let step = call_step(send, call.attempt);
        self.record(
            now,
            SimRecord::Call {
                job: call.job,
                attempt: call.attempt,
            },
        );
        if self.store.holds_back() {
            self.store.next.effects.push(Effect::Call {
                call,
                route,
                key,
                step,
            });
        } else {
            self.call_leaves_relay(now, (call, route), key, step);
        }
        Ok(())
    }

    /// A call leaves the relay for the downstream.
    fn call_leaves_relay(
        &mut self,
        now: Time,
        (call, route): (CallId, RouteId),
        key: u64,
        step: u64,
    ) {
        let life = self.life;
        if let Some(b) = self.bucket_ns {
            let i = (now.as_nanos() / b) as usize;
            if i < BUCKETS_MAX {
                if i >= self.calls_per_bucket.len() {
                    self.calls_per_bucket.resize(i + 1, 0);
                }
                self.calls_per_bucket[i] += 1;
            }
        }
        if self.network.has_relay_downstream() {
            let (there_ms, _) = self
                .network
                .relay_downstream(draw_index(key, call.job), step);
            let ev = Ev::CallArrives {
                job: call.job,
                attempt: call.attempt,
                route,
                step: step as u32,
                life,
                key,
            };
            self.sched.schedule(after(now, there_ms), ev);
            return;
        }
        let plan = self.downstream_starts(now, route, draw_index(key, call.job), step);
        self.sched.schedule(
            plan.done_at,
            Ev::CallDone {
                job: call.job,
                attempt: call.attempt,
                route,
                result: plan.result,
                life,
                key,
            },
        );
    }

    fn job_finished(&mut self, now: Time, done: Finished<u64, ()>) -> Result<(), Violation> {
        let (job, key, attempts, latency) = (done.job, done.key, done.attempts, done.latency);
        self.checker.finished(now, job)?;
        let success = done.outcome.is_success();
        if success {
            self.checker.succeeded(now, job)?;
            if let Some(k) = key {
                self.checker.key_succeeded(now, k);
            }
            if self.deadline.is_some_and(|d| latency > d) {
                self.c.deadline_missed += 1;
            }
        } else if done.outcome.reason() == Some(GiveUp::Shed) {
            self.checker.shed_finished(now, job)?;
        } else {
            self.checker.dead_lettered(now, job, attempts)?;
        }
        let name = match done.outcome {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::DeadLettered { .. } => "dead-lettered",
            Outcome::Failed { .. } => "failed",
        };
        self.record(
            now,
            SimRecord::Finished {
                job,
                outcome: name,
                attempts,
                latency_ms: duration_ms(latency),
            },
        );
        let origin = self.origin(job);
        if !self.displaced.is_empty() {
            self.displaced.remove(&job);
        }
        if self.store.holds_back() {
            let news = Effect::News {
                job,
                success,
                origin,
            };
            self.store.next.effects.push(news);
        } else {
            self.news_leaves(now, job, success, origin);
        }
        Ok(())
    }

    /// The news that `job` finished leaves for its client.
    fn news_leaves(&mut self, now: Time, job: JobId, success: bool, origin: Option<Origin>) {
        match origin {
            Some(o) if self.network.has_client_relay() => {
                let at = self
                    .network
                    .client_relay(now, o.request, o.send, ClientLeg::News);
                let news = Ev::JobNews {
                    job: o.client_job,
                    slot: o.slot,
                    succeeded: success,
                };
                self.sched.schedule(at, news);
            }
            // Held news may arrive after the relay slot changed hands (and
            // an adopted job has a new one): find the client by its own slot.
            Some(o) if o.adopted || self.store.config.is_durable() => {
                self.clients
                    .handle_job_news(now, o.slot as usize, o.client_job, success);
                self.drain_clients(now);
            }
            _ => {
                self.clients.handle_job_finished(now, job, success);
                self.drain_clients(now);
            }
        }
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

    fn finish(mut self) -> SimResult {
        let end = match self.horizon {
            Some(h) => h,
            None => self.last_active,
        };
        let stats = self.clients.stats();
        self.c.arrivals = stats.arrivals;
        self.c.sends = stats.sends;
        self.c.client_retries = stats.retries;
        self.c.client_timeouts = stats.timeouts;
        self.c.client_succeeded = stats.succeeded;
        self.c.client_abandoned = stats.abandoned;
        self.c.client_deadline_abandoned = stats.deadline_abandoned;
        self.c.client_denied = stats.denied;
        self.c.client_done_last = stats.done_last;
        self.c.populations = stats.populations.clone();
        self.c.commits = self.store.commits;
        let mut summary = Summary::collect(
            &self.scenario_name,
            self.seed,
            end,
            &self.c,
            &self.relay,
            &self.downstreams,
            self.clients.waiting() as u64,
            &stats.latency,
            self.sched.len_max_seen(),
            self.checker.checks,
        );
        let routes = self.relay_settings.routes();
        if routes.len() > 1 {
            let stats = &self.relay.stats().routes;
            summary.routes = routes
                .iter()
                .zip(stats)
                .enumerate()
                .map(|(i, (r, s))| {
                    RouteSummary::of(r.name(), s, self.downstreams.route_calls(i), end)
                })
                .collect();
        }
        summary.trace_cut_at = self
            .trace
            .as_ref()
            .filter(|t| t.truncated)
            .map(|t| t.lines.len());
        let series = self.series.take().map(|s| s.finish(end));
        SimResult {
            series,
            summary,
            trace: self.trace,
            calls_per_bucket: self.calls_per_bucket,
            client_latency: self.clients.stats().latency.clone(),
            job_latency: self.relay.stats().job_latency().into_owned(),
        }
    }

    /// The relay being driven, for inspection after a run.
    pub fn relay(&self) -> &Relay<u64, ()> {
        &self.relay
    }
}

/// What a client hears from a relay that is down (or died holding its
/// answer): a refused connection, retried like a 503.
fn connection_refused() -> Answer<()> {
    Answer::Refused {
        why: Refusal::Unavailable,
        retry_after: None,
        job: None,
    }
}

/// Runs `scenario` with `opts`.
pub fn simulate(scenario: &Scenario, opts: &SimOptions) -> Result<SimResult, SimFailure> {
    Simulation::new(scenario, opts).run()
}

/// Gives every route with a static fallback answer its payload (the
/// simulator's answers carry nothing).
fn set_static_answers(relay: &mut Relay<u64, ()>, settings: &RelaySettings) {
    for (i, r) in settings.routes().iter().enumerate() {
        if r.static_answer().is_some() {
            relay.set_static_answer(RouteId(i as u16), ());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stays_small() {
        // The heap holds one per call in flight and one per client timer.
        assert!(
            std::mem::size_of::<Ev>() <= 32,
            "{}",
            std::mem::size_of::<Ev>()
        );
    }
}
