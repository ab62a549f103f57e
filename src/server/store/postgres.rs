//! The PostgreSQL store: several `serve` replicas share one database.
//!
//! Each replica keeps its relay in memory, as with any store, and makes the
//! relay's records durable here before it answers. What makes replicas
//! work together is in the rows ([`schema`]):
//!
//! - a job is run by one replica at a time: its row names an `owner` and a
//!   `lease_until` that the owner renews ([`replica`]) while it lives
//!   (a visibility timeout, as SQS and BullMQ keep one);
//! - a replica that stops renewing loses its jobs when their leases
//!   expire: any other takes them with `SELECT … FOR UPDATE SKIP LOCKED`
//!   (as River, Oban and graphile-worker do) and feeds them to its relay
//!   with `Relay::adopt`, at load and from its reaper;
//! - an idempotency key is unique across replicas: a row in `relay_keys`
//!   claimed before the local relay admits the request ([`claims`]);
//! - job serials come from per-replica blocks of a sequence, so ids never
//!   repeat across replicas or restarts;
//! - a job or letter names its route (by name, [`RouteNames`]): a replica
//!   takes only those of routes it has, and leaves the others for a
//!   replica that has them.

pub mod claims;
pub mod letters;
pub mod link;
pub mod replica;
pub mod schema;

use super::{Loaded, RouteNames, Store, StoreError};
use crate::relay::{
    CallError, DeadLetter, GiveUp, JobId, LateSuccess, Outcome, Record, RouteId, Stored, StoredJob,
    StoredReplay,
};
use crate::server::actor::Key;
use crate::time::Time;
use bytes::Bytes;
use claims::Claims;
use link::{Link, Session};
use replica::Replica;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

/// How a replica uses the shared database.
#[derive(Clone, Debug)]
pub struct PgOptions {
    pub url: String,
    /// This process's name in `owner` columns: unique per run.
    pub owner: String,
    /// How long a job stays this replica's without a renewal.
    pub lease: Duration,
    /// How long a succeeded key replays (the relay's idempotency TTL).
    pub replay_ttl: Duration,
    /// What the relay can take at load: `jobs_max`, the queue's capacity
    /// (jobs never called wait there), the dead-letter queue's capacity.
    pub jobs_max: usize,
    pub queue_capacity: usize,
    pub letters_max: usize,
    /// At most this many replay records are loaded (`keys_max`).
    pub replays_max: usize,
    /// This replica's routes: it takes jobs and letters of these only.
    pub routes: RouteNames,
}

/// What the store thread and the replica's lease thread share.
#[derive(Debug, Default)]
pub struct Shared {
    /// The block this replica's new serials come from.
    pub block: AtomicU64,
    /// The block was taken by another replica (this one's leases lapsed,
    /// as in a long outage): new work is refused until a restart.
    pub fenced: AtomicBool,
    /// Relay time 0 as a unix millisecond, once loaded: replay expiry is
    /// in relay time.
    pub epoch_unix_ms: AtomicU64,
}

impl PgOptions {
    /// The options of a `serve` on `url`, from its settings.
    pub fn from_settings(url: &str, settings: &crate::server::Settings) -> PgOptions {
        let relay = &settings.relay;
        PgOptions {
            url: url.to_owned(),
            owner: new_owner(),
            lease: Duration::from_millis(settings.server.store_lease_ms),
            replay_ttl: crate::time::ms_to_duration(relay.idempotency.ttl_ms),
            jobs_max: relay.jobs_max,
            queue_capacity: relay.queue.capacity,
            letters_max: relay.dlq.capacity,
            replays_max: relay.idempotency.keys_max,
            routes: RouteNames::of(relay),
        }
    }
}

/// What a server on PostgreSQL runs beside its relay: the lease keeper and
/// reaper, and the key claims and look-ups its handlers use.
pub struct Replication {
    pub claims: Arc<Claims>,
    _replica: Replica,
}

impl Replication {
    /// Starts the lease thread; `store_failing` (the gauge behind `/ready`)
    /// follows whether the database answers, even with no traffic.
    pub fn start(
        options: &PgOptions,
        shared: Arc<Shared>,
        epoch_unix_ms: u64,
        store_failing: Arc<AtomicBool>,
        adopt: replica::Adopt,
    ) -> Result<Replication, StoreError> {
        let claims = Claims::start(
            &options.url,
            &options.owner,
            options.lease,
            epoch_unix_ms,
            store_failing.clone(),
            options.routes.clone(),
        )?;
        let replica = Replica::start(options.clone(), shared, store_failing, adopt)?;
        Ok(Replication {
            claims,
            _replica: replica,
        })
    }
}

