//! A sliding window of per-second counts, for the patterns that judge "the
//! last n seconds" (Finagle's retry budget, the retry breaker, adaptive
//! throttling).
//!
//! One slot per whole second of the virtual clock, reused as the window
//! slides, as Finagle's `WindowedAdder` does: memory is bounded by the
//! window's length whatever the request rate, and every update is O(1)
//! amortised. The window at `now` holds the second `now` falls in and the
//! `len - 1` seconds before it.

use crate::time::Time;

/// The longest window any pattern may ask for, in seconds.
pub const WINDOW_S_MAX: u32 = 3_600;

/// `N` signed counts per second over the last `len` seconds.
#[derive(Clone, Debug)]
pub struct SecondWindow<const N: usize> {
    slots: Vec<[i64; N]>,
    /// The newest second the slots describe.
    head: u64,
    totals: [i64; N],
}

impl<const N: usize> SecondWindow<N> {
    /// A window of `len_s` seconds (1 ..= [`WINDOW_S_MAX`], checked by the
    /// caller's config).
    pub fn new(len_s: u32) -> SecondWindow<N> {
        assert!(
            (1..=WINDOW_S_MAX).contains(&len_s),
            "window length checked by config"
        );
        SecondWindow {
            slots: vec![[0; N]; len_s as usize],
            head: 0,
            totals: [0; N],
        }
    }

    /// Adds `delta` to count `i` in the second `now` falls in.
    pub fn add(&mut self, now: Time, i: usize, delta: i64) {
        let slot = self.advance(now);
        self.slots[slot][i] += delta;
        self.totals[i] += delta;
    }

    /// Count `i` summed over the window at `now`.
    pub fn sum(&mut self, now: Time, i: usize) -> i64 {
        self.advance(now);
        self.totals[i]
    }

    /// Slides the window to `now`, forgetting the seconds that left it, and
    /// returns the slot of `now`'s second. Time never runs backwards for a
    /// caller; an earlier `now` lands in the newest second.
    fn advance(&mut self, now: Time) -> usize {
        let second = now.as_nanos() / 1_000_000_000;
        let len = self.slots.len() as u64;
        if second > self.head {
            let gone = (second - self.head).min(len);
            for s in (second - gone + 1)..=second {
                let slot = (s % len) as usize;
                for (total, count) in self.totals.iter_mut().zip(self.slots[slot]) {
                    *total -= count;
                }
                self.slots[slot] = [0; N];
            }
            self.head = second;
        }
        (self.head % len) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Time {
        Time::from_secs_f64(s)
    }

    #[test]
    fn counts_leave_the_window_after_its_length() {
        let mut w = SecondWindow::<1>::new(3);
        w.add(at(0.5), 0, 1);
        w.add(at(1.5), 0, 10);
        assert_eq!(w.sum(at(2.9), 0), 11);
        assert_eq!(w.sum(at(3.0), 0), 10, "second 0 left the window");
        assert_eq!(w.sum(at(4.0), 0), 0);
    }

    #[test]
    fn a_long_gap_clears_everything() {
        let mut w = SecondWindow::<2>::new(5);
        w.add(at(1.0), 0, 3);
        w.add(at(1.0), 1, -2);
        assert_eq!(w.sum(at(1000.0), 0), 0);
        assert_eq!(w.sum(at(1000.0), 1), 0);
        w.add(at(1000.2), 1, 4);
        assert_eq!(w.sum(at(1001.0), 1), 4);
    }
}
