//! The server's relay task on tokio's paused clock.
//!
//! The test plays the downstream itself (calls are handed over, answers go
//! back on the channel that came with them), and time moves only when every
//! task waits, straight to the next timer. So retries, timeouts, draining
//! and stopping are checked at exact instants, in milliseconds of wall
//! time, and cannot flake on a slow machine.

use bytes::Bytes;
use resilient_relay::relay::CallError;
use resilient_relay::relay::{Answer, JobId, Relay, RelayConfig, Request, Routing};
use resilient_relay::rng::{Domain, Seed};
use resilient_relay::server::actor::{Command, Leftovers, RelayHandle, Unavailable};
use resilient_relay::server::calls::{CallDone, Caller, Handoff};
use resilient_relay::server::views::JobView;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Settings as a user would write them; a constant backoff, so the retry
/// instants are known exactly.
fn config(extra: &str) -> RelayConfig {
    let text = format!(
        "workers = 2\njobs_max = 100\nhistory_max = 100\n\
         [queue]\ncapacity = 10\n\
         [retry]\nattempts_max = 3\nattempt_timeout_ms = 500\n\
         backoff = {{ kind = \"constant\", base_ms = 100, cap_ms = 100 }}\n{extra}"
    );
    let cfg: RelayConfig = toml::from_str(&text).expect("test settings parse");
    cfg.validate().expect("test settings are valid");
    cfg
}

/// A running relay task and the downstream's end of its calls.
struct Harness {
    relay: RelayHandle,
    calls: mpsc::Receiver<Handoff>,
    task: tokio::task::JoinHandle<Leftovers>,
}

fn start(cfg: &RelayConfig) -> Harness {
    let (calls_tx, calls) = mpsc::channel(64);
    let settings = cfg.check().expect("test settings are valid");
    let relay = Relay::new(&settings, Seed(1).stream(Domain::Relay, 0));
    let (handle, actor) = RelayHandle::new(relay, Caller::Handoff(calls_tx), 64, 64);
    Harness {
        relay: handle,
        calls,
        task: tokio::spawn(actor.run()),
    }
}

impl Harness {
    async fn submit(&self, key: &str) -> Answer<Bytes> {
        let request = Request {
            client: 1,
            key: Some(Arc::from(key)),
            fingerprint: 0,
            payload: Bytes::from_static(b"{}"),
        };
        self.relay
            .ask(|reply| Command::Submit {
                request,
                routing: Routing::default(),
                cid: Arc::from("test"),
                reply,
            })
            .await
            .expect("the task answers")
    }

    async fn accepted(&self, key: &str) -> JobId {
        match self.submit(key).await {
            Answer::Accepted { job } => job,
            other => panic!("expected 202 for {key}, got {other:?}"),
        }
    }

    /// The next call the relay starts; panics if none comes within `within`
    /// of virtual time.
    async fn next_call(&mut self, within: Duration) -> Handoff {
        tokio::time::timeout(within, self.calls.recv())
            .await
            .expect("a call within the bound")
            .expect("the task is alive")
    }

    async fn status(&self, job: JobId) -> serde_json::Value {
        let view: Option<JobView> = self
            .relay
            .ask(|reply| Command::Status { job, reply })
            .await
            .expect("the task answers");
        serde_json::to_value(view.expect("the job is known")).expect("a view is JSON")
    }

    async fn stop(self) -> Leftovers {
        let left = self
            .relay
            .ask(|reply| Command::Stop { reply })
            .await
            .expect("the task answers a stop");
        let ended = self.task.await.expect("the task did not panic");
        assert_eq!(ended.live.len(), left.live.len());
        left
    }
}