/// A fresh owner name: the process id and 64 random bits, so that a
/// restarted replica never mistakes an earlier run's leases for its own.
pub fn new_owner() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    format!("{}-{}", std::process::id(), hex::encode(bytes))
}

pub struct PgStore {
    options: PgOptions,
    link: Link,
    shared: Arc<Shared>,
    epoch_unix_ms: u64,
}

/// Relay times and ids are unsigned; PostgreSQL's integers are signed: the
/// bits are kept as they are.
fn int(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn uint(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

fn int32(v: u32) -> i32 {
    i32::from_ne_bytes(v.to_ne_bytes())
}

fn uint32(v: i32) -> u32 {
    u32::from_ne_bytes(v.to_ne_bytes())
}

fn time(v: i64) -> Time {
    Time::from_nanos(uint(v))
}

fn nanos(t: Time) -> i64 {
    int(t.as_nanos())
}

/// Relay time now on the shared epoch.
#[allow(clippy::disallowed_methods)] // wall time: replicas share the epoch, not a clock
pub(crate) fn relay_now(epoch_unix_ms: u64) -> Time {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Time::from_millis(unix_ms.saturating_sub(epoch_unix_ms))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl PgStore {
    pub fn open(options: PgOptions) -> Result<PgStore, StoreError> {
        let link = Link::new(&options.url)?;
        Ok(PgStore {
            options,
            link,
            shared: Arc::new(Shared::default()),
            epoch_unix_ms: 0,
        })
    }

    /// What the replica's lease thread shares with this store.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The store's epoch, once loaded.
    pub fn epoch_unix_ms(&self) -> u64 {
        self.epoch_unix_ms
    }

    fn corrupt(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.link.shown().into(),
            detail: detail.to_string(),
        }
    }

    /// Creates the tables if need be and reads (or writes) the one meta row.
    fn meta(&mut self, now_unix_ms: u64) -> Result<(i32, u64, Vec<u8>), StoreError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| self.link.unavailable(e))?;
        let row = self.link.run(async move |c: &mut Client| {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::CREATE_LOCK])
                .await?;
            // A start that cannot get a table's lock fails with a message,
            // rather than queue the other replicas' statements behind it.
            tx.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
            tx.batch_execute(schema::CREATE).await?;
            tx.execute(
                "INSERT INTO relay_meta (id, version, epoch_unix_ms, handle_key)
                 VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
                &[&schema::VERSION, &int(now_unix_ms), &&key[..]],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT version, epoch_unix_ms, handle_key FROM relay_meta WHERE id = 1",
                    &[],
                )
                .await?;
            let found: i32 = row.get(0);
            if found < 2 {
                tx.batch_execute(schema::UPGRADE_TO_2).await?;
            }
            tx.commit().await?;
            Ok(row)
        })?;
        let found: i32 = row.get(0);
        let epoch: i64 = row.get(1);
        let handle_key: Vec<u8> = row.get(2);
        if found < schema::VERSION {
            tracing::info!(
                store = self.link.shown(),
                from = found,
                to = schema::VERSION,
                "PostgreSQL store schema upgraded"
            );
        }
        Ok((found.max(schema::VERSION), uint(epoch), handle_key))
    }

    /// Takes a new block of serials from the sequence and leases it.
    fn take_block(&mut self) -> Result<u64, StoreError> {
        let owner = self.options.owner.clone();
        let lease = ms(self.options.lease);
        let block: i64 = self
            .link
            .run(async move |c: &mut Client| {
                let tx = c.transaction().await?;
                let row = tx
                    .query_one("SELECT nextval('relay_serial_blocks')", &[])
                    .await?;
                let block: i64 = row.get(0);
                tx.execute(
                    "INSERT INTO relay_blocks (block, owner, lease_until)
                     VALUES ($1, $2, now() + $3 * interval '1 millisecond')",
                    &[&block, &owner, &lease],
                )
                .await?;
                tx.commit().await?;
                Ok(block)
            })
            .map_err(|e| match e {
                StoreError::Unavailable { url, detail } if detail.contains("maximum value") => {
                    StoreError::Corrupt {
                        path: url.into(),
                        detail: "every block of job serials is used: the job ids of this \
                                 database are exhausted; start a new database"
                            .to_owned(),
                    }
                }
                other => other,
            })?;
        u64::try_from(block).map_err(|_| self.corrupt("a negative serial block"))
    }

    /// Takes the jobs no live replica holds, of this replica's routes, as
    /// many as the relay can restore in their old slots, leasing them to
    /// this replica; returns them in acceptance order. The rest (a slot
    /// taken twice, beyond the relay's bounds, a route's queue full) stay
    /// expired, for a reaper to adopt into new slots; those of other
    /// routes, for a replica that has them.
    fn take_jobs(&mut self) -> Result<Vec<StoredJob<Key, Bytes>>, StoreError> {
        let owner = self.options.owner.clone();
        let lease = ms(self.options.lease);
        let (jobs_max, queue_capacity) = (self.options.jobs_max, self.options.queue_capacity);
        let limit = int(jobs_max as u64);
        let routes = self.options.routes.clone();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM relay_jobs j
             WHERE (j.owner IS NULL OR j.lease_until IS NULL OR j.lease_until < now())
               AND j.route = ANY($2)
             ORDER BY j.serial LIMIT $1 FOR UPDATE SKIP LOCKED"
        );
        self.link.run(async move |c: &mut Client| {
            let tx = c.transaction().await?;
            let rows = tx.query(&sql, &[&limit, &routes.stored()]).await?;
            let mut jobs: Vec<StoredJob<Key, Bytes>> =
                rows.iter().filter_map(|r| job_of(r, &routes)).collect();
            jobs.sort_by_key(|j| (j.accepted_at, j.job.serial()));
            let jobs = restorable(jobs, jobs_max, queue_capacity);
            let serials: Vec<i64> = jobs.iter().map(|j| i64::from(j.job.serial())).collect();
            tx.execute(
                "UPDATE relay_jobs SET owner = $1, lease_until = now() + $2 * interval '1 millisecond'
                 WHERE serial = ANY($3)",
                &[&owner, &lease, &serials],
            )
            .await?;
            tx.commit().await?;
            Ok(jobs)
        })
    }

    /// Takes the letters no live replica holds, of this replica's routes.
    fn take_letters(&mut self) -> Result<Vec<DeadLetter<Key, Bytes>>, StoreError> {
        let owner = self.options.owner.clone();
        let lease = ms(self.options.lease);
        let limit = int(self.options.letters_max as u64);
        let names = self.options.routes.stored();
        let rows = self.link.run(async move |c: &mut Client| {
            let tx = c.transaction().await?;
            let rows = tx
                .query(TAKE_LETTERS, &[&owner, &lease, &limit, &names])
                .await?;
            tx.commit().await?;
            Ok(rows)
        })?;
        let mut letters = Vec::with_capacity(rows.len());
        for row in &rows {
            let letter = own_route(row, LETTER_ROUTE, &self.options.routes)
                .and_then(|route| letter_of(row, route));
            letters.push(letter.map_err(|d| self.corrupt(d))?);
        }
        letters.sort_by_key(|l| l.job);
        Ok(letters)
    }

    /// Logs the jobs and letters of routes this replica does not have:
    /// they wait, unseen by it, for a replica that has their route.
    fn log_other_routes(&mut self) {
        let names = self.options.routes.stored();
        let counts = self.link.run(async move |c: &mut Client| {
            c.query(
                "SELECT 'jobs', route, count(*) FROM relay_jobs WHERE route <> ALL($1)
                 GROUP BY route
                 UNION ALL
                 SELECT 'dead letters', route, count(*) FROM relay_letters
                 WHERE route <> ALL($1) GROUP BY route",
                &[&names],
            )
            .await
        });
        match counts {
            Ok(rows) => {
                for row in rows {
                    let (what, route, count): (&str, &str, i64) =
                        (row.get(0), row.get(1), row.get(2));
                    tracing::warn!(
                        store = self.link.shown(),
                        count,
                        route,
                        "the store holds {what} of route `{route}`, which this replica does not \
                         have: they wait for a replica that has it (add `{route}` to \
                         [[relay.routes]] here, or run a replica that has it)"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "jobs of other routes not counted"),
        }
    }

    fn replays(&mut self, now: Time) -> Result<Vec<StoredReplay<Key, Bytes>>, StoreError> {
        let limit = int(self.options.replays_max as u64);
        let now = nanos(now);
        let rows = self.link.run(async move |c: &mut Client| {
            c.query(
                "SELECT key, fingerprint, id, response, finished_at FROM relay_keys
                 WHERE response IS NOT NULL AND expires_at > $1
                 ORDER BY finished_at DESC LIMIT $2",
                &[&now, &limit],
            )
            .await
        })?;
        let mut replays: Vec<StoredReplay<Key, Bytes>> = rows
            .iter()
            .map(|r| StoredReplay {
                key: Arc::from(r.get::<_, &str>(0)),
                fingerprint: uint(r.get(1)),
                job: JobId(uint(r.get::<_, Option<i64>>(2).unwrap_or(0))),
                response: Bytes::copy_from_slice(r.get::<_, &[u8]>(3)),
                finished_at: time(r.get(4)),
            })
            .collect();
        replays.reverse();
        Ok(replays)
    }
}

impl Store for PgStore {
    /// Loads on a thread of its own when called from async code (the
    /// server starts inside its runtime), since this store blocks on a
    /// runtime of its own.
    fn load(&mut self, now_unix_ms: u64) -> Result<Loaded, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.load_here(now_unix_ms);
        }
        std::thread::scope(|s| s.spawn(|| self.load_here(now_unix_ms)).join()).unwrap_or_else(
            |_| {
                Err(self
                    .link
                    .unavailable("the load failed (a bug: see the log)"))
            },
        )
    }

    fn commit(&mut self, records: &[Record<Key, Bytes>]) -> Result<(), StoreError> {
        self.commit_here(records)
    }

    fn probe(&mut self) -> Result<(), StoreError> {
        self.link
            .run(async |c: &mut Client| c.simple_query("SELECT 1").await.map(drop))
    }
}

