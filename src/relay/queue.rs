//! Bounded queue: the waiting room in front of the workers.
//!
//! An unbounded queue turns overload into unbounded latency and, eventually,
//! an out-of-memory crash: every request waits, and every waiting request is
//! already too late. A bounded queue turns overload into a fast, explicit
//! refusal (HTTP 429 with a retry-after hint), which the caller can act on.
//! See Google SRE, "Handling Overload".
//!
//! Two overload options change how it is served, both off by default:
//! shedding by age (see [`super::age_shedding`]) and adaptive LIFO. While
//! the queue holds more than `lifo_above` jobs, the newest is served first:
//! under a backlog the oldest jobs are the ones whose callers most likely
//! gave up, while the newest can still be answered in time; once the
//! backlog is gone, FIFO keeps service fair ("Fail at Scale", Maurer, ACM
//! Queue 2015, CoDel + adaptive LIFO).

use super::age_shedding::{AgeShedding, ShedTo};
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
    /// A job that waited in the queue longer than this is not called but
    /// shed (see `shed_to`); 0 = never.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub shed_after_ms: f64,
    /// Where a job shed by age goes.
    #[serde(skip_serializing_if = "is_dead_letter")]
    pub shed_to: ShedTo,
    /// Serve the newest job first while the queue holds more than this many
    /// jobs; 0 = always FIFO.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub lifo_above: usize,
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

fn is_dead_letter(v: &ShedTo) -> bool {
    *v == ShedTo::DeadLetter
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 100,
            retry_after_ms: 1000.0,
            shed_after_ms: 0.0,
            shed_to: ShedTo::DeadLetter,
            lifo_above: 0,
        }
    }
}

/// A checked [`QueueConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    pub(super) capacity: usize,
    pub(super) retry_after: Duration,
    /// `None`: jobs are never shed by age.
    pub(super) shedding: Option<AgeShedding>,
    /// 0: always FIFO.
    pub(super) lifo_above: usize,
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
        let shed_after = parse_ms(self.shed_after_ms, "shed_after_ms")?;
        Ok(QueueSettings {
            capacity: self.capacity,
            retry_after: parse_ms(self.retry_after_ms, "retry_after_ms")?,
            shedding: (self.shed_after_ms > 0.0).then_some(AgeShedding {
                after: shed_after,
                to: self.shed_to,
            }),
            lifo_above: self.lifo_above,
        })
    }
}

/// Which end of the queue a job was served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// The oldest job (FIFO).
    Oldest,
    /// The newest job, ahead of older ones (adaptive LIFO).
    OutOfOrder,
}

/// A FIFO that never holds more than its capacity, served newest first
/// while it is deeper than its LIFO watermark.
#[derive(Clone, Debug)]
pub struct BoundedQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
    retry_after: Duration,
    lifo_above: usize,
}

impl<T> BoundedQueue<T> {
    pub fn new(settings: &QueueSettings) -> Self {
        BoundedQueue {
            items: VecDeque::with_capacity(settings.capacity.min(4096)),
            capacity: settings.capacity,
            retry_after: settings.retry_after,
            lifo_above: settings.lifo_above,
        }
    }

    /// Appends `item` if there is room; otherwise hands it back with the hint.
    pub fn offer(&mut self, item: T) -> Result<(), (T, Duration)> {
        if self.items.len() >= self.capacity {
            return Err((item, self.retry_after));
        }
        self.items.push_back(item);
        debug_assert!(self.items.len() <= self.capacity);
        Ok(())
    }

    /// Takes `item` out wherever it is, searching from the newest end
    /// (what is taken back is usually what just came in).
    pub fn remove(&mut self, item: &T) -> bool
    where
        T: PartialEq,
    {
        let Some(at) = self.items.iter().rposition(|t| t == item) else {
            return false;
        };
        self.items.remove(at);
        true
    }

    /// Takes the oldest job.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// The oldest job, left in place.
    pub fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// Takes the next job to serve: the newest while the queue holds more
    /// than `lifo_above` jobs (and `lifo_above` > 0), the oldest otherwise.
    pub fn serve(&mut self) -> Option<(T, Served)> {
        if self.lifo_above > 0 && self.items.len() > self.lifo_above {
            return self.items.pop_back().map(|t| (t, Served::OutOfOrder));
        }
        self.items.pop_front().map(|t| (t, Served::Oldest))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize) -> BoundedQueue<u32> {
        let cfg = QueueConfig {
            capacity,
            retry_after_ms: 250.0,
            ..QueueConfig::default()
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
    }

    #[test]
    fn serves_newest_first_only_above_the_watermark() {
        let cfg = QueueConfig {
            capacity: 10,
            lifo_above: 2,
            ..QueueConfig::default()
        };
        let mut q = BoundedQueue::new(&cfg.check().expect("valid"));
        for i in 0..4 {
            q.offer(i).expect("room");
        }
        assert_eq!(q.serve(), Some((3, Served::OutOfOrder)), "4 > 2: newest");
        assert_eq!(q.serve(), Some((2, Served::OutOfOrder)), "3 > 2: newest");
        assert_eq!(q.serve(), Some((0, Served::Oldest)), "2 is not above 2");
        assert_eq!(q.serve(), Some((1, Served::Oldest)));
        assert_eq!(q.serve(), None);
    }

    #[test]
    fn without_a_watermark_it_stays_fifo() {
        let mut q = queue(5);
        for i in 0..5 {
            q.offer(i).expect("room");
        }
        assert_eq!(q.serve(), Some((0, Served::Oldest)));
    }

    #[test]
    fn shedding_is_on_only_with_a_positive_bound() {
        let off = QueueConfig::default().check().expect("valid");
        assert_eq!(off.shedding, None);
        let on = QueueConfig {
            shed_after_ms: 250.0,
            shed_to: ShedTo::Fail,
            ..QueueConfig::default()
        };
        let s = on.check().expect("valid").shedding.expect("on");
        assert_eq!((s.after, s.to), (Duration::from_millis(250), ShedTo::Fail));
        let bad = QueueConfig {
            shed_after_ms: -1.0,
            ..QueueConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().field, "shed_after_ms");
    }
}
