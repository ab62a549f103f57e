//! The embedded store: one SQLite file, written in WAL mode.
//!
//! SQLite commits atomically and survives a crash of the process at any
//! point (a torn commit is rolled back on the next open); with `synchronous
//! = FULL` a commit is on the disk before it returns. One commit holds every
//! record of a group (see [`super::committer`]), so a burst of requests costs
//! one sync. The file is opened in exclusive locking mode: a second relay on
//! the same file is refused rather than let two processes run the same jobs.
//!
//! Tables: `jobs` (unfinished jobs: route, payload, key, fingerprint,
//! client, state, attempts), `replays` (succeeded keyed jobs, with their
//! expiry), `letters` (dead letters with their route and history) and
//! `meta` (epoch, job-handle key, next serial, schema version). Routes are
//! kept by name ([`RouteNames`]): a job comes back on the route of that
//! name whatever the order of `[[relay.routes]]`, and a job or letter of a
//! route the settings no longer have stops the load with
//! [`StoreError::UnknownRoute`] rather than run elsewhere. The schema
//! version is also SQLite's `user_version`: a file from a newer build is
//! refused, one from an older build is upgraded in place.
//! Loading gives what folding the same records with `Stored::apply` gives
//! (replays in the order they finished: a replaced row takes the next rowid).

use super::{Key, Loaded, RouteNames, Store, StoreError, StoreSync};
use crate::relay::{
    CallError, DeadLetter, GiveUp, JobId, LateSuccess, Outcome, Record, RouteId, Stored, StoredJob,
    StoredReplay,
};
use crate::time::Time;
use bytes::Bytes;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, Transaction};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The schema this build writes and reads. 2: jobs and letters name
/// their route.
pub const SCHEMA_VERSION: i64 = 2;

/// Commits between purges of expired replay records.
const PURGE_EVERY: u32 = 64;

/// What a file written by SQLite starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

