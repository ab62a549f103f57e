//! Bounded queue: the waiting room in front of the workers.
//!
//! An unbounded queue turns overload into unbounded latency and, eventually,
//! an out-of-memory crash: every request waits, and every waiting request is
//! already too late. A bounded queue turns overload into a fast, explicit
//! refusal (HTTP 429 with a retry-after hint), which the caller can act on.
//! See Google SRE, "Handling Overload".

use super::config_error::{ensure, parse_ms, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Jobs that may wait for a worker; one more is refused.
    pub capacity: usize,
    /// The retry-after hint sent with a refusal.
    pub retry_after_ms: f64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 100,
            retry_after_ms: 1000.0,
        }
    }
}

/// A checked [`QueueConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    pub(super) capacity: usize,
    pub(super) retry_after: Duration,
}

impl QueueConfig {
    /// A queue of zero could never admit anything: refused here.
    pub fn check(&self) -> Result<QueueSettings, ConfigError> {
        ensure(self.capacity >= 1, "capacity", "queue capacity must be ≥ 1")?;
        ensure(
            self.capacity <= 10_000_000,
            "capacity",
            "queue capacity must be ≤ 10,000,000",
        )?;
        Ok(QueueSettings {
            capacity: self.capacity,
            retry_after: parse_ms(self.retry_after_ms, "retry_after_ms")?,
        })
    }
}

/// A FIFO that never holds more than its capacity.
#[derive(Clone, Debug)]
pub struct BoundedQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
    retry_after: Duration,
    depth_max_seen: usize,
}

impl<T> BoundedQueue<T> {
    pub fn new(settings: &QueueSettings) -> Self {
        BoundedQueue {
            items: VecDeque::with_capacity(settings.capacity.min(4096)),
            capacity: settings.capacity,
            retry_after: settings.retry_after,
            depth_max_seen: 0,
        }
    }

    /// Appends `item` if there is room; otherwise hands it back with the hint.
    pub fn offer(&mut self, item: T) -> Result<(), (T, Duration)> {
        if self.items.len() >= self.capacity {
            return Err((item, self.retry_after));
        }
        self.items.push_back(item);
        self.depth_max_seen = self.depth_max_seen.max(self.items.len());
        debug_assert!(self.items.len() <= self.capacity);
        Ok(())
    }

    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The deepest the queue has been.
    pub fn depth_max_seen(&self) -> usize {
        self.depth_max_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize) -> BoundedQueue<u32> {
        let cfg = QueueConfig {
            capacity,
            retry_after_ms: 250.0,
        };
        BoundedQueue::new(&cfg.check().expect("valid"))
    }

    #[test]
    fn refuses_beyond_capacity_with_the_hint() {
        let mut q = queue(2);
        assert!(q.offer(1).is_ok());
        assert!(q.offer(2).is_ok());
        assert_eq!(q.offer(3), Err((3, Duration::from_millis(250))));
        assert_eq!(q.len(), 2);
        assert!(q.is_full());
    }

    #[test]
    fn is_first_in_first_out() {
        let mut q = queue(3);
        for i in 0..3 {
            q.offer(i).expect("room");
        }
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(0), Some(1), Some(2), None)
        );
        assert_eq!(q.depth_max_seen(), 3);
    }
}
