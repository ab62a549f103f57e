//! What keeps a replica's jobs its own, and takes over those of replicas
//! that died: one thread per replica, with a connection of its own.
//!
//! Every tick (a third of the lease) it renews the leases of every job and
//! letter this replica owns, then looks for jobs whose leases expired
//! (`FOR UPDATE SKIP LOCKED`, so two reapers never take the same job) on
//! routes this replica has (the others wait for a replica that has them),
//! leases them to itself and hands them to the relay's task to adopt. A job
//! the relay cannot take now (full) is released at once for any replica
//! to take. It does the same with the letters of replicas that died, and
//! carries out the redrives other replicas asked of this one's letters
//! (see [`super::letters`]). The renewals also tell whether the database is reachable: they
//! set and clear the server's `store_failing` gauge (behind `/ready`), so
//! readiness follows the database while no request comes in.

use super::link::Link;
use super::{
    block_of, job_of, letter_of, ms, nanos, own_route, relay_now, PgOptions, Shared, JOB_COLUMNS,
    LETTER_ROUTE, TAKE_LETTERS,
};
use crate::relay::{DeadLetter, JobId, StoredJob};
use crate::server::actor::Key;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// The serial's column in a reaper pass's rows, after [`JOB_COLUMNS`].
const JOB_SERIAL: usize = 9;

/// Jobs taken at once by one reaper pass.
pub const REAP_BATCH: i64 = 64;
/// Shortest and longest pause between two passes.
const TICK_MIN: Duration = Duration::from_millis(50);
const TICK_MAX: Duration = Duration::from_secs(5);

/// What the lease thread asks of its relay's task, from its own thread;
/// each answers `None` once the task has stopped.
pub trait LocalRelay: Send + 'static {
    /// Takes jobs whose leases expired; whether each was adopted.
    fn adopt_jobs(&mut self, jobs: Vec<StoredJob<Key, Bytes>>) -> Option<Vec<bool>>;
    /// Takes letters whose holder's lease expired; whether each was adopted.
    fn adopt_letters(&mut self, letters: Vec<DeadLetter<Key, Bytes>>) -> Option<Vec<bool>>;
    /// Redrives letters of this replica's that another replica asked for.
    fn redrive(&mut self, letters: Vec<JobId>) -> Option<()>;
}

pub type Adopt = Box<dyn LocalRelay>;

