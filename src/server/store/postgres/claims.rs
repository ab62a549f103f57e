//! Idempotency keys unique across replicas: a keyed request first claims
//! its key's row in `relay_keys` (a primary key, so of two replicas
//! claiming at once exactly one inserts); only the winner's relay admits
//! it. A key another replica holds is answered as a relay answers a key it
//! knows: 422 for another payload, 409 while its job runs, the stored
//! answer once it succeeded. A key this replica holds is left to its own
//! relay, which knows it. A claim whose job never came (refused, or its
//! replica died before the commit) is released, or taken over once stale.
//!
//! The same connection answers status look-ups for jobs the local relay
//! does not know ([`Claims::status`]): another replica's, or one adopted
//! here under a new slot, found by serial.
//!
//! Runs on the server's runtime, from the HTTP handlers, on one pipelined
//! connection (reconnected on demand, at most once per backoff), with
//! asynchronous commits: a claim is visible to other replicas at once, and
//! what must survive a crash is written again by the job's own commit.

use super::link::{describe, redact, BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT, STATEMENT_TIMEOUT};
use super::{int, ms, uint};
use crate::relay::{Answer, JobId, JobState, JobStatus, Refusal};
use crate::server::store::StoreError;
use crate::time::Time;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

/// What the claim decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The key is this replica's: let the local relay answer. `fresh`: this
    /// request inserted the claim (release it if the relay refuses).
    Local { fresh: bool },
    /// Another replica holds it: this is the answer.
    Known(Answer<Bytes>),
}

pub struct Claims {
    url: String,
    shown: String,
    pub(super) owner: String,
    /// A claim older than this with no job is stale (its replica died
    /// between the claim and the commit).
    stale_after: Duration,
    /// Relay time 0, as a unix millisecond: replay expiry is in relay time.
    epoch_unix_ms: u64,
    link: Mutex<Conn>,
    connecting: tokio::sync::Mutex<()>,
    /// The server's `store_failing` gauge: a claim that cannot reach the
    /// database makes `/ready` false at once, not at the lease thread's
    /// next tick; the store's thread or the lease thread clears it.
    failing: Arc<AtomicBool>,
}

#[derive(Default)]
struct Conn {
    client: Option<Arc<Client>>,
    next_try: Option<Instant>,
    backoff: Duration,
}

const CLAIM: &str = "
WITH ins AS (
    INSERT INTO relay_keys (key, fingerprint, owner) VALUES ($1, $2, $3)
    ON CONFLICT (key) DO NOTHING RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ins), k.owner, k.fingerprint, k.id, k.response, k.expires_at,
       k.claimed_at < now() - $4 * interval '1 millisecond',
       EXISTS (SELECT 1 FROM relay_jobs j WHERE j.serial = k.serial),
       k.serial IS NULL, k.claimed_at::text
FROM (SELECT 1) AS one LEFT JOIN relay_keys k ON k.key = $1";

const TAKE_OVER: &str = "
UPDATE relay_keys SET owner = $3, fingerprint = $2, serial = NULL, id = NULL, response = NULL,
    finished_at = NULL, expires_at = NULL, claimed_at = now()
WHERE key = $1 AND owner = $4 AND claimed_at::text = $5";

impl Claims {
    pub fn new(
        url: &str,
        owner: &str,
        stale_after: Duration,
        epoch_unix_ms: u64,
        failing: Arc<AtomicBool>,
    ) -> Claims {
        Claims {
            url: url.to_owned(),
            shown: redact(url),
            owner: owner.to_owned(),
            stale_after,
            epoch_unix_ms,
            link: Mutex::new(Conn {
                backoff: BACKOFF_MIN,
                ..Conn::default()
            }),
            connecting: tokio::sync::Mutex::new(()),
            failing,
        }
    }

    /// The URL without its password, for messages.
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> StoreError {
        self.failing.store(true, Ordering::Relaxed);
        StoreError::Unavailable {
            url: self.shown.clone(),
            detail: detail.to_string(),
        }
    }

    fn current(&self) -> Option<Arc<Client>> {
        let conn = self.link.lock().ok()?;
        conn.client.clone().filter(|c| !c.is_closed())
    }

