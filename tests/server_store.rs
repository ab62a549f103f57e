//! The embedded store: what it gives back, and how it refuses bad files.
//!
//! Every refusal must name the file and say what to do, and must leave the
//! file as it was (never a silent reset). Read-only and full disks are real:
//! a tiny tmpfs, mounted for the test (it needs root; without it the test
//! says so and checks what it can without one).

mod common;

use bytes::Bytes;
use proptest::prelude::*;
use resilient_relay::relay::{
    CallError, DeadLetter, GiveUp, JobId, Outcome, Record, RelayConfig, RouteConfig, RouteId,
    Stored,
};
use resilient_relay::server::actor::Key;
use resilient_relay::server::store::sqlite::{SqliteStore, SCHEMA_VERSION};
use resilient_relay::server::store::{Loaded, RouteNames, Store, StoreError, StoreSync};
use resilient_relay::time::Time;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);
/// The unix millisecond the test stores are created at.
const EPOCH_MS: u64 = 1_700_000_000_000;

/// The routes of a relay with `[[relay.routes]]` named so, in this order.
fn names(routes: &[&str]) -> RouteNames {
    RouteNames::of(&RelayConfig {
        routes: routes
            .iter()
            .map(|n| RouteConfig {
                name: (*n).to_owned(),
                ..RouteConfig::default()
            })
            .collect(),
        ..RelayConfig::default()
    })
}

/// The routes most tests' stores have: `orders` (the default) and `search`.
const ROUTES: [&str; 2] = ["orders", "search"];
const SEARCH: RouteId = RouteId(1);

fn store(path: &Path) -> SqliteStore {
    store_with(path, &ROUTES)
}

fn store_with(path: &Path, routes: &[&str]) -> SqliteStore {
    SqliteStore::new(path, StoreSync::Full, TTL, names(routes))
}

/// A job on `orders` (even serials) or `search` (odd ones).
fn accepted(serial: u32, key: Option<&str>, at_ms: u64) -> Record<Key, Bytes> {
    Record::Accepted {
        job: JobId::new(serial, serial as usize % 7),
        route: RouteId((serial % 2) as u16),
        key: key.map(Arc::from),
        client: u64::MAX - u64::from(serial),
        fingerprint: 0xDEAD_BEEF_0000_0000 | u64::from(serial),
        payload: Bytes::from(format!("{{\"n\":{serial}}}")),
        accepted_at: Time::from_millis(at_ms),
        redrives: 0,
    }
}

fn finished(serial: u32, key: Option<&str>, at_ms: u64, ok: bool) -> Record<Key, Bytes> {
    Record::Finished {
        job: JobId::new(serial, serial as usize % 7),
        key: key.map(Arc::from),
        fingerprint: 0xDEAD_BEEF_0000_0000 | u64::from(serial),
        attempts: 1,
        finished_at: Time::from_millis(at_ms),
        outcome: if ok {
            Outcome::Succeeded {
                response: Bytes::from_static(b"{\"ok\":true}"),
            }
        } else {
            Outcome::DeadLettered {
                reason: GiveUp::AttemptsExhausted,
                last_error: CallError::ServerError,
            }
        },
    }
}

/// A letter on the route its job was on (see [`accepted`]).
fn letter(serial: u32, at_ms: u64, late: bool) -> Record<Key, Bytes> {
    Record::DeadLettered(Box::new(DeadLetter {
        job: JobId::new(serial, serial as usize % 7),
        route: RouteId((serial % 2) as u16),
        key: None,
        client: 3,
        fingerprint: u64::from(serial),
        payload: Bytes::from_static(b"[1,2]"),
        attempts: 4,
        reason: GiveUp::BudgetExhausted,
        last_error: CallError::Timeout,
        accepted_at: Time::from_millis(at_ms / 2),
        dead_at: Time::from_millis(at_ms),
        redrives: 2,
        late_success: late.then(|| resilient_relay::relay::LateSuccess {
            attempt: 2,
            at: Time::from_millis(at_ms),
            response: Bytes::from_static(b"\"late\""),
            count: 3,
        }),
    }))
}

/// What the records fold to, the core's own reference.
fn folded(records: &[Record<Key, Bytes>]) -> Stored<Key, Bytes> {
    let mut s = Stored::default();
    for r in records {
        s.apply(r.clone(), TTL);
    }
    s
}

