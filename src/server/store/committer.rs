//! Group commit: one thread owns the store and commits whatever waits.
//!
//! The actor sends each turn's records as one [`Batch`] over a bounded
//! channel and goes on with the next turn; the thread takes every batch
//! waiting (and, for at most `commit_wait`, those that arrive), commits
//! them all in one transaction — one sync for many requests — and acknowledges
//! each batch in order. A failed commit is acknowledged as failed: the
//! actor takes back the jobs accepted in it (their requests get 503), and
//! the thread keeps the group's other records (a start, a finish, a letter)
//! and commits them ahead of the next group, or on its own after
//! [`RETRY_AFTER`], so the store's order stays the relay's. With nothing
//! to retry it probes the store every [`RETRY_AFTER`] until it is back.

use super::{Key, Store, StoreError};
use crate::relay::Record;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Turns whose records may be on their way to the store at once; the actor
/// waits for acknowledgements beyond it.
pub const PIPELINE_MAX: usize = 64;

/// Records one commit takes at most; more wait for the next one.
const GROUP_RECORDS_MAX: usize = 16_384;

/// How soon a failed commit is tried again when nothing new arrives.
pub const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Records kept for retrying while the store fails; beyond, the oldest are
/// dropped (and logged): the store then misses them after a restart.
const CARRY_MAX: usize = 1_000_000;

/// Largest `--commit-wait-ms`.
pub const COMMIT_WAIT_MS_MAX: u64 = 50;

/// One turn's records.
pub struct Batch(pub Vec<Record<Key, Bytes>>);

/// How the commit of one batch went.
pub type Ack = Result<(), Arc<StoreError>>;

/// The actor's side of the store thread.
pub struct Committer {
    /// `None` only while dropping.
    batches: Option<SyncSender<Batch>>,
    pub acks: mpsc::Receiver<Ack>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the thread that owns `store` (already loaded). It keeps
    /// `failing` up to date: set by a failed commit, cleared by the next
    /// that succeeds (a retry of its own included), for `/ready`.
    pub fn start(
        store: Box<dyn Store>,
        commit_wait: Duration,
        failing: Arc<AtomicBool>,
    ) -> std::io::Result<Committer> {
        let (batches, from_actor) = sync_channel(PIPELINE_MAX);
        let (to_actor, acks) = mpsc::channel(PIPELINE_MAX + 1);
        let thread = std::thread::Builder::new()
            .name("relay-store".to_owned())
            .spawn(move || run(store, &from_actor, &to_actor, commit_wait, &failing))?;
        Ok(Committer {
            batches: Some(batches),
            acks,
            thread: Some(thread),
        })
    }

    /// Hands a batch to the thread; gives it back when the pipeline is full
    /// (the actor then waits for an acknowledgement first) or the thread is gone.
    pub fn send(&self, batch: Batch) -> Result<(), Batch> {
        let Some(batches) = &self.batches else {
            return Err(batch);
        };
        batches.try_send(batch).map_err(|e| match e {
            TrySendError::Full(b) | TrySendError::Disconnected(b) => b,
        })
    }
}

/// Closing the channel ends the thread once it has committed what it has;
/// waiting for it releases the store (its file lock) before the next open.
impl Drop for Committer {
    fn drop(&mut self) {
        self.batches = None;
        self.acks.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    mut store: Box<dyn Store>,
    from_actor: &Receiver<Batch>,
    to_actor: &mpsc::Sender<Ack>,
    commit_wait: Duration,
    failing: &AtomicBool,
) {
    let mut carry: Vec<Record<Key, Bytes>> = Vec::new();
    loop {
        let first = if !failing.load(Ordering::Relaxed) {
            match from_actor.recv() {
                Ok(b) => Some(b),
                Err(_) => return,
            }
        } else {
            match from_actor.recv_timeout(RETRY_AFTER) {
                Ok(b) => Some(b),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let group = first.map_or_else(Vec::new, |b| gather(b, from_actor, commit_wait));
        let mut records = std::mem::take(&mut carry);
        records.extend(group.iter().flat_map(|b| b.0.iter().cloned()));
        let done = if records.is_empty() {
            store.probe()
        } else {
            store.commit(&records)
        };
        let ack = match done {
            Ok(()) => {
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the store commits again: new work is admitted");
                }
                Ok(())
            }
            Err(e) => {
                if !failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "store commit failed: new work is refused with 503 and /ready is false until a commit succeeds (retried every 200 ms)");
                }
                carry = kept_after_failure(records);
                Err(Arc::new(e))
            }
        };
        for _ in &group {
            if to_actor.blocking_send(ack.clone()).is_err() {
                return;
            }
        }
    }
}

