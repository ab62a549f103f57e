//! Where each job came from: the send that created it, kept per job slot.
//!
//! The table holds one entry per job slot the relay ever used, so at scale
//! it is one of the larger per-job records: an entry keeps only what its
//! slot does not already say. The job's slot is the entry's index, so only
//! its serial is kept; the id the client knows the job by differs from the
//! job's own only after another replica adopted it, which is rare, so those
//! ids wait in a map beside the entries (24 bytes an entry, not 40).

use crate::relay::JobId;
use rustc_hash::FxHashMap;

/// Where a job came from: the send that created it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Origin {
    pub job: JobId,
    pub request: u64,
    pub send: u32,
    /// The client's slot for that logical request.
    pub slot: u32,
    pub keyed: bool,
    /// The id the client knows the job by: `job`, unless another replica
    /// adopted it (under a new slot, which may be the old one).
    pub client_job: JobId,
    pub adopted: bool,
}

/// An [`Origin`] as its job's slot keeps it: the slot is the index, and
/// the client's id for an adopted job is in [`Origins::client_jobs`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    request: u64,
    serial: u32,
    send: u32,
    slot: u32,
    keyed: bool,
    adopted: bool,
}

/// Job slot → the send that created the job living there.
pub(super) struct Origins {
    entries: Vec<Option<Entry>>,
    /// Adopted job → the id its client knows it by; one per entry whose
    /// `adopted` is set, so bounded by the slots.
    client_jobs: FxHashMap<JobId, JobId>,
}

impl Origins {
    /// A table with room for `slots` job slots, so it never reallocates
    /// while a run fills them.
    pub fn with_slots(slots: usize) -> Origins {
        Origins {
            entries: Vec::with_capacity(slots),
            client_jobs: FxHashMap::default(),
        }
    }

    /// Records `o` in its job's slot; returns the origin of another job it
    /// replaces there, if any. Inlined, as `get` is: both run once or
    /// twice per job, where the simulator's own loop used to index the
    /// vector directly.
    #[inline]
    pub fn set(&mut self, o: Origin) -> Option<Origin> {
        let i = o.job.slot();
        if i >= self.entries.len() {
            self.entries.resize(i + 1, None);
        }
        let old = self.entries[i].map(|e| self.unpack(i, e));
        if let Some(old) = old.filter(|old| old.adopted) {
            self.client_jobs.remove(&old.job);
        }
        if o.adopted {
            self.client_jobs.insert(o.job, o.client_job);
        }
        debug_assert!(o.adopted || o.client_job == o.job, "only adoption renames");
        self.entries[i] = Some(Entry {
            request: o.request,
            serial: o.job.serial(),
            send: o.send,
            slot: o.slot,
            keyed: o.keyed,
            adopted: o.adopted,
        });
        old.filter(|old| old.job != o.job)
    }

    /// The origin of `job`, if its slot still holds it.
    #[inline]
    pub fn get(&self, job: JobId) -> Option<Origin> {
        let i = job.slot();
        let e = self.entries.get(i).copied().flatten()?;
        (e.serial == job.serial()).then(|| self.unpack(i, e))
    }

    #[inline]
    fn unpack(&self, i: usize, e: Entry) -> Origin {
        let job = JobId::new(e.serial, i);
        let client_job = if e.adopted {
            *self
                .client_jobs
                .get(&job)
                .expect("an adopted entry keeps its client's id")
        } else {
            job
        };
        Origin {
            job,
            request: e.request,
            send: e.send,
            slot: e.slot,
            keyed: e.keyed,
            client_job,
            adopted: e.adopted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(job: JobId, client_job: JobId) -> Origin {
        Origin {
            job,
            request: 7,
            send: 2,
            slot: 3,
            keyed: true,
            client_job,
            adopted: client_job != job,
        }
    }

    #[test]
    fn an_entry_is_found_by_its_job_and_replaced_by_the_next() {
        let mut t = Origins::with_slots(4);
        let (a, b) = (JobId::new(0, 1), JobId::new(5, 1));
        assert!(t.set(origin(a, a)).is_none());
        assert_eq!(
            t.get(a).map(|o| (o.job, o.request, o.send)),
            Some((a, 7, 2))
        );
        assert!(t.get(b).is_none(), "another serial in the slot");
        let old = t.set(origin(b, b)).map(|o| o.job);
        assert_eq!(old, Some(a), "the job it replaced");
        assert!(t.get(a).is_none());
        assert!(t.set(origin(b, b)).is_none(), "the same job again");
    }

    #[test]
    fn an_adopted_job_keeps_its_clients_id_until_its_slot_changes_hands() {
        let mut t = Origins::with_slots(4);
        let (adopted, client) = (JobId::new(9, 2), JobId::new(3, 0));
        t.set(origin(adopted, client));
        let o = t.get(adopted).expect("held");
        assert_eq!((o.client_job, o.adopted), (client, true));
        let next = JobId::new(10, 2);
        let old = t.set(origin(next, next)).expect("replaced");
        assert_eq!(old.client_job, client);
        assert!(t.client_jobs.is_empty(), "forgotten with its entry");
        assert_eq!(std::mem::size_of::<Option<Entry>>(), 24);
    }
}