fn same(a: &Stored<Key, Bytes>, b: &Stored<Key, Bytes>) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Records that respect the relay's order: jobs are accepted before they
/// start or finish, letters exist before they are removed.
fn records_strategy() -> impl Strategy<Value = Vec<Record<Key, Bytes>>> {
    prop::collection::vec((0u8..6, 0u8..4, any::<bool>()), 1..60).prop_map(|ops| {
        let keys = ["a", "b", "c"];
        let (mut out, mut live, mut letters) = (Vec::new(), Vec::new(), Vec::new());
        let mut serial = 0u32;
        for (i, (op, pick, flag)) in ops.into_iter().enumerate() {
            let at = 1_000 * (i as u64 + 1);
            match op {
                0 | 1 => {
                    let key = (pick < 3).then(|| keys[pick as usize]);
                    out.push(accepted(serial, key, at));
                    live.push((serial, key));
                    serial += 1;
                }
                2 if !live.is_empty() => {
                    let (s, _) = live[pick as usize % live.len()];
                    out.push(Record::Started {
                        job: JobId::new(s, s as usize % 7),
                        attempt: u32::from(pick) + 1,
                    });
                }
                3 | 4 if !live.is_empty() => {
                    let (s, key) = live.remove(pick as usize % live.len());
                    out.push(finished(s, key, at, flag));
                    if !flag {
                        out.push(letter(s, at, pick % 2 == 0));
                        letters.push(s);
                    }
                }
                5 if !letters.is_empty() => {
                    let s = letters.remove(pick as usize % letters.len());
                    out.push(Record::LetterRemoved {
                        letter: JobId::new(s, s as usize % 7),
                    });
                }
                _ => {}
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the records and however they are grouped into commits, a
    /// reopened store gives back what folding them gives.
    #[test]
    fn a_reopened_store_gives_back_what_its_records_fold_to(
        records in records_strategy(),
        cut in 1usize..8,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.db");
        {
            let mut s = store(&path);
            let first = s.load(EPOCH_MS).expect("a new store opens");
            prop_assert_eq!(first.epoch_unix_ms, EPOCH_MS);
            for group in records.chunks(cut) {
                s.commit(group).expect("commits");
            }
        }
        let last_ms = 1_000 * (records.len() as u64 + 1);
        let loaded = store(&path).load(EPOCH_MS + last_ms).expect("reopens");
        prop_assert_eq!(loaded.epoch_unix_ms, EPOCH_MS, "the epoch is the store's");
        let want = folded(&records);
        prop_assert!(same(&loaded.stored, &want), "store {:?}\nfold {:?}", loaded.stored, want);
    }
}

#[test]
fn the_epoch_and_the_handle_key_are_created_once_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let first = store(&path).load(EPOCH_MS).expect("opens");
    let again = store(&path).load(EPOCH_MS + 5_000).expect("reopens");
    assert_eq!(again.epoch_unix_ms, EPOCH_MS);
    assert_eq!(again.handle_key, first.handle_key);
    let other = store(&dir.path().join("other.db"))
        .load(EPOCH_MS)
        .expect("opens");
    assert_ne!(
        other.handle_key, first.handle_key,
        "each store draws its own"
    );
}

#[test]
fn ids_continue_above_every_serial_the_store_has_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    {
        let mut s = store(&path);
        s.load(EPOCH_MS).expect("opens");
        s.commit(&[accepted(41, None, 1), finished(41, None, 2, true)])
            .expect("commits");
        s.commit(&[letter(57, 3, false)]).expect("commits");
    }
    let loaded = store(&path).load(EPOCH_MS).expect("reopens");
    assert_eq!(loaded.stored.next_serial, 58);
    assert!(loaded.stored.jobs.is_empty());
}

#[test]
fn replays_past_their_ttl_are_not_given_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    {
        let mut s = store(&path);
        s.load(EPOCH_MS).expect("opens");
        s.commit(&[accepted(0, Some("k"), 10), finished(0, Some("k"), 20, true)])
            .expect("commits");
    }
    let fresh = store(&path).load(EPOCH_MS + 20).expect("reopens");
    assert_eq!(fresh.stored.replays.len(), 1, "held within its TTL");
    let ttl_ms = TTL.as_millis() as u64;
    let later = store(&path).load(EPOCH_MS + 20 + ttl_ms).expect("reopens");
    assert!(later.stored.replays.is_empty(), "expired at finish + TTL");
}

// --- routes -------------------------------------------------------------------

/// The routes of the jobs and of the letters a store gave back.
fn routes_of(loaded: &Loaded) -> (Vec<RouteId>, Vec<RouteId>) {
    let jobs = loaded.stored.jobs.iter().map(|j| j.route).collect();
    let letters = loaded.stored.letters.iter().map(|l| l.route).collect();
    (jobs, letters)
}

#[test]
fn jobs_and_letters_come_back_on_the_route_of_their_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    {
        let mut s = store(&path);
        s.load(EPOCH_MS).expect("opens");
        s.commit(&[
            accepted(1, None, 1),
            accepted(2, None, 2),
            letter(3, 3, false),
        ])
        .expect("commits");
    }
    let again = store(&path).load(EPOCH_MS).expect("reopens");
    assert_eq!(
        routes_of(&again),
        (vec![SEARCH, RouteId::DEFAULT], vec![SEARCH])
    );
    // `[[relay.routes]]` reordered: each is still on the route of its name.
    let reordered = store_with(&path, &["search", "orders"])
        .load(EPOCH_MS)
        .expect("reopens");
    assert_eq!(
        routes_of(&reordered),
        (vec![RouteId(0), RouteId(1)], vec![RouteId(0)])
    );
}

