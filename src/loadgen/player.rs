//! The real-time player: the simulator's own clients machine
//! ([`Clients`]), driven by the real clock against a live relay.
//!
//! Every decision — when a request starts, when it is re-sent, the backoff
//! draw, the budget, the key — is the machine's, exactly as in `simulate`;
//! this module only performs what it asks. Timers fire at their instants
//! whatever the relay is doing, and each is handed to the machine at its
//! scheduled time, so an open-loop send that goes out late still counts
//! its latency from when it was due (no coordinated omission). Each send
//! runs in a task of its own: a slow answer never holds up the schedule.
//!
//! The relay answers a send at once (202, 429, 503 …) and finishes the job
//! later; the player learns of the end by polling the job's status URL,
//! ever less often as the job ages, and once just before the client would
//! give up. The status says when the job ended on the relay's clock, which
//! [`ClockOffset`] maps onto ours, so latency runs to the end itself and
//! not to the poll that saw it.

use super::offset::ClockOffset;
use super::peers::Peers;
use super::wire::{self, Heard, JobSeen};
use super::LiveCounts;
use crate::relay::{Answer, FallbackFrom, JobId, LatencyHistogram, Refusal};
use crate::server::client::uri;
use crate::sim::clients::{ClientOutput, ClientTimer, Clients, Outgoing, Woke};
use crate::sim::network::{ClientLeg, Network};
use crate::sim::series::{Count, Series, SeriesRecorder};
use crate::sim::trace::{SimRecord, Trace, TraceRecord};
use crate::sim::Scenario;
use crate::time::{duration_nanos, ms_to_nanos, Time};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Shortest and longest wait between two polls of one job.
const POLL_MIN: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(50);
/// A poll waits this fraction of the job's age: the end is seen within
/// about 6 % of the latency (and measured exactly, see the module doc).
const POLL_AGE_DIVISOR: u32 = 16;
/// How long before a client gives up its last poll is made.
const POLL_BEFORE_GIVING_UP: Duration = Duration::from_millis(1);
/// A keyless job nobody waits for is still followed, this often, to count
/// whether it landed (a repeat of its request's side effect).
const POLL_PAST_GIVING_UP: Duration = Duration::from_millis(500);
/// Answers and news waiting for the player; senders wait when it is full.
const EVENTS_MAX: usize = 65_536;
/// How often the player looks up when nothing is due (progress, bounds).
const TICK: Duration = Duration::from_millis(100);

/// What the player needs besides the scenario.
#[derive(Clone, Debug)]
pub struct PlayOptions {
    pub seed: u64,
    /// `http://host:port` of the relay.
    pub target: String,
    /// Tags this run's idempotency keys.
    pub run_tag: String,
    /// Most sends (first tries and retries) the run makes.
    pub sends_max: u64,
    /// Most sends and polls in progress at once; a send past it is not made
    /// and counts as a transport failure (`overloaded`).
    pub in_flight_max: usize,
    /// The run stops after this long whatever is left.
    pub duration_max: Duration,
    pub trace_records_max: usize,
    pub bucket_ms: f64,
    pub progress: bool,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// The scenario's horizon came.
    Horizon,
    /// Nothing was left to do (a scenario without a horizon).
    Done,
    /// `--duration-max-s` passed first.
    TimeBound,
    /// `--sends-max` was reached.
    SendsBound,
    /// Ctrl-C.
    Interrupted,
}

/// What the player saw.
pub struct Played {
    pub ending: Ending,
    pub end: Time,
    pub clients: Clients,
    pub counts: LiveCounts,
    pub trace: Option<Trace>,
    pub series: Series,
    /// First send → final answer of requests that succeeded, to the job's
    /// end as the relay dated it.
    pub client_latency: LatencyHistogram,
    /// How late timers fired: this machine's scheduling noise.
    pub timer_lateness: LatencyHistogram,
}

