//! A running relay server: start, serve, drain, stop.
//!
//! Stopping is where work gets lost, so it has an order: stop admitting
//! (`/ready` answers 503 and `POST /relay` 503 `draining`, while status and
//! dead-letter look-ups keep working), let accepted work finish up to the
//! drain deadline, close the HTTP side, stop the relay's task, and log
//! everything that was left — live jobs and dead letters, with their
//! correlation ids and payloads — since nothing outlives the process.
//!
//! With a durable store (the default for `serve`) the relay starts from
//! what the store kept: unfinished jobs queue again, those that were in
//! flight marked redelivered; letters and replays are back, ids go on, and
//! status URLs keep resolving ([`open_store`]). What is left at the exit is
//! then kept for the next start, not lost.
//!
//! The deadline bounds the exit: the HTTP close shares it (a half-sent
//! request cannot hold the process), and when it passes with work left the
//! relay's task is stopped first, so no call or retry starts after it.
//! Past the deadline only [`HTTP_CLOSE_GRACE`] and [`RUNTIME_STOP_MAX`]
//! remain. The exit code says what was left ([`Outcome`]).

use super::actor::{Command, Key, Leftovers, RelayHandle, ServerRelay, Unavailable};
use super::calls::{Caller, Callers, HttpCaller};
use super::client::HttpClient;
use super::clock::Clock;
use super::config::{DownstreamConfig, Settings};
use super::flaky::SharedFlaky;
use super::http::{router, HttpPolicy};
use super::limit_log::{ListenerSnapshot, ListenerStats};
use super::listener::ServeOptions;
use super::routes::{route_names, RouteTable};
use super::store::committer::Committer;
use super::store::memory::MemoryStore;
use super::store::postgres::{PgOptions, PgStore, Replication, Shared};
use super::store::sqlite::SqliteStore;
use super::store::{Loaded, RouteNames, Store, StoreSpec};
use crate::relay::{JobId, Relay, RelaySettings, RouteId, Stored};
use crate::rng::{Domain, Seed};
use crate::time::Time;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Time connections still open at the drain deadline get to finish the
/// answers they are writing before they are dropped.
pub const HTTP_CLOSE_GRACE: Duration = Duration::from_millis(250);
/// Time the relay's task gets to answer `Stop` (its inbox may be full).
const STOP_MAX: Duration = Duration::from_millis(100);
/// Time the runtime gets to drop its remaining tasks (calls in flight).
pub const RUNTIME_STOP_MAX: Duration = Duration::from_millis(100);

pub struct RelayServer {
    pub addr: SocketAddr,
    relay: RelayHandle,
    drain_deadline: Duration,
    http_stop: Option<oneshot::Sender<()>>,
    http_task: JoinHandle<std::io::Result<()>>,
    http_stats: Arc<ListenerStats>,
    actor_task: JoinHandle<Leftovers>,
    /// PostgreSQL: the lease keeper and reaper (stopped on drop).
    _replication: Option<Replication>,
}

/// How a shutdown went.
#[derive(Clone, Debug)]
pub struct DrainReport {
    /// Every accepted job finished before the deadline.
    pub drained: bool,
    pub waited: Duration,
    pub left: Leftovers,
}

/// How `serve` ended, and its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every accepted job finished and no dead letter was left: 0.
    Clean,
    /// The drain deadline passed with accepted jobs unfinished: 3.
    JobsLeft,
    /// Every job finished, but dead letters were left (logged, then lost): 4.
    LettersLeft,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::JobsLeft => 3,
            Outcome::LettersLeft => 4,
        }
    }
}

impl DrainReport {
    pub fn outcome(&self) -> Outcome {
        if !self.drained || !self.left.live.is_empty() {
            Outcome::JobsLeft
        } else if !self.left.dead_letters.is_empty() {
            Outcome::LettersLeft
        } else {
            Outcome::Clean
        }
    }
}

