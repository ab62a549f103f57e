//! What the HTTP API shows of the relay: jobs, dead letters, redrives, stats.
//!
//! The relay's own types carry virtual times and raw payloads; these views
//! give times in milliseconds since the server started, payloads and
//! downstream answers as JSON (they are JSON when they enter), and a status
//! URL wherever a job is named, so a client can follow links instead of
//! building paths.

use super::limit_log::ListenerSnapshot;
use super::problem::Problem;
use super::routes::RouteTable;
use super::store::postgres::letters::SharedLetter;
use crate::relay::{
    named, BreakerState, ByteSize, CallError, DeadLetter, DeadLetterQueue, FallbackFrom, GiveUp,
    HedgeCounts, JobId, JobState, JobStatus, LateSuccess, LatencySummary, RedriveError,
    ReplayWindow, RouteState, RouteStats, StatsSnapshot, WhenFull,
};
use crate::time::{duration_ms, Time};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// `/relay/{handle}`, the place to ask about a job: named by its
/// unguessable handle, so only whoever was given the URL can read it.
pub fn status_url(job: JobId) -> String {
    format!("/relay/{}", super::job_handle::handle(job))
}

fn ms(t: Time) -> f64 {
    t.as_millis_f64()
}

/// A stored body as JSON, or as a string when it is not JSON.
pub fn body_json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    pub job: JobId,
    pub status_url: String,
    pub route: String,
    /// queued, in-flight, backing-off, succeeded or dead-lettered.
    pub state: JobState,
    pub attempts: u32,
    pub accepted_at_ms: f64,
    pub finished_at_ms: Option<f64>,
    pub last_error: Option<CallError>,
    /// The downstream's answer, once the job succeeded.
    pub response: Option<Value>,
    /// A success that came back after its attempt had timed out and a
    /// retry was already sent: the downstream may have done the work twice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_success: Option<LateSuccessView>,
    /// It was in flight when the relay last stopped and runs again: the
    /// downstream may have done its work twice.
    pub redelivered: bool,
    /// It failed for good and its route's fallback answered for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackView>,
}

/// A fallback answer as shown on a job: where it came from, and it.
#[derive(Clone, Debug, Serialize)]
pub struct FallbackView {
    /// `cache` (the last good answer to the same request) or `static`.
    pub from: &'static str,
    /// A cached answer's age when it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<f64>,
    pub response: Value,
}

impl FallbackView {
    pub fn new(response: &Bytes, from: FallbackFrom) -> FallbackView {
        FallbackView {
            from: from.name(),
            age_ms: match from {
                FallbackFrom::Cache { age } => Some(duration_ms(age)),
                FallbackFrom::Static => None,
            },
            response: body_json(response),
        }
    }
}

/// A late success as shown on a job or a dead letter.
#[derive(Clone, Debug, Serialize)]
pub struct LateSuccessView {
    pub attempt: u32,
    pub at_ms: f64,
    /// Late successes in all, this one included.
    pub count: u32,
    pub response: Value,
}

impl LateSuccessView {
    fn new(l: &LateSuccess<Bytes>) -> LateSuccessView {
        LateSuccessView {
            attempt: l.attempt,
            at_ms: ms(l.at),
            count: l.count,
            response: body_json(&l.response),
        }
    }
}

