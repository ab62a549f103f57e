//! A running relay server: start, serve, drain, stop.
//!
//! Stopping is where work gets lost, so it has an order: stop admitting
//! (`/ready` answers 503 and `POST /relay` 503 `draining`, while status and
//! dead-letter look-ups keep working), let accepted work finish up to the
//! drain deadline, close the HTTP side, stop the relay's task, and log
//! everything that was left — live jobs and dead letters, with their
//! correlation ids and payloads — since nothing outlives the process.

use super::actor::{Command, Leftovers, RelayHandle};
use super::calls::{Caller, HttpCaller};
use super::client::HttpClient;
use super::config::{DownstreamConfig, Settings};
use super::flaky::SharedFlaky;
use super::http::{router, HttpPolicy};
use crate::relay::Relay;
use crate::rng::{Domain, Seed};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Time allowed for open HTTP connections to close after draining.
const HTTP_CLOSE_MAX: Duration = Duration::from_secs(5);

pub struct RelayServer {
    pub addr: SocketAddr,
    relay: RelayHandle,
    drain_deadline: Duration,
    http_stop: Option<oneshot::Sender<()>>,
    http_task: JoinHandle<std::io::Result<()>>,
    actor_task: JoinHandle<Leftovers>,
}

/// How a shutdown went.
#[derive(Clone, Debug)]
pub struct DrainReport {
    /// Every accepted job finished before the deadline.
    pub drained: bool,
    pub waited: Duration,
    pub left: Leftovers,
}

impl RelayServer {
    /// Binds `settings.server.listen` and starts serving on the current runtime.
    pub async fn start(settings: &Settings) -> anyhow::Result<RelayServer> {
        let relay = Relay::new(
            &settings.relay.check()?,
            Seed(settings.server.seed).stream(Domain::Relay, 0),
        );
        let (handle, actor) = RelayHandle::new(
            relay,
            caller(settings)?,
            settings.server.commands_max,
            settings.server.results_max,
        );
        let actor_task = tokio::spawn(actor.run());
        let policy = HttpPolicy::from_settings(settings);
        if settings.server.log_payloads {
            super::payload_log::enable();
        }
        let app = router(handle.clone(), policy);
        let listener = super::listener::bind(settings.server.listen).await?;
        let addr = listener.local_addr()?;
        let (http_stop, http_task) = super::listener::serve(listener, app);
        Ok(RelayServer {
            addr,
            relay: handle,
            drain_deadline: settings.server.drain_deadline(),
            http_stop: Some(http_stop),
            http_task,
            actor_task,
        })
    }

    /// `http://addr`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn relay(&self) -> &RelayHandle {
        &self.relay
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

    /// Drains (up to the deadline), stops, and reports what was left.
    pub async fn shutdown(mut self) -> DrainReport {
        let started = super::clock::read_monotonic();
        let _ = self.relay.tell(Command::Drain).await;
        let drained = tokio::time::timeout(self.drain_deadline, self.relay.idle())
            .await
            .is_ok();
        let waited = started.elapsed();
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(HTTP_CLOSE_MAX, &mut self.http_task)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open after {HTTP_CLOSE_MAX:?}: closing them");
            self.http_task.abort();
        }
        let left = match self.relay.ask(|reply| Command::Stop { reply }).await {
            Ok(left) => left,
            Err(_) => (&mut self.actor_task).await.unwrap_or_default(),
        };
        DrainReport {
            drained,
            waited,
            left,
        }
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        self.http_task.abort();
        self.actor_task.abort();
    }
}

fn caller(settings: &Settings) -> anyhow::Result<Caller> {
    Ok(match &settings.downstream {
        DownstreamConfig::Flaky(fault) => Caller::Flaky(SharedFlaky::start(&fault.into())),
        DownstreamConfig::Url { url } => Caller::Http(HttpCaller {
            client: HttpClient::new(settings.server.response_bytes_max),
            url: url.parse()?,
            call_timeout_max: settings.server.call_timeout_max(),
        }),
    })
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

/// `serve`: runs the relay server until Ctrl-C or SIGTERM, then drains.
pub fn serve(args: &super::ServeArgs) -> anyhow::Result<()> {
    super::logging::init();
    let settings = args.resolve()?;
    if args.print_config {
        let mut shown = settings.clone();
        if let Some(secret) = &mut shown.server.hmac_secret {
            secret.0 = "<redacted>".to_owned();
        }
        print!("{}", toml::to_string(&shown)?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut server = RelayServer::start(&settings).await?;
        tracing::info!(
            addr = %server.addr,
            workers = settings.relay.workers,
            queue_capacity = settings.relay.queue.capacity,
            downstream = ?settings.downstream,
            signed = settings.server.hmac_secret.is_some(),
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
        Ok(())
    })
}
