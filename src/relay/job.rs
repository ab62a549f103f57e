//! Job identity and the outcome a job ends with.

use super::fallback::FallbackFrom;
use super::retry::{CallError, GiveUp};
use super::route::RouteId;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use serde_with::{DeserializeFromStr, SerializeDisplay};
use std::fmt;
use std::str::FromStr;

/// A job's id: the number of jobs admitted before it in the high 32 bits and
/// its slot in the relay's job table in the low 32 bits, so ids are unique
/// for the life of a relay, sort in admission order, and still index the
/// table directly. Written as `serial-slot` (`"17-3"`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, SerializeDisplay, DeserializeFromStr,
)]
pub struct JobId(pub u64);

impl JobId {
    pub fn new(serial: u32, slot: usize) -> JobId {
        JobId((u64::from(serial) << 32) | slot as u64)
    }

    /// Index in the job table; dense, reused after a job ends.
    pub fn slot(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }

    /// How many jobs were admitted before this one.
    pub fn serial(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.serial(), self.slot())
    }
}

impl FromStr for JobId {
    type Err = String;

    fn from_str(s: &str) -> Result<JobId, String> {
        let bad = || format!("`{s}` is not a job id (expected `serial-slot`, e.g. `17-3`)");
        let (serial, slot) = s.split_once('-').ok_or_else(bad)?;
        let serial = canonical_u32(serial).ok_or_else(bad)?;
        let slot = canonical_u32(slot).ok_or_else(bad)?;
        Ok(JobId::new(serial, slot as usize))
    }
}

/// A `u32` written the one way [`JobId`]'s `Display` writes it: ASCII
/// digits only, no sign, no leading zero (except `0` itself), at most ten
/// digits. Anything else would give one job several names.
fn canonical_u32(s: &str) -> Option<u32> {
    let digits = !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = s.len() > 1 && s.starts_with('0');
    if !digits || leading_zero {
        return None;
    }
    s.parse().ok()
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
    /// Answered as failed without a dead letter (a job shed by age under
    /// `shed_to = "fail"`).
    Failed { reason: GiveUp },
}

impl<P> Outcome<P> {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. })
    }

    /// Why the job did not succeed, if it did not.
    pub fn reason(&self) -> Option<GiveUp> {
        match self {
            Outcome::Succeeded { .. } => None,
            Outcome::DeadLettered { reason, .. } | Outcome::Failed { reason } => Some(*reason),
        }
    }
}

/// Where a job is, as status look-ups report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum JobState {
    Queued,
    InFlight,
    BackingOff,
    /// Its backoff ended; it waits in the retry lane for a worker.
    RetryQueued,
    Succeeded,
    DeadLettered,
    /// Never called: it waited in the queue too long and was answered as
    /// failed (`shed_to = "fail"`; under `"dead-letter"` it is dead-lettered
    /// with reason `shed`).
    Shed,
}

impl JobState {
    /// The kebab-case name, as in JSON and logs.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A job's state as reported to status look-ups.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobStatus<P> {
    pub job: JobId,
    #[serde(skip_serializing_if = "RouteId::is_default")]
    pub route: RouteId,
    pub state: JobState,
    /// Downstream attempts made so far, the first included.
    pub attempts: u32,
    pub accepted_at: Time,
    /// `None` while the job is live.
    pub finished_at: Option<Time>,
    pub last_error: Option<CallError>,
    /// The downstream's answer, once the job succeeded and while remembered.
    pub response: Option<P>,
    /// An earlier attempt succeeded after its timeout, when it could no
    /// longer complete the job: the downstream did this job's work once more
    /// than the outcome says.
    pub late_success: Option<LateSuccess<P>>,
    /// The job was in flight (or between attempts) when the relay crashed,
    /// and runs again after recovery: its work may be done twice.
    pub redelivered: bool,
    /// It failed for good and its route's fallback answered for it.
    #[serde(skip)]
    pub fallback: Option<(P, FallbackFrom)>,
}

/// A success that came back after its attempt had timed out and a retry
/// had been sent (or the job had ended). Kept on the job, its status and its
/// dead letter, so whoever redrives or retries it knows the work may
/// already be done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateSuccess<P> {
    /// The first such attempt.
    pub attempt: u32,
    /// When its answer arrived.
    pub at: Time,
    /// Its answer.
    pub response: P,
    /// Late successes in all, the first included (at most one per attempt).
    pub count: u32,
}

impl<P> LateSuccess<P> {
    /// Notes a late success in `slot`: the first is kept whole, later ones
    /// are counted.
    pub(super) fn note(slot: &mut Option<LateSuccess<P>>, attempt: u32, at: Time, response: P) {
        match slot {
            Some(first) => first.count = first.count.saturating_add(1),
            None => {
                *slot = Some(LateSuccess {
                    attempt,
                    at,
                    response,
                    count: 1,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = JobId::new(17, 3);
        assert_eq!((id.serial(), id.slot()), (17, 3));
        assert_eq!(id.to_string(), "17-3");
        assert_eq!("17-3".parse::<JobId>(), Ok(id));
        assert!("17".parse::<JobId>().is_err());
        assert!("a-3".parse::<JobId>().is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"17-3\"");
    }

    /// One id, one spelling: a sign, a leading zero, a space or an endless
    /// run of digits is not another way to name `0-0`.
    #[test]
    fn only_canonical_decimal_ids_parse() {
        assert_eq!("0-0".parse::<JobId>(), Ok(JobId::new(0, 0)));
        assert_eq!(
            "4294967295-4294967295".parse::<JobId>().map(|j| j.serial()),
            Ok(u32::MAX)
        );
        for bad in [
            "+0-+0",
            "00000-000",
            "01-2",
            "1-02",
            "-1-2",
            "1--2",
            " 1-2",
            "1-2 ",
            "1_0-2",
            "",
            "-",
            "1-",
            "-2",
            "4294967296-0",
            "0-4294967296",
            "١-٢",
            "0x1-2",
            "000000000000000000000000000000000000000001-1",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn job_states_are_named_as_the_api_shows_them() {
        let named = |s: JobState| (s.name(), serde_json::to_string(&s).expect("serialises"));
        assert_eq!(
            named(JobState::InFlight),
            ("in-flight", "\"in-flight\"".to_owned())
        );
        assert_eq!(
            named(JobState::DeadLettered),
            ("dead-lettered", "\"dead-lettered\"".to_owned())
        );
        assert_eq!(
            named(JobState::RetryQueued),
            ("retry-queued", "\"retry-queued\"".to_owned())
        );
    }

    #[test]
    fn a_late_success_keeps_the_first_answer_and_counts_the_rest() {
        let mut slot = None;
        LateSuccess::note(&mut slot, 1, Time::from_millis(5), 10);
        LateSuccess::note(&mut slot, 2, Time::from_millis(9), 20);
        assert_eq!(
            slot,
            Some(LateSuccess {
                attempt: 1,
                at: Time::from_millis(5),
                response: 10,
                count: 2
            })
        );
    }
}