#[test]
fn a_job_of_a_route_the_settings_lack_stops_the_load_and_stays_in_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    {
        let mut s = store(&path);
        s.load(EPOCH_MS).expect("opens");
        s.commit(&[accepted(0, None, 1), accepted(1, None, 2)])
            .expect("commits");
    }
    let e = match store_with(&path, &["orders"]).load(EPOCH_MS) {
        Ok(_) => panic!("a job of `search` was loaded without the route"),
        Err(e) => e,
    };
    match &e {
        StoreError::UnknownRoute { item, route, .. } => {
            assert_eq!((item.as_str(), route.as_str()), ("job 1-1", "search"));
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    let shown = path.display().to_string();
    for part in [
        &*shown,
        "route `search`",
        "[[relay.routes]]",
        "dead letters",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    // Nothing was lost: with the route back, both jobs are.
    {
        let mut s = store(&path);
        let back = s.load(EPOCH_MS).expect("reopens");
        assert_eq!(back.stored.jobs.len(), 2);
        s.commit(&[finished(1, None, 3, false), letter(1, 3, false)])
            .expect("commits");
    }
    // A letter of a route the settings lack stops the load too.
    match store_with(&path, &["orders"]).load(EPOCH_MS) {
        Err(StoreError::UnknownRoute { item, .. }) => assert_eq!(item, "dead letter 1-1"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a letter of `search` was loaded without the route"),
    }
}

/// A version-1 store as that build created it (no routes), holding one
/// started job and one letter.
const STORE_V1: &str = "
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
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
    attempts    INTEGER NOT NULL
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
    late_count    INTEGER
);
INSERT INTO meta (name, value) VALUES ('epoch_unix_ms', 1700000000000),
    ('handle_key', zeroblob(32)), ('next_serial', 8), ('schema_version', 1);
INSERT INTO jobs VALUES (5, 5 * 4294967296 + 1, 'k5', 1, 2, X'7B7D', 1000000, 0, 'started', 1);
INSERT INTO letters VALUES (7, 7 * 4294967296 + 2, NULL, 1, 2, X'5B5D', 3, 'attempts-exhausted',
    'server-error', 10, 20, 0, NULL, NULL, NULL, NULL);
PRAGMA user_version = 1;
";

#[test]
fn a_version_1_store_is_upgraded_in_place_with_its_work_on_the_default_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    rusqlite::Connection::open(&path)
        .and_then(|c| c.execute_batch(STORE_V1))
        .expect("a version-1 store");
    let loaded = store(&path)
        .load(EPOCH_MS)
        .expect("a version-1 store opens");
    assert_eq!(loaded.epoch_unix_ms, EPOCH_MS);
    assert_eq!(loaded.stored.next_serial, 8);
    let jobs: Vec<(u32, u32)> = loaded
        .stored
        .jobs
        .iter()
        .map(|j| (j.job.serial(), j.attempts))
        .collect();
    assert_eq!(jobs, [(5, 1)]);
    assert_eq!(loaded.stored.letters.len(), 1);
    assert_eq!(
        routes_of(&loaded),
        (vec![RouteId::DEFAULT], vec![RouteId::DEFAULT])
    );
    let version: i64 = rusqlite::Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .expect("read the version");
    assert_eq!(version, SCHEMA_VERSION, "upgraded in place");
    // The upgraded file keeps routes from now on.
    {
        let mut s = store(&path);
        s.load(EPOCH_MS).expect("reopens");
        s.commit(&[accepted(9, None, 2_000)]).expect("commits");
    }
    let again = store(&path).load(EPOCH_MS).expect("reopens");
    assert_eq!(routes_of(&again).0, [RouteId::DEFAULT, SEARCH]);
}

// --- refusals -----------------------------------------------------------------

/// A store with some content, closed.
fn written_store(path: &Path) {
    let mut s = store(path);
    s.load(EPOCH_MS).expect("opens");
    let big: Vec<Record<Key, Bytes>> = (0..400)
        .map(|i| Record::Accepted {
            job: JobId::new(i, 0),
            route: RouteId::DEFAULT,
            key: Some(Arc::from(format!("key-{i}").as_str())),
            client: 1,
            fingerprint: 2,
            payload: Bytes::from(vec![b'x'; 300]),
            accepted_at: Time::from_millis(u64::from(i)),
            redrives: 0,
        })
        .collect();
    s.commit(&big).expect("commits");
}

/// The load fails with an error naming `path`, and the file is unchanged.
fn refused(path: &Path) -> StoreError {
    let before = std::fs::read(path).ok();
    let e = match store(path).load(EPOCH_MS) {
        Ok(_) => panic!("{} was opened", path.display()),
        Err(e) => e,
    };
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    let after = std::fs::read(path).ok();
    assert!(after == before, "{} was changed", path.display());
    e
}

#[test]
fn a_truncated_store_is_refused_not_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    written_store(&path);
    let len = std::fs::metadata(&path).expect("file").len();
    assert!(len > 8 * 4096, "the store spans pages ({len} bytes)");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(len / 2).expect("truncate");
    drop(file);
    let e = refused(&path);
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("backup"), "says what to do: {e}");
}

