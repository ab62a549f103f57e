//! The server's only clock: tokio's monotonic clock, seen as virtual time.
//!
//! The relay is told the time and never reads it. In the simulator time
//! jumps from event to event; here it is the monotonic time elapsed since
//! the server started, in nanoseconds, so that the same [`Time`] values mean
//! the same thing to both drivers. Reads never go backwards, even across a
//! wake-up that was rounded up to its deadline. With a durable store, time
//! starts where the store's epoch puts it ([`Clock::start_at`]), so the
//! times it holds (acceptance, expiry of replays) keep their meaning.

use crate::time::{duration_nanos, Time};
use std::time::Duration;
use tokio::time::Instant;

/// Maps between tokio instants and relay time.
#[derive(Clone, Debug)]
pub struct Clock {
    start: Instant,
    /// Relay time at `start`.
    offset: Time,
    last: Time,
}

/// How far ahead "never" sleeps: tokio instants cannot hold `Time::NEVER`.
const FAR_AHEAD: Duration = Duration::from_secs(365 * 24 * 3600);

impl Clock {
    /// Starts relay time at zero, now.
    pub fn start() -> Clock {
        Clock::start_at(Time::ZERO)
    }

    /// Starts relay time at `now`, now.
    pub fn start_at(now: Time) -> Clock {
        Clock {
            start: read_monotonic(),
            offset: now,
            last: now,
        }
    }

    /// The current relay time; never earlier than the previous read.
    pub fn now(&mut self) -> Time {
        let elapsed = duration_nanos(read_monotonic() - self.start);
        let measured = Time::from_nanos(self.offset.as_nanos().saturating_add(elapsed));
        self.last = self.last.max(measured);
        self.last
    }

    /// The current time, but at least `due`: a timer that fired was due.
    pub fn now_at_least(&mut self, due: Time) -> Time {
        self.last = self.now().max(due);
        self.last
    }

    /// The tokio instant at which relay time reaches `t`.
    pub fn instant_at(&self, t: Time) -> Instant {
        let after_start = t.as_nanos().saturating_sub(self.offset.as_nanos());
        let ahead = Duration::from_nanos(after_start).min(FAR_AHEAD);
        self.start + ahead
    }

    /// An instant so far ahead that it stands for "no timer".
    pub fn far_future(&self) -> Instant {
        self.start + FAR_AHEAD
    }
}

/// The one real clock read of the server: tokio's monotonic clock (which
/// tests could pause). Relay time comes from it through a [`Clock`]; the
/// only other readers measure wall durations for reports (how long a drain
/// took, the benchmark's latencies), never feed the relay.
pub fn read_monotonic() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn time_is_monotone_and_maps_back_to_instants() {
        let mut clock = Clock::start();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        let later = clock.now_at_least(Time::from_millis(10_000));
        assert_eq!(later, Time::from_millis(10_000));
        assert!(clock.now() >= later, "a read after a jump never goes back");
        assert!(clock.instant_at(Time::NEVER) <= clock.far_future());
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_started_later_counts_on_from_there() {
        let at = Time::from_millis(5_000);
        let mut clock = Clock::start_at(at);
        assert_eq!(clock.now(), at);
        tokio::time::advance(Duration::from_millis(20)).await;
        assert_eq!(clock.now(), Time::from_millis(5_020));
        let due = clock.instant_at(Time::from_millis(5_100));
        assert_eq!(due - clock.instant_at(at), Duration::from_millis(100));
        assert_eq!(
            clock.instant_at(Time::ZERO),
            clock.instant_at(at),
            "the past is now"
        );
    }
}