/// Reads the real clock as [`Time`] since the run started.
#[derive(Clone, Copy, Debug)]
struct LiveClock {
    start: Instant,
}

impl LiveClock {
    fn now(&self) -> Time {
        let elapsed = crate::server::clock::read_monotonic() - self.start;
        Time::from_nanos(duration_nanos(elapsed))
    }

    fn instant_at(&self, t: Time) -> Instant {
        self.start + Duration::from_nanos(t.as_nanos())
    }
}

/// What the player's tasks share.
struct Shared {
    /// Each client's connections, from its own loopback address if it can.
    peers: Peers,
    target: String,
    run_tag: String,
    network: Network,
    clock: LiveClock,
    offset: Mutex<ClockOffset>,
    events: mpsc::Sender<Event>,
    in_flight: AtomicUsize,
    polls: AtomicU64,
    poll_errors: AtomicU64,
}

impl Shared {
    fn offset(&self) -> std::sync::MutexGuard<'_, ClockOffset> {
        self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the tasks tell the player.
enum Event {
    Answer {
        slot: usize,
        key: u64,
        send: u32,
        job: JobId,
        heard: Heard,
    },
    /// The job of a send ended; `at` is when the client hears of it.
    News {
        slot: usize,
        key: u64,
        job: JobId,
        succeeded: bool,
        at: Time,
        keyed: bool,
    },
    /// A polled job's status answered 404 (forgotten by the relay).
    Gone { slot: usize, key: u64, job: JobId },
}

/// One send, as its task needs it.
#[derive(Clone, Copy)]
struct SendSpec {
    slot: usize,
    key: u64,
    send: u32,
    client: u64,
    keyed: bool,
    job: JobId,
    /// When it was due.
    at: Time,
    /// When the client stops waiting for it, if it ever does.
    give_up: Option<Time>,
}

struct Player {
    clients: Clients,
    shared: Arc<Shared>,
    timers: BTreeMap<(Time, u64), ClientTimer>,
    seq: u64,
    /// The latest time handed to the machine: it never goes back.
    last: Time,
    trace: Trace,
    series: SeriesRecorder,
    latency: LatencyHistogram,
    lateness: LatencyHistogram,
    counts: LiveCounts,
    /// Per population: how long a client waits for a send's outcome.
    timeouts: Vec<Option<Duration>>,
    next_job: u32,
    sends_max: u64,
    in_flight_max: usize,
    out_of_sends: bool,
    keep_trace: bool,
    horizon: Option<Time>,
    /// Keyless requests' jobs that succeeded, per request: each beyond
    /// the first repeated its side effect. At most one entry per request.
    keyless_landed: BTreeMap<u64, u32>,
}

/// Plays `scenario`'s clients against `opts.target` until its horizon
/// (or until nothing is left, or a bound, or Ctrl-C).
pub async fn play(scenario: &Scenario, opts: &PlayOptions) -> Played {
    let horizon = (scenario.horizon_s > 0.0).then(|| Time::from_secs_f64(scenario.horizon_s));
    let seed = crate::rng::Seed(opts.seed);
    let (events, mut inbox) = mpsc::channel(EVENTS_MAX);
    let clock = LiveClock {
        start: crate::server::clock::read_monotonic(),
    };
    let shared = Arc::new(Shared {
        peers: Peers::new(&scenario.clients, &opts.target),
        target: opts.target.clone(),
        run_tag: opts.run_tag.clone(),
        network: Network::new(&scenario.network, seed),
        clock,
        offset: Mutex::new(ClockOffset::default()),
        events,
        in_flight: AtomicUsize::new(0),
        polls: AtomicU64::new(0),
        poll_errors: AtomicU64::new(0),
    });
    let mut player = Player {
        clients: Clients::new(&scenario.clients, seed, horizon),
        shared: shared.clone(),
        timers: BTreeMap::new(),
        seq: 0,
        last: Time::ZERO,
        trace: Trace::new(opts.trace_records_max),
        series: SeriesRecorder::new(opts.bucket_ms),
        latency: LatencyHistogram::new(),
        lateness: LatencyHistogram::new(),
        counts: LiveCounts::default(),
        timeouts: scenario
            .clients
            .iter()
            .map(|c| {
                let ms = c.retry().timeout_ms;
                (ms > 0.0).then(|| Duration::from_nanos(ms_to_nanos(ms)))
            })
            .collect(),
        next_job: 0,
        sends_max: opts.sends_max,
        in_flight_max: opts.in_flight_max,
        out_of_sends: false,
        keep_trace: opts.trace_records_max > 0,
        horizon,
        keyless_landed: BTreeMap::new(),
    };
    player.drain(Time::ZERO, None);
    let bar = progress_bar(
        opts.progress,
        horizon.unwrap_or(Time::from_nanos(duration_nanos(opts.duration_max))),
    );
    let limit = Time::from_nanos(duration_nanos(opts.duration_max));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let ending = loop {
        let now = clock.now();
        // What was due by the horizon still happens, as in `simulate`.
        player.fire_due(horizon.map_or(now, |h| now.min(h)));
        if let Some(end) = player.ending(now, horizon, limit) {
            break end;
        }
        while let Ok(e) = inbox.try_recv() {
            player.hear(e);
        }
        bar.set_position(now.as_nanos() / 1_000_000);
        bar.set_message(player.status_line());
        let next = player.timers.first_key_value().map(|(k, _)| k.0);
        let wake = [next, horizon, Some(limit), Some(now + TICK)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + TICK);
        tokio::select! {
            () = tokio::time::sleep_until(clock.instant_at(wake)) => {}
            Some(e) = inbox.recv() => player.hear(e),
            _ = &mut ctrl_c => break Ending::Interrupted,
        }
    };
    bar.finish_and_clear();
    let end = horizon
        .filter(|_| ending == Ending::Horizon)
        .unwrap_or_else(|| clock.now());
    player.finish(ending, end)
}

impl Player {
    /// Why the run should stop now, if it should.
    fn ending(&self, now: Time, horizon: Option<Time>, limit: Time) -> Option<Ending> {
        if horizon.is_some_and(|h| now >= h) {
            return Some(Ending::Horizon);
        }
        if now >= limit {
            return Some(Ending::TimeBound);
        }
        if self.out_of_sends {
            return Some(Ending::SendsBound);
        }
        let idle = self.timers.is_empty() && self.clients.waiting() == 0;
        (horizon.is_none() && idle).then_some(Ending::Done)
    }