    pub(super) async fn client(&self) -> Result<Arc<Client>, StoreError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let now = crate::server::clock::read_monotonic();
        let next_try = self.link.lock().ok().and_then(|c| c.next_try);
        if next_try.is_some_and(|at| at > now) {
            return Err(self.unavailable("not connected; waiting to reconnect"));
        }
        let made =
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(&self.url, NoTls))
                .await
            {
                Ok(Ok((client, connection))) => {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    // A claim needs to be seen, not to survive a database crash:
                    // the job's own commit (synchronous) writes the key's row
                    // again before its 202. Not waiting for the WAL flush lets
                    // claims go at the speed of the connection, not of the disk.
                    if let Err(e) = client.batch_execute("SET synchronous_commit = off").await {
                        tracing::debug!(error = %e, "claims connection keeps synchronous commits");
                    }
                    Ok(Arc::new(client))
                }
                Ok(Err(e)) => Err(describe(&e)),
                Err(_) => Err("no connection in time".to_owned()),
            };
        let mut conn = self
            .link
            .lock()
            .map_err(|_| self.unavailable("connection state poisoned"))?;
        match made {
            Ok(client) => {
                conn.client = Some(client.clone());
                conn.next_try = None;
                conn.backoff = BACKOFF_MIN;
                Ok(client)
            }
            Err(detail) => {
                conn.client = None;
                conn.next_try = Some(now + conn.backoff);
                conn.backoff = (conn.backoff * 2).min(BACKOFF_MAX);
                Err(self.unavailable(detail))
            }
        }
    }

    pub(super) async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.unavailable(describe(&e))),
            Err(_) => Err(self.unavailable("no answer in time")),
        }
    }

    /// Relay time now, on the shared epoch.
    #[allow(clippy::disallowed_methods)] // wall time: replicas share the epoch, not a clock
    fn now(&self) -> Time {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Time::from_millis(unix_ms.saturating_sub(self.epoch_unix_ms))
    }

    /// Claims `key` for a request with `fingerprint`.
    pub async fn claim(&self, key: &str, fingerprint: u64) -> Result<Claim, StoreError> {
        let now = self.now();
        let client = self.client().await?;
        let stale = ms(self.stale_after);
        let row = self
            .bounded(client.query_one(CLAIM, &[&key, &int(fingerprint), &self.owner, &stale]))
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(Claim::Local { fresh: true });
        }
        let Some(owner) = row.get::<_, Option<String>>(1) else {
            // Removed between the insert and the read: try once more later.
            return Ok(Claim::Known(conflict(None)));
        };
        if owner == self.owner {
            return Ok(Claim::Local { fresh: false });
        }
        let job = row.get::<_, Option<i64>>(3).map(|id| JobId(uint(id)));
        let response = row.get::<_, Option<Vec<u8>>>(4);
        let expired = row
            .get::<_, Option<i64>>(5)
            .is_some_and(|at| uint(at) <= now.as_nanos());
        let stale_claim = row.get::<_, bool>(6);
        let job_live = row.get::<_, bool>(7);
        let no_job = row.get::<_, bool>(8);
        let mismatch = uint(row.get(2)) != fingerprint;
        let take_over = match (&response, no_job) {
            (Some(_), _) => expired,
            (None, true) => stale_claim,
            (None, false) => !job_live,
        };
        if !take_over {
            return Ok(Claim::Known(match (mismatch, response, job) {
                (true, _, _) => Answer::Refused {
                    why: Refusal::Mismatch,
                    retry_after: None,
                    job: None,
                },
                (false, Some(response), Some(job)) => Answer::Replayed {
                    job,
                    response: Bytes::from(response),
                },
                (false, _, job) => conflict(job),
            }));
        }
        let claimed_at: Option<String> = row.get(9);
        let taken = self
            .bounded(client.execute(
                TAKE_OVER,
                &[&key, &int(fingerprint), &self.owner, &owner, &claimed_at],
            ))
            .await?;
        Ok(if taken == 1 {
            Claim::Local { fresh: true }
        } else {
            Claim::Known(conflict(job))
        })
    }

    /// Gives back a claim whose request the local relay did not accept.
    pub async fn release(&self, key: &str) {
        let Ok(client) = self.client().await else {
            return;
        };
        let done = self
            .bounded(client.execute(
                "DELETE FROM relay_keys WHERE key = $1 AND owner = $2 AND serial IS NULL",
                &[&key, &self.owner],
            ))
            .await;
        if let Err(e) = done {
            tracing::debug!(error = %e, "claim not released: it goes stale instead");
        }
    }
}

const STATUS: &str = "
SELECT 'live', j.id, j.attempts, j.accepted_at, NULL::bigint, NULL::bytea
    FROM relay_jobs j WHERE j.serial = $1
UNION ALL
SELECT 'succeeded', k.id, 0, 0, k.finished_at, k.response
    FROM relay_keys k WHERE k.serial = $1 AND k.response IS NOT NULL
UNION ALL
SELECT 'dead', l.id, l.attempts, l.accepted_at, l.dead_at, NULL::bytea
    FROM relay_letters l WHERE l.serial = $1
LIMIT 1";

impl Claims {
    /// What the database knows of `job` (by serial): a live job (queued,
    /// as far as a look-up from afar can tell), a keyed success with its
    /// answer, or a dead letter. `None` when it holds nothing of it.
    pub async fn status(&self, job: JobId) -> Result<Option<JobStatus<Bytes>>, StoreError> {
        let client = self.client().await?;
        let serial = i64::from(job.serial());
        let rows = self.bounded(client.query(STATUS, &[&serial])).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let stored = JobId(uint(row.get(1)));
        // The handle named this id: a job under another id is not it.
        if stored.serial() != job.serial() {
            return Ok(None);
        }
        let kind: &str = row.get(0);
        let at = |i: usize| {
            row.get::<_, Option<i64>>(i)
                .map(|v| Time::from_nanos(uint(v)))
        };
        Ok(Some(JobStatus {
            job: stored,
            state: match kind {
                "live" => JobState::Queued,
                "succeeded" => JobState::Succeeded,
                _ => JobState::DeadLettered,
            },
            attempts: u32::try_from(row.get::<_, i32>(2)).unwrap_or(0),
            accepted_at: at(3).unwrap_or(Time::ZERO),
            finished_at: at(4),
            last_error: None,
            response: row.get::<_, Option<Vec<u8>>>(5).map(Bytes::from),
            late_success: None,
            redelivered: false,
        }))
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("url", &self.shown)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn conflict(job: Option<JobId>) -> Answer<Bytes> {
    Answer::Refused {
        why: Refusal::Conflict,
        retry_after: Some(Duration::from_secs(1)),
        job,
    }
}
