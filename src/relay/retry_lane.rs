//! Retry lane: where a job waits for a worker once its backoff has ended.
//!
//! The bounded queue guards admission: it is how the relay says "not now"
//! (429) to *new* work. A retry is not new work. Its job was accepted, holds
//! a slot in the job table (which `jobs_max` bounds) and was promised an
//! outcome; refusing its retry for want of queue room would turn overload
//! into dead letters of jobs that never failed for their own reasons. So a
//! retry whose backoff has ended waits here instead, and this lane needs no
//! bound of its own: every job in it is already counted by `jobs_max`.
//!
//! Workers serve this lane before the queue. Retries are older work (they
//! were accepted first), each one is one job nearer its end (attempts are
//! bounded), and finishing them frees job-table slots; serving new work
//! first would let a steady stream of arrivals starve retries, whose jobs
//! would then pile up in the job table until it refused everything. New
//! work still moves: at most `attempts_max − 1` retries follow each
//! admission.

use super::job::JobId;
use std::collections::VecDeque;

/// A FIFO of jobs whose backoff has ended, bounded by the job table.
#[derive(Clone, Debug)]
pub struct RetryLane {
    jobs: VecDeque<JobId>,
    /// The job table's bound: the lane can never hold more.
    jobs_max: usize,
    depth_max_seen: usize,
}

impl RetryLane {
    pub fn new(jobs_max: usize) -> RetryLane {
        RetryLane {
            jobs: VecDeque::new(),
            jobs_max,
            depth_max_seen: 0,
        }
    }

    /// Appends a job. Never refuses: the caller holds the job in its table,
    /// so the lane is within `jobs_max` by construction (asserted).
    pub fn push(&mut self, job: JobId) {
        assert!(
            self.jobs.len() < self.jobs_max,
            "retry lane over the job table's bound"
        );
        self.jobs.push_back(job);
        self.depth_max_seen = self.depth_max_seen.max(self.jobs.len());
    }

    pub fn pop(&mut self) -> Option<JobId> {
        self.jobs.pop_front()
    }

    /// Takes `job` out of the lane (its late answer completed it). Linear
    /// in the lane; this happens at most once per job.
    pub fn remove(&mut self, job: JobId) -> bool {
        let Some(i) = self.jobs.iter().position(|j| *j == job) else {
            return false;
        };
        self.jobs.remove(i);
        true
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The deepest the lane has been.
    pub fn depth_max_seen(&self) -> usize {
        self.depth_max_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_first_in_first_out_and_removes_one_job() {
        let mut lane = RetryLane::new(4);
        for j in 1..=3 {
            lane.push(JobId(j));
        }
        assert!(lane.remove(JobId(2)));
        assert!(!lane.remove(JobId(2)), "already gone");
        assert_eq!(
            (lane.pop(), lane.pop(), lane.pop()),
            (Some(JobId(1)), Some(JobId(3)), None)
        );
        assert_eq!(lane.depth_max_seen(), 3);
    }

    #[test]
    #[should_panic(expected = "over the job table's bound")]
    fn more_jobs_than_the_table_holds_is_a_bug() {
        let mut lane = RetryLane::new(1);
        lane.push(JobId(1));
        lane.push(JobId(2));
    }
}