const SCHEMA: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE jobs (
    serial      INTEGER PRIMARY KEY,
    id          INTEGER NOT NULL,
    key         TEXT,
    client      INTEGER NOT NULL,
    fingerprint INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    accepted_at INTEGER NOT NULL,
    redrives    INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'started')),
    attempts    INTEGER NOT NULL,
    route       TEXT NOT NULL DEFAULT ''
);
CREATE TABLE replays (
    key         TEXT PRIMARY KEY,
    fingerprint INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    response    BLOB NOT NULL,
    finished_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX replays_by_expiry ON replays (expires_at);
CREATE TABLE letters (
    serial        INTEGER PRIMARY KEY,
    id            INTEGER NOT NULL,
    key           TEXT,
    client        INTEGER NOT NULL,
    fingerprint   INTEGER NOT NULL,
    payload       BLOB NOT NULL,
    attempts      INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    last_error    TEXT NOT NULL,
    accepted_at   INTEGER NOT NULL,
    dead_at       INTEGER NOT NULL,
    redrives      INTEGER NOT NULL,
    late_attempt  INTEGER,
    late_at       INTEGER,
    late_response BLOB,
    late_count    INTEGER,
    route         TEXT NOT NULL DEFAULT ''
);
";

/// Version 1 to 2, in place: a route per job and letter, `''` (the
/// default route) for those already held, which version 1 ran there.
const UPGRADE_TO_2: &str = "
ALTER TABLE jobs ADD COLUMN route TEXT NOT NULL DEFAULT '';
ALTER TABLE letters ADD COLUMN route TEXT NOT NULL DEFAULT '';
UPDATE meta SET value = 2 WHERE name = 'schema_version';
PRAGMA user_version = 2;
";

/// An SQLite file as the relay's store.
pub struct SqliteStore {
    path: PathBuf,
    sync: StoreSync,
    /// How long a replay record is kept (the relay's idempotency TTL).
    replay_ttl: Duration,
    /// What the stored route names mean.
    routes: RouteNames,
    conn: Option<Connection>,
    next_serial: u32,
    commits: u32,
}

impl SqliteStore {
    /// A store at `path` for a relay with `routes`, opened by [`Store::load`].
    pub fn new(
        path: impl Into<PathBuf>,
        sync: StoreSync,
        replay_ttl: Duration,
        routes: RouteNames,
    ) -> SqliteStore {
        SqliteStore {
            path: path.into(),
            sync,
            replay_ttl,
            routes,
            conn: None,
            next_serial: 0,
            commits: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        classify(&self.path, e)
    }

    /// Opens (creating if missing) and checks the file before SQLite sees it:
    /// the OS says plainly whether it is writable, and an existing file
    /// must look like SQLite's.
    fn open(&self) -> Result<Connection, StoreError> {
        let path = &self.path;
        let io = |source: std::io::Error| io_error(path, source);
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => {
                return Err(io(std::io::Error::other("not a regular file")));
            }
            Ok(_) => check_header(path)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let conn = Connection::open(path).map_err(|e| self.err(e))?;
        let sync = match self.sync {
            StoreSync::Full => "FULL",
            StoreSync::Normal => "NORMAL",
            StoreSync::Off => "OFF",
        };
        conn.execute_batch(&format!(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA synchronous = {sync};"
        ))
        .map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// Switches to the write-ahead log (kept in the file: a no-op on a
    /// store); only after the checks, so a refused file is left unchanged.
    fn enable_wal(&self, conn: &Connection) -> Result<(), StoreError> {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        Err(io_error(
            &self.path,
            std::io::Error::other(format!(
                "SQLite would not use its write-ahead log here (journal mode {mode})"
            )),
        ))
    }

    /// Creates the schema in a new file, or checks an existing one's version
    /// and integrity and upgrades it from an older version.
    fn prepare(&self, conn: &mut Connection, now_unix_ms: u64) -> Result<(), StoreError> {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerVersion {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == 0 && tables == 0 {
            return self.create(conn, now_unix_ms);
        }
        if version < 1 {
            return Err(self.corrupt(format!(
                "it holds tables but no schema version (user_version {version}): \
                 not a relay store"
            )));
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if check != "ok" {
            return Err(self.corrupt(format!("integrity check: {check}")));
        }
        if version < SCHEMA_VERSION {
            self.upgrade(conn, version)?;
        }
        Ok(())
    }

    /// Brings an older file to [`SCHEMA_VERSION`] in one transaction: a
    /// crash during it leaves the file as it was.
    fn upgrade(&self, conn: &mut Connection, version: i64) -> Result<(), StoreError> {
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        if version < 2 {
            tx.execute_batch(UPGRADE_TO_2).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        tracing::info!(
            store = %self.path.display(),
            from = version,
            to = SCHEMA_VERSION,
            "store schema upgraded"
        );
        Ok(())
    }

    fn create(&self, conn: &mut Connection, now_unix_ms: u64) -> Result<(), StoreError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| {
            io_error(
                &self.path,
                std::io::Error::other(format!("no OS randomness for the job-handle key: {e}")),
            )
        })?;
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute_batch(SCHEMA).map_err(|e| self.err(e))?;
        let epoch = i64::try_from(now_unix_ms).unwrap_or(i64::MAX);
        for (name, value) in [
            ("epoch_unix_ms", rusqlite::types::Value::Integer(epoch)),
            ("handle_key", rusqlite::types::Value::Blob(key.to_vec())),
            ("next_serial", rusqlite::types::Value::Integer(0)),
            (
                "schema_version",
                rusqlite::types::Value::Integer(SCHEMA_VERSION),
            ),
        ] {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)",
                params![name, value],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    fn meta_int(&self, conn: &Connection, name: &str) -> Result<i64, StoreError> {
        let value: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        value.ok_or_else(|| self.corrupt(format!("meta `{name}` is missing")))
    }

    fn read(&self, conn: &Connection, now_unix_ms: u64) -> Result<Loaded, StoreError> {
        let epoch = self.meta_int(conn, "epoch_unix_ms")?;
        let epoch_unix_ms =
            u64::try_from(epoch).map_err(|_| self.corrupt(format!("epoch {epoch} is negative")))?;
        let key: Vec<u8> = conn
            .query_row(
                "SELECT value FROM meta WHERE name = 'handle_key'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| self.corrupt("meta `handle_key` is missing".to_owned()))?;
        let handle_key: [u8; 32] = key
            .try_into()
            .map_err(|_| self.corrupt("the job-handle key is not 32 bytes".to_owned()))?;
        let serial = self.meta_int(conn, "next_serial")?;
        let next_serial = u32::try_from(serial)
            .map_err(|_| self.corrupt(format!("next serial {serial} is out of range")))?;
        let now = Time::from_millis(now_unix_ms.saturating_sub(epoch_unix_ms));
        conn.execute("DELETE FROM replays WHERE expires_at <= ?1", [nanos(now)])
            .map_err(|e| self.err(e))?;
        let routes = &self.routes;
        let stored = Stored {
            next_serial,
            jobs: self.rows(conn, "SELECT * FROM jobs ORDER BY serial", |r| {
                job_from(r, routes)
            })?,
            letters: self.rows(conn, "SELECT * FROM letters ORDER BY serial", |r| {
                letter_from(r, routes)
            })?,
            replays: self.rows(conn, "SELECT * FROM replays ORDER BY rowid", replay_from)?,
        };
        Ok(Loaded {
            stored,
            epoch_unix_ms,
            handle_key,
        })
    }

    fn rows<T>(
        &self,
        conn: &Connection,
        sql: &str,
        from: impl Fn(&Row<'_>) -> Result<T, Bad>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            out.push(from(row).map_err(|b| match b {
                Bad::Sql(e) => self.err(e),
                Bad::Value(detail) => self.corrupt(detail),
                Bad::UnknownRoute { item, route } => StoreError::UnknownRoute {
                    store: self.path.display().to_string(),
                    item,
                    route,
                },
            })?);
        }
        Ok(out)
    }

    fn apply(&mut self, tx: &Transaction<'_>, record: &Record<Key, Bytes>) -> rusqlite::Result<()> {
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
                let route = route_name(&self.routes, *route)?;
                self.next_serial = self.next_serial.max(job.serial().saturating_add(1));
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO jobs (serial, id, key, client, fingerprint, payload, \
                     accepted_at, redrives, state, attempts, route) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', 0, ?9)",
                )?
                .execute(params![
                    job.serial(),
                    id(*job),
                    key.as_deref(),
                    bits(*client),
                    bits(*fingerprint),
                    payload.as_ref(),
                    nanos(*accepted_at),
                    redrives,
                    route
                ])?;
                // The relay took the key for a new job: it held no replay of it.
                if let Some(key) = key {
                    tx.prepare_cached("DELETE FROM replays WHERE key = ?1")?
                        .execute([&**key])?;
                }
            }
            Record::Started { job, attempt } => {
                tx.prepare_cached(
                    "UPDATE jobs SET state = 'started', attempts = max(attempts, ?2) \
                     WHERE serial = ?1",
                )?
                .execute(params![job.serial(), attempt])?;
            }
            Record::Finished {
                job,
                key,
                fingerprint,
                finished_at,
                outcome,
                ..
            } => {
                tx.prepare_cached("DELETE FROM jobs WHERE serial = ?1")?
                    .execute([job.serial()])?;
                if let (Some(key), Outcome::Succeeded { response }) = (key, outcome) {
                    let expires = finished_at.as_nanos().saturating_add(
                        u64::try_from(self.replay_ttl.as_nanos()).unwrap_or(u64::MAX),
                    );
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO replays (key, fingerprint, id, response, \
                         finished_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        &**key,
                        bits(*fingerprint),
                        id(*job),
                        response.as_ref(),
                        nanos(*finished_at),
                        nanos(Time::from_nanos(expires))
                    ])?;
                }
            }
            Record::DeadLettered(letter) => {
                self.next_serial = self.next_serial.max(letter.job.serial().saturating_add(1));
                insert_letter(tx, letter, route_name(&self.routes, letter.route)?)?;
            }
            Record::LetterRemoved { letter } => {
                tx.prepare_cached("DELETE FROM letters WHERE serial = ?1")?
                    .execute([letter.serial()])?;
            }
        }
        Ok(())
    }

    /// Drops replay records past their expiry, judged by the latest finish
    /// in this commit (the store reads no clock of its own).
    fn purge(tx: &Transaction<'_>, records: &[Record<Key, Bytes>]) -> rusqlite::Result<()> {
        let latest = records
            .iter()
            .filter_map(|r| match r {
                Record::Finished { finished_at, .. } => Some(*finished_at),
                _ => None,
            })
            .max();
        if let Some(now) = latest {
            tx.prepare_cached("DELETE FROM replays WHERE expires_at <= ?1")?
                .execute([nanos(now)])?;
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn load(&mut self, now_unix_ms: u64) -> Result<Loaded, StoreError> {
        let mut conn = self.open()?;
        self.prepare(&mut conn, now_unix_ms)?;
        self.enable_wal(&conn)?;
        let loaded = self.read(&conn, now_unix_ms)?;
        self.next_serial = loaded.stored.next_serial;
        self.conn = Some(conn);
        Ok(loaded)
    }

    fn commit(&mut self, records: &[Record<Key, Bytes>]) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.take() else {
            return Err(io_error(
                &self.path,
                std::io::Error::other("the store was not loaded before its first commit"),
            ));
        };
        let result = self.commit_on(&mut conn, records);
        self.conn = Some(conn);
        result.map_err(|e| self.err(e))
    }

    /// Rewrites one row: an empty transaction would succeed on a full disk.
    fn probe(&mut self) -> Result<(), StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let result = conn.execute(
            "UPDATE meta SET value = value WHERE name = 'next_serial'",
            [],
        );
        result.map(drop).map_err(|e| self.err(e))
    }
}

