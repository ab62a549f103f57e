//! `serve --store postgres://…`: replicas sharing one PostgreSQL, as child
//! processes on 127.0.0.1 ephemeral ports, against a private cluster this
//! binary starts (and stops). Without PostgreSQL installed these tests fail
//! and say how to install it.

#[path = "common/pg.rs"]
mod pg;
#[path = "common/process.rs"]
mod process;

use pg::PgCluster;
use process::Process;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// One cluster for the whole binary; each test has a database of its own.
fn cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(PgCluster::start)
}

/// A fresh database on the shared cluster; its URL.
fn database(name: &str) -> String {
    let c = cluster();
    c.psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    c.psql(&format!("CREATE DATABASE {name}"));
    format!("postgres://postgres@127.0.0.1:{}/{name}", c.port)
}

fn sql(url: &str, query: &str) -> String {
    cluster().psql_on(url, query)
}

/// Lease of the replicas under test: short, so a takeover is quick.
const LEASE_MS: &str = "600";

fn replica(store: &str, extra: &[&str]) -> Process {
    let failure_rate: &[&str] = if extra.contains(&"--failure-rate") {
        &[]
    } else {
        &["--failure-rate", "0"]
    };
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--store", store];
    args.extend(["--store-lease-ms", LEASE_MS, "--downstream", "flaky"]);
    args.extend(failure_rate);
    args.extend(extra);
    Process::spawn(&args, "relay listening")
}

/// A blocking HTTP/1.1 exchange on a fresh connection: status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let key = key.map_or(String::new(), |k| format!("idempotency-key: {k}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\n\
         {key}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn post(addr: SocketAddr, key: &str, body: &str) -> (u16, String) {
    http(addr, "POST", "/relay", Some(key), body)
}