impl RelayServer {
    /// Opens the store, rebuilds the relay from it, binds
    /// `settings.server.listen` and starts serving on the current runtime.
    pub async fn start(settings: &Settings) -> anyhow::Result<RelayServer> {
        let relay_settings = settings.relay.check()?;
        let rng = Seed(settings.server.seed).stream(Domain::Relay, 0);
        let opened = match &settings.server.store {
            StoreSpec::Memory => None,
            spec => Some(open_store(spec, settings)?),
        };
        let mut opened = opened;
        let replication = opened.as_mut().and_then(|o| o.replication.take());
        let (mut relay, durable) = match opened {
            None => (Relay::new(&relay_settings, rng), None),
            Some(opened) => {
                let replays = opened.loaded.stored.replays.len();
                let relay = Relay::recover(&relay_settings, rng, opened.now, opened.loaded.stored)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "the store {} does not fit these settings: {e} (start with the \
                             settings it was written under, or move the store away)",
                            settings.server.store
                        )
                    })?;
                log_recovered(&relay, &settings.server.store, replays);
                (relay, Some((opened.store, Clock::start_at(opened.now))))
            }
        };
        set_static_answers(&mut relay, &relay_settings);
        let (handle, mut actor) = RelayHandle::new(
            relay,
            callers(settings)?,
            settings.server.commands_max,
            settings.server.results_max,
        );
        actor = actor.with_routes(RouteTable::new(&settings.relay, &settings.routes));
        if let Some((store, clock)) = durable {
            let wait = Duration::from_millis(settings.server.commit_wait_ms);
            let failing = handle.gauges.store_failing.clone();
            let committer = Committer::start(store, wait, failing)?;
            actor = actor.with_store(committer, clock);
        }
        if let Some(telemetry) = &settings.telemetry {
            actor = actor.with_telemetry(telemetry, settings.relay.jobs_max)?;
        }
        let actor_task = tokio::spawn(actor.run());
        let mut policy = HttpPolicy::from_settings(settings);
        let replication = match replication {
            Some(r) => Some(r.start(&handle)?),
            None => None,
        };
        policy.claims = replication.as_ref().map(|r| r.claims.clone());
        if settings.server.log_payloads {
            super::payload_log::enable();
        }
        let options = ServeOptions {
            limits: settings.server.limits.clone(),
            body_bytes_max: Some(settings.server.body_bytes_max),
            stats: Arc::new(ListenerStats::default()),
        };
        let app = router(handle.clone(), policy, options.stats.clone());
        let listener = super::listener::bind(settings.server.listen).await?;
        let addr = listener.local_addr()?;
        let serving = super::listener::serve_with(listener, app, &options);
        Ok(RelayServer {
            addr,
            relay: handle,
            drain_deadline: settings.server.drain_deadline(),
            http_stop: Some(serving.stop),
            http_task: serving.task,
            http_stats: serving.stats,
            actor_task,
            _replication: replication,
        })
    }

    /// `http://addr`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn relay(&self) -> &RelayHandle {
        &self.relay
    }

    /// What the connection limits have done so far.
    pub fn listener_stats(&self) -> ListenerSnapshot {
        self.http_stats.snapshot()
    }

    /// Resolves only if the relay's task ends without being told to (a
    /// broken invariant panics it): the server then answers 503 to
    /// everything and should stop. Do not call [`RelayServer::shutdown`] after.
    pub async fn relay_failed(&mut self) -> String {
        match (&mut self.actor_task).await {
            Ok(_) => "the relay's task ended".to_owned(),
            Err(e) => format!("the relay's task failed: {e}"),
        }
    }

    /// Drains (up to the deadline), stops, and reports what was left;
    /// returns at most [`HTTP_CLOSE_GRACE`] plus [`STOP_MAX`] after the deadline.
    pub async fn shutdown(mut self) -> DrainReport {
        let started = super::clock::read_monotonic();
        let relay = self.relay.clone();
        let drain = async move {
            let _ = relay.drain().await;
            relay.idle().await;
        };
        let drained = tokio::time::timeout(self.drain_deadline, drain)
            .await
            .is_ok();
        let waited = started.elapsed();
        // Past the deadline the relay stops first: no call starts after it.
        let stopped_early = if drained {
            None
        } else {
            Some(self.stop_relay().await)
        };
        let budget = self
            .drain_deadline
            .saturating_sub(started.elapsed())
            .max(HTTP_CLOSE_GRACE);
        self.close_http(budget).await;
        let left = match stopped_early {
            Some(left) => left,
            None => self.stop_relay().await,
        };
        // The task exports its last spans as it ends (at once without telemetry).
        let flush_max = super::actor::TELEMETRY_FLUSH_MAX + STOP_MAX;
        let _ = tokio::time::timeout(flush_max, &mut self.actor_task).await;
        DrainReport {
            drained,
            waited,
            left,
        }
    }

    /// Stops accepting, closes connections gracefully, and drops those
    /// still open after `budget`.
    async fn close_http(&mut self, budget: Duration) {
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(budget, &mut self.http_task)
            .await
            .is_err()
        {
            let open = self.http_stats.snapshot().open;
            tracing::warn!(
                open,
                "HTTP connections still open at the drain deadline: closing them"
            );
            self.http_task.abort();
        }
        // The totals, since each limit logs at most once per interval.
        let acted = self.http_stats.snapshot();
        tracing::info!(?acted, "HTTP closed");
    }

    /// Ends the relay's task and takes what it left; if it cannot answer
    /// within [`STOP_MAX`] (inbox full, or gone), it is aborted and the
    /// leftovers are unknown (reported as none, and the drain as failed).
    async fn stop_relay(&mut self) -> Leftovers {
        let ask = async {
            loop {
                match self.relay.ask(|reply| Command::Stop { reply }).await {
                    Ok(left) => return Some(left),
                    Err(Unavailable::Full) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(_) => return (&mut self.actor_task).await.ok(),
                }
            }
        };
        match tokio::time::timeout(STOP_MAX, ask).await {
            Ok(Some(left)) => left,
            _ => {
                tracing::error!("the relay's task did not stop in time: its leftovers are unknown");
                self.actor_task.abort();
                Leftovers::default()
            }
        }
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        self.http_task.abort();
        self.actor_task.abort();
    }
}