impl SqliteStore {
    fn commit_on(
        &mut self,
        conn: &mut Connection,
        records: &[Record<Key, Bytes>],
    ) -> rusqlite::Result<()> {
        let before = self.next_serial;
        let tx = conn.transaction()?;
        for record in records {
            self.apply(&tx, record)?;
        }
        if self.next_serial != before {
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'next_serial'")?
                .execute([self.next_serial])?;
        }
        self.commits = self.commits.wrapping_add(1);
        if self.commits % PURGE_EVERY == 0 {
            Self::purge(&tx, records)?;
        }
        match tx.commit() {
            Ok(()) => Ok(()),
            Err(e) => {
                // Not committed: the serial goes back to what the file holds.
                self.next_serial = before;
                Err(e)
            }
        }
    }
}

/// The name a route is stored under; a route the relay does not have
/// (which it never reports) fails the commit rather than be stored as
/// another.
fn route_name(routes: &RouteNames, route: RouteId) -> rusqlite::Result<&str> {
    routes.name(route).ok_or_else(|| {
        rusqlite::Error::ToSqlConversionFailure(
            format!("route {} is not one of the relay's routes", route.0).into(),
        )
    })
}

fn insert_letter(
    tx: &Transaction<'_>,
    l: &DeadLetter<Key, Bytes>,
    route: &str,
) -> rusqlite::Result<()> {
    let late = l.late_success.as_ref();
    tx.prepare_cached(
        "INSERT OR REPLACE INTO letters (serial, id, key, client, fingerprint, payload, \
         attempts, reason, last_error, accepted_at, dead_at, redrives, late_attempt, late_at, \
         late_response, late_count, route) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        l.job.serial(),
        id(l.job),
        l.key.as_deref(),
        bits(l.client),
        bits(l.fingerprint),
        l.payload.as_ref(),
        l.attempts,
        l.reason.name(),
        l.last_error.name(),
        nanos(l.accepted_at),
        nanos(l.dead_at),
        l.redrives,
        late.map(|s| s.attempt),
        late.map(|s| nanos(s.at)),
        late.map(|s| s.response.as_ref()),
        late.map(|s| s.count),
        route,
    ])?;
    Ok(())
}

