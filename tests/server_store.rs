//! The embedded store: what it gives back, and how it refuses bad files.
//!
//! Every refusal must name the file and say what to do, and must leave the
//! file as it was (never a silent reset). Read-only and full disks are real:
//! a tiny tmpfs, mounted for the test (it needs root; without it the test
//! says so and checks what it can without one).

mod common;

use bytes::Bytes;
use proptest::prelude::*;
use resilient_relay::relay::{CallError, DeadLetter, GiveUp, JobId, Outcome, Record, Stored};
use resilient_relay::server::actor::Key;
use resilient_relay::server::store::sqlite::{SqliteStore, SCHEMA_VERSION};
use resilient_relay::server::store::{Store, StoreError, StoreSync};
use resilient_relay::time::Time;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);
/// The unix millisecond the test stores are created at.
const EPOCH_MS: u64 = 1_700_000_000_000;

fn store(path: &Path) -> SqliteStore {
    SqliteStore::new(path, StoreSync::Full, TTL)
}

fn accepted(serial: u32, key: Option<&str>, at_ms: u64) -> Record<Key, Bytes> {
    Record::Accepted {
        job: JobId::new(serial, serial as usize % 7),
        route: resilient_relay::relay::RouteId::DEFAULT,
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

fn letter(serial: u32, at_ms: u64, late: bool) -> Record<Key, Bytes> {
    Record::DeadLettered(Box::new(DeadLetter {
        job: JobId::new(serial, serial as usize % 7),
        route: resilient_relay::relay::RouteId::DEFAULT,
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

// --- refusals -----------------------------------------------------------------

/// A store with some content, closed.
fn written_store(path: &Path) {
    let mut s = store(path);
    s.load(EPOCH_MS).expect("opens");
    let big: Vec<Record<Key, Bytes>> = (0..400)
        .map(|i| Record::Accepted {
            job: JobId::new(i, 0),
            route: resilient_relay::relay::RouteId::DEFAULT,
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
            route: resilient_relay::relay::RouteId::DEFAULT,
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