impl PgStore {
    fn load_here(&mut self, now_unix_ms: u64) -> Result<Loaded, StoreError> {
        let (version, epoch_unix_ms, key) = self.meta(now_unix_ms)?;
        if version > schema::VERSION {
            return Err(StoreError::NewerVersion {
                path: self.link.shown().into(),
                found: i64::from(version),
                supported: i64::from(schema::VERSION),
            });
        }
        let handle_key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| self.corrupt("the job-handle key is not 32 bytes"))?;
        self.epoch_unix_ms = epoch_unix_ms;
        self.shared
            .epoch_unix_ms
            .store(epoch_unix_ms, Ordering::Relaxed);
        let block = self.take_block()?;
        let first =
            block_start(block).ok_or_else(|| self.corrupt("the serial block is out of range"))?;
        self.shared.block.store(block, Ordering::Relaxed);
        let now = Time::from_millis(now_unix_ms.saturating_sub(epoch_unix_ms));
        let stored = Stored {
            next_serial: first,
            jobs: self.take_jobs()?,
            letters: self.take_letters()?,
            replays: self.replays(now)?,
        };
        self.log_other_routes();
        tracing::info!(
            store = self.link.shown(),
            owner = %self.options.owner,
            block,
            jobs = stored.jobs.len(),
            letters = stored.letters.len(),
            replays = stored.replays.len(),
            "PostgreSQL store loaded"
        );
        Ok(Loaded {
            stored,
            epoch_unix_ms,
            handle_key,
        })
    }

    fn commit_here(&mut self, records: &[Record<Key, Bytes>]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.shared.fenced.load(Ordering::Relaxed) {
            return Err(self.link.unavailable(
                "another replica took this one's block of job serials while its leases \
                 lapsed: restart this replica",
            ));
        }
        let block = self.shared.block.load(Ordering::Relaxed);
        let outside = records.iter().any(|r| match r {
            Record::Accepted { job, .. } => block_of(job.serial()) != block,
            _ => false,
        });
        if outside {
            return Err(self.link.unavailable(
                "this replica has used its whole block of job serials: restart it to \
                 take a new block",
            ));
        }
        let statements = Statements::of(records, &self.options).map_err(|route| {
            self.link.unavailable(format!(
                "a record names route {}, which is not one of the relay's (a bug)",
                route.0
            ))
        })?;
        self.link
            .run_session(async move |s: &mut Session| statements.run(s).await)
    }
}