#[test]
fn a_store_with_a_damaged_page_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    written_store(&path);
    let mut bytes = std::fs::read(&path).expect("read");
    // Page 2 onwards (the tables' b-trees): garbage.
    for b in &mut bytes[4096..3 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("write");
    let e = refused(&path);
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in [
        ("empty.db", &b""[..]),
        ("text.db", &b"jobs: none, honestly\n"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        let e = refused(&path);
        assert!(matches!(e, StoreError::Corrupt { .. }), "{name}: {e:?}");
    }
    // Someone else's SQLite file: tables, but no relay schema.
    let path = dir.path().join("foreign.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .expect("write");
    drop(conn);
    let e = refused(&path);
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    written_store(&path);
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .expect("set version");
    drop(conn);
    let e = refused(&path);
    match &e {
        StoreError::NewerVersion {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("newer build"), "{e}");
}

#[test]
fn a_store_in_use_by_another_relay_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let mut first = store(&path);
    first.load(EPOCH_MS).expect("opens");
    first.commit(&[accepted(0, None, 1)]).expect("commits");
    let e = match store(&path).load(EPOCH_MS) {
        Ok(_) => panic!("two relays opened one store"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("another relay process"), "{e}");
    drop(first);
    let loaded = store(&path).load(EPOCH_MS).expect("free again");
    assert_eq!(loaded.stored.jobs.len(), 1);
}

/// A tmpfs of `size` mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (and a line saying why) when mounting is not allowed here.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED (part): cannot mount a tmpfs here (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED (part): no `mount` command: {e}");
                None
            }
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn remount_read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount read-only");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_read_only_store_is_refused_with_advice() {
    // A file system mounted read-only: a new store cannot be created, and
    // an existing one cannot be written.
    if let Some(fs) = Tmpfs::mount("4m") {
        let existing = fs.path().join("relay.db");
        written_store(&existing);
        fs.remount_read_only();
        let e = refused(&existing);
        assert!(matches!(e, StoreError::ReadOnly { .. }), "{e:?}");
        assert!(e.to_string().contains("make it writable"), "{e}");
        let new = fs.path().join("new.db");
        let e = refused(&new);
        assert!(matches!(e, StoreError::ReadOnly { .. }), "{e:?}");
        assert!(!new.exists());
    }
    // /sys refuses new files to everyone, root included.
    let path = Path::new("/sys/relay-store-test.db");
    if Path::new("/sys").is_dir() {
        let e = refused(path);
        assert!(matches!(e, StoreError::ReadOnly { .. }), "{e:?}");
    }
}

#[test]
fn a_full_disk_fails_the_commit_with_advice_and_keeps_what_was_committed() {
    let Some(fs) = Tmpfs::mount("600k") else {
        return;
    };
    // Room to free afterwards, so that the store can be reopened.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 128 * 1024]).expect("filler");
    let path = fs.path().join("relay.db");
    let mut s = store(&path);
    s.load(EPOCH_MS).expect("opens");
    s.commit(&[accepted(0, Some("kept"), 1)]).expect("commits");
    let mut error = None;
    for i in 1..200u32 {
        let record = Record::Accepted {
            job: JobId::new(i, 0),
            route: RouteId::DEFAULT,
            key: None,
            client: 1,
            fingerprint: 2,
            payload: Bytes::from(vec![b'y'; 32 * 1024]),
            accepted_at: Time::from_millis(u64::from(i)),
            redrives: 0,
        };
        if let Err(e) = s.commit(&[record]) {
            error = Some(e);
            break;
        }
    }
    let e = error.expect("600 kB fill up");
    assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("free space"),
        "{text}"
    );
    drop(s);
    std::fs::remove_file(&filler).expect("free space");
    // What was committed before is still there.
    let loaded = store(&path).load(EPOCH_MS).expect("reopens");
    assert!(loaded
        .stored
        .jobs
        .iter()
        .any(|j| j.key.as_deref() == Some("kept")));
}