    /// Hands every timer due by `now` to the machine, at its own instant.
    fn fire_due(&mut self, now: Time) {
        while let Some(entry) = self.timers.first_entry() {
            let at = entry.key().0;
            if at > now {
                return;
            }
            let timer = entry.remove();
            self.lateness.record(now.since(at));
            let t = at.max(self.last);
            if t > at {
                self.counts.timers_shifted += 1;
            }
            self.last = t;
            if let Woke::Send(out) = self.clients.handle_timer(t, timer) {
                self.dispatch(out, t);
            }
            self.drain(t, None);
        }
    }

    /// Starts send `out`, due at `t`, in a task of its own.
    fn dispatch(&mut self, out: Outgoing, t: Time) {
        if self.clients.stats().sends >= self.sends_max {
            self.out_of_sends = true;
        }
        let job = JobId::new(self.next_job, 0);
        self.next_job = self.next_job.wrapping_add(1);
        let source = (out.request.client >> 32) as usize;
        let timeout = self.timeouts.get(source).copied().flatten();
        let spec = SendSpec {
            slot: out.slot,
            key: out.logical,
            send: out.send,
            client: out.request.client,
            keyed: out.request.key.is_some(),
            job,
            at: t,
            give_up: timeout.map(|d| t + d),
        };
        if self.shared.in_flight.load(Ordering::Relaxed) >= self.in_flight_max {
            self.counts.overloaded += 1;
            self.answer(t, spec.slot, spec.key, spec.send, job, Heard::Transport);
            return;
        }
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(send(self.shared.clone(), spec));
    }

