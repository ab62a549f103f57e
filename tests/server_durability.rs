//! `kill -9` under load, then a restart on the same store: nothing that got
//! a 202 is lost.
//!
//! Real processes on loopback: a `downstream` that appends every side
//! effect to a ledger file, and `serve`, killed mid-way while requests are
//! queued and in flight. After the restart every accepted job ends (its key
//! replays its answer, the status URLs of the jobs still running resolve),
//! job ids never name two jobs, and the downstream saw a key twice only
//! for jobs marked redelivered. The same run with `--store memory` loses
//! jobs: that is what the test would see if the store did nothing.

#[path = "common/process.rs"]
mod process;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use process::Process as Proc;
use resilient_relay::server::client::{uri, HttpClient, Reply};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Keyed requests sent in all.
const REQUESTS: usize = 300;
/// The relay is killed once this many got their 202.
const KILL_AFTER: usize = 120;
const SENDERS: usize = 8;
/// Longest the test waits for anything.
const PATIENCE: Duration = Duration::from_secs(30);

fn serve(store: &str, downstream: &Proc) -> Proc {
    let ds = format!("{}/work", downstream.url());
    Proc::spawn(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            store,
            "--downstream-url",
            &ds,
            "--workers",
            "4",
            "--queue-capacity",
            "1000",
        ],
        "relay listening",
    )
}

/// What one key's request got before the crash.
#[derive(Clone, Debug)]
struct Sent {
    job: String,
    status_url: String,
}

fn body(i: usize) -> Bytes {
    Bytes::from(format!("{{\"n\":{i}}}"))
}

fn key(i: usize) -> String {
    format!("key-{i}")
}

async fn post(client: &HttpClient, base: &str, i: usize) -> Option<Reply> {
    let target = uri(base, "/relay").expect("uri");
    let header = (
        HeaderName::from_static("idempotency-key"),
        HeaderValue::from_str(&key(i)).expect("header"),
    );
    client.post_json(&target, &[header], body(i)).await.ok()
}

/// Sends every key once from a few tasks, until the relay is killed
/// after [`KILL_AFTER`] 202s; returns what got a 202.
async fn load_until_killed(relay: &mut Proc) -> BTreeMap<usize, Sent> {
    let base = relay.url();
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(BTreeMap::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (base, next, accepted, killed) =
            (base.clone(), next.clone(), accepted.clone(), killed.clone());
        tasks.push(tokio::spawn(async move {
            let client = HttpClient::new(1 << 20);
            while !killed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS {
                    return;
                }
                let Some(reply) = post(&client, &base, i).await else {
                    continue;
                };
                if reply.status == 202 {
                    let v = reply.json();
                    let sent = Sent {
                        job: v["job"].as_str().unwrap_or("").to_owned(),
                        status_url: v["status_url"].as_str().unwrap_or("").to_owned(),
                    };
                    accepted.lock().expect("map").insert(i, sent);
                }
            }
        }));
    }
    let started = Instant::now();
    while accepted.lock().expect("map").len() < KILL_AFTER {
        assert!(started.elapsed() < PATIENCE, "the relay accepts too slowly");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    relay.kill_9();
    killed.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let got = accepted.lock().expect("map").clone();
    got
}

