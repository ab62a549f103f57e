//! The event heap: what happens next, in `(time, seq)` order.
//!
//! `seq` is a counter stamped at scheduling, so two events at the same
//! virtual time run in the order they were scheduled. That tie-break is what
//! makes a run replay exactly: no ordering is left to the heap's internals.
//! Time jumps from event to event; nothing ticks.

use crate::time::Time;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Entry<E> {
    at: Time,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-heap of events keyed by `(time, seq)`.
pub struct Scheduler<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    now: Time,
    len_max_seen: usize,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl<E> Scheduler<E> {
    pub fn new() -> Self {
        Scheduler {
            heap: BinaryHeap::with_capacity(1024),
            seq: 0,
            now: Time::ZERO,
            len_max_seen: 0,
        }
    }

    /// Schedules `event` at `at`, which must not be in the past.
    pub fn schedule(&mut self, at: Time, event: E) {
        assert!(
            at >= self.now,
            "event scheduled in the past: {at} < {}",
            self.now
        );
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            event,
        });
        self.len_max_seen = self.len_max_seen.max(self.heap.len());
    }

    /// Removes the next event and moves the clock to it.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        let Entry { at, event, .. } = self.heap.pop()?;
        debug_assert!(at >= self.now);
        self.now = at;
        Some((at, event))
    }

    pub fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|e| e.at)
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn len_max_seen(&self) -> usize {
        self.len_max_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_ties_in_scheduling_order() {
        let mut s = Scheduler::new();
        s.schedule(Time::from_millis(5), "late");
        s.schedule(Time::from_millis(1), "first");
        s.schedule(Time::from_millis(1), "second");
        s.schedule(Time::from_millis(1), "third");
        let order: Vec<_> = std::iter::from_fn(|| s.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, vec!["first", "second", "third", "late"]);
        assert_eq!(s.now(), Time::from_millis(5));
    }

    #[test]
    #[should_panic(expected = "in the past")]
    fn scheduling_in_the_past_is_a_bug() {
        let mut s = Scheduler::new();
        s.schedule(Time::from_millis(5), ());
        s.pop();
        s.schedule(Time::from_millis(4), ());
    }
}
