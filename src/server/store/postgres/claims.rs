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

use super::link::{
    describe, redact, BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT, SESSION, STATEMENT_TIMEOUT,
};
use super::{int, ms, uint};
use crate::relay::{Answer, JobId, JobState, JobStatus, Refusal};
use crate::server::store::{RouteNames, StoreError};
use crate::time::Time;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls, Statement};

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
    /// Claims waiting for the batcher ([`batches`]).
    asks: mpsc::Sender<Ask>,
    /// This replica's routes, for what other replicas' rows name.
    pub(super) routes: RouteNames,
}

#[derive(Default)]
struct Conn {
    client: Option<Arc<Client>>,
    next_try: Option<Instant>,
    backoff: Duration,
}

/// Claims a batch of distinct keys, sorted (two replicas inserting
/// overlapping batches in one order cannot deadlock), in one statement: a
/// row per key, in the batch's order, with whether this statement inserted
/// it and, if not, the row that holds it.
const CLAIM_MANY: &str = "
WITH asked AS (
    SELECT * FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS a(key, fingerprint, n)
), ins AS (
    INSERT INTO relay_keys (key, fingerprint, owner)
    SELECT key, fingerprint, $3 FROM asked ORDER BY n
    ON CONFLICT (key) DO NOTHING RETURNING key
)
SELECT a.key IN (SELECT key FROM ins), k.owner, k.fingerprint, k.id, k.response, k.expires_at,
       k.claimed_at < now() - $4 * interval '1 millisecond',
       EXISTS (SELECT 1 FROM relay_jobs j WHERE j.serial = k.serial),
       k.serial IS NULL, k.claimed_at::text
FROM asked a LEFT JOIN relay_keys k ON k.key = a.key
ORDER BY a.n";

const TAKE_OVER: &str = "
UPDATE relay_keys SET owner = $3, fingerprint = $2, serial = NULL, id = NULL, response = NULL,
    finished_at = NULL, expires_at = NULL, claimed_at = now()
WHERE key = $1 AND owner = $4 AND claimed_at::text = $5";