/// A row that does not read back: SQLite's error, a value out of range,
/// or a route these settings do not have.
enum Bad {
    Sql(rusqlite::Error),
    Value(String),
    UnknownRoute { item: String, route: String },
}

impl From<rusqlite::Error> for Bad {
    fn from(e: rusqlite::Error) -> Bad {
        Bad::Sql(e)
    }
}

/// The route of a job or letter row, by its stored name.
fn route_from(r: &Row<'_>, routes: &RouteNames, item: String) -> Result<RouteId, Bad> {
    let route: String = r.get("route")?;
    routes
        .resolve(&route)
        .ok_or(Bad::UnknownRoute { item, route })
}

fn job_from(r: &Row<'_>, routes: &RouteNames) -> Result<StoredJob<Key, Bytes>, Bad> {
    let job = job_id(r.get("id")?);
    Ok(StoredJob {
        job,
        route: route_from(r, routes, format!("job {job}"))?,
        key: r.get::<_, Option<String>>("key")?.map(Arc::from),
        client: unbits(r.get("client")?),
        fingerprint: unbits(r.get("fingerprint")?),
        payload: Bytes::from(r.get::<_, Vec<u8>>("payload")?),
        accepted_at: time(r.get("accepted_at")?)?,
        redrives: r.get("redrives")?,
        attempts: r.get("attempts")?,
    })
}