impl JobView {
    pub fn new(s: &JobStatus<Bytes>, routes: &RouteTable) -> JobView {
        JobView {
            job: s.job,
            status_url: status_url(s.job),
            route: routes.name(s.route).to_string(),
            state: s.state,
            attempts: s.attempts,
            accepted_at_ms: ms(s.accepted_at),
            finished_at_ms: s.finished_at.map(ms),
            last_error: s.last_error,
            response: s.response.as_ref().map(body_json),
            late_success: s.late_success.as_ref().map(LateSuccessView::new),
            redelivered: s.redelivered,
            fallback: s
                .fallback
                .as_ref()
                .map(|(r, from)| FallbackView::new(r, *from)),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LetterView {
    pub job: JobId,
    pub url: String,
    /// The route it failed on; a redrive sends it back there.
    pub route: String,
    pub key: Option<String>,
    pub attempts: u32,
    pub reason: GiveUp,
    pub last_error: CallError,
    pub accepted_at_ms: f64,
    pub dead_at_ms: f64,
    pub redrives: u32,
    pub payload_bytes: usize,
    /// An attempt that succeeded after it had timed out: redriving this
    /// letter may do the work a second time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_success: Option<LateSuccessView>,
    /// Only when one letter is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// On a shared store: the replica holding it (the only one that can
    /// redrive it), `null` while none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<Option<String>>,
    /// On a shared store: a redrive was asked of its holder.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redrive_asked: bool,
}

impl LetterView {
    pub fn new(
        l: &DeadLetter<std::sync::Arc<str>, Bytes>,
        with_payload: bool,
        routes: &RouteTable,
    ) -> LetterView {
        LetterView {
            job: l.job,
            url: format!("/dlq/{}", l.job),
            route: routes.name(l.route).to_string(),
            key: l.key.as_deref().map(str::to_owned),
            attempts: l.attempts,
            reason: l.reason,
            last_error: l.last_error,
            accepted_at_ms: ms(l.accepted_at),
            dead_at_ms: ms(l.dead_at),
            redrives: l.redrives,
            payload_bytes: l.payload.len(),
            late_success: l.late_success.as_ref().map(LateSuccessView::new),
            payload: with_payload.then(|| body_json(&l.payload)),
            held_by: None,
            redrive_asked: false,
        }
    }

    /// A letter as the shared store holds it (under its route's name,
    /// which this replica may not have).
    pub fn shared(l: &SharedLetter, with_payload: bool, routes: &RouteTable) -> LetterView {
        LetterView {
            route: l.route.clone(),
            held_by: Some(l.held_by.clone()),
            redrive_asked: l.redrive_asked,
            ..LetterView::new(&l.letter, with_payload, routes)
        }
    }
}

/// How full the dead-letter queue is, against both of its bounds, and
/// what it does when full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DlqFill {
    pub size: usize,
    pub capacity: usize,
    pub bytes: usize,
    pub bytes_max: usize,
    pub when_full: WhenFull,
    /// Whether the queue refuses new requests now (full, policy `refuse`).
    pub blocks_admission: bool,
    /// Letters a redrive of all has still to move into the queue.
    pub redrive_pending: usize,
}

impl DlqFill {
    pub fn new<K, P: ByteSize>(dlq: &DeadLetterQueue<K, P>) -> DlqFill {
        DlqFill {
            size: dlq.len(),
            capacity: dlq.capacity(),
            bytes: dlq.bytes(),
            bytes_max: dlq.bytes_max(),
            when_full: dlq.when_full(),
            blocks_admission: dlq.blocks_admission(),
            redrive_pending: dlq.redrive_pending(),
        }
    }
}

/// The dead-letter fill as the relay's task last published it, for `/ready`,
/// which answers without asking the task. Plain atomics, like the other
/// gauges: the task never waits on a reader.
#[derive(Debug, Default)]
pub struct DlqGauges {
    size: AtomicUsize,
    capacity: AtomicUsize,
    bytes: AtomicUsize,
    bytes_max: AtomicUsize,
    refuses_when_full: AtomicBool,
    blocks_admission: AtomicBool,
    redrive_pending: AtomicUsize,
}

impl DlqGauges {
    pub fn publish(&self, f: &DlqFill) {
        let r = Ordering::Relaxed;
        self.size.store(f.size, r);
        self.capacity.store(f.capacity, r);
        self.bytes.store(f.bytes, r);
        self.bytes_max.store(f.bytes_max, r);
        self.refuses_when_full
            .store(f.when_full == WhenFull::Refuse, r);
        self.blocks_admission.store(f.blocks_admission, r);
        self.redrive_pending.store(f.redrive_pending, r);
    }

    pub fn read(&self) -> DlqFill {
        let r = Ordering::Relaxed;
        DlqFill {
            size: self.size.load(r),
            capacity: self.capacity.load(r),
            bytes: self.bytes.load(r),
            bytes_max: self.bytes_max.load(r),
            when_full: if self.refuses_when_full.load(r) {
                WhenFull::Refuse
            } else {
                WhenFull::DropOldest
            },
            blocks_admission: self.blocks_admission.load(r),
            redrive_pending: self.redrive_pending.load(r),
        }
    }
}

/// `GET /ready` when not draining: the dead-letter queue's fill, so an
/// operator sees it coming.
#[derive(Clone, Debug, Serialize)]
pub struct ReadyView {
    pub status: &'static str,
    pub dlq: DlqFill,
}

/// `GET /ready` for a relay that is not draining: ready (200, with the
/// dead-letter fill) unless a full dead-letter queue refuses new work
/// (policy `refuse`): then a 503 problem that says how full it is.
pub fn ready(dlq: &DlqGauges, cid: &Arc<str>) -> Response {
    let dlq = dlq.read();
    if !dlq.blocks_admission {
        return Json(ReadyView {
            status: "ready",
            dlq,
        })
        .into_response();
    }
    let detail = format!(
        "the dead-letter queue is full ({} of {} letters, {} of {} bytes) and its policy is \
         `refuse`: new work is refused until letters are redriven ({} pending)",
        dlq.size, dlq.capacity, dlq.bytes, dlq.bytes_max, dlq.redrive_pending
    );
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "dlq-full",
        "Service unavailable",
        detail,
    )
    .correlation_id(cid)
    .into_response()
}

/// How far back idempotent replays really reach, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ReplayWindowView {
    pub ttl_ms: f64,
    /// Age of the oldest completed record held now.
    pub oldest_held_age_ms: Option<f64>,
    /// Age of the last record forgotten before its TTL (store full): the
    /// effective replay window while the store stays full.
    pub evicted_age_last_ms: Option<f64>,
    /// The youngest age at which a record was ever forgotten early.
    pub evicted_age_min_ms: Option<f64>,
    pub evicted_early: u64,
}