impl Claims {
    /// Starts the claims' batcher on the current runtime.
    pub fn start(
        url: &str,
        owner: &str,
        stale_after: Duration,
        epoch_unix_ms: u64,
        failing: Arc<AtomicBool>,
        routes: RouteNames,
    ) -> Result<Arc<Claims>, StoreError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| StoreError::Unavailable {
                url: redact(url),
                detail: "key claims need the server's runtime".to_owned(),
            })?;
        let (asks, waiting) = mpsc::channel(ASKS_MAX);
        let claims = Arc::new(Claims {
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
            asks,
            routes,
        });
        runtime.spawn(batches(Arc::downgrade(&claims), waiting));
        Ok(claims)
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
                    let set = format!("{SESSION}; SET synchronous_commit = off");
                    match client.batch_execute(&set).await {
                        Ok(()) => Ok(Arc::new(client)),
                        Err(e) => Err(describe(&e)),
                    }
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
    fn now(&self) -> Time {
        super::relay_now(self.epoch_unix_ms)
    }

    /// Claims `key` for a request with `fingerprint`. Claims made while
    /// a batch is out join the next one: one statement (one round trip, one
    /// transaction) for every claim waiting, as group commit does for jobs.
    pub async fn claim(&self, key: &str, fingerprint: u64) -> Result<Claim, StoreError> {
        let (reply, mut answer) = oneshot::channel();
        let ask = Ask {
            key: key.to_owned(),
            fingerprint,
            reply,
        };
        let asked = async {
            self.asks.send(ask).await.ok()?;
            (&mut answer).await.ok()
        };
        // The batch ahead of this one, then this one.
        let outcome = tokio::time::timeout(STATEMENT_TIMEOUT * 2, asked).await;
        match outcome {
            Ok(Some(result)) => result,
            Ok(None) => Err(self.unavailable("the claims batcher has stopped")),
            Err(_) => {
                // An answer that came as the wait ended is this request's
                // to give back; one that comes later finds the channel
                // closed and is given back by the batcher.
                answer.close();
                if let Ok(Ok(Claim::Local { fresh: true })) = answer.try_recv() {
                    self.release(key).await;
                }
                Err(self.unavailable("no answer in time"))
            }
        }
    }

    /// Answers one batch of claims. A fresh claim whose request is gone
    /// (its client hung up, or its wait ended) passes to the next ask for
    /// the same key in the batch, which this replica admits on the strength
    /// of that row; with none left the key is given back now, rather than
    /// left to go stale.
    async fn settle(&self, asks: Vec<Ask>, prepared: &mut Option<(Arc<Client>, Statement)>) {
        let answers = self.decide(&asks, prepared).await;
        for key in deliver(asks, answers) {
            self.release(&key).await;
        }
    }

    /// One answer per ask, in order. A key asked twice in a batch is
    /// claimed once: the first ask decides, and a later one is this
    /// replica's (not fresh) if the first won it.
    async fn decide(
        &self,
        asks: &[Ask],
        prepared: &mut Option<(Arc<Client>, Statement)>,
    ) -> Vec<Result<Claim, StoreError>> {
        let mut firsts: BTreeMap<&str, u64> = BTreeMap::new();
        for ask in asks {
            firsts.entry(ask.key.as_str()).or_insert(ask.fingerprint);
        }
        // Sorted: the map's order.
        let keys: Vec<&str> = firsts.keys().copied().collect();
        let fingerprints: Vec<i64> = keys.iter().map(|k| int(firsts[k])).collect();
        let held = match self.held(&keys, &fingerprints, prepared).await {
            Ok(held) => held,
            Err(e) => {
                // Each ask gets the error, not wrapped in itself again.
                let detail = match e {
                    StoreError::Unavailable { detail, .. } => detail,
                    other => other.to_string(),
                };
                return asks
                    .iter()
                    .map(|_| Err(self.unavailable(&detail)))
                    .collect();
            }
        };
        let held: BTreeMap<&str, Held> = keys.into_iter().zip(held).collect();
        let now = self.now();
        let mut decided: BTreeMap<&str, Claim> = BTreeMap::new();
        let mut answers = Vec::with_capacity(asks.len());
        for ask in asks {
            let key = ask.key.as_str();
            let Some(row) = held.get(key) else {
                answers.push(Ok(Claim::Known(conflict(None))));
                continue;
            };
            let answer = match (
                decided.get(key),
                row.verdict(&self.owner, ask.fingerprint, now),
            ) {
                (Some(Claim::Local { .. }), _) => Ok(Claim::Local { fresh: false }),
                (Some(_), Verdict::Claim(c)) => Ok(c),
                (Some(_), Verdict::TakeOver) => Ok(Claim::Known(conflict(row.job))),
                (None, Verdict::Claim(c)) => Ok(c),
                (None, Verdict::TakeOver) => self.take_over(key, ask.fingerprint, row).await,
            };
            if let Ok(claim) = &answer {
                decided.entry(key).or_insert_with(|| claim.clone());
            }
            answers.push(answer);
        }
        answers
    }

    /// The rows of `keys` (distinct, sorted) after inserting each one that
    /// no row holds yet.
    async fn held(
        &self,
        keys: &[&str],
        fingerprints: &[i64],
        prepared: &mut Option<(Arc<Client>, Statement)>,
    ) -> Result<Vec<Held>, StoreError> {
        let client = self.client().await?;
        let statement = match prepared {
            Some((on, statement)) if Arc::ptr_eq(on, &client) => statement.clone(),
            _ => {
                let statement = self.bounded(client.prepare(CLAIM_MANY)).await?;
                *prepared = Some((client.clone(), statement.clone()));
                statement
            }
        };
        let stale = ms(self.stale_after);
        let rows = self
            .bounded(client.query(&statement, &[&keys, &fingerprints, &self.owner, &stale]))
            .await?;
        if rows.len() != keys.len() {
            return Err(self.unavailable(format!(
                "a claim of {} keys answered {} rows",
                keys.len(),
                rows.len()
            )));
        }
        Ok(rows.iter().map(Held::of).collect())
    }

    /// Takes over a key whose holder is gone (a stale claim, a lost job, an
    /// expired answer), unless another replica took it first.
    async fn take_over(
        &self,
        key: &str,
        fingerprint: u64,
        row: &Held,
    ) -> Result<Claim, StoreError> {
        let client = self.client().await?;
        let taken = self
            .bounded(client.execute(
                TAKE_OVER,
                &[
                    &key,
                    &int(fingerprint),
                    &self.owner,
                    &row.owner,
                    &row.claimed_at,
                ],
            ))
            .await?;
        Ok(if taken == 1 {
            Claim::Local { fresh: true }
        } else {
            Claim::Known(conflict(row.job))
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

/// At most this many claims wait for a batch (a claim beyond waits to
/// join the queue), and at most this many go in one statement.
const ASKS_MAX: usize = 1024;
const BATCH_MAX: usize = 256;

/// A claim waiting for its batch.
struct Ask {
    key: String,
    fingerprint: u64,
    reply: oneshot::Sender<Result<Claim, StoreError>>,
}

/// Runs the batches, one at a time, until the [`Claims`] are dropped (its
/// sender with them). It holds them weakly, or they would never drop.
async fn batches(claims: Weak<Claims>, mut asks: mpsc::Receiver<Ask>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    // The claim statement, prepared once per connection.
    let mut prepared = None;
    while asks.recv_many(&mut batch, BATCH_MAX).await > 0 {
        let Some(claims) = claims.upgrade() else {
            return;
        };
        claims
            .settle(std::mem::take(&mut batch), &mut prepared)
            .await;
    }
}

/// Sends each ask its answer; a fresh claim whose request is gone passes
/// to the next ask for its key that this replica admits. Returns the keys
/// whose fresh claim no request took, to be given back.
fn deliver(asks: Vec<Ask>, answers: Vec<Result<Claim, StoreError>>) -> BTreeSet<String> {
    let mut orphaned = BTreeSet::new();
    for (ask, mut answer) in asks.into_iter().zip(answers) {
        if matches!(answer, Ok(Claim::Local { fresh: false })) && orphaned.remove(&ask.key) {
            answer = Ok(Claim::Local { fresh: true });
        }
        if let Err(Ok(Claim::Local { fresh: true })) = ask.reply.send(answer) {
            orphaned.insert(ask.key);
        }
    }
    orphaned
}

/// The row that holds a key, as a claim reads it (the columns of
/// [`CLAIM_MANY`]).
#[derive(Clone, Debug, Default, PartialEq)]
struct Held {
    /// This claim inserted it.
    inserted: bool,
    /// `None` with `inserted` false: the row went between insert and read.
    owner: Option<String>,
    fingerprint: u64,
    job: Option<JobId>,
    response: Option<Vec<u8>>,
    /// The replay's expiry, in relay nanoseconds.
    expires_at: Option<u64>,
    stale_claim: bool,
    job_live: bool,
    no_job: bool,
    claimed_at: Option<String>,
}

/// What a claim decides from the row alone.
#[derive(Debug, PartialEq)]
enum Verdict {
    Claim(Claim),
    /// The holder is gone: take the key over, if no one else does first.
    TakeOver,
}

impl Held {
    fn of(row: &tokio_postgres::Row) -> Held {
        Held {
            inserted: row.get(0),
            owner: row.get(1),
            fingerprint: row.get::<_, Option<i64>>(2).map_or(0, uint),
            job: row.get::<_, Option<i64>>(3).map(|id| JobId(uint(id))),
            response: row.get(4),
            expires_at: row.get::<_, Option<i64>>(5).map(uint),
            stale_claim: row.get::<_, Option<bool>>(6).unwrap_or(false),
            job_live: row.get(7),
            no_job: row.get::<_, Option<bool>>(8).unwrap_or(false),
            claimed_at: row.get(9),
        }
    }

    /// A key another replica holds is answered as a relay answers a key it
    /// knows; one whose holder is gone is taken over.
    fn verdict(&self, me: &str, fingerprint: u64, now: Time) -> Verdict {
        if self.inserted {
            return Verdict::Claim(Claim::Local { fresh: true });
        }
        let Some(owner) = &self.owner else {
            // Removed between the insert and the read: try once more later.
            return Verdict::Claim(Claim::Known(conflict(None)));
        };
        if owner == me {
            return Verdict::Claim(Claim::Local { fresh: false });
        }
        let expired = self.expires_at.is_some_and(|at| at <= now.as_nanos());
        let take_over = match (&self.response, self.no_job) {
            (Some(_), _) => expired,
            (None, true) => self.stale_claim,
            (None, false) => !self.job_live,
        };
        if take_over {
            return Verdict::TakeOver;
        }
        Verdict::Claim(Claim::Known(
            match (self.fingerprint != fingerprint, &self.response, self.job) {
                (true, _, _) => Answer::Refused {
                    why: Refusal::Mismatch,
                    retry_after: None,
                    job: None,
                },
                (false, Some(response), Some(job)) => Answer::Replayed {
                    job,
                    response: Bytes::from(response.clone()),
                },
                (false, _, job) => conflict(job),
            },
        ))
    }
}

const STATUS: &str = "
SELECT 'live', j.id, j.attempts, j.accepted_at, NULL::bigint, NULL::bytea, j.route
    FROM relay_jobs j WHERE j.serial = $1
UNION ALL
SELECT 'succeeded', k.id, 0, 0, k.finished_at, k.response, k.route
    FROM relay_keys k WHERE k.serial = $1 AND k.response IS NOT NULL
UNION ALL
SELECT 'dead', l.id, l.attempts, l.accepted_at, l.dead_at, NULL::bytea, l.route
    FROM relay_letters l WHERE l.serial = $1
LIMIT 1";

/// A job as the shared database tells it.
#[derive(Clone, Debug)]
pub struct SharedStatus {
    /// Its `route` is this replica's id for the job's route, the default
    /// route's for a route this replica does not have: `route` names it.
    pub status: JobStatus<Bytes>,
    /// The route's name, which this replica may not have.
    pub route: String,
}

impl Claims {
    /// What the database knows of `job` (by serial): a live job (queued,
    /// as far as a look-up from afar can tell), a keyed success with its
    /// answer, or a dead letter. `None` when it holds nothing of it.
    pub async fn status(&self, job: JobId) -> Result<Option<SharedStatus>, StoreError> {
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
        let route: &str = row.get(6);
        let status = JobStatus {
            job: stored,
            route: self
                .routes
                .resolve(route)
                .unwrap_or(crate::relay::RouteId::DEFAULT),
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
            fallback: None,
        };
        Ok(Some(SharedStatus {
            status,
            route: self.routes.shown(route).to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(owner: &str) -> Held {
        Held {
            owner: Some(owner.to_owned()),
            fingerprint: 7,
            job: Some(JobId(3)),
            job_live: true,
            ..Held::default()
        }
    }

    fn known(v: Verdict) -> Answer<Bytes> {
        match v {
            Verdict::Claim(Claim::Known(a)) => a,
            other => panic!("expected a known answer, got {other:?}"),
        }
    }

    fn ask(key: &str) -> (Ask, oneshot::Receiver<Result<Claim, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let key = key.to_owned();
        (
            Ask {
                key,
                fingerprint: 7,
                reply,
            },
            answer,
        )
    }

    #[test]
    fn a_fresh_claim_whose_request_is_gone_passes_to_the_next_ask_for_its_key() {
        let (gone, hung_up) = ask("k");
        let (next, mut waiting) = ask("k");
        let (alone, alone_hung_up) = ask("j");
        drop((hung_up, alone_hung_up));
        let fresh = || Ok(Claim::Local { fresh: true });
        let answers = vec![fresh(), Ok(Claim::Local { fresh: false }), fresh()];
        let released = deliver(vec![gone, next, alone], answers);
        // The second request for `k` goes on to the relay: it must own the
        // claim (and give it back if the relay refuses), or a release would
        // delete the row it stands on.
        assert!(matches!(
            waiting.try_recv(),
            Ok(Ok(Claim::Local { fresh: true }))
        ));
        assert_eq!(released, BTreeSet::from(["j".to_owned()]));
    }

    #[test]
    fn an_inserted_key_is_fresh_and_an_own_key_is_left_to_the_relay() {
        let inserted = Held {
            inserted: true,
            ..Held::default()
        };
        let now = Time::ZERO;
        assert_eq!(
            inserted.verdict("me", 1, now),
            Verdict::Claim(Claim::Local { fresh: true })
        );
        assert_eq!(
            held_by("me").verdict("me", 99, now),
            Verdict::Claim(Claim::Local { fresh: false })
        );
    }

    #[test]
    fn another_replicas_key_answers_as_a_relay_would() {
        let now = Time::from_millis(10);
        let running = held_by("other");
        assert!(matches!(
            known(running.verdict("me", 7, now)),
            Answer::Refused {
                why: Refusal::Conflict,
                job: Some(JobId(3)),
                ..
            }
        ));
        assert!(matches!(
            known(running.verdict("me", 8, now)),
            Answer::Refused {
                why: Refusal::Mismatch,
                ..
            }
        ));
        let done = Held {
            response: Some(b"ok".to_vec()),
            expires_at: Some(Time::from_millis(20).as_nanos()),
            job_live: false,
            ..held_by("other")
        };
        assert_eq!(
            known(done.verdict("me", 7, now)),
            Answer::Replayed {
                job: JobId(3),
                response: Bytes::from_static(b"ok")
            }
        );
        assert_eq!(
            done.verdict("me", 7, Time::from_millis(20)),
            Verdict::TakeOver
        );
    }

    #[test]
    fn a_key_whose_holder_is_gone_is_taken_over() {
        let now = Time::ZERO;
        let lost_job = Held {
            job_live: false,
            ..held_by("dead")
        };
        assert_eq!(lost_job.verdict("me", 7, now), Verdict::TakeOver);
        let stale_claim = Held {
            no_job: true,
            stale_claim: true,
            job_live: false,
            job: None,
            ..held_by("dead")
        };
        assert_eq!(stale_claim.verdict("me", 7, now), Verdict::TakeOver);
        let young_claim = Held {
            stale_claim: false,
            ..stale_claim
        };
        assert!(matches!(
            known(young_claim.verdict("me", 7, now)),
            Answer::Refused {
                why: Refusal::Conflict,
                job: None,
                ..
            }
        ));
    }
}