    fn hear(&mut self, e: Event) {
        // Timers due before this event happen first, at their own instants
        // (an arrival handed over late would shift every later arrival).
        let now = self.shared.clock.now();
        self.fire_due(self.horizon.map_or(now, |h| now.min(h)));
        let t = now.max(self.last);
        self.last = t;
        match e {
            Event::Answer {
                slot,
                key,
                send,
                job,
                heard,
            } => self.answer(t, slot, key, send, job, heard),
            Event::News {
                slot,
                key,
                job,
                succeeded,
                at,
                keyed,
            } => {
                if succeeded && !keyed {
                    *self.keyless_landed.entry(key).or_default() += 1;
                }
                self.clients.handle_job_news(t, slot, job, succeeded);
                self.drain(t, Some((key, at.min(t))));
            }
            Event::Gone { slot, key, job } => {
                // Forgotten by the relay: the client asks again with its
                // key (a replay if it had succeeded).
                self.counts.jobs_gone += 1;
                self.clients.handle_job_news(t, slot, job, false);
                self.drain(t, Some((key, t)));
            }
        }
    }

    /// The relay's answer `heard` to a send reaches the client at `t`.
    fn answer(&mut self, t: Time, slot: usize, key: u64, send: u32, job: JobId, heard: Heard) {
        self.counts.count(&heard);
        let answer = match heard {
            Heard::Accepted { .. } => Answer::Accepted { job },
            Heard::Replayed => Answer::Replayed { job, response: () },
            Heard::Fallback => Answer::Fallback {
                response: (),
                from: FallbackFrom::Static,
            },
            Heard::Refused { why, retry_after } => Answer::Refused {
                why,
                retry_after,
                job: None,
            },
            // No answer the relay makes: to the client, like a 503.
            Heard::Other { .. } | Heard::Transport => Answer::Refused {
                why: Refusal::Unavailable,
                retry_after: None,
                job: None,
            },
        };
        self.clients
            .handle_answer_later(t, slot, key, send, &answer);
        self.drain(t, None);
    }

    /// Performs what the machine asked at `t`. `news` is the request whose
    /// job's end was just heard and when it really reached the client:
    /// its latency is counted to then, not to the poll.
    fn drain(&mut self, t: Time, news: Option<(u64, Time)>) {
        while let Some(out) = self.clients.poll_output() {
            match out {
                ClientOutput::Arm { at, timer } => {
                    self.timers.insert((at, self.seq), timer);
                    self.seq += 1;
                }
                ClientOutput::Record(r) => self.record(t, news, r),
            }
        }
    }

    fn record(&mut self, t: Time, news: Option<(u64, Time)>, r: SimRecord) {
        if let Some(what) = Count::of_client_record(&r) {
            self.series.count(t, what);
        }
        match &r {
            SimRecord::Answer { answer, .. }
                if matches!(*answer, "shed" | "rate-limited" | "unavailable") =>
            {
                self.series.count(t, Count::Refusal);
            }
            SimRecord::ClientDone {
                request,
                outcome,
                latency_ms,
            } if *outcome != "abandoned" => {
                let heard_late = match news {
                    Some((k, at)) if k == *request => t.since(at),
                    _ => Duration::ZERO,
                };
                let ms = (latency_ms - crate::time::duration_ms(heard_late)).max(0.0);
                self.latency.record(Duration::from_nanos(ms_to_nanos(ms)));
            }
            _ => {}
        }
        self.trace.push(t, TraceRecord::Sim(r));
    }