/// Re-sends key `i` until it replays (200) or, when `fresh_ok`, a new job
/// takes it (202); `None` if neither came within the patience.
async fn settle(client: &HttpClient, base: &str, i: usize) -> Option<Reply> {
    let until = Instant::now() + PATIENCE;
    while Instant::now() < until {
        if let Some(r) = post(client, base, i).await {
            if r.status == 200 || r.status == 202 {
                return Some(r);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Polls a status URL until its job ends; `None` if it does not resolve.
async fn final_status(client: &HttpClient, base: &str, path: &str) -> Option<Value> {
    let target = uri(base, path).expect("uri");
    let until = Instant::now() + PATIENCE;
    loop {
        let r = client.get(&target).await.ok()?;
        if r.status == 404 {
            return None;
        }
        let v = r.json();
        if v["state"] == "succeeded" || v["state"] == "dead-lettered" || Instant::now() > until {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Effects per key in the ledger file.
fn ledger(path: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).expect("ledger");
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let name = line.split('\t').next().unwrap_or("").to_owned();
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_accepted_job_with_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger_path = dir.path().join("ledger.tsv");
    let store = format!("sqlite:{}", dir.path().join("relay.db").display());
    let ds_args = [
        "downstream",
        "--listen",
        "127.0.0.1:0",
        "--latency-ms",
        "20",
        "--ledger",
        ledger_path.to_str().expect("utf-8 path"),
    ];
    let downstream = Proc::spawn(&ds_args, "downstream listening");
    let mut relay = serve(&store, &downstream);
    let before = load_until_killed(&mut relay).await;
    assert!(before.len() >= KILL_AFTER);

    let relay = serve(&store, &downstream);
    let recovered = relay
        .logged("recovered from the store (redelivered jobs were in flight at the last stop and may run twice)")
        .expect("the restart says what it recovered");
    let recovered_jobs = recovered["fields"]["jobs"].as_u64().unwrap_or(0);
    assert!(
        recovered_jobs > 0,
        "jobs were queued at the kill: {recovered}"
    );
    let base = relay.url();
    let client = HttpClient::new(1 << 20);

    // The jobs still unfinished at the kill: their status URLs resolve and end.
    let mut redelivered = BTreeSet::new();
    let mut resolved = 0;
    for (i, sent) in &before {
        if let Some(v) = final_status(&client, &base, &sent.status_url).await {
            resolved += 1;
            assert_eq!(v["state"], "succeeded", "{i}: {v}");
            if v["redelivered"] == true {
                redelivered.insert(key(*i));
            }
        }
    }
    // A recovered job may be one whose 202 the kill cut off (committed, the
    // answer not yet out): at most one per sender, and its client holds no
    // URL; such keys are checked below.
    assert!(
        resolved as u64 + SENDERS as u64 >= recovered_jobs,
        "{resolved} of {recovered_jobs} resolve, with {SENDERS} senders"
    );

    // Every key that got a 202 replays its job's answer: none lost, none run again.
    for (i, sent) in &before {
        let r = settle(&client, &base, *i).await.expect("the key settles");
        assert_eq!(r.status, 200, "{i} ran again or was lost: {:?}", r.json());
        assert_eq!(
            r.json()["job"],
            sent.job.as_str(),
            "{i} replays its own job"
        );
    }
    // The rest of the load, sent again: each key ends with one job.
    let mut jobs: BTreeMap<String, usize> = BTreeMap::new();
    for (i, sent) in &before {
        jobs.insert(sent.job.clone(), *i);
    }
    for i in (0..REQUESTS).filter(|i| !before.contains_key(i)) {
        let r = settle(&client, &base, i).await.expect("the key is taken");
        let job = r.json()["job"].as_str().unwrap_or("").to_owned();
        let path = r.json()["status_url"].as_str().unwrap_or("").to_owned();
        if let Some(other) = jobs.insert(job.clone(), i) {
            assert_eq!(other, i, "job id {job} names two keys");
        }
        if r.status == 202 {
            let v = final_status(&client, &base, &path).await.expect("resolves");
            assert_eq!(v["state"], "succeeded", "{v}");
            if v["redelivered"] == true {
                redelivered.insert(key(i));
            }
        }
    }

    // Duplicates at the downstream only for jobs marked redelivered.
    let effects = ledger(&ledger_path);
    let twice: BTreeSet<String> = effects
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        twice.is_subset(&redelivered),
        "run twice but not marked redelivered: {:?}",
        twice.difference(&redelivered).collect::<Vec<_>>()
    );
    for i in 0..REQUESTS {
        assert!(effects.contains_key(&key(i)), "{} never ran", key(i));
    }
    eprintln!(
        "accepted before the kill {}, recovered {recovered_jobs}, redelivered {}, run twice {}",
        before.len(),
        redelivered.len(),
        twice.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_kill_with_the_memory_store_loses_jobs() {
    let downstream = Proc::spawn(
        &[
            "downstream",
            "--listen",
            "127.0.0.1:0",
            "--latency-ms",
            "20",
        ],
        "downstream listening",
    );
    let mut relay = serve("memory", &downstream);
    let before = load_until_killed(&mut relay).await;
    let relay = serve("memory", &downstream);
    let base = relay.url();
    let client = HttpClient::new(1 << 20);
    let mut lost = 0;
    for (i, sent) in &before {
        let replayed = post(&client, &base, *i)
            .await
            .is_some_and(|r| r.status == 200 && r.json()["job"] == sent.job.as_str());
        if !replayed {
            lost += 1;
        }
    }
    assert!(lost > 0, "a memory store kept everything?");
    eprintln!(
        "memory store: {lost} of {} accepted jobs lost",
        before.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_downstream_finishes_a_call_whose_caller_hung_up_and_writes_it_to_its_ledger() {
    use resilient_relay::server::flaky::FaultConfig;
    use resilient_relay::server::{DownstreamService, DownstreamSettings};
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger_path = dir.path().join("ledger.tsv");
    let fault = FaultConfig {
        latency_ms: 300.0,
        ..FaultConfig::default()
    };
    let ds = DownstreamService::spawn(&DownstreamSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        fault: (&fault).into(),
        keys_max: 100,
        in_flight_max: 100,
        ledger: Some(ledger_path.clone()),
    })
    .await
    .expect("downstream starts");
    let client = HttpClient::new(1 << 20);
    let work = uri(&ds.base_url(), "/work").expect("uri");
    let header = (
        HeaderName::from_static("idempotency-key"),
        HeaderValue::from_static("hung-up"),
    );
    // The caller gives up after 50 ms of the call's 300.
    let call = client.post_json(&work, std::slice::from_ref(&header), "{}");
    assert!(tokio::time::timeout(Duration::from_millis(50), call)
        .await
        .is_err());
    let keyless = client.post_json(&work, &[], "{\"k\":0}");
    assert!(tokio::time::timeout(Duration::from_millis(50), keyless)
        .await
        .is_err());
    let effects = uri(&ds.base_url(), "/effects/hung-up").expect("uri");
    let until = Instant::now() + PATIENCE;
    loop {
        let r = client.get(&effects).await.expect("answers");
        if r.json()["effects"] == 1 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the work was dropped with the connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = std::fs::read_to_string(&ledger_path).expect("ledger");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"hung-up\t1"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sha256:") && l.ends_with("\t0")),
        "a keyless effect is named by its payload: {text}"
    );
}