/// The replica's lease keeper and reaper, running on its own thread.
pub struct Replica {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    /// Starts the thread; `adopt` is called from it.
    pub fn start(
        options: PgOptions,
        shared: Arc<Shared>,
        failing: Arc<AtomicBool>,
        adopt: Adopt,
    ) -> Result<Replica, super::StoreError> {
        let link = Link::new(&options.url)?;
        let url = link.shown().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let mut keeper = Keeper {
            options,
            link,
            adopt,
            shared,
            stop: stop.clone(),
            failing,
        };
        let thread = std::thread::Builder::new()
            .name("relay-replica".into())
            .spawn(move || keeper.run())
            .map_err(|e| super::StoreError::Unavailable {
                url,
                detail: format!("cannot start the lease thread: {e}"),
            })?;
        Ok(Replica {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The serials the relay did not adopt, `adopted` answering for each.
fn refused(serials: &[i64], adopted: &[bool]) -> Vec<i64> {
    serials
        .iter()
        .zip(adopted)
        .filter(|(_, ok)| !**ok)
        .map(|(s, _)| *s)
        .collect()
}

/// Expired replay records deleted per statement, and statements per pass.
const SWEEP_BATCH: u64 = 5_000;
const SWEEP_BATCHES: usize = 20;
const SWEEP_TIME: Duration = Duration::from_millis(250);

/// The pause between passes: a third of the lease, within bounds.
pub fn tick(lease: Duration) -> Duration {
    (lease / 3).clamp(TICK_MIN, TICK_MAX)
}

struct Keeper {
    options: PgOptions,
    link: Link,
    adopt: Adopt,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// The server's `store_failing` gauge.
    failing: Arc<AtomicBool>,
}

impl Keeper {
    fn run(&mut self) {
        let tick = tick(self.options.lease);
        while !self.stop.load(Ordering::Relaxed) {
            self.sleep(tick);
            match self.renew() {
                Ok(()) => {
                    let fenced = self.shared.fenced.load(Ordering::Relaxed);
                    if !fenced && self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(store = self.link.shown(), "PostgreSQL reachable again");
                    }
                }
                Err(e) => {
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "leases not renewed: PostgreSQL unreachable");
                    }
                    continue;
                }
            }
            if !(self.reap() && self.reap_letters() && self.redrive_asked()) {
                return;
            }
            self.sweep();
        }
    }

    /// Deletes replay records past their expiry (any replica's: whoever
    /// sweeps first), at most [`SWEEP_BATCH`] × [`SWEEP_BATCHES`] a pass
    /// and no new batch after [`SWEEP_TIME`], so that a backlog cannot hold
    /// up the renewals on this thread; the keys table holds about the
    /// replays of one TTL.
    fn sweep(&mut self) {
        let now = nanos(relay_now(self.shared.epoch_unix_ms.load(Ordering::Relaxed)));
        let batch = i64::try_from(SWEEP_BATCH).unwrap_or(i64::MAX);
        let began = crate::server::clock::read_monotonic();
        for _ in 0..SWEEP_BATCHES {
            if crate::server::clock::read_monotonic().duration_since(began) > SWEEP_TIME {
                return;
            }
            let swept = self.link.run(async move |c: &mut Client| {
                c.execute(
                    // The outer test again: a row another replica took
                    // over meanwhile (no expiry now) is not deleted.
                    "DELETE FROM relay_keys WHERE expires_at <= $1 AND key IN (
                         SELECT key FROM relay_keys WHERE expires_at <= $1 LIMIT $2
                         FOR UPDATE SKIP LOCKED)",
                    &[&now, &batch],
                )
                .await
            });
            match swept {
                Ok(n) if n < SWEEP_BATCH => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "expired replays not swept: next pass");
                    return;
                }
            }
        }
    }

    /// Sleeps `d` in short steps, so a stop is seen quickly.
    fn sleep(&self, d: Duration) {
        let step = Duration::from_millis(20);
        let mut left = d;
        while !left.is_zero() && !self.stop.load(Ordering::Relaxed) {
            let now = left.min(step);
            std::thread::sleep(now);
            left -= now;
        }
    }

    /// Renews this replica's leases: its block, its jobs, its letters. A
    /// block found taken means this replica's leases lapsed and another
    /// took over: it is fenced (takes no new work) until restarted.
    fn renew(&mut self) -> Result<(), super::StoreError> {
        let owner = self.options.owner.clone();
        let lease = ms(self.options.lease);
        let block = i64::try_from(self.shared.block.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let held = self.link.run(async move |c: &mut Client| {
            let held = c
                .execute(
                    "UPDATE relay_blocks SET lease_until = now() + $3 * interval '1 millisecond'
                     WHERE block = $2 AND owner = $1",
                    &[&owner, &block, &lease],
                )
                .await?;
            for table in ["relay_jobs", "relay_letters"] {
                c.execute(
                    &format!(
                        "UPDATE {table} SET lease_until = now() + $2 * interval '1 millisecond'
                         WHERE owner = $1"
                    ),
                    &[&owner, &lease],
                )
                .await?;
            }
            Ok(held)
        })?;
        if held == 0 {
            self.failing.store(true, Ordering::Relaxed);
        }
        if held == 0 && !self.shared.fenced.swap(true, Ordering::Relaxed) {
            tracing::error!(
                block,
                "another replica took this replica's block of job serials (its leases \
                 lapsed): no new work is taken; restart this replica"
            );
        }
        Ok(())
    }

    /// Takes block `block` from its owner whose lease expired; whether it
    /// is now this replica's.
    fn take_block(&mut self, block: u64) -> bool {
        let owner = self.options.owner.clone();
        let lease = ms(self.options.lease);
        let Ok(b) = i64::try_from(block) else {
            return false;
        };
        let taken = self.link.run(async move |c: &mut Client| {
            c.execute(
                "UPDATE relay_blocks SET owner = $1, lease_until = now() + $3 * interval '1 millisecond'
                 WHERE block = $2 AND (owner = $1 OR lease_until < now())",
                &[&owner, &b, &lease],
            )
            .await
        });
        if matches!(taken, Ok(1)) {
            self.shared.block.store(block, Ordering::Relaxed);
            tracing::info!(block, "took the block of a replica whose lease expired");
            true
        } else {
            false
        }
    }

    /// One pass: takes expired jobs of this replica's routes and hands
    /// them to the relay. False once the relay is gone.
    fn reap(&mut self) -> bool {
        let owner = self.options.owner.clone();
        let lease = ms(self.options.lease);
        let names = self.options.routes.stored();
        let sql = format!(
            "WITH taken AS (
                 SELECT serial FROM relay_jobs
                 WHERE (owner IS NULL OR lease_until IS NULL OR lease_until < now())
                   AND route = ANY($4)
                 ORDER BY serial LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE relay_jobs j SET owner = $1,
                 lease_until = now() + $3 * interval '1 millisecond'
             FROM taken WHERE j.serial = taken.serial
             RETURNING {JOB_COLUMNS}, j.serial"
        );
        let rows = match self.link.run(async move |c: &mut Client| {
            let tx = c.transaction().await?;
            let rows = tx
                .query(&sql, &[&owner, &REAP_BATCH, &lease, &names])
                .await?;
            tx.commit().await?;
            Ok(rows)
        }) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "reaper pass failed");
                return true;
            }
        };
        if rows.is_empty() {
            return true;
        }
        let mut jobs: Vec<StoredJob<Key, Bytes>> = Vec::with_capacity(rows.len());
        let mut others = Vec::new();
        for row in &rows {
            match job_of(row, &self.options.routes) {
                Some(job) => jobs.push(job),
                // Not one of this replica's routes after all: given back.
                None => others.push(row.get::<_, i64>(JOB_SERIAL)),
            }
        }
        if !others.is_empty() {
            self.release(&others);
        }
        // Adopting a job moves the relay's serials past it: one from a later
        // block needs that block first (its owner is gone), else it waits.
        jobs.sort_by_key(|j| j.job.serial());
        let mut later = Vec::new();
        let mut i = 0;
        while i < jobs.len() {
            let block = block_of(jobs[i].job.serial());
            if block > self.shared.block.load(Ordering::Relaxed) && !self.take_block(block) {
                later.push(i64::from(jobs.remove(i).job.serial()));
            } else {
                i += 1;
            }
        }
        if !later.is_empty() {
            self.release(&later);
        }
        if jobs.is_empty() {
            return true;
        }
        let serials: Vec<i64> = jobs.iter().map(|j| i64::from(j.job.serial())).collect();
        let taken = jobs.len();
        let Some(adopted) = self.adopt.adopt_jobs(jobs) else {
            self.release(&serials);
            return false;
        };
        let refused = refused(&serials, &adopted);
        tracing::info!(
            taken,
            adopted = taken - refused.len(),
            "reaper: adopted jobs whose leases expired"
        );
        if !refused.is_empty() {
            self.release(&refused);
        }
        true
    }

    /// Takes the letters of replicas that died and hands them to the
    /// relay; those it has no room for are released. False once the relay
    /// is gone.
    fn reap_letters(&mut self) -> bool {
        let owner = self.options.owner.clone();
        let lease = ms(self.options.lease);
        let names = self.options.routes.stored();
        let rows = match self.link.run(async move |c: &mut Client| {
            let tx = c.transaction().await?;
            let rows = tx
                .query(TAKE_LETTERS, &[&owner, &lease, &REAP_BATCH, &names])
                .await?;
            tx.commit().await?;
            Ok(rows)
        }) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "letter reaper pass failed");
                return true;
            }
        };
        let mut letters = Vec::with_capacity(rows.len());
        for row in &rows {
            let letter = own_route(row, LETTER_ROUTE, &self.options.routes)
                .and_then(|route| letter_of(row, route));
            match letter {
                Ok(l) => letters.push(l),
                // Kept leased to this replica, so that no reaper spins on it.
                Err(detail) => {
                    tracing::error!(%detail, "a dead letter in the store does not read back")
                }
            }
        }
        if letters.is_empty() {
            return true;
        }
        let serials: Vec<i64> = letters.iter().map(|l| i64::from(l.job.serial())).collect();
        let Some(adopted) = self.adopt.adopt_letters(letters) else {
            self.release_rows("relay_letters", &serials);
            return false;
        };
        let refused = refused(&serials, &adopted);
        tracing::info!(
            taken = serials.len(),
            adopted = serials.len() - refused.len(),
            "reaper: adopted dead letters whose holder's lease expired"
        );
        if !refused.is_empty() {
            self.release_rows("relay_letters", &refused);
        }
        true
    }

    /// Redrives this replica's letters that another replica asked to. False
    /// once the relay is gone.
    fn redrive_asked(&mut self) -> bool {
        let owner = self.options.owner.clone();
        let asked = self.link.run(async move |c: &mut Client| {
            c.query(
                "UPDATE relay_letters SET redrive_asked = false
                 WHERE owner = $1 AND redrive_asked RETURNING id",
                &[&owner],
            )
            .await
        });
        let ids: Vec<JobId> = match asked {
            Ok(rows) => rows.iter().map(|r| JobId(super::uint(r.get(0)))).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "asked redrives not read");
                return true;
            }
        };
        if ids.is_empty() {
            return true;
        }
        tracing::info!(
            letters = ids.len(),
            "redriving letters another replica asked for"
        );
        self.adopt.redrive(ids).is_some()
    }

    /// Gives jobs back: their leases end now, for any replica to take.
    fn release(&mut self, serials: &[i64]) {
        self.release_rows("relay_jobs", serials);
    }

    /// Ends this replica's leases on rows of `table` (jobs or letters).
    fn release_rows(&mut self, table: &'static str, serials: &[i64]) {
        let owner = self.options.owner.clone();
        let serials = serials.to_vec();
        let sql = format!(
            "UPDATE {table} SET owner = NULL, lease_until = NULL
             WHERE owner = $1 AND serial = ANY($2)"
        );
        if let Err(e) = self
            .link
            .run(async move |c: &mut Client| c.execute(&sql, &[&owner, &serials]).await)
        {
            tracing::warn!(error = %e, table, "rows not released: they are taken again when their leases expire");
        }
    }
}