    fn status_line(&self) -> String {
        let s = self.clients.stats();
        format!(
            "{} sends, {} succeeded, {} waiting, {} in flight",
            s.sends,
            s.succeeded,
            self.clients.waiting(),
            self.shared.in_flight.load(Ordering::Relaxed)
        )
    }

    fn finish(mut self, ending: Ending, end: Time) -> Played {
        self.counts.polls = self.shared.polls.load(Ordering::Relaxed);
        self.counts.poll_errors = self.shared.poll_errors.load(Ordering::Relaxed);
        let offset = *self.shared.offset();
        self.counts.clock_offset_ms = offset.offset_ms();
        self.counts.clock_offset_uncertainty_ms = offset.uncertainty_ms();
        self.counts.in_flight_at_end = self.shared.in_flight.load(Ordering::Relaxed) as u64;
        self.counts.keyless_repeats = self
            .keyless_landed
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum();
        let trace = self.keep_trace.then_some(self.trace);
        Played {
            ending,
            end,
            clients: self.clients,
            counts: self.counts,
            trace,
            series: self.series.finish(end),
            client_latency: self.latency,
            timer_lateness: self.lateness,
        }
    }
}

/// Counts a task as in flight until it ends.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One send: over the client's network leg, to the relay, and back; then,
/// if it was accepted, the job's status until it ends or the client gives up.
async fn send(shared: Arc<Shared>, s: SendSpec) {
    let _counted = InFlight(shared.clone());
    let clock = shared.clock;
    let arrives = shared
        .network
        .client_relay(s.at, s.key, s.send, ClientLeg::Request);
    tokio::time::sleep_until(clock.instant_at(arrives)).await;
    let sent = clock.now();
    let heard = match post(&shared, &s).await {
        Some(reply) => Heard::of(&reply),
        None => Heard::Transport,
    };
    let answered = clock.now();
    let status_url = match &heard {
        Heard::Accepted { status_url } => Some(status_url.clone()),
        _ => None,
    };
    let back = shared
        .network
        .client_relay(answered, s.key, s.send, ClientLeg::Answer);
    let event = Event::Answer {
        slot: s.slot,
        key: s.key,
        send: s.send,
        job: s.job,
        heard,
    };
    if back > answered {
        let (events, due) = (shared.events.clone(), clock.instant_at(back));
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let _ = events.send(event).await;
        });
    } else {
        let _ = shared.events.send(event).await;
    }
    if let Some(url) = status_url {
        follow(&shared, &s, &url, sent, answered).await;
    }
}

async fn post(shared: &Shared, s: &SendSpec) -> Option<crate::server::client::Reply> {
    let target = uri(&shared.target, "/relay").ok()?;
    let mut headers = vec![wire::client_header(s.client)];
    if s.keyed {
        headers.push(wire::key_header(&shared.run_tag, s.key));
    }
    // Keyless or not, every send of a request carries its body: the
    // relay sees one request however often it is sent.
    let body = wire::body(s.key);
    let http = shared.peers.of(s.client);
    http.post_json(&target, &headers, body).await.ok()
}

