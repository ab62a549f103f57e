//! The event heap: what happens next, in `(time, seq)` order.
//!
//! `seq` is a counter stamped at scheduling, so two events at the same
//! virtual time run in the order they were scheduled. That tie-break is what
//! makes a run replay exactly: no ordering is left to the heap's internals.
//! Time jumps from event to event; nothing ticks.
//!
//! The heap holds only 16-byte keys (time, then `seq` and the event's slot
//! packed in one word) and the events sit in a slab, so a sift moves small
//! entries and a 4-ary heap reads a node's children from one cache line:
//! the cost of an event grows little with how many are pending.

use crate::time::Time;
use dary_heap::QuaternaryHeap;
use slab::Slab;
use std::cmp::Reverse;

/// Low bits of a key's second word: the event's slot.
const SLOT_BITS: u32 = 24;
/// Events pending at once, at most.
pub const PENDING_MAX: usize = 1 << SLOT_BITS;
/// Events scheduled over a run, at most (2^40: days of simulation at
/// tens of millions of events per second).
const SEQ_MAX: u64 = 1 << (64 - SLOT_BITS);

/// Ordered by time, then by `seq` (the high bits of `seq_slot`), which is
/// unique: the slot never decides an order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at: Time,
    seq_slot: u64,
}

/// A min-heap of events keyed by `(time, seq)`.
pub struct Scheduler<E> {
    heap: QuaternaryHeap<Reverse<Key>>,
    events: Slab<E>,
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
            heap: QuaternaryHeap::with_capacity(1024),
            events: Slab::with_capacity(1024),
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
        assert!(
            self.events.len() < PENDING_MAX,
            "more than {PENDING_MAX} events pending"
        );
        self.seq += 1;
        assert!(self.seq < SEQ_MAX, "more than {SEQ_MAX} events in one run");
        let slot = self.events.insert(event) as u64;
        self.heap.push(Reverse(Key {
            at,
            seq_slot: (self.seq << SLOT_BITS) | slot,
        }));
        self.len_max_seen = self.len_max_seen.max(self.heap.len());
    }

    /// Removes the next event and moves the clock to it.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        let Reverse(Key { at, seq_slot }) = self.heap.pop()?;
        debug_assert!(at >= self.now);
        self.now = at;
        let slot = (seq_slot & (PENDING_MAX as u64 - 1)) as usize;
        Some((at, self.events.remove(slot)))
    }

    pub fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse(k)| k.at)
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

    /// Slots are reused as events leave, in whatever order: a tie must
    /// still go to the event scheduled first, never to the lower slot.
    #[test]
    fn ties_follow_scheduling_order_whatever_the_slots() {
        let mut s = Scheduler::new();
        for i in 0..8 {
            s.schedule(Time::from_millis(i), i);
        }
        for _ in 0..7 {
            s.pop();
        }
        // Slot 7 is taken; 6, 5, … are free and handed out from the last
        // freed, so later events get lower slots than earlier ones.
        let at = Time::from_millis(20);
        for i in 100..105 {
            s.schedule(at, i);
        }
        s.schedule(Time::from_millis(10), 99);
        let order: Vec<_> = std::iter::from_fn(|| s.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, vec![7, 99, 100, 101, 102, 103, 104]);
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