/// A loaded store, ready to be handed to its thread.
pub struct OpenedStore {
    pub store: Box<dyn Store>,
    pub loaded: Loaded,
    /// Relay time now: since the store's epoch, and never before a time it holds.
    pub now: Time,
    /// PostgreSQL: the replication to start beside the relay.
    pub replication: Option<PgReplication>,
}

/// Opens and loads the store `spec` names, and takes its job-handle key.
pub fn open_store(spec: &StoreSpec, settings: &Settings) -> anyhow::Result<OpenedStore> {
    let ttl = crate::time::ms_to_duration(settings.relay.idempotency.ttl_ms);
    let mut replication = None;
    let mut store: Box<dyn Store> = match spec {
        StoreSpec::Memory => Box::new(MemoryStore),
        StoreSpec::Sqlite(path) => {
            let routes = RouteNames::of(&settings.relay);
            Box::new(SqliteStore::new(
                path,
                settings.server.store_sync,
                ttl,
                routes,
            ))
        }
        StoreSpec::Postgres(url) => {
            let options = PgOptions::from_settings(url, settings);
            let pg = PgStore::open(options.clone())?;
            replication = Some((options, pg.shared()));
            Box::new(pg)
        }
    };
    let now_unix_ms = unix_now_ms();
    let loaded = store.load(now_unix_ms)?;
    super::job_handle::use_key(&loaded.handle_key);
    let since_epoch = Time::from_millis(now_unix_ms.saturating_sub(loaded.epoch_unix_ms));
    let now = since_epoch.max(latest_time(&loaded.stored));
    let replication = replication.map(|(options, shared)| PgReplication {
        options,
        shared,
        epoch_unix_ms: loaded.epoch_unix_ms,
    });
    Ok(OpenedStore {
        store,
        loaded,
        now,
        replication,
    })
}

/// A PostgreSQL store's replication, to start beside the relay.
pub struct PgReplication {
    options: PgOptions,
    shared: Arc<Shared>,
    epoch_unix_ms: u64,
}

impl PgReplication {
    /// Starts the lease keeper and reaper, feeding adopted jobs to `relay`.
    fn start(self, relay: &RelayHandle) -> anyhow::Result<Replication> {
        let adopt = Box::new(relay.clone());
        let failing = relay.gauges.store_failing.clone();
        Ok(Replication::start(
            &self.options,
            self.shared,
            self.epoch_unix_ms,
            failing,
            adopt,
        )?)
    }
}

/// The lease thread's way into the relay's task.
impl crate::server::store::postgres::replica::LocalRelay for RelayHandle {
    fn adopt_jobs(&mut self, jobs: Vec<crate::relay::StoredJob<Key, Bytes>>) -> Option<Vec<bool>> {
        self.adopt_blocking(jobs)
    }

    fn adopt_letters(
        &mut self,
        letters: Vec<crate::relay::DeadLetter<Key, Bytes>>,
    ) -> Option<Vec<bool>> {
        self.adopt_letters_blocking(letters)
    }

    fn redrive(&mut self, letters: Vec<JobId>) -> Option<()> {
        let report = self.redrive_blocking(letters, Arc::from("asked-by-another-replica"))?;
        tracing::info!(
            redriven = report.redriven,
            not_redriven = report.not_redriven,
            "redrive asked by another replica"
        );
        Some(())
    }
}

/// The latest time a store holds: relay time must not start before it
/// (the wall clock may have been set back between two runs).
fn latest_time(stored: &Stored<Key, Bytes>) -> Time {
    let jobs = stored.jobs.iter().map(|j| j.accepted_at);
    let letters = stored.letters.iter().map(|l| l.dead_at);
    let replays = stored.replays.iter().map(|r| r.finished_at);
    jobs.chain(letters)
        .chain(replays)
        .max()
        .unwrap_or(Time::ZERO)
}

