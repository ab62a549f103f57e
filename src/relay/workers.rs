//! Worker pool: a fixed number of concurrency slots.
//!
//! The pool bounds how many downstream calls run at once, which is what
//! protects the downstream (and the relay's own memory) when the queue is
//! deep. A slot is held from the start of an attempt to its outcome, whether
//! the outcome is an answer or a timeout.

/// Counts busy slots against a fixed limit.
#[derive(Clone, Debug)]
pub struct WorkerPool {
    slots: usize,
    busy: usize,
}

impl WorkerPool {
    pub fn new(slots: usize) -> WorkerPool {
        assert!(slots >= 1, "a worker pool needs at least one slot");
        WorkerPool { slots, busy: 0 }
    }

    /// Takes a slot if one is free.
    pub fn try_acquire(&mut self) -> bool {
        if self.busy >= self.slots {
            return false;
        }
        self.busy += 1;
        true
    }

    /// Gives a slot back. Releasing more than was taken is a bug.
    pub fn release(&mut self) {
        assert!(self.busy > 0, "worker slot released twice");
        self.busy -= 1;
    }

    pub fn has_free_slot(&self) -> bool {
        self.busy < self.slots
    }

    pub fn busy(&self) -> usize {
        self.busy
    }

    pub fn slots(&self) -> usize {
        self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_more_slots_than_it_has() {
        let mut pool = WorkerPool::new(2);
        assert!(pool.try_acquire());
        assert!(pool.try_acquire());
        assert!(!pool.try_acquire());
        pool.release();
        assert!(pool.try_acquire());
        assert_eq!(pool.busy(), 2);
    }

    #[test]
    #[should_panic(expected = "released twice")]
    fn releasing_an_idle_pool_is_a_bug() {
        WorkerPool::new(1).release();
    }
}
