//! Poisson arrivals of an open-loop source.

use super::config::RatePhase;
use crate::rng::{exponential, Stream};
use crate::time::Time;

/// Poisson arrivals under a piecewise-constant rate. Because the exponential
/// is memoryless, a draw that crosses a phase boundary is simply redrawn
/// from the boundary at the next phase's rate: exact, not approximate.
pub struct Arrivals {
    phases: Vec<(Time, f64)>,
    rng: Stream,
    sent: u64,
    requests_max: u64,
}

impl Arrivals {
    pub fn new(
        per_s: Option<f64>,
        schedule: &[RatePhase],
        requests_max: Option<u64>,
        rng: Stream,
    ) -> Arrivals {
        let phases = match per_s {
            Some(r) => vec![(Time::NEVER, r)],
            None => schedule
                .iter()
                .map(|p| (Time::from_secs_f64(p.until_s), p.per_s))
                .collect(),
        };
        Arrivals {
            phases,
            rng,
            sent: 0,
            requests_max: requests_max.unwrap_or(u64::MAX),
        }
    }

    /// The next arrival strictly after `now`, or `None` when done.
    pub fn next_after(&mut self, now: Time) -> Option<Time> {
        if self.sent >= self.requests_max {
            return None;
        }
        let mut t = now;
        for &(until, rate) in &self.phases {
            if t >= until {
                continue;
            }
            if rate <= 0.0 {
                t = until;
                continue;
            }
            let gap_s = exponential(&mut self.rng, 1.0 / rate);
            let next = Time::from_nanos(t.as_nanos() + crate::time::secs_to_nanos(gap_s).max(1));
            if next < until {
                self.sent += 1;
                return Some(next);
            }
            t = until;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Domain, Seed};

    #[test]
    fn schedule_rates_are_followed() {
        let schedule = [
            RatePhase {
                until_s: 10.0,
                per_s: 100.0,
            },
            RatePhase {
                until_s: 20.0,
                per_s: 1000.0,
            },
        ];
        let mut a = Arrivals::new(None, &schedule, None, Seed(1).stream(Domain::Arrivals, 0));
        let (mut t, mut first, mut second) = (Time::ZERO, 0, 0);
        while let Some(next) = a.next_after(t) {
            if next >= Time::from_millis(20_000) {
                break;
            }
            t = next;
            if t < Time::from_millis(10_000) {
                first += 1;
            } else {
                second += 1;
            }
        }
        assert!((900..1100).contains(&first), "{first} in phase one");
        assert!((9_700..10_300).contains(&second), "{second} in phase two");
    }

    #[test]
    fn requests_max_ends_the_source() {
        let mut a = Arrivals::new(
            Some(10.0),
            &[],
            Some(3),
            Seed(1).stream(Domain::Arrivals, 0),
        );
        let mut t = Time::ZERO;
        let mut n = 0;
        while let Some(next) = a.next_after(t) {
            t = next;
            n += 1;
        }
        assert_eq!(n, 3);
    }
}