fn wait_for(what: &str, patience: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Keys whose job neither succeeded (a replay record) nor was
/// dead-lettered, among `keys`.
fn unfinished(url: &str, keys: &[String]) -> Vec<String> {
    let done = sql(
        url,
        "SELECT key FROM relay_keys WHERE response IS NOT NULL
         UNION SELECT key FROM relay_letters WHERE key IS NOT NULL",
    );
    let done: std::collections::BTreeSet<&str> = done.lines().collect();
    keys.iter()
        .filter(|k| !done.contains(k.as_str()))
        .cloned()
        .collect()
}

#[test]
fn one_replica_restarts_from_postgres_with_its_jobs_ids_and_replays() {
    let url = database("restart");
    // Slow downstream, one worker: most jobs are still queued at the kill.
    let slow = ["--latency-ms", "150", "--workers", "1"];
    let mut a = replica(&url, &slow);
    let mut keys = Vec::new();
    for i in 0..12 {
        let key = format!("restart-{i}");
        let (status, body) = post(a.addr, &key, &format!(r#"{{"n":{i}}}"#));
        assert_eq!(status, 202, "{body}");
        keys.push(key);
    }
    let first_ids = sql(&url, "SELECT count(*) FROM relay_jobs");
    assert_ne!(first_ids, "0", "jobs are in the database before their 202s");
    a.kill_9();
    let b = replica(&url, &slow);
    wait_for("every accepted job to end", Duration::from_secs(30), || {
        unfinished(&url, &keys).is_empty()
    });
    // The replayed key answers the stored response, on the new process.
    let (status, body) = post(b.addr, &keys[0], r#"{"n":0}"#);
    assert_eq!(
        status, 200,
        "a succeeded key replays after the restart: {body}"
    );
    let (status, _) = post(b.addr, &keys[0], r#"{"n":"other"}"#);
    assert_eq!(status, 422, "the same key with another body is refused");
    // Ids continue from a new block: none repeats.
    let (status, body) = post(b.addr, "restart-new", "{}");
    assert_eq!(status, 202, "{body}");
    let serial: u64 = body
        .split(r#""job":""#)
        .nth(1)
        .and_then(|s| s.split('-').next())
        .and_then(|s| s.parse().ok())
        .expect("a job id");
    assert!(
        serial >= 1 << 22,
        "the restarted run takes a new block of serials: {body}"
    );
}

#[test]
fn a_key_is_one_job_whichever_replica_gets_it() {
    let url = database("keys");
    let slow = ["--latency-ms", "400"];
    let a = replica(&url, &slow);
    let b = replica(&url, &slow);
    let (status, body) = post(a.addr, "shared-1", r#"{"x":1}"#);
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(b.addr, "shared-1", r#"{"x":1}"#);
    assert_eq!(
        status, 409,
        "the other replica sees the key in flight: {body}"
    );
    let (status, body) = post(b.addr, "shared-1", r#"{"x":2}"#);
    assert_eq!(status, 422, "another body under the same key: {body}");
    wait_for("the job to succeed", Duration::from_secs(10), || {
        unfinished(&url, &["shared-1".to_owned()]).is_empty()
    });
    let (status, body) = post(b.addr, "shared-1", r#"{"x":1}"#);
    assert_eq!(status, 200, "the other replica replays the answer: {body}");
    // Two replicas racing for one key: exactly one job.
    let accepted = Arc::new(AtomicUsize::new(0));
    let racers: Vec<_> = [a.addr, b.addr, a.addr, b.addr]
        .into_iter()
        .map(|addr| {
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                if post(addr, "race", "{}").0 == 202 {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for r in racers {
        r.join().expect("racer");
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "one 202 for one key");
    // A burst: claims batch, so one statement carries several requests for
    // one key, and the two replicas' batches overlap. Still one 202 a key.
    let keys = 6;
    let per_key = 6;
    let wins: Arc<Vec<AtomicUsize>> = Arc::new((0..keys).map(|_| AtomicUsize::new(0)).collect());
    let burst: Vec<_> = (0..keys * per_key)
        .map(|i| {
            let wins = wins.clone();
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            std::thread::spawn(move || {
                let (status, body) = post(addr, &format!("burst-{}", i % keys), "{}");
                assert!(matches!(status, 202 | 409), "{status} {body}");
                if status == 202 {
                    wins[i % keys].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for r in burst {
        r.join().expect("burst sender");
    }
    let wins: Vec<usize> = wins.iter().map(|w| w.load(Ordering::Relaxed)).collect();
    assert_eq!(wins, vec![1; keys], "one 202 per key in the burst");
}

#[test]
fn expired_replays_are_swept_from_the_shared_keys() {
    let url = database("sweep");
    let a = replica(&url, &["--set", "relay.idempotency.ttl_ms=300"]);
    for i in 0..5 {
        let (status, body) = post(a.addr, &format!("sweep-{i}"), "{}");
        assert_eq!(status, 202, "{body}");
    }
    wait_for("the jobs to succeed", Duration::from_secs(10), || {
        sql(
            &url,
            "SELECT count(*) FROM relay_keys WHERE response IS NOT NULL",
        ) == "5"
    });
    // The keeper sweeps at each tick (a third of the lease).
    wait_for(
        "expired replays to be swept",
        Duration::from_secs(10),
        || sql(&url, "SELECT count(*) FROM relay_keys") == "0",
    );
}

#[test]
fn a_killed_replicas_jobs_are_finished_by_the_other_after_its_lease() {
    let url = database("failover");
    let slow = ["--latency-ms", "100", "--workers", "2"];
    let mut a = replica(&url, &slow);
    let b = replica(&url, &slow);
    let stop = Arc::new(AtomicBool::new(false));
    let keys = Arc::new(Mutex::new(Vec::new()));
    // Load on both replicas while one dies.
    let load: Vec<_> = [(a.addr, "a"), (b.addr, "b")]
        .into_iter()
        .map(|(addr, name)| {
            let (stop, keys) = (stop.clone(), keys.clone());
            std::thread::spawn(move || {
                for i in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("{name}-{i}");
                    if post(addr, &key, &format!(r#"{{"i":{i}}}"#)).0 == 202 {
                        keys.lock().expect("keys").push(key);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    a.kill_9();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().expect("load");
    }
    let keys = keys.lock().expect("keys").clone();
    let from_a = keys.iter().filter(|k| k.starts_with("a-")).count();
    assert!(from_a > 5, "the killed replica had accepted work: {from_a}");
    wait_for(
        "every 202 to end on the survivor",
        Duration::from_secs(40),
        || unfinished(&url, &keys).is_empty(),
    );
    // Jobs whose 202 the kill cut off end too.
    let patience = Instant::now() + Duration::from_secs(20);
    loop {
        let left = sql(
            &url,
            "SELECT serial, key, attempts, owner, lease_until < now() FROM relay_jobs",
        );
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < patience, "jobs left unfinished: {left}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(b);
}

/// Letters held by `owner` (`NULL` for none), and with `redrives`.
fn letters_where(url: &str, filter: &str) -> usize {
    sql(
        url,
        &format!("SELECT count(*) FROM relay_letters WHERE {filter}"),
    )
    .trim()
    .parse()
    .unwrap_or(usize::MAX)
}

#[test]
fn the_dead_letter_queue_is_shared_and_each_letter_redriven_by_its_holder() {
    let url = database("letters");
    // A's downstream always fails, with one attempt: every job a letter.
    let failing = ["--failure-rate", "1", "--set", "relay.retry.attempts_max=1"];
    let mut a = replica(&url, &failing);
    let b = replica(&url, &[]);
    for i in 0..3 {
        let (status, body) = post(a.addr, &format!("dead-{i}"), &format!(r#"{{"i":{i}}}"#));
        assert_eq!(status, 202, "{body}");
    }
    wait_for("three letters", Duration::from_secs(10), || {
        letters_where(&url, "true") == 3
    });
    let holder = sql(&url, "SELECT DISTINCT owner FROM relay_letters");
    let holder = holder.trim();
    // B lists A's letters, and shows one of them whole.
    let (status, list) = http(b.addr, "GET", "/dlq", None, "");
    assert_eq!(status, 200, "{list}");
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    let letters = list["letters"].as_array().expect("letters");
    assert_eq!(letters.len(), 3, "every replica's letters: {list}");
    assert!(letters.iter().all(|l| l["held_by"] == holder), "{list}");
    let one = letters[0]["job"].as_str().expect("an id");
    let (status, letter) = http(b.addr, "GET", &format!("/dlq/{one}"), None, "");
    assert_eq!(status, 200, "{letter}");
    assert!(letter.contains(r#""payload":{"i":"#), "{letter}");
    // A redrive asked of B is carried out by A, the holder: the jobs fail
    // again there and come back as letters redriven once.
    let (status, report) = http(b.addr, "POST", "/dlq/redrive", None, "");
    assert_eq!(status, 200, "{report}");
    assert!(
        report.contains(r#""asked_of_other_replicas":3"#),
        "{report}"
    );
    wait_for("A to redrive its letters", Duration::from_secs(10), || {
        letters_where(&url, "redrives = 1 AND NOT redrive_asked") == 3
    });
    // A dies: B takes its letters once the lease expires, and redrives them
    // itself, to a downstream that answers.
    a.kill_9();
    wait_for("B to adopt the letters", Duration::from_secs(10), || {
        letters_where(&url, &format!("owner IS NOT NULL AND owner <> '{holder}'")) == 3
    });
    let (status, report) = http(b.addr, "POST", "/dlq/redrive", None, "");
    assert_eq!(status, 200, "{report}");
    assert!(!report.contains("asked_of_other_replicas"), "{report}");
    let keys: Vec<String> = (0..3).map(|i| format!("dead-{i}")).collect();
    wait_for(
        "the redriven jobs to succeed",
        Duration::from_secs(10),
        || unfinished(&url, &keys).is_empty() && letters_where(&url, "true") == 0,
    );
}

#[test]
fn postgres_away_means_503_and_not_ready_then_it_recovers_by_itself() {
    // A cluster of its own: the others' tests keep theirs meanwhile.
    let own = PgCluster::start();
    let a = replica(&own.url(), &["--latency-ms", "5"]);
    assert_eq!(post(a.addr, "before", "{}").0, 202);
    assert_eq!(http(a.addr, "GET", "/ready", None, "").0, 200);
    own.pause();
    let refused = (0..50).any(|i| post(a.addr, &format!("away-{i}"), "{}").0 == 503);
    let (ready, _) = http(a.addr, "GET", "/ready", None, "");
    own.resume();
    assert!(
        refused,
        "a request while PostgreSQL is away is refused with 503"
    );
    assert_eq!(ready, 503, "/ready is false while PostgreSQL is away");
    wait_for("/ready to come back", Duration::from_secs(15), || {
        http(a.addr, "GET", "/ready", None, "").0 == 200
    });
    wait_for("a 202 again", Duration::from_secs(15), || {
        post(a.addr, &format!("back-{}", rand_suffix()), "{}").0 == 202
    });
}

/// A settings file of replicas with `routes`; `search`, when one of them,
/// calls a built-in downstream of its own taking `search_latency_ms`.
fn routes_file(
    dir: &std::path::Path,
    name: &str,
    routes: &[&str],
    search_latency_ms: u32,
) -> String {
    let mut text =
        String::from("[relay]\nworkers = 4\njobs_max = 1000\n[relay.queue]\ncapacity = 100\n");
    for route in routes {
        text.push_str(&format!("[[relay.routes]]\nname = \"{route}\"\n"));
    }
    if routes.contains(&"search") {
        text.push_str(&format!(
            "[[routes]]\nname = \"search\"\n\
             downstream = {{ kind = \"flaky\", failure_rate = 0, latency_ms = {search_latency_ms} }}\n"
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the settings");
    path.display().to_string()
}

/// A route's counters in a replica's `/stats`.
fn route_stats(addr: SocketAddr, route: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", "/stats", None, "");
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("json");
    let routes = stats["routes"].as_array().cloned().unwrap_or_default();
    routes
        .into_iter()
        .find(|r| r["name"] == route)
        .unwrap_or_else(|| panic!("no route {route} in {stats}"))
}

/// Accepts one keyed job on route `search` of `addr`, waits until it is
/// in flight and returns its status URL.
fn search_job_in_flight(url: &str, addr: SocketAddr, key: &str) -> String {
    let (status, body) = http(addr, "POST", "/relay/search", Some(key), r#"{"q":"cats"}"#);
    assert_eq!(status, 202, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("json");
    let status_url = reply["status_url"]
        .as_str()
        .expect("a status URL")
        .to_owned();
    wait_for("the job to start", Duration::from_secs(10), || {
        sql(
            url,
            &format!("SELECT attempts FROM relay_jobs WHERE key = '{key}'"),
        ) == "1"
    });
    status_url
}

#[test]
fn an_adopted_job_keeps_its_route_and_waits_for_a_replica_that_has_it() {
    let url = database("routes");
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = routes_file(dir.path(), "slow.toml", &["orders", "search"], 60_000);
    let quick = routes_file(dir.path(), "quick.toml", &["orders", "search"], 1);
    let orders_only = routes_file(dir.path(), "orders.toml", &["orders"], 1);
    let mut a = replica(&url, &["--config", &slow]);
    let b = replica(&url, &["--config", &orders_only]);
    let first = search_job_in_flight(&url, a.addr, "routed-1");
    let owner_a = sql(&url, "SELECT owner FROM relay_jobs WHERE key = 'routed-1'");
    a.kill_9();
    // B has no route `search`: past A's lease and several of B's reaper
    // passes, the job is still A's, waiting.
    std::thread::sleep(Duration::from_millis(3 * 600 + 500));
    assert_eq!(
        sql(
            &url,
            &format!(
                "SELECT owner = '{owner_a}' AND lease_until < now() FROM relay_jobs \
                 WHERE key = 'routed-1'"
            )
        ),
        "t",
        "a replica without the job's route left it alone"
    );
    // C has it: it takes the job as it starts, and runs it on `search`.
    let c = replica(&url, &["--config", &quick]);
    let keys = ["routed-1".to_owned()];
    wait_for("the job to end on C", Duration::from_secs(20), || {
        unfinished(&url, &keys).is_empty()
    });
    assert_eq!(route_stats(c.addr, "search")["succeeded"], 1);
    assert_eq!(route_stats(c.addr, "orders")["succeeded"], 0);
    // B tells its status from the database, under its route's name.
    let (status, body) = http(b.addr, "GET", &first, None, "");
    assert_eq!(status, 200, "{body}");
    let job: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["route"], "search", "{job}");

    // Another replica dies with a `search` job in flight: C's reaper adopts
    // it (B's leaves it) and runs it on `search`.
    let mut d = replica(&url, &["--config", &slow]);
    search_job_in_flight(&url, d.addr, "routed-2");
    d.kill_9();
    let keys = ["routed-2".to_owned()];
    wait_for("the job to end on C", Duration::from_secs(20), || {
        unfinished(&url, &keys).is_empty()
    });
    assert_eq!(route_stats(c.addr, "search")["succeeded"], 2);
    assert_eq!(route_stats(b.addr, "orders")["succeeded"], 0);
}

/// A fresh number per call, for keys that must not repeat.
fn rand_suffix() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// --- the store alone, against the reference fold ----------------------------

mod store {
    use super::{cluster, database, sql};
    use bytes::Bytes;
    use resilient_relay::relay::{
        CallError, DeadLetter, GiveUp, JobId, Outcome, Record, RelayConfig, RouteConfig, RouteId,
        Stored,
    };
    use resilient_relay::server::store::postgres::{new_owner, PgOptions, PgStore};
    use resilient_relay::server::store::{Loaded, RouteNames, Store};
    use resilient_relay::time::Time;
    use std::sync::Arc;
    use std::time::Duration;

    type Key = Arc<str>;

    const TTL: Duration = Duration::from_secs(3600);

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

    /// Of the routes most tests' stores have, `orders` (the default) and this.
    const SEARCH: RouteId = RouteId(1);

    fn options(url: &str, lease: Duration) -> PgOptions {
        PgOptions {
            url: url.to_owned(),
            owner: new_owner(),
            lease,
            replay_ttl: TTL,
            jobs_max: 100,
            queue_capacity: 100,
            letters_max: 100,
            replays_max: 100,
            routes: names(&["orders", "search"]),
        }
    }

    fn accepted(serial: u32, slot: usize, key: Option<&str>, at_ms: u64) -> Record<Key, Bytes> {
        Record::Accepted {
            job: JobId::new(serial, slot),
            route: RouteId::DEFAULT,
            key: key.map(Arc::from),
            client: 7,
            fingerprint: u64::from(serial) * 31,
            payload: Bytes::from(format!("payload-{serial}")),
            accepted_at: Time::from_millis(at_ms),
            redrives: 0,
        }
    }

    fn finished(serial: u32, slot: usize, key: Option<&str>, ok: bool) -> Record<Key, Bytes> {
        Record::Finished {
            job: JobId::new(serial, slot),
            key: key.map(Arc::from),
            fingerprint: u64::from(serial) * 31,
            attempts: 1,
            finished_at: Time::from_millis(500),
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

    fn letter(serial: u32, slot: usize) -> Record<Key, Bytes> {
        Record::DeadLettered(Box::new(DeadLetter {
            job: JobId::new(serial, slot),
            route: RouteId::DEFAULT,
            key: Some(Arc::from(format!("k{serial}"))),
            client: 7,
            fingerprint: u64::from(serial) * 31,
            payload: Bytes::from(format!("payload-{serial}")),
            attempts: 3,
            reason: GiveUp::AttemptsExhausted,
            last_error: CallError::ServerError,
            accepted_at: Time::from_millis(10),
            dead_at: Time::from_millis(400),
            redrives: 1,
            late_success: None,
        }))
    }

    /// A commit retried until the store has reconnected (a failed commit
    /// drops its connection; the next waits out a short backoff).
    fn commit_soon(store: &mut PgStore, records: &[Record<Key, Bytes>]) {
        let mut tries = 0;
        while let Err(e) = store.commit(records) {
            tries += 1;
            assert!(tries < 40, "the commit never went through: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_commit_refuses_a_job_whose_key_another_replica_holds() {
        let url = database("held");
        let o = options(&url, Duration::from_secs(5));
        let me = o.owner.clone();
        let mut store = PgStore::open(o).expect("open");
        store.load(1_000_000).expect("load");
        // Another replica claimed k1 after this one's claim was given back
        // under a request this relay admitted anyway.
        sql(
            &url,
            "INSERT INTO relay_keys (key, fingerprint, owner) VALUES ('k1', 31, 'other')",
        );
        let refused = store.commit(&[accepted(1, 1, Some("k1"), 1), accepted(2, 2, None, 1)]);
        let err = refused.expect_err("the key is another replica's");
        assert!(err.to_string().contains("held by another replica"), "{err}");
        assert_eq!(
            sql(&url, "SELECT owner FROM relay_keys WHERE key = 'k1'"),
            "other"
        );
        assert_eq!(
            sql(&url, "SELECT count(*) FROM relay_jobs"),
            "0",
            "nothing of the refused commit stays"
        );
        // This replica's own claim binds, and so does a key with no row.
        sql(
            &url,
            &format!("INSERT INTO relay_keys (key, fingerprint, owner) VALUES ('k3', 93, '{me}')"),
        );
        commit_soon(
            &mut store,
            &[accepted(3, 3, Some("k3"), 2), accepted(4, 4, Some("k4"), 2)],
        );
        assert_eq!(
            sql(&url, "SELECT string_agg(key || '=' || serial, ',' ORDER BY key) FROM relay_keys WHERE serial IS NOT NULL"),
            "k3=3,k4=4"
        );
    }

    /// What a restart must see: the jobs, letters and replays of the
    /// reference fold, whatever groups the records were committed in.
    #[test]
    fn a_restart_loads_what_the_reference_fold_keeps() {
        let url = database("fold");
        let records = vec![
            accepted(0, 0, Some("k0"), 1),
            accepted(1, 1, None, 2),
            accepted(2, 2, Some("k2"), 3),
            Record::Started {
                job: JobId::new(0, 0),
                attempt: 1,
            },
            Record::Started {
                job: JobId::new(2, 2),
                attempt: 2,
            },
            finished(0, 0, Some("k0"), true),
            accepted(3, 0, Some("k3"), 4),
            finished(2, 2, Some("k2"), false),
            letter(2, 2),
            letter(9, 5),
            Record::LetterRemoved {
                letter: JobId::new(9, 5),
            },
        ];
        let mut reference: Stored<Key, Bytes> = Stored::default();
        for r in records.clone() {
            reference.apply(r, TTL);
        }
        let lease = Duration::from_millis(1);
        let mut first = PgStore::open(options(&url, lease)).expect("open");
        let loaded = first.load(1_000_000).expect("load an empty store");
        assert!(loaded.stored.jobs.is_empty());
        for group in records.chunks(3) {
            first.commit(group).expect("commit");
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut second = PgStore::open(options(&url, Duration::from_secs(5))).expect("open");
        let again = second.load(1_000_100).expect("load");
        assert_eq!(
            again.epoch_unix_ms, loaded.epoch_unix_ms,
            "one epoch per database"
        );
        assert_eq!(
            again.handle_key, loaded.handle_key,
            "one job-handle key per database"
        );
        assert_eq!(
            again.stored.jobs, reference.jobs,
            "unfinished jobs, with attempts"
        );
        assert_eq!(
            again.stored.letters, reference.letters,
            "letters not removed"
        );
        assert_eq!(
            again.stored.replays, reference.replays,
            "replays of keyed successes"
        );
        assert!(
            again.stored.next_serial > loaded.stored.next_serial,
            "a new run takes a new block of serials"
        );
        // Leased to the second run now: a third finds nothing to take.
        let mut third = PgStore::open(options(&url, Duration::from_secs(5))).expect("open");
        let none = third.load(1_000_200).expect("load");
        assert!(
            none.stored.jobs.is_empty(),
            "jobs under a live lease stay with their owner"
        );
        let _ = cluster();
    }

    /// A job and a letter of `search`, and a job of `orders`, keyed.
    fn routed_records() -> Vec<Record<Key, Bytes>> {
        let mut search = accepted(1, 1, Some("s1"), 1);
        if let Record::Accepted { route, .. } = &mut search {
            *route = SEARCH;
        }
        let mut letter = letter(2, 2);
        if let Record::DeadLettered(l) = &mut letter {
            l.route = SEARCH;
        }
        vec![search, accepted(3, 3, Some("o3"), 2), letter]
    }

    /// Serials and their routes.
    type Routed = Vec<(u32, RouteId)>;

    /// The jobs' and the letters' routes a store gave back.
    fn routes_of(loaded: &Loaded) -> (Routed, Routed) {
        let jobs = loaded.stored.jobs.iter();
        let letters = loaded.stored.letters.iter();
        (
            jobs.map(|j| (j.job.serial(), j.route)).collect(),
            letters.map(|l| (l.job.serial(), l.route)).collect(),
        )
    }

    #[test]
    fn jobs_and_letters_come_back_on_the_route_of_their_name() {
        let url = database("route_names");
        let mut first = PgStore::open(options(&url, Duration::from_millis(1))).expect("open");
        first.load(1_000_000).expect("load");
        commit_soon(&mut first, &routed_records());
        assert_eq!(
            sql(
                &url,
                "SELECT string_agg(key || '=' || route, ',' ORDER BY key) FROM relay_keys"
            ),
            "o3=orders,s1=search",
            "a key's row names its job's route"
        );
        std::thread::sleep(Duration::from_millis(20));
        // Another replica lists `[[relay.routes]]` the other way round.
        let reordered = PgOptions {
            routes: names(&["search", "orders"]),
            ..options(&url, Duration::from_secs(5))
        };
        let mut second = PgStore::open(reordered).expect("open");
        let again = second.load(1_000_100).expect("load");
        assert_eq!(
            routes_of(&again),
            (
                vec![(1, RouteId(0)), (3, RouteId(1))],
                vec![(2, RouteId(0))]
            )
        );
    }

    #[test]
    fn a_replica_leaves_the_jobs_and_letters_of_routes_it_lacks() {
        let url = database("route_lacking");
        let mut first = PgStore::open(options(&url, Duration::from_millis(1))).expect("open");
        first.load(1_000_000).expect("load");
        commit_soon(&mut first, &routed_records());
        std::thread::sleep(Duration::from_millis(20));
        let orders_only = PgOptions {
            routes: names(&["orders"]),
            ..options(&url, Duration::from_secs(5))
        };
        let mut lacking = PgStore::open(orders_only).expect("open");
        let loaded = lacking.load(1_000_100).expect("load");
        assert_eq!(routes_of(&loaded), (vec![(3, RouteId::DEFAULT)], vec![]));
        assert_eq!(
            sql(
                &url,
                "SELECT count(*) FROM relay_jobs j JOIN relay_letters l ON true
                 WHERE j.serial = 1 AND j.lease_until < now() AND l.lease_until < now()"
            ),
            "1",
            "search's job and letter are left, their leases expired"
        );
        let mut having = PgStore::open(options(&url, Duration::from_secs(5))).expect("open");
        let loaded = having.load(1_000_200).expect("load");
        assert_eq!(
            routes_of(&loaded),
            (vec![(1, SEARCH)], vec![(2, SEARCH)]),
            "a replica with the route takes them"
        );
    }

    /// The version-1 tables, as that build created them (no routes), with
    /// one job and one letter.
    const TABLES_V1: &str = "
CREATE TABLE relay_meta (
    id            int PRIMARY KEY CHECK (id = 1),
    version       int NOT NULL,
    epoch_unix_ms bigint NOT NULL,
    handle_key    bytea NOT NULL
);
CREATE SEQUENCE relay_serial_blocks MINVALUE 0 START 0 MAXVALUE 1023 NO CYCLE;
CREATE TABLE relay_blocks (
    block       bigint PRIMARY KEY,
    owner       text NOT NULL,
    lease_until timestamptz NOT NULL
);
CREATE TABLE relay_jobs (
    serial      bigint PRIMARY KEY,
    id          bigint NOT NULL,
    key         text,
    client      bigint NOT NULL,
    fingerprint bigint NOT NULL,
    payload     bytea NOT NULL,
    accepted_at bigint NOT NULL,
    redrives    int NOT NULL,
    attempts    int NOT NULL DEFAULT 0,
    owner       text,
    lease_until timestamptz
);
CREATE INDEX relay_jobs_owner ON relay_jobs (owner);
CREATE INDEX relay_jobs_lease ON relay_jobs (lease_until);
CREATE TABLE relay_keys (
    key         text PRIMARY KEY,
    fingerprint bigint NOT NULL,
    serial      bigint,
    id          bigint,
    owner       text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    response    bytea,
    finished_at bigint,
    expires_at  bigint
);
CREATE TABLE relay_letters (
    serial        bigint PRIMARY KEY,
    id            bigint NOT NULL,
    key           text,
    client        bigint NOT NULL,
    fingerprint   bigint NOT NULL,
    payload       bytea NOT NULL,
    attempts      int NOT NULL,
    reason        text NOT NULL,
    last_error    text NOT NULL,
    accepted_at   bigint NOT NULL,
    dead_at       bigint NOT NULL,
    redrives      int NOT NULL,
    late_attempt  int,
    late_at       bigint,
    late_response bytea,
    late_count    int,
    owner         text,
    lease_until   timestamptz,
    redrive_asked boolean NOT NULL DEFAULT false
);
CREATE INDEX relay_letters_asked ON relay_letters (owner) WHERE redrive_asked;
CREATE INDEX relay_keys_expiry ON relay_keys (expires_at);
INSERT INTO relay_meta VALUES (1, 1, 1000000, decode(repeat('ab', 32), 'hex'));
SELECT setval('relay_serial_blocks', 0);
INSERT INTO relay_blocks VALUES (0, 'gone', now() - interval '1 hour');
INSERT INTO relay_jobs VALUES (5, 5 * 4294967296 + 1, 'k5', 1, 2, '\\x7b7d', 1000, 0, 1, 'gone', now() - interval '1 hour');
INSERT INTO relay_letters VALUES (7, 7 * 4294967296 + 2, NULL, 1, 2, '\\x5b5d', 3, 'attempts-exhausted',
    'server-error', 10, 20, 0, NULL, NULL, NULL, NULL, 'gone', now() - interval '1 hour', false);
";

    #[test]
    fn a_version_1_database_is_upgraded_in_place_with_its_work_on_the_default_route() {
        let url = database("version_1");
        sql(&url, TABLES_V1);
        let mut store = PgStore::open(options(&url, Duration::from_secs(5))).expect("open");
        let loaded = store.load(1_000_100).expect("a version-1 database loads");
        assert_eq!(loaded.epoch_unix_ms, 1_000_000);
        assert_eq!(
            routes_of(&loaded),
            (vec![(5, RouteId::DEFAULT)], vec![(7, RouteId::DEFAULT)])
        );
        assert_eq!(sql(&url, "SELECT version FROM relay_meta"), "2");
        assert_eq!(
            sql(
                &url,
                "SELECT count(*) FROM (SELECT route FROM relay_jobs
                 UNION ALL SELECT route FROM relay_letters) r WHERE route = ''"
            ),
            "2",
            "the rows already there are on the default route (`''`)"
        );
        // The upgraded database keeps routes from now on.
        let mut search = accepted(loaded.stored.next_serial, 0, None, 2_000);
        if let Record::Accepted { route, .. } = &mut search {
            *route = SEARCH;
        }
        commit_soon(&mut store, &[search]);
        assert_eq!(
            sql(&url, "SELECT route FROM relay_jobs WHERE serial <> 5"),
            "search"
        );
    }
}
