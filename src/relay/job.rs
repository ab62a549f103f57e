//! Job identity and the outcome a job ends with.

use super::retry::{CallError, GiveUp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's id: its slot in the relay's job table in the low 32 bits and the
/// number of jobs admitted before it in the high 32 bits, so ids are unique
/// for the life of a relay and still index the table directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl JobId {
    pub fn new(serial: u32, slot: usize) -> JobId {
        JobId((u64::from(serial) << 32) | slot as u64)
    }

    /// Index in the job table; dense, reused after a job ends.
    pub fn slot(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one downstream attempt, so that a late answer to an attempt
/// that already timed out is recognised and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CallId {
    pub job: JobId,
    pub attempt: u32,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome<P> {
    /// The downstream answered; its answer is kept for idempotent replays.
    Succeeded { response: P },
    /// Retries ended without success; the job is in the dead-letter queue.
    DeadLettered {
        reason: GiveUp,
        last_error: CallError,
    },
}

impl<P> Outcome<P> {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. })
    }
}