/// Milliseconds since the Unix epoch: the store's epoch is one.
#[allow(clippy::disallowed_methods)] // once at start: where the stored times sit today
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One line: what the relay took back from the store.
fn log_recovered(relay: &ServerRelay, store: &StoreSpec, replays: usize) {
    let stats = relay.stats();
    tracing::info!(
        store = %store,
        jobs = stats.recovered_jobs,
        redelivered = stats.redelivered_jobs,
        letters = relay.dead_letters().len(),
        replays,
        "recovered from the store (redelivered jobs were in flight at the last stop and may run twice)"
    );
}

/// A caller per route: the route's own downstream, or `[downstream]`.
fn callers(settings: &Settings) -> anyhow::Result<Callers> {
    let client = HttpClient::new(settings.server.response_bytes_max);
    let callers = route_names(&settings.relay)
        .iter()
        .map(|name| {
            let downstream = settings
                .routes
                .iter()
                .find(|r| r.name == *name)
                .and_then(|r| r.downstream.as_ref())
                .unwrap_or(&settings.downstream);
            caller(downstream, &client, settings)
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Callers::new(callers))
}

fn caller(
    downstream: &DownstreamConfig,
    client: &HttpClient,
    settings: &Settings,
) -> anyhow::Result<Caller> {
    Ok(match downstream {
        DownstreamConfig::Flaky(fault) => Caller::Flaky(SharedFlaky::start(&fault.into())),
        DownstreamConfig::Url { url } => Caller::Http(HttpCaller {
            client: client.clone(),
            url: url.parse()?,
            call_timeout_max: settings.server.call_timeout_max(),
        }),
    })
}

/// Each route's static fallback answer, as the payload the server answers with.
fn set_static_answers(relay: &mut ServerRelay, settings: &RelaySettings) {
    for (i, route) in settings.routes().iter().enumerate() {
        if let (Some(text), Ok(id)) = (route.static_answer(), u16::try_from(i)) {
            relay.set_static_answer(RouteId(id), Bytes::from(text.to_owned()));
        }
    }
}

/// Logs a shutdown's outcome: a summary, then every job and letter left,
/// by id, key and size; payloads (escaped, one line) only with `--log-payloads`.
pub fn log_report(report: &DrainReport) {
    let left = &report.left;
    tracing::info!(
        drained = report.drained,
        waited_ms = report.waited.as_millis() as u64,
        succeeded = left.succeeded,
        dead_lettered = left.dead_lettered,
        live_jobs_left = left.live.len(),
        dead_letters_left = left.dead_letters.len(),
        "relay stopped"
    );
    for (job, cid, payload) in &left.live {
        tracing::warn!(
            cid = cid.as_deref(),
            job = %job.job,
            state = job.state.name(),
            attempts = job.attempts,
            payload_bytes = payload.len(),
            payload = super::payload_log::field(payload.as_bytes()),
            "unfinished at shutdown"
        );
    }
    for letter in &left.dead_letters {
        let payload = letter.payload.as_ref().map(|p| p.to_string());
        tracing::warn!(
            job = %letter.job,
            key = letter.key.as_deref(),
            reason = letter.reason.name(),
            last_error = letter.last_error.name(),
            attempts = letter.attempts,
            redrives = letter.redrives,
            payload_bytes = letter.payload_bytes,
            payload = payload.as_deref().and_then(|p| super::payload_log::field(p.as_bytes())),
            "dead letter left at shutdown"
        );
    }
}

/// `serve`: runs the relay server until Ctrl-C or SIGTERM, then drains;
/// the outcome is the exit code.
pub fn serve(args: &super::ServeArgs) -> anyhow::Result<Outcome> {
    super::logging::init();
    let settings = args.resolve()?;
    if args.print_config {
        // Secrets serialise as `<redacted>` (config::Secret).
        print!("{}", toml::to_string(&settings)?);
        return Ok(Outcome::Clean);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async move {
        let mut server = RelayServer::start(&settings).await?;
        tracing::info!(
            addr = %server.addr,
            workers = settings.relay.workers,
            queue_capacity = settings.relay.queue.capacity,
            downstream = ?settings.downstream,
            signed = settings.server.hmac_secret.is_some(),
            store = %settings.server.store,
            store_sync = ?settings.server.store_sync,
            "relay listening"
        );
        tokio::select! {
            () = super::shutdown::signal() => {}
            why = server.relay_failed() => {
                tracing::error!(reason = %why, "stopping: the relay can no longer work");
                anyhow::bail!("{why}");
            }
        }
        tracing::info!(
            deadline_ms = settings.server.drain_deadline_ms,
            "stopping: draining accepted work"
        );
        let report = server.shutdown().await;
        log_report(&report);
        let outcome = report.outcome();
        tracing::info!(exit_code = outcome.code(), "exiting");
        Ok(outcome)
    });
    // Calls still in flight are dropped here, not waited for.
    runtime.shutdown_timeout(RUNTIME_STOP_MAX);
    outcome
}
