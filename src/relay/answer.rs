//! What a client's request is, and what the relay answers it at once.
//!
//! The answer comes before any downstream call: accepted (202), the stored
//! answer of a key that already succeeded (an idempotent replay), or a
//! refusal that says why and when trying again makes sense.

use super::fallback::FallbackFrom;
use super::job::JobId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A client's request, as the relay sees it.
#[derive(Clone, Debug)]
pub struct Request<K, P> {
    /// Who sent it, for the per-client rate limit.
    pub client: u64,
    pub key: Option<K>,
    /// A hash of the payload, to detect a key reused with another payload.
    pub fingerprint: u64,
    pub payload: P,
}

/// The relay's immediate answer to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer<P> {
    /// 202: queued.
    Accepted { job: JobId },
    /// The key already succeeded: its stored answer.
    Replayed { job: JobId, response: P },
    /// The route's breaker is open: an answer from its fallback, not from
    /// the downstream (no job was made).
    Fallback { response: P, from: FallbackFrom },
    /// Not taken; `retry_after` says when trying again makes sense.
    Refused {
        why: Refusal,
        retry_after: Option<Duration>,
        job: Option<JobId>,
    },
}

/// Why a request was refused at the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(enum_map::Enum, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Refusal {
    RateLimited,
    /// Queue full: 429.
    Shed,
    /// Breaker open and queue full, dead-letter queue full, or draining: 503.
    Unavailable,
    Conflict,
    Mismatch,
    /// Every idempotency record is in flight.
    KeysFull,
    /// A key is required, or too long.
    BadKey,
}

impl Refusal {
    /// The kebab-case name, as in TOML, JSON and traces.
    pub fn name(self) -> &'static str {
        self.into()
    }
}