impl ReplayWindowView {
    pub fn new(w: &ReplayWindow, evicted_early: u64) -> ReplayWindowView {
        ReplayWindowView {
            ttl_ms: duration_ms(w.ttl),
            oldest_held_age_ms: w.oldest_held_age.map(duration_ms),
            evicted_age_last_ms: w.evicted_age_last.map(duration_ms),
            evicted_age_min_ms: w.evicted_age_min.map(duration_ms),
            evicted_early,
        }
    }
}

/// One page of `GET /dlq`.
#[derive(Clone, Debug, Serialize)]
pub struct DlqPage {
    pub size: usize,
    pub capacity: usize,
    pub bytes: usize,
    pub bytes_max: usize,
    pub overflowed: u64,
    pub evicted: u64,
    pub letters: Vec<LetterView>,
    /// Pass as `?after=` for the next page; absent on the last page.
    pub next_after: Option<JobId>,
}

/// What became of one redriven letter.
#[derive(Clone, Debug, Serialize)]
pub struct RedriveView {
    pub letter: JobId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RedriveError>,
}

impl RedriveView {
    pub fn new(letter: JobId, result: Result<JobId, RedriveError>) -> RedriveView {
        match result {
            Ok(job) => RedriveView {
                letter,
                job: Some(job),
                status_url: Some(status_url(job)),
                error: None,
            },
            Err(e) => RedriveView {
                letter,
                job: None,
                status_url: None,
                error: Some(e),
            },
        }
    }
}

/// The answer to `POST /dlq/redrive`: what moved now, what could not, and
/// (for a redrive of all) how many letters will move as the queue makes room.
#[derive(Clone, Debug, Serialize)]
pub struct RedriveReport {
    pub redriven: usize,
    pub not_redriven: usize,
    pub scheduled: usize,
    pub results: Vec<RedriveView>,
    /// On a shared store: letters held by other replicas, whose holders
    /// were asked to redrive them (they do at their lease thread's next tick).
    #[serde(skip_serializing_if = "is_zero")]
    pub asked_of_other_replicas: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl RedriveReport {
    pub fn new(results: Vec<RedriveView>, scheduled: usize) -> RedriveReport {
        let redriven = results.iter().filter(|r| r.job.is_some()).count();
        RedriveReport {
            redriven,
            not_redriven: results.len() - redriven,
            scheduled,
            results,
            asked_of_other_replicas: 0,
        }
    }
}

/// Errors answered by the HTTP layer before the relay saw the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpRejections {
    pub malformed: u64,
    pub too_large: u64,
    pub unsupported_media_type: u64,
    pub bad_signature: u64,
    pub bad_key: u64,
    pub busy: u64,
    /// Signed requests refused because the replay cache was full.
    pub replay_cache_full: u64,
    /// Operator endpoints refused (no, wrong token, or not loopback).
    pub operator_refused: u64,
}

/// The adaptive concurrency limit now and the range it has covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LimitGauge {
    pub limit: usize,
    pub min_seen: usize,
    pub max_seen: usize,
}

/// `GET /stats`: RED counters and latency quantiles, plus the relay's gauges.
#[derive(Clone, Debug, Serialize)]
pub struct StatsView {
    pub uptime_s: f64,
    #[serde(flatten)]
    pub red: StatsSnapshot,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub queue_depth_max_seen: usize,
    pub in_flight: usize,
    pub workers: usize,
    /// The adaptive concurrency limit, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<LimitGauge>,
    pub live_jobs: usize,
    /// Hedges sent, won, abandoned and not sent (by reason), when
    /// `[relay.hedge]` is set. Retries the retry controls refused are
    /// `retries_denied`, by reason, beside the other counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedges: Option<HedgeCounts>,
    pub breaker: Option<BreakerState>,
    pub dlq_size: usize,
    pub dlq_capacity: usize,
    /// The dead-letter queue against both bounds, and its policy.
    pub dlq: DlqFill,
    pub idempotency_keys: usize,
    pub replay_window: ReplayWindowView,
    /// New clients refused because every rate-limit bucket was in use.
    pub rate_limit_table_full: u64,
    pub draining: bool,
    /// Jobs whose backoff is over, waiting for a worker ahead of new work.
    pub retry_lane: usize,
    /// Late answers not kept on their dead letters: no room in the byte bound.
    pub dlq_late_answers_dropped: u64,
    pub http_rejected: HttpRejections,
    /// What the connection limits did: timeouts, refusals, oversized heads.
    pub connections: ListenerSnapshot,
    /// Each route's RED counts and state, the default route first.
    pub routes: Vec<RouteView>,
}