/// Polls an accepted job's status until it ends (then tells the player),
/// is forgotten, or the client stops waiting.
async fn follow(shared: &Shared, s: &SendSpec, status_url: &str, sent: Time, answered: Time) {
    let Ok(target) = uri(&shared.target, status_url) else {
        shared.poll_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let clock = shared.clock;
    let mut synced = false;
    loop {
        let now = clock.now();
        let Some(due) = next_poll(now, sent, s.give_up, !s.keyed) else {
            return;
        };
        tokio::time::sleep_until(clock.instant_at(due)).await;
        shared.polls.fetch_add(1, Ordering::Relaxed);
        let seen = match shared.peers.of(s.client).get(&target).await {
            Ok(reply) => JobSeen::of(&reply),
            Err(_) => JobSeen::Unreadable,
        };
        let accepted_at_ms = match seen {
            JobSeen::Live { accepted_at_ms } | JobSeen::Ended { accepted_at_ms, .. } => {
                accepted_at_ms
            }
            JobSeen::Gone => {
                let gone = Event::Gone {
                    slot: s.slot,
                    key: s.key,
                    job: s.job,
                };
                let _ = shared.events.send(gone).await;
                return;
            }
            JobSeen::Unreadable => {
                shared.poll_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if !synced {
            let (lo, hi) = (sent.as_millis_f64(), answered.as_millis_f64());
            shared.offset().observe(lo, hi, accepted_at_ms);
            synced = true;
        }
        if let JobSeen::Ended {
            succeeded,
            finished_at_ms,
            ..
        } = seen
        {
            tell_end(shared, s, succeeded, finished_at_ms, sent).await;
            return;
        }
    }
}

/// When to poll next, or `None` once the client has stopped waiting
/// (unless the job is to be followed past that, `past_giving_up`).
fn next_poll(now: Time, sent: Time, give_up: Option<Time>, past_giving_up: bool) -> Option<Time> {
    let wait = (now.since(sent) / POLL_AGE_DIVISOR).clamp(POLL_MIN, POLL_MAX);
    let due = now + wait;
    match give_up {
        None => Some(due),
        Some(g) if now >= g => past_giving_up.then(|| now + POLL_PAST_GIVING_UP),
        Some(g) => {
            let last = Time::from_nanos(
                g.as_nanos()
                    .saturating_sub(duration_nanos(POLL_BEFORE_GIVING_UP)),
            );
            Some(if now < last { due.min(last) } else { g })
        }
    }
}

/// The job ended at `finished_at_ms` on the relay's clock: the news reaches
/// the client over its network leg from then.
async fn tell_end(shared: &Shared, s: &SendSpec, succeeded: bool, finished_at_ms: f64, sent: Time) {
    let clock = shared.clock;
    let now = clock.now();
    let ended = shared
        .offset()
        .local_ms(finished_at_ms)
        .map_or(now, |ms| Time::from_nanos(ms_to_nanos(ms.max(0.0))))
        .clamp(sent, now);
    let at = shared
        .network
        .client_relay(ended, s.key, s.send, ClientLeg::News);
    if at > now {
        tokio::time::sleep_until(clock.instant_at(at)).await;
    }
    let news = Event::News {
        slot: s.slot,
        key: s.key,
        job: s.job,
        succeeded,
        at,
        keyed: s.keyed,
    };
    let _ = shared.events.send(news).await;
}

fn progress_bar(shown: bool, length: Time) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !shown {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("loadgen [{bar:40}] {pos}/{len} ms  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(
        Some(length.as_nanos() / 1_000_000),
        ProgressDrawTarget::stderr(),
    )
    .with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_thin_out_with_age_and_come_once_more_before_the_client_gives_up() {
        let sent = Time::ZERO;
        let at = |ms| Time::from_millis(ms);
        assert_eq!(
            next_poll(at(0), sent, None, false),
            Some(at(2)),
            "the shortest wait"
        );
        assert_eq!(
            next_poll(at(160), sent, None, false),
            Some(at(170)),
            "a sixteenth of the age"
        );
        assert_eq!(
            next_poll(at(10_000), sent, None, false),
            Some(at(10_050)),
            "the longest wait"
        );
        let give_up = Some(at(1_000));
        assert_eq!(
            next_poll(at(980), sent, give_up, false),
            Some(at(999)),
            "just before it gives up"
        );
        assert_eq!(next_poll(at(999), sent, give_up, false), Some(at(1_000)));
        assert_eq!(
            next_poll(at(1_000), sent, give_up, false),
            None,
            "no longer waited for"
        );
        assert_eq!(
            next_poll(at(1_000), sent, give_up, true),
            Some(at(1_500)),
            "a keyless job is followed to count whether it landed"
        );
    }
}
