//! What the HTTP API shows of the relay: jobs, dead letters, redrives, stats.
//!
//! The relay's own types carry virtual times and raw payloads; these views
//! give times in milliseconds since the server started, payloads and
//! downstream answers as JSON (they are JSON when they enter), and a status
//! URL wherever a job is named, so a client can follow links instead of
//! building paths.

use crate::relay::{
    BreakerState, CallError, DeadLetter, GiveUp, JobId, JobState, JobStatus, RedriveError,
    StatsSnapshot,
};
use crate::time::Time;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

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
    /// queued, in-flight, backing-off, succeeded or dead-lettered.
    pub state: JobState,
    pub attempts: u32,
    pub accepted_at_ms: f64,
    pub finished_at_ms: Option<f64>,
    pub last_error: Option<CallError>,
    /// The downstream's answer, once the job succeeded.
    pub response: Option<Value>,
}

impl JobView {
    pub fn new(s: &JobStatus<Bytes>) -> JobView {
        JobView {
            job: s.job,
            status_url: status_url(s.job),
            state: s.state,
            attempts: s.attempts,
            accepted_at_ms: ms(s.accepted_at),
            finished_at_ms: s.finished_at.map(ms),
            last_error: s.last_error,
            response: s.response.as_ref().map(body_json),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LetterView {
    pub job: JobId,
    pub url: String,
    pub key: Option<String>,
    pub attempts: u32,
    pub reason: GiveUp,
    pub last_error: CallError,
    pub accepted_at_ms: f64,
    pub dead_at_ms: f64,
    pub redrives: u32,
    pub payload_bytes: usize,
    /// Only when one letter is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl LetterView {
    pub fn new(l: &DeadLetter<std::sync::Arc<str>, Bytes>, with_payload: bool) -> LetterView {
        LetterView {
            job: l.job,
            url: format!("/dlq/{}", l.job),
            key: l.key.as_deref().map(str::to_owned),
            attempts: l.attempts,
            reason: l.reason,
            last_error: l.last_error,
            accepted_at_ms: ms(l.accepted_at),
            dead_at_ms: ms(l.dead_at),
            redrives: l.redrives,
            payload_bytes: l.payload.len(),
            payload: with_payload.then(|| body_json(&l.payload)),
        }
    }
}

/// One page of `GET /dlq`.
#[derive(Clone, Debug, Serialize)]
pub struct DlqPage {
    pub size: usize,
    pub capacity: usize,
    pub overflowed: u64,
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
    pub live_jobs: usize,
    pub breaker: Option<BreakerState>,
    pub dlq_size: usize,
    pub dlq_capacity: usize,
    pub idempotency_keys: usize,
    pub draining: bool,
    pub http_rejected: HttpRejections,
}