// --- the store under a running server -----------------------------------------

/// One durable server at a time in this binary: the job-handle key is the
/// process's, and each store brings its own.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn durable_settings(path: &Path, latency_ms: f64) -> resilient_relay::server::Settings {
    let mut s = common::settings();
    s.server.store = resilient_relay::server::store::StoreSpec::Sqlite(path.to_owned());
    s.server.drain_deadline_ms = 50.0;
    s.relay.retry.attempt_timeout_ms = 120_000.0;
    s.downstream = resilient_relay::server::config::DownstreamConfig::Flaky(
        resilient_relay::server::flaky::FaultConfig {
            latency_ms,
            ..resilient_relay::server::flaky::FaultConfig::default()
        },
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_takes_back_jobs_in_flight_as_redelivered_under_their_old_urls() {
    let _one = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    // The downstream takes a minute: the jobs are in flight at the stop.
    let mut h = common::Harness::start(durable_settings(&path, 60_000.0)).await;
    let mut urls = Vec::new();
    for k in ["a", "b", "c"] {
        let r = h.relay(Some(k), "{\"x\":1}").await;
        assert_eq!(r.status, 202, "{:?}", r.json());
        urls.push(r.json()["status_url"].as_str().expect("url").to_owned());
    }
    for url in &urls {
        h.wait_for(url, "in flight", |r| r.json()["state"] == "in-flight")
            .await;
    }
    let report = h.server.take().expect("server").shutdown().await;
    assert_eq!(report.left.live.len(), 3, "left at the drain deadline");

    // Back on a quick downstream: the taken-back jobs run again at once,
    // before any request reaches the relay.
    let h = common::Harness::with_downstream(durable_settings(&path, 1.0), common::fault(0.0, 1.0))
        .await;
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while h.downstream_get("/effects").await["effects"] != 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not run again unasked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for url in &urls {
        let v = h
            .wait_for(url, "succeeded", |r| r.json()["state"] == "succeeded")
            .await;
        assert_eq!(v.json()["redelivered"], true, "{:?}", v.json());
        assert!(v.json()["attempts"].as_u64() >= Some(2), "{:?}", v.json());
    }
    let stats = h.stats().await;
    assert_eq!(stats["recovered_jobs"], 3, "{stats}");
    assert_eq!(stats["redelivered_jobs"], 3, "{stats}");
    let metrics = String::from_utf8_lossy(&h.get("/metrics").await.body).into_owned();
    assert!(
        metrics.contains("relay_recovered_jobs_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_redelivered_jobs_total 3"),
        "{metrics}"
    );
    // A new job does not take an old one's id.
    let r = h.relay(Some("d"), "{\"x\":2}").await;
    let old: Vec<String> = urls
        .iter()
        .map(|u| {
            u.trim_start_matches("/relay/")
                .split('.')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    let new = r.json()["job"].as_str().unwrap_or("").to_owned();
    assert!(!old.contains(&new), "{new} reuses an id of {old:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_work_with_503_until_space_is_back() {
    let _one = SERVER.lock().await;
    let Some(fs) = Tmpfs::mount("2m") else {
        return;
    };
    let path = fs.path().join("relay.db");
    let h = common::Harness::start(durable_settings(&path, 1.0)).await;
    assert_eq!(h.relay(Some("first"), "{}").await.status, 202);
    // Fill the disk, then send payloads that must grow the log.
    let filler = fs.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=64"])
        .arg(format!("of={}", filler.display()))
        .output();
    let payload = format!("{{\"pad\":\"{}\"}}", "z".repeat(60_000));
    let mut refused = None;
    for i in 0..200 {
        let r = h.relay(Some(&format!("big-{i}")), &payload).await;
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 202, "{:?}", r.json());
    }
    let r = refused.expect("a full disk refuses");
    assert_eq!(
        r.json()["type"]
            .as_str()
            .map(|t| t.ends_with("store-unavailable")),
        Some(true),
        "{:?}",
        r.json()
    );
    let ready = h.get("/ready").await;
    assert_eq!(ready.status, 503, "not ready while the store fails");
    std::fs::remove_file(&filler).expect("free space");
    let back = h
        .wait_for("/ready", "ready again", |r| r.status == 200)
        .await;
    assert_eq!(back.status, 200);
    let r = h.relay(Some("after"), "{}").await;
    assert_eq!(r.status, 202, "{:?}", r.json());
}

// --- routes across a restart ---------------------------------------------------

/// A durable server with two routes, `orders` on `[downstream]` (the
/// built-in one, taking `latency_ms`) and `search` on `search` (a TOML
/// downstream table), one slot each, queues of 3.
fn routed_settings(
    path: &Path,
    search: &str,
    latency_ms: f64,
) -> resilient_relay::server::Settings {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
drain_deadline_ms = 50

[relay]
workers = 2
jobs_max = 20

[relay.queue]
capacity = 3

[relay.retry]
attempt_timeout_ms = 120000

[relay.retry.backoff]
base_ms = 5
cap_ms = 20

[[relay.routes]]
name = "orders"
slots = 1

[[relay.routes]]
name = "search"
slots = 1

[downstream]
kind = "flaky"
latency_ms = {latency_ms}

[[routes]]
name = "search"
downstream = {search}
"#
    );
    let mut s =
        resilient_relay::server::Settings::from_toml(&text, &[]).expect("the settings parse");
    s.server.store = resilient_relay::server::store::StoreSpec::Sqlite(path.to_owned());
    s
}

/// The built-in downstream, taking a minute: jobs are in flight at a stop.
const SEARCH_SLOW: &str = r#"{ kind = "flaky", latency_ms = 60000 }"#;
const SEARCH_QUICK: &str = r#"{ kind = "flaky", latency_ms = 1 }"#;

async fn post_to(
    h: &common::Harness,
    path: &str,
    body: &str,
) -> resilient_relay::server::client::Reply {
    h.api().post_to(path, None, body, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_runs_each_job_again_on_the_route_it_was_accepted_on() {
    let _one = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let mut h = common::Harness::start(routed_settings(&path, SEARCH_SLOW, 60_000.0)).await;
    let search = common::job_of(&post_to(&h, "/relay/search", r#"{"q":"cats"}"#).await);
    let orders = common::job_of(&post_to(&h, "/relay/orders", r#"{"item":1}"#).await);
    for id in [&search, &orders] {
        h.wait_state(id, "in-flight").await;
    }
    let report = h.server.take().expect("server").shutdown().await;
    assert_eq!(report.left.live.len(), 2, "left at the drain deadline");

    // Back with `search` on a downstream of its own that counts its calls.
    let ds = resilient_relay::server::DownstreamService::spawn(
        &resilient_relay::server::DownstreamSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            fault: (&common::fault(0.0, 1.0)).into(),
            keys_max: 1_000,
            in_flight_max: 100,
            ledger: None,
        },
    )
    .await
    .expect("downstream starts");
    let own = format!(r#"{{ kind = "url", url = "{}/work" }}"#, ds.base_url());
    let mut h = common::Harness::start(routed_settings(&path, &own, 1.0)).await;
    h.downstream = Some(ds);
    let job = h.wait_state(&search, "succeeded").await;
    assert_eq!(job["route"], "search", "{job}");
    assert_eq!(job["redelivered"], true, "{job}");
    let job = h.wait_state(&orders, "succeeded").await;
    assert_eq!(job["route"], "orders", "{job}");
    let admin = h.downstream_get("/admin").await;
    assert_eq!(
        admin["calls"], 1,
        "only search's job reached search's downstream: {admin}"
    );
}

/// Each route's queue is full at the stop: the store holds as many jobs
/// never called as all the queues together, more than any one holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_takes_back_every_routes_full_queue() {
    let _one = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let mut h = common::Harness::start(routed_settings(&path, SEARCH_SLOW, 60_000.0)).await;
    let mut jobs = Vec::new();
    for route in ["orders", "search"] {
        let path = format!("/relay/{route}");
        // One in flight (the route's one slot), three queued.
        for i in 0..4 {
            let id = common::job_of(&post_to(&h, &path, &format!(r#"{{"n":{i}}}"#)).await);
            if i == 0 {
                h.wait_state(&id, "in-flight").await;
            }
            jobs.push((route, id));
        }
        let full = post_to(&h, &path, r#"{"n":4}"#).await;
        assert_eq!(full.status, 429, "{route}'s queue is full");
    }
    let report = h.server.take().expect("server").shutdown().await;
    assert_eq!(report.left.live.len(), 8, "left at the drain deadline");

    let settings = routed_settings(&path, SEARCH_QUICK, 1.0);
    let server = resilient_relay::server::RelayServer::start(&settings).await;
    let server = match server {
        Ok(s) => s,
        Err(e) => panic!("the store does not load back: {e:#}"),
    };
    let h = common::Harness {
        base: server.base_url(),
        server: Some(server),
        downstream: None,
        client: resilient_relay::server::client::HttpClient::new(1 << 20),
        signer: None,
        operator_token: None,
    };
    for (route, id) in &jobs {
        let job = h.wait_state(id, "succeeded").await;
        assert_eq!(job["route"], *route, "{job}");
    }
    let stats = h.stats().await;
    assert_eq!(stats["recovered_jobs"], 8, "{stats}");
}

// --- settings -------------------------------------------------------------------

/// `serve --print-config` with `args`: the printed settings, or the error.
fn print_config(args: &[&str]) -> Result<toml::Table, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .args(["serve", "--print-config"])
        .args(args)
        .env_remove("RELAY_STORE")
        .output()
        .expect("runs");
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(text.parse().expect("toml"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn store_of(t: &toml::Table) -> String {
    t["server"]["store"].as_str().unwrap_or("").to_owned()
}

#[test]
fn serve_keeps_its_store_beside_its_settings_unless_told_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "[server]\nseed = 3\n").expect("write");
    let named = dir.path().join("named.toml");
    std::fs::write(&named, "[server]\nstore = \"sqlite:jobs/work.db\"\n").expect("write");
    let d = dir.path().display();
    assert_eq!(store_of(&print_config(&[]).expect("ok")), "sqlite:relay.db");
    let beside = print_config(&["--config", plain.to_str().expect("utf-8")]).expect("ok");
    assert_eq!(store_of(&beside), format!("sqlite:{d}/relay.db"));
    let file = print_config(&["--config", named.to_str().expect("utf-8")]).expect("ok");
    assert_eq!(store_of(&file), format!("sqlite:{d}/jobs/work.db"));
    let flag = print_config(&["--store", "memory", "--store-sync", "normal"]).expect("ok");
    assert_eq!(store_of(&flag), "memory");
    assert_eq!(flag["server"]["store_sync"].as_str(), Some("normal"));
    assert_eq!(flag["server"]["commit_wait_ms"].as_integer(), Some(0));
}

#[test]
fn a_bad_store_setting_is_named_with_its_fix() {
    let e = print_config(&["--store", "redis://x"]).expect_err("refused");
    assert!(e.contains("--store") && e.contains("sqlite:PATH"), "{e}");
    let e = print_config(&["--commit-wait-ms", "51"]).expect_err("refused");
    assert!(e.contains("commit_wait_ms") && e.contains("50"), "{e}");
    let e = print_config(&["--store-sync", "sometimes"]).expect_err("refused");
    assert!(
        e.contains("full") && e.contains("normal") && e.contains("off"),
        "{e}"
    );
}