fn replay_from(r: &Row<'_>) -> Result<StoredReplay<Key, Bytes>, Bad> {
    Ok(StoredReplay {
        key: Arc::from(r.get::<_, String>("key")?),
        fingerprint: unbits(r.get("fingerprint")?),
        job: job_id(r.get("id")?),
        response: Bytes::from(r.get::<_, Vec<u8>>("response")?),
        finished_at: time(r.get("finished_at")?)?,
    })
}

fn letter_from(r: &Row<'_>, routes: &RouteNames) -> Result<DeadLetter<Key, Bytes>, Bad> {
    let job = job_id(r.get("id")?);
    let late_success = match r.get::<_, Option<u32>>("late_attempt")? {
        None => None,
        Some(attempt) => Some(LateSuccess {
            attempt,
            at: time(r.get("late_at")?)?,
            response: Bytes::from(r.get::<_, Vec<u8>>("late_response")?),
            count: r.get("late_count")?,
        }),
    };
    Ok(DeadLetter {
        job,
        route: route_from(r, routes, format!("dead letter {job}"))?,
        key: r.get::<_, Option<String>>("key")?.map(Arc::from),
        client: unbits(r.get("client")?),
        fingerprint: unbits(r.get("fingerprint")?),
        payload: Bytes::from(r.get::<_, Vec<u8>>("payload")?),
        attempts: r.get("attempts")?,
        reason: named::<GiveUp>(&r.get::<_, String>("reason")?)?,
        last_error: named::<CallError>(&r.get::<_, String>("last_error")?)?,
        accepted_at: time(r.get("accepted_at")?)?,
        dead_at: time(r.get("dead_at")?)?,
        redrives: r.get("redrives")?,
        late_success,
    })
}

/// A kebab-case name read back into its enum.
fn named<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, Bad> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| Bad::Value(format!("`{name}` is not a known reason or error")))
}

/// u64 values kept bit for bit in SQLite's signed integers.
fn bits(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn unbits(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

fn id(job: JobId) -> i64 {
    bits(job.0)
}

fn job_id(v: i64) -> JobId {
    JobId(unbits(v))
}

fn nanos(t: Time) -> i64 {
    i64::try_from(t.as_nanos()).unwrap_or(i64::MAX)
}

fn time(v: i64) -> Result<Time, Bad> {
    u64::try_from(v)
        .map(Time::from_nanos)
        .map_err(|_| Bad::Value(format!("time {v} is negative")))
}

/// Refuses an existing file that is not SQLite's before SQLite would
/// overwrite or misread it (an empty file is refused too: a store that
/// was emptied is not silently started afresh).
fn check_header(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
    if read == head.len() && &head == SQLITE_MAGIC {
        return Ok(());
    }
    let detail = if read == 0 {
        "the file is empty".to_owned()
    } else {
        "the file does not start with SQLite's header".to_owned()
    };
    Err(StoreError::Corrupt {
        path: path.to_owned(),
        detail,
    })
}

/// An OS error, classified: read-only and no-space get their own advice.
fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    let path = path.to_owned();
    match source.kind() {
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
            StoreError::ReadOnly { path }
        }
        ErrorKind::StorageFull => StoreError::DiskFull { path },
        _ => StoreError::Io { path, source },
    }
}

/// SQLite's error, classified by its code.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    let code = e.sqlite_error_code();
    let path = path.to_owned();
    match code {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path,
            detail: e.to_string(),
        },
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
        Some(ErrorCode::DiskFull) => StoreError::DiskFull { path },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Io {
            path,
            source: std::io::Error::other(
                "it is in use by another relay process: stop that one, or give this one \
                 another --store",
            ),
        },
        _ => StoreError::Io {
            path,
            source: std::io::Error::other(e.to_string()),
        },
    }
}