/// A commit's statements, built before the transaction so that they can be
/// pipelined (sent without waiting for each answer).
struct Statements {
    list: Vec<(&'static str, Vec<Box<dyn ToSql + Sync + Send>>)>,
}

type Param = Box<dyn ToSql + Sync + Send>;

fn key_param(key: &Option<Key>) -> Param {
    Box::new(key.as_deref().map(str::to_owned))
}

impl Statements {
    /// One statement per kind of change, over arrays (`unnest`), so a
    /// commit costs the same few round trips however many records it
    /// holds. The kinds run in an order that keeps the journal's meaning:
    /// a job is inserted before it is started or finished, a key is
    /// claimed before a failure releases it (only its own job's claim),
    /// and a letter is kept before it is removed. Routes go by name; a
    /// route the relay does not have (which it never reports) is the error.
    fn of(records: &[Record<Key, Bytes>], o: &PgOptions) -> Result<Statements, RouteId> {
        let name = |route: RouteId| o.routes.name(route).map(str::to_owned).ok_or(route);
        let mut b = Batches::default();
        let mut letters: Vec<(&'static str, Vec<Param>)> = Vec::new();
        for record in records {
            match record {
                Record::Accepted {
                    job,
                    key,
                    client,
                    fingerprint,
                    payload,
                    accepted_at,
                    redrives,
                    route,
                } => {
                    let route = name(*route)?;
                    let serial = i64::from(job.serial());
                    b.jobs.serial.push(serial);
                    b.jobs.id.push(int(job.0));
                    b.jobs.key.push(key.as_deref().map(str::to_owned));
                    b.jobs.client.push(int(*client));
                    b.jobs.fingerprint.push(int(*fingerprint));
                    b.jobs.payload.push(payload.to_vec());
                    b.jobs.accepted_at.push(nanos(*accepted_at));
                    b.jobs.redrives.push(int32(*redrives));
                    if let Some(k) = key {
                        let claim = KeyClaim {
                            fingerprint: int(*fingerprint),
                            serial,
                            id: int(job.0),
                            route: route.clone(),
                        };
                        b.claims.insert(k.to_string(), claim);
                    }
                    b.jobs.route.push(route);
                }
                Record::Started { job, attempt } => {
                    let at = b.started.entry(i64::from(job.serial())).or_insert(0);
                    *at = (*at).max(int32(*attempt));
                }
                Record::Finished {
                    job,
                    key,
                    fingerprint,
                    finished_at,
                    outcome,
                    ..
                } => {
                    let serial = i64::from(job.serial());
                    b.finished.push(serial);
                    match (key, outcome) {
                        (Some(k), Outcome::Succeeded { response }) => {
                            b.replays.insert(
                                k.to_string(),
                                Replay {
                                    fingerprint: int(*fingerprint),
                                    serial,
                                    id: int(job.0),
                                    response: response.to_vec(),
                                    finished_at: nanos(*finished_at),
                                    expires_at: nanos(*finished_at + o.replay_ttl),
                                },
                            );
                        }
                        (Some(k), _) => b.released.push((k.to_string(), serial)),
                        (None, _) => {}
                    }
                }
                Record::DeadLettered(letter) => {
                    let route = name(letter.route)?;
                    letters.push((INSERT_LETTER, letter_params(letter, route, o)))
                }
                Record::LetterRemoved { letter } => letters.push((
                    "DELETE FROM relay_letters WHERE serial = $1",
                    vec![Box::new(i64::from(letter.serial()))],
                )),
            }
        }
        let mut list = b.into_statements(o);
        list.extend(letters);
        Ok(Statements { list })
    }

    /// One round trip and one WAL flush: `BEGIN`, the statements
    /// (prepared once per connection) and `COMMIT` are sent together and
    /// answered in order. A statement that fails fails the commit: the
    /// `COMMIT` behind it then rolls the transaction back.
    async fn run(self, session: &mut Session) -> Result<(), tokio_postgres::Error> {
        let sqls: Vec<&'static str> = self.list.iter().map(|(sql, _)| *sql).collect();
        let statements = session.statements(&sqls).await?;
        let c = &session.client;
        type Step<'a> = futures_util::future::BoxFuture<'a, Result<(), tokio_postgres::Error>>;
        let mut steps: Vec<Step<'_>> = Vec::with_capacity(self.list.len() + 2);
        steps.push(Box::pin(c.batch_execute("BEGIN")));
        for (statement, (_, params)) in statements.iter().zip(&self.list) {
            steps.push(Box::pin(async move {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                c.execute(statement, &refs).await.map(drop)
            }));
        }
        steps.push(Box::pin(c.batch_execute("COMMIT")));
        // Each is sent on its first poll, and `try_join_all` polls in order.
        futures_util::future::try_join_all(steps).await.map(drop)
    }
}

/// The columns of the jobs a commit inserts.
#[derive(Default)]
struct JobColumns {
    serial: Vec<i64>,
    id: Vec<i64>,
    key: Vec<Option<String>>,
    client: Vec<i64>,
    fingerprint: Vec<i64>,
    payload: Vec<Vec<u8>>,
    accepted_at: Vec<i64>,
    redrives: Vec<i32>,
    route: Vec<String>,
}

/// A new keyed job's claim on its key's row.
struct KeyClaim {
    fingerprint: i64,
    serial: i64,
    id: i64,
    route: String,
}

struct Replay {
    fingerprint: i64,
    serial: i64,
    id: i64,
    response: Vec<u8>,
    finished_at: i64,
    expires_at: i64,
}

/// A commit's changes by kind; per key and per job the last one counts
/// (one statement may not change a row twice).
#[derive(Default)]
struct Batches {
    jobs: JobColumns,
    claims: std::collections::BTreeMap<String, KeyClaim>,
    started: std::collections::BTreeMap<i64, i32>,
    finished: Vec<i64>,
    replays: std::collections::BTreeMap<String, Replay>,
    released: Vec<(String, i64)>,
}

impl Batches {
    fn into_statements(self, o: &PgOptions) -> Vec<(&'static str, Vec<Param>)> {
        let mut list: Vec<(&'static str, Vec<Param>)> = Vec::new();
        let owner = || -> Param { Box::new(o.owner.clone()) };
        let j = self.jobs;
        if !j.serial.is_empty() {
            list.push((
                INSERT_JOBS,
                vec![
                    Box::new(j.serial),
                    Box::new(j.id),
                    Box::new(j.key),
                    Box::new(j.client),
                    Box::new(j.fingerprint),
                    Box::new(j.payload),
                    Box::new(j.accepted_at),
                    Box::new(j.redrives),
                    owner(),
                    Box::new(ms(o.lease)),
                    Box::new(j.route),
                ],
            ));
        }
        if !self.claims.is_empty() {
            let (keys, rest): (Vec<String>, Vec<KeyClaim>) = self.claims.into_iter().unzip();
            let fingerprints: Vec<i64> = rest.iter().map(|r| r.fingerprint).collect();
            let serials: Vec<i64> = rest.iter().map(|r| r.serial).collect();
            let ids: Vec<i64> = rest.iter().map(|r| r.id).collect();
            let routes: Vec<String> = rest.into_iter().map(|r| r.route).collect();
            list.push((
                CLAIMS_FOR_JOBS,
                vec![
                    Box::new(keys),
                    Box::new(fingerprints),
                    Box::new(serials),
                    Box::new(ids),
                    owner(),
                    Box::new(routes),
                ],
            ));
        }
        if !self.started.is_empty() {
            let (serials, attempts): (Vec<i64>, Vec<i32>) = self.started.into_iter().unzip();
            list.push((STARTED, vec![Box::new(serials), Box::new(attempts)]));
        }
        if !self.finished.is_empty() {
            list.push((
                "DELETE FROM relay_jobs WHERE serial = ANY($1)",
                vec![Box::new(self.finished)],
            ));
        }
        if !self.replays.is_empty() {
            let mut cols: (Vec<String>, Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
            let mut more: (Vec<Vec<u8>>, Vec<i64>, Vec<i64>) = Default::default();
            for (key, r) in self.replays {
                cols.0.push(key);
                cols.1.push(r.fingerprint);
                cols.2.push(r.serial);
                cols.3.push(r.id);
                more.0.push(r.response);
                more.1.push(r.finished_at);
                more.2.push(r.expires_at);
            }
            list.push((
                REPLAYS,
                vec![
                    Box::new(cols.0),
                    Box::new(cols.1),
                    Box::new(cols.2),
                    Box::new(cols.3),
                    Box::new(more.0),
                    Box::new(more.1),
                    Box::new(more.2),
                    owner(),
                ],
            ));
        }
        if !self.released.is_empty() {
            let (keys, serials): (Vec<String>, Vec<i64>) = self.released.into_iter().unzip();
            list.push((RELEASED, vec![Box::new(keys), Box::new(serials)]));
        }
        list
    }
}

fn letter_params(l: &DeadLetter<Key, Bytes>, route: String, o: &PgOptions) -> Vec<Param> {
    let late = l.late_success.as_ref();
    vec![
        Box::new(i64::from(l.job.serial())),
        Box::new(int(l.job.0)),
        key_param(&l.key),
        Box::new(int(l.client)),
        Box::new(int(l.fingerprint)),
        Box::new(l.payload.to_vec()),
        Box::new(int32(l.attempts)),
        Box::new(l.reason.name().to_owned()),
        Box::new(l.last_error.name().to_owned()),
        Box::new(nanos(l.accepted_at)),
        Box::new(nanos(l.dead_at)),
        Box::new(int32(l.redrives)),
        Box::new(late.map(|s| int32(s.attempt))),
        Box::new(late.map(|s| nanos(s.at))),
        Box::new(late.map(|s| s.response.to_vec())),
        Box::new(late.map(|s| int32(s.count))),
        Box::new(o.owner.clone()),
        Box::new(ms(o.lease)),
        Box::new(route),
    ]
}

/// The block a serial belongs to.
pub fn block_of(serial: u32) -> u64 {
    u64::from(serial) / schema::BLOCK
}

/// The first serial of `block`, if it is within u32.
pub fn block_start(block: u64) -> Option<u32> {
    let last = block
        .checked_add(1)?
        .checked_mul(schema::BLOCK)?
        .checked_sub(1)?;
    u32::try_from(last).ok()?;
    u32::try_from(block * schema::BLOCK).ok()
}

/// The jobs a fresh relay can restore, in order: distinct slots below
/// `jobs_max`, and no more never-called jobs on a route than its queue
/// (of `queue_capacity`) holds.
fn restorable(
    jobs: Vec<StoredJob<Key, Bytes>>,
    jobs_max: usize,
    queue_capacity: usize,
) -> Vec<StoredJob<Key, Bytes>> {
    let mut slots = rustc_hash::FxHashSet::default();
    let mut keys = rustc_hash::FxHashSet::default();
    let mut waiting: std::collections::BTreeMap<RouteId, usize> = Default::default();
    let mut kept = Vec::with_capacity(jobs.len());
    for job in jobs {
        let slot = job.job.slot();
        if slot >= jobs_max || kept.len() >= jobs_max || slots.contains(&slot) {
            continue;
        }
        if job.key.as_ref().is_some_and(|k| keys.contains(k)) {
            continue;
        }
        if job.attempts == 0 {
            let queued = waiting.entry(job.route).or_default();
            if *queued >= queue_capacity {
                continue;
            }
            *queued += 1;
        }
        slots.insert(slot);
        if let Some(k) = &job.key {
            keys.insert(k.clone());
        }
        kept.push(job);
    }
    kept
}

/// A stored job from a `relay_jobs` row (columns as in [`JOB_COLUMNS`]);
/// `None` for one of a route `routes` lacks (queries ask for theirs only).
pub(crate) fn job_of(r: &Row, routes: &RouteNames) -> Option<StoredJob<Key, Bytes>> {
    Some(StoredJob {
        job: JobId(uint(r.get(0))),
        route: routes.resolve(r.get(8))?,
        key: r.get::<_, Option<&str>>(1).map(Arc::from),
        client: uint(r.get(2)),
        fingerprint: uint(r.get(3)),
        payload: Bytes::copy_from_slice(r.get::<_, &[u8]>(4)),
        accepted_at: time(r.get(5)),
        redrives: uint32(r.get(6)),
        attempts: uint32(r.get(7)),
    })
}

/// The route of a row by the name at column `i`, if `routes` has it.
pub(crate) fn own_route(r: &Row, i: usize, routes: &RouteNames) -> Result<RouteId, String> {
    let name: &str = r.get(i);
    routes.resolve(name).ok_or_else(|| {
        format!("a dead letter's route `{name}` is not one of this replica's routes")
    })
}

/// The column of a letter's route in [`TAKE_LETTERS`] and the shared
/// dead-letter queue's look-ups.
pub(crate) const LETTER_ROUTE: usize = 16;

/// A kebab-case name back into its enum (the names the relay writes).
fn named<T: serde::de::DeserializeOwned>(name: &str, what: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| format!("a dead letter's {what} `{name}` is not one this build knows"))
}

/// A letter from a `relay_letters` row (columns as in [`TAKE_LETTERS`]), on
/// `route`, the one its row names.
fn letter_of(r: &Row, route: RouteId) -> Result<DeadLetter<Key, Bytes>, String> {
    let late = match (
        r.get::<_, Option<i32>>(12),
        r.get::<_, Option<i64>>(13),
        r.get::<_, Option<&[u8]>>(14),
        r.get::<_, Option<i32>>(15),
    ) {
        (Some(attempt), Some(at), Some(response), Some(count)) => Some(LateSuccess {
            attempt: uint32(attempt),
            at: time(at),
            response: Bytes::copy_from_slice(response),
            count: uint32(count),
        }),
        _ => None,
    };
    Ok(DeadLetter {
        job: JobId(uint(r.get(1))),
        route,
        key: r.get::<_, Option<&str>>(2).map(Arc::from),
        client: uint(r.get(3)),
        fingerprint: uint(r.get(4)),
        payload: Bytes::copy_from_slice(r.get::<_, &[u8]>(5)),
        attempts: uint32(r.get(6)),
        reason: named::<GiveUp>(r.get(7), "reason")?,
        last_error: named::<CallError>(r.get(8), "last error")?,
        accepted_at: time(r.get(9)),
        dead_at: time(r.get(10)),
        redrives: uint32(r.get(11)),
        late_success: late,
    })
}

/// The columns [`job_of`] reads, in its order.
pub(crate) const JOB_COLUMNS: &str = "j.id, j.key, j.client, j.fingerprint, j.payload, \
     j.accepted_at, j.redrives, j.attempts, j.route";

/// Leases to `$1` for `$2` ms up to `$3` letters no live replica holds, of
/// the routes named in `$4`.
const TAKE_LETTERS: &str = "
WITH taken AS (
    SELECT serial FROM relay_letters
    WHERE (owner IS NULL OR lease_until IS NULL OR lease_until < now()) AND route = ANY($4)
    ORDER BY serial LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE relay_letters l SET owner = $1, lease_until = now() + $2 * interval '1 millisecond'
FROM taken WHERE l.serial = taken.serial
RETURNING l.serial, l.id, l.key, l.client, l.fingerprint, l.payload, l.attempts, l.reason,
          l.last_error, l.accepted_at, l.dead_at, l.redrives, l.late_attempt, l.late_at,
          l.late_response, l.late_count, l.route";

const INSERT_JOBS: &str = "
INSERT INTO relay_jobs (serial, id, key, client, fingerprint, payload, accepted_at, redrives,
                        attempts, owner, lease_until, route)
SELECT s, i, k, c, f, p, a, r, 0, $9, now() + $10 * interval '1 millisecond', rt
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[],
            $7::bigint[], $8::int[], $11::text[]) AS t(s, i, k, c, f, p, a, r, rt)
ON CONFLICT (serial) DO UPDATE SET id = EXCLUDED.id, owner = EXCLUDED.owner,
                                   lease_until = EXCLUDED.lease_until, route = EXCLUDED.route";

/// Binds each new keyed job to its key's row: the row this replica claimed
/// (or a new one, for a redrive). A row another replica holds now (this
/// replica's claim was released or swept under a request it still
/// admitted) fails the commit, so the job is refused rather than run twice.
const CLAIMS_FOR_JOBS: &str = "
INSERT INTO relay_keys (key, fingerprint, serial, id, owner, route)
SELECT k, f, s, i, $5, rt
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $6::text[])
    AS t(k, f, s, i, rt)
ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, serial = EXCLUDED.serial,
    id = EXCLUDED.id, route = EXCLUDED.route, response = NULL, finished_at = NULL,
    expires_at = NULL,
    owner = CASE WHEN relay_keys.owner = EXCLUDED.owner THEN relay_keys.owner
                 ELSE relay_refuse('an idempotency key of this commit is held by another replica')::text
            END";

const STARTED: &str = "
UPDATE relay_jobs j SET attempts = GREATEST(j.attempts, t.a)
FROM unnest($1::bigint[], $2::int[]) AS t(s, a) WHERE j.serial = t.s";

const REPLAYS: &str = "
INSERT INTO relay_keys (key, fingerprint, serial, id, owner, response, finished_at, expires_at)
SELECT k, f, s, i, $8, r, fa, e
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[], $6::bigint[],
            $7::bigint[]) AS t(k, f, s, i, r, fa, e)
ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, serial = EXCLUDED.serial,
    id = EXCLUDED.id, owner = EXCLUDED.owner, response = EXCLUDED.response,
    finished_at = EXCLUDED.finished_at, expires_at = EXCLUDED.expires_at";

const RELEASED: &str = "
DELETE FROM relay_keys k USING unnest($1::text[], $2::bigint[]) AS t(key, s)
WHERE k.key = t.key AND k.serial = t.s";

const INSERT_LETTER: &str = "
INSERT INTO relay_letters (serial, id, key, client, fingerprint, payload, attempts, reason,
    last_error, accepted_at, dead_at, redrives, late_attempt, late_at, late_response,
    late_count, owner, lease_until, route)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
        now() + $18 * interval '1 millisecond', $19)
