//! Shedding by age: a job that waited too long in the queue is not called.
//!
//! Under overload a queue fills with work whose callers have already given
//! up; calling the downstream for it spends capacity on answers nobody
//! reads, which keeps the overload going after its trigger ends (the
//! "metastable" failures of Bronson et al., HotOS 2021). Dropping such a
//! job at dequeue, as CoDel does with packets, frees that capacity; but the
//! relay promised every accepted job an outcome, so a shed job is answered
//! (finished as failed) or dead-lettered, never dropped silently.
//! See "Fail at Scale" (Maurer, ACM Queue 2015), on controlled delay.

use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a job shed by age goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShedTo {
    /// A dead letter with reason `shed`, which can be redriven later.
    #[default]
    DeadLetter,
    /// Finished as failed with reason `shed`; no letter is kept.
    Fail,
}

/// A checked shedding rule: jobs older than `after` in the queue are shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgeShedding {
    pub(super) after: Duration,
    pub(super) to: ShedTo,
}

impl AgeShedding {
    /// When a job that entered the queue at `queued_at` becomes too old.
    pub fn deadline(&self, queued_at: Time) -> Time {
        queued_at + self.after
    }

    /// Whether a job that entered the queue at `queued_at` has waited
    /// longer than allowed by `now`.
    pub fn is_expired(&self, now: Time, queued_at: Time) -> bool {
        now > self.deadline(queued_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_expired_only_after_waiting_longer_than_the_bound() {
        let s = AgeShedding {
            after: Duration::from_millis(100),
            to: ShedTo::Fail,
        };
        let at = Time::from_millis(50);
        assert!(
            !s.is_expired(Time::from_millis(150), at),
            "exactly the bound"
        );
        assert!(s.is_expired(Time::from_nanos(150_000_001), at));
        assert_eq!(s.deadline(at), Time::from_millis(150));
    }

    #[test]
    fn shed_to_is_named_in_kebab_case() {
        let json = serde_json::to_string(&ShedTo::DeadLetter).expect("serialises");
        assert_eq!(json, "\"dead-letter\"");
    }
}