async fn answer(call: Handoff, result: Result<&'static [u8], CallError>) {
    let done = CallDone {
        call: call.request.call,
        result: result.map(Bytes::from_static),
        retry_after: None,
    };
    call.done.send(done).await.expect("the task takes answers");
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_retried_exactly_one_backoff_later() {
    let mut h = start(&config(""));
    let job = h.accepted("k1").await;
    let first = h.next_call(Duration::from_millis(1)).await;
    assert_eq!(first.request.call.attempt, 1);
    assert_eq!(first.request.timeout, Some(Duration::from_millis(500)));
    tokio::time::advance(Duration::from_millis(30)).await;
    let failed_at = Instant::now();
    answer(first, Err(CallError::ServerError)).await;
    let second = h.next_call(Duration::from_secs(1)).await;
    assert_eq!(second.request.call.attempt, 2);
    assert_eq!(
        failed_at.elapsed(),
        Duration::from_millis(100),
        "constant backoff"
    );
    answer(second, Ok(b"{\"done\":true}")).await;
    tokio::task::yield_now().await;
    let status = h.status(job).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["attempts"], 2, "{status}");
    assert_eq!(status["response"]["done"], true, "{status}");
    let left = h.stop().await;
    assert!(left.live.is_empty());
    assert_eq!(left.succeeded, 1);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_attempt_times_out_and_its_late_answer_is_ignored() {
    let mut h = start(&config(""));
    let job = h.accepted("k1").await;
    let start = Instant::now();
    let first = h.next_call(Duration::from_millis(1)).await;
    // No answer: the relay's own timer ends the attempt at 500 ms, and the
    // retry starts one backoff (100 ms) later.
    let second = h.next_call(Duration::from_secs(2)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(600));
    assert_eq!(second.request.call.attempt, 2);
    let status = h.status(job).await;
    assert_eq!(status["state"], "in-flight", "{status}");
    assert_eq!(status["last_error"], "timeout", "{status}");
    // The first attempt's answer comes after all: too late to count.
    answer(first, Ok(b"{\"late\":true}")).await;
    tokio::task::yield_now().await;
    assert_eq!(h.status(job).await["state"], "in-flight");
    answer(second, Ok(b"{\"late\":false}")).await;
    tokio::task::yield_now().await;
    let status = h.status(job).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(
        status["response"]["late"], false,
        "the current attempt's answer"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_is_queued_behind_the_workers_and_served_in_order() {
    let mut h = start(&config(""));
    let mut jobs = Vec::new();
    for i in 0..6 {
        jobs.push(h.accepted(&format!("k{i}")).await);
    }
    // Two workers: two calls, the other four jobs wait in the queue.
    let mut calls = vec![
        h.next_call(Duration::from_millis(1)).await,
        h.next_call(Duration::from_millis(1)).await,
    ];
    assert!(
        tokio::time::timeout(Duration::from_millis(50), h.calls.recv())
            .await
            .is_err(),
        "no third call while both workers are busy"
    );
    assert_eq!(h.status(jobs[2]).await["state"], "queued");
    // Each answer frees a worker, which takes the oldest queued job.
    let mut started: Vec<JobId> = calls.iter().map(|c| c.request.call.job).collect();
    while !calls.is_empty() {
        answer(calls.remove(0), Ok(b"{}")).await;
        if started.len() < jobs.len() {
            let call = h.next_call(Duration::from_millis(1)).await;
            started.push(call.request.call.job);
            calls.push(call);
        }
    }
    assert_eq!(started, jobs, "jobs start in arrival order, each once");
    tokio::task::yield_now().await;
    assert_eq!(h.relay.live_jobs(), 0);
    assert_eq!(h.stop().await.succeeded, 6);
}

#[tokio::test(start_paused = true)]
async fn draining_refuses_new_work_and_finishes_what_was_accepted() {
    let mut h = start(&config(""));
    let job = h.accepted("before").await;
    h.relay.drain().await.expect("the task is alive");
    match h.submit("after").await {
        Answer::Refused { job: None, .. } => {}
        other => panic!("a draining relay admits nothing, got {other:?}"),
    }
    assert!(h.relay.is_draining());
    let call = h.next_call(Duration::from_millis(1)).await;
    assert_eq!(call.request.call.job, job);
    let idle = {
        let relay = h.relay.clone();
        tokio::spawn(async move { relay.idle().await })
    };
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!(!idle.is_finished(), "a job is still live");
    answer(call, Ok(b"{}")).await;
    tokio::time::timeout(Duration::from_secs(1), idle)
        .await
        .expect("idle once the last job finished")
        .expect("no panic");
    let left = h.stop().await;
    assert!(left.live.is_empty());
    assert_eq!(left.succeeded, 1);
}

/// A request already in the task's inbox when the drain is sent is
/// admitted first; the drain must then wait for its job, not see the
/// gauge of the turn before and call the relay idle.
#[tokio::test(start_paused = true)]
async fn a_job_admitted_just_before_the_drain_is_waited_for() {
    let mut h = start(&config(""));
    let (reply, accepted) = tokio::sync::oneshot::channel();
    let request = Request {
        client: 1,
        key: Some(Arc::from("last")),
        fingerprint: 0,
        payload: Bytes::from_static(b"{}"),
    };
    h.relay
        .tell(Command::Submit {
            request,
            routing: Routing::default(),
            cid: Arc::from("test"),
            reply,
        })
        .await
        .expect("the task is alive");
    let live = h.relay.drain().await.expect("the task is alive");
    // What `idle` reads, right after the drain: it must count the job.
    assert_eq!(h.relay.live_jobs(), 1, "the drain saw a stale gauge");
    assert_eq!(live, 1);
    assert!(matches!(accepted.await, Ok(Answer::Accepted { .. })));
    let idle = {
        let relay = h.relay.clone();
        tokio::spawn(async move { relay.idle().await })
    };
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!(
        !idle.is_finished(),
        "the job admitted before the drain is live"
    );
    answer(h.next_call(Duration::from_millis(1)).await, Ok(b"{}")).await;
    tokio::time::timeout(Duration::from_secs(1), idle)
        .await
        .expect("idle once it finished")
        .expect("no panic");
    assert_eq!(h.stop().await.succeeded, 1);
}

#[tokio::test(start_paused = true)]
async fn stopping_reports_every_unfinished_job_with_its_payload() {
    let mut h = start(&config(""));
    let a = h.accepted("a").await;
    let b = h.accepted("b").await;
    let c = h.accepted("c").await;
    let _held = [
        h.next_call(Duration::from_millis(1)).await,
        h.next_call(Duration::from_millis(1)).await,
    ];
    let left = h.stop().await;
    let mut live: Vec<JobId> = left.live.iter().map(|(view, _, _)| view.job).collect();
    live.sort();
    assert_eq!(live, vec![a, b, c]);
    assert!(left
        .live
        .iter()
        .all(|(_, cid, payload)| { cid.as_deref() == Some("test") && payload == "{}" }));
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_become_a_dead_letter_at_the_expected_instant() {
    let mut h = start(&config(""));
    let job = h.accepted("k").await;
    let start = Instant::now();
    for attempt in 1..=3 {
        let call = h.next_call(Duration::from_secs(1)).await;
        assert_eq!(call.request.call.attempt, attempt);
        answer(call, Err(CallError::ServerError)).await;
    }
    tokio::task::yield_now().await;
    // Three immediate failures, two backoffs between them.
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    let status = h.status(job).await;
    assert_eq!(status["state"], "dead-lettered", "{status}");
    assert_eq!(status["attempts"], 3);
    let left = h.stop().await;
    assert_eq!(left.dead_letters.len(), 1);
    assert_eq!(left.dead_letters[0].job, job);
    assert_eq!(left.dead_lettered, 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_inbox_is_an_answer_and_a_burst_in_it_is_handled_in_order() {
    let h = start(&config(""));
    // Fill the inbox (64 places) before the task runs: on the test's one
    // thread it runs only when the test waits.
    let mut answers = Vec::new();
    for i in 0..64 {
        let request = Request {
            client: 1,
            key: Some(Arc::<str>::from(format!("k{i}"))),
            fingerprint: 0,
            payload: Bytes::from_static(b"{}"),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let command = Command::Submit {
            request,
            routing: Routing::default(),
            cid: Arc::from("burst"),
            reply,
        };
        h.relay.tell(command).await.expect("room in the inbox");
        answers.push(answer);
    }
    let overflow = h.relay.ask(|reply| Command::Stats { reply }).await;
    assert!(
        matches!(overflow, Err(Unavailable::Full)),
        "a full inbox is answered at once, not waited on"
    );
    let mut accepted = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        if let Answer::Accepted { .. } = answer.await.expect("every queued command is answered") {
            accepted.push(i);
        }
    }
    // Two workers and ten queue places take the first twelve; the rest are shed.
    assert_eq!(accepted, (0..12).collect::<Vec<_>>());
    h.stop().await;
}

/// Log lines written while a test runs, on its one thread.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_with(&self, text: &str) -> usize {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// A store of one key forgets the previous key for each new one: 10,000
/// evictions within one interval are one warning, not 10,000.
#[tokio::test(start_paused = true)]
async fn ten_thousand_idempotency_evictions_log_one_warning_per_interval() {
    let (logs, _guard) = capture_logs();
    let mut h = start(&config("[idempotency]\nkeys_max = 1\n"));
    for i in 0..=10_000 {
        h.accepted(&format!("k{i}")).await;
        answer(h.next_call(Duration::from_secs(1)).await, Ok(b"ok")).await;
    }
    let stats = h.relay.ask(|reply| Command::Stats { reply }).await;
    let window = stats.expect("the task answers").replay_window;
    assert_eq!(window.evicted_early, 10_000);
    assert!(window.evicted_age_last_ms.is_some_and(|ms| ms < 1000.0));
    assert_eq!(logs.lines_with("idempotency store full"), 1);
    // The next interval gets its own line.
    tokio::time::advance(Duration::from_secs(11)).await;
    h.accepted("late").await;
    assert_eq!(logs.lines_with("idempotency store full"), 2);
    h.stop().await;
}

/// Redrive-all answers with what moved now and what is scheduled, and the
/// scheduled letters move as the queue makes room, until none is left.
#[tokio::test(start_paused = true)]
async fn redrive_all_moves_what_fits_now_and_the_rest_as_room_opens() {
    let mut h = start(&config("[dlq]\ncapacity = 100\n"));
    for i in 0..30 {
        h.accepted(&format!("k{i}")).await;
        for _ in 0..3 {
            answer(
                h.next_call(Duration::from_secs(1)).await,
                Err(CallError::ServerError),
            )
            .await;
        }
    }
    let report = h
        .relay
        .ask(|reply| Command::Redrive {
            letters: None,
            cid: Arc::from("op"),
            reply,
        })
        .await
        .expect("the task answers");
    // Two workers and ten queue places.
    assert_eq!((report.redriven, report.scheduled), (12, 18));
    for _ in 0..30 {
        answer(h.next_call(Duration::from_secs(1)).await, Ok(b"ok")).await;
    }
    tokio::task::yield_now().await;
    let stats = h
        .relay
        .ask(|reply| Command::Stats { reply })
        .await
        .expect("the task answers");
    assert_eq!((stats.dlq.size, stats.dlq.redrive_pending), (0, 0));
    let red = &stats.red;
    assert_eq!(
        (red.redriven, red.succeeded, red.dead_lettered),
        (30, 30, 30)
    );
    assert_eq!(
        red.accepted + red.redriven,
        red.succeeded + red.dead_lettered + stats.live_jobs as u64
    );
    h.stop().await;
}