ON CONFLICT (serial) DO NOTHING";

#[cfg(test)]
mod tests {
    use super::*;

    fn job(serial: u32, route: u16, attempts: u32) -> StoredJob<Key, Bytes> {
        StoredJob {
            job: JobId::new(serial, serial as usize),
            route: RouteId(route),
            key: None,
            client: 0,
            fingerprint: 0,
            payload: Bytes::new(),
            accepted_at: Time::from_millis(u64::from(serial)),
            redrives: 0,
            attempts,
        }
    }

    /// Each route has a queue of its own: a full one leaves its other
    /// never-called jobs in the store (a reaper adopts them as room opens),
    /// and takes nothing from the other routes' room.
    #[test]
    fn each_routes_queue_bounds_its_own_jobs_never_called() {
        let jobs = vec![
            job(0, 0, 0),
            job(1, 1, 0),
            job(2, 0, 0),
            job(3, 0, 0),
            job(4, 1, 0),
            job(5, 0, 2),
        ];
        let kept: Vec<u32> = restorable(jobs, 100, 2)
            .iter()
            .map(|j| j.job.serial())
            .collect();
        assert_eq!(
            kept,
            [0, 1, 2, 4, 5],
            "the third of route 0's waiting jobs stays; a started one is not queued"
        );
    }
}
