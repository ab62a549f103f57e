//! Virtual time.
//!
//! Every pattern in the relay is told the time; none reads a clock. The
//! simulator advances a [`Time`] from event to event, and the real-time
//! adapter maps a monotonic clock onto it. One integer type for both keeps
//! them byte-for-byte comparable.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign};
use std::time::Duration;

/// Nanoseconds since the start of a run. Monotone by contract: the drivers
/// never hand a component an earlier `now` than before.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);
    /// Far enough away to mean "never" without overflowing additions.
    pub const NEVER: Time = Time(u64::MAX / 2);

    pub const fn from_nanos(ns: u64) -> Time {
        Time(ns)
    }

    pub const fn from_millis(ms: u64) -> Time {
        Time(ms * 1_000_000)
    }

    pub fn from_secs_f64(secs: f64) -> Time {
        Time(secs_to_nanos(secs))
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    pub fn as_millis_f64(self) -> f64 {
        nanos_to_ms(self.0 as f64)
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Converts seconds to whole nanoseconds, saturating at [`Time::NEVER`] and
/// treating negatives and NaN as zero.
pub fn secs_to_nanos(secs: f64) -> u64 {
    let ns = secs * 1e9;
    if ns.is_nan() || ns <= 0.0 {
        0
    } else if ns >= Time::NEVER.0 as f64 {
        Time::NEVER.0
    } else {
        ns as u64
    }
}

/// Whole nanoseconds in `ms` milliseconds (truncated), saturating like
/// [`secs_to_nanos`].
/// The one conversion from the milliseconds users write to relay time.
pub fn ms_to_nanos(ms: f64) -> u64 {
    secs_to_nanos(ms / 1e3)
}

/// `ms` milliseconds as a [`Duration`] of whole nanoseconds.
pub fn ms_to_duration(ms: f64) -> Duration {
    Duration::from_nanos(ms_to_nanos(ms))
}

/// Nanoseconds, counted as a float (a mean, a histogram value), in
/// milliseconds: how every latency is reported.
pub fn nanos_to_ms(ns: f64) -> f64 {
    ns / 1e6
}

/// A duration in milliseconds, as latencies are reported.
pub fn duration_ms(d: Duration) -> f64 {
    nanos_to_ms(d.as_nanos() as f64)
}

/// Converts a duration to nanoseconds, saturating at [`Time::NEVER`].
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).map_or(Time::NEVER.0, |ns| ns.min(Time::NEVER.0))
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(duration_nanos(d)).min(Time::NEVER.0))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_duration_saturates_at_never() {
        assert_eq!(Time::NEVER + Duration::from_secs(1), Time::NEVER);
        assert_eq!(
            Time::from_millis(1) + Duration::from_millis(2),
            Time::from_millis(3)
        );
    }

    #[test]
    fn since_never_goes_negative() {
        assert_eq!(
            Time::from_millis(1).since(Time::from_millis(5)),
            Duration::ZERO
        );
        assert_eq!(
            Time::from_millis(5).since(Time::from_millis(1)),
            Duration::from_millis(4)
        );
    }

    #[test]
    fn seconds_convert_with_saturation() {
        assert_eq!(secs_to_nanos(-1.0), 0);
        assert_eq!(secs_to_nanos(f64::NAN), 0);
        assert_eq!(secs_to_nanos(1.5), 1_500_000_000);
        assert_eq!(secs_to_nanos(1e30), Time::NEVER.as_nanos());
    }

    #[test]
    fn milliseconds_convert_to_whole_nanoseconds() {
        assert_eq!(ms_to_nanos(1.5), 1_500_000);
        assert_eq!(ms_to_nanos(0.001), 1_000);
        assert_eq!(ms_to_nanos(0.000_001_9), 1, "truncated, not rounded");
        assert_eq!(ms_to_nanos(250.5), 250_500_000);
        assert_eq!(ms_to_nanos(f64::INFINITY), Time::NEVER.as_nanos());
        assert_eq!(ms_to_duration(5_000.0), Duration::from_secs(5));
        assert_eq!(ms_to_duration(-3.0), Duration::ZERO);
        assert_eq!(nanos_to_ms(1_500_000.0), 1.5);
        assert_eq!(Time::from_nanos(250_500_000).as_millis_f64(), 250.5);
    }
}