/// One route in `/stats` (and `/metrics`, under a `route` label).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RouteView {
    pub name: String,
    pub requests: u64,
    pub accepted: u64,
    pub refused: BTreeMap<String, u64>,
    /// Answered from the fallback at the door (the breaker was open).
    pub fallbacks_at_door: u64,
    /// Jobs that failed for good and were answered from the fallback.
    pub fallbacks_after_failure: u64,
    pub attempts: u64,
    pub attempt_errors: BTreeMap<String, u64>,
    pub succeeded: u64,
    pub dead_lettered: BTreeMap<String, u64>,
    pub job_latency: LatencySummary,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub retry_lane: usize,
    pub in_flight: usize,
    /// Calls this route may hold at once (its bulkhead).
    pub slots: usize,
    pub breaker: Option<BreakerState>,
    /// Answers its fallback cache holds.
    pub fallback_cached: usize,
    /// Its letters in the (shared) dead-letter queue.
    pub dead_letters: usize,
}

impl RouteView {
    pub fn new(
        name: String,
        stats: &RouteStats,
        state: &RouteState,
        queue_capacity: usize,
        dead_letters: usize,
    ) -> RouteView {
        RouteView {
            name,
            requests: stats.requests,
            accepted: stats.accepted,
            refused: named(&stats.refused),
            fallbacks_at_door: stats.fallbacks_at_door,
            fallbacks_after_failure: stats.fallbacks_after_failure,
            attempts: stats.attempts,
            attempt_errors: named(&stats.attempt_errors),
            succeeded: stats.succeeded,
            dead_lettered: named(&stats.dead_lettered),
            job_latency: stats.job_latency.summary(),
            queue_depth: state.queued,
            queue_capacity,
            retry_lane: state.retry_lane,
            in_flight: state.in_flight,
            slots: state.slots,
            breaker: state.breaker,
            fallback_cached: state.fallback_cached,
            dead_letters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_shows_its_late_success_only_when_it_has_one() {
        let mut status = JobStatus {
            job: JobId::new(0, 7),
            route: crate::relay::RouteId::DEFAULT,
            state: JobState::InFlight,
            attempts: 2,
            accepted_at: Time::from_millis(0),
            finished_at: None,
            last_error: Some(CallError::Timeout),
            response: None,
            late_success: None,
            redelivered: false,
            fallback: None,
        };
        let routes = RouteTable::default();
        let json = serde_json::to_value(JobView::new(&status, &routes)).expect("json");
        assert_eq!(json["route"], "default");
        assert!(json.get("fallback").is_none(), "{json}");
        assert!(json.get("late_success").is_none(), "{json}");
        status.late_success = Some(LateSuccess {
            attempt: 1,
            at: Time::from_millis(1_500),
            response: Bytes::from_static(br#"{"ok":true}"#),
            count: 1,
        });
        let json = serde_json::to_value(JobView::new(&status, &routes)).expect("json");
        assert_eq!(json["late_success"]["attempt"], 1);
        assert_eq!(json["late_success"]["at_ms"], 1500.0);
        assert_eq!(json["late_success"]["response"]["ok"], true);
    }

    fn fill(blocks_admission: bool) -> DlqFill {
        DlqFill {
            size: 10,
            capacity: 10,
            bytes: 4096,
            bytes_max: 1 << 20,
            when_full: WhenFull::Refuse,
            blocks_admission,
            redrive_pending: 3,
        }
    }

    async fn body(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16)
            .await
            .expect("a body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn ready_reports_the_dlq_fill_and_is_503_only_while_it_refuses_work() {
        let gauges = DlqGauges::default();
        let cid: Arc<str> = Arc::from("c");
        gauges.publish(&fill(false));
        assert_eq!(gauges.read(), fill(false), "published as read");
        let r = ready(&gauges, &cid);
        assert_eq!(r.status(), StatusCode::OK);
        let json = body(r).await;
        assert_eq!(json["status"], "ready");
        assert_eq!(json["dlq"]["bytes_max"], 1 << 20);
        assert_eq!(json["dlq"]["when_full"], "refuse");
        gauges.publish(&fill(true));
        let r = ready(&gauges, &cid);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let json = body(r).await;
        assert!(json["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("dlq-full")));
        assert!(json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("10 of 10 letters")));
    }
}