/// What a failed commit keeps for the next try: everything but the new
/// jobs (the actor takes those back and refuses their requests) and what
/// followed them; bounded by [`CARRY_MAX`].
fn kept_after_failure(records: Vec<Record<Key, Bytes>>) -> Vec<Record<Key, Bytes>> {
    let refused: rustc_hash::FxHashSet<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Accepted {
                job, redrives: 0, ..
            } => Some(*job),
            _ => None,
        })
        .collect();
    let mut kept: Vec<_> = records
        .into_iter()
        .filter(|r| match r {
            Record::Accepted { job, .. }
            | Record::Started { job, .. }
            | Record::Finished { job, .. } => !refused.contains(job),
            Record::DeadLettered(letter) => !refused.contains(&letter.job),
            Record::LetterRemoved { .. } => true,
        })
        .collect();
    if kept.len() > CARRY_MAX {
        let dropped = kept.len() - CARRY_MAX;
        tracing::error!(
            dropped,
            "the store has failed for long: its oldest uncommitted records are dropped"
        );
        kept.drain(..dropped);
    }
    kept
}

/// The first batch, every batch already waiting, and those arriving within
/// `wait`, up to [`GROUP_RECORDS_MAX`] records.
#[allow(clippy::disallowed_methods)] // the wait is wall time; records carry the relay's own
fn gather(first: Batch, from_actor: &Receiver<Batch>, wait: Duration) -> Vec<Batch> {
    let deadline = Instant::now() + wait;
    let mut records = first.0.len();
    let mut group = vec![first];
    while records < GROUP_RECORDS_MAX {
        let next = match from_actor.try_recv() {
            Ok(b) => b,
            Err(_) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match from_actor.recv_timeout(left) {
                    Ok(b) => b,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        records += next.0.len();
        group.push(next);
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::JobId;
    use crate::time::Time;
    use std::sync::atomic::AtomicUsize;

    /// Fails its first `failures` commits, as a full disk does until space
    /// is freed.
    struct Flaky {
        failures: Arc<AtomicUsize>,
    }

    impl Store for Flaky {
        fn load(&mut self, _now_unix_ms: u64) -> Result<super::super::Loaded, StoreError> {
            unreachable!("the committer gets a loaded store")
        }
        fn commit(&mut self, _records: &[Record<Key, Bytes>]) -> Result<(), StoreError> {
            let left = self.failures.load(Ordering::Relaxed);
            if left == 0 {
                return Ok(());
            }
            self.failures.store(left - 1, Ordering::Relaxed);
            Err(StoreError::Unavailable {
                url: "flaky".to_owned(),
                detail: "full".to_owned(),
            })
        }
    }

    fn new_job() -> Record<Key, Bytes> {
        Record::Accepted {
            job: JobId::new(1, 0),
            route: crate::relay::RouteId::DEFAULT,
            key: None,
            client: 1,
            fingerprint: 2,
            payload: Bytes::from_static(b"{}"),
            accepted_at: Time::from_millis(1),
            redrives: 0,
        }
    }

    /// A failed group of nothing but new jobs leaves nothing to retry; the
    /// thread must still find out that the store is back, or `/ready` stays
    /// false and no new work (which would prove it) ever arrives.
    #[test]
    #[allow(clippy::disallowed_methods)] // the committer's retry is wall time
    fn readiness_comes_back_with_the_store_even_with_nothing_to_retry() {
        let failures = Arc::new(AtomicUsize::new(1));
        let failing = Arc::new(AtomicBool::new(false));
        let store = Box::new(Flaky {
            failures: failures.clone(),
        });
        let mut c = Committer::start(store, Duration::ZERO, failing.clone()).expect("starts");
        assert!(c.send(Batch(vec![new_job()])).is_ok());
        let ack = c.acks.blocking_recv().expect("acknowledged");
        assert!(ack.is_err(), "the first commit fails");
        assert!(failing.load(Ordering::Relaxed), "and says so");
        let deadline = Instant::now() + Duration::from_secs(10);
        while failing.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(RETRY_AFTER / 4);
        }
        assert!(
            !failing.load(Ordering::Relaxed),
            "still failing {:?} after the store came back",
            Duration::from_secs(10)
        );
    }
}
