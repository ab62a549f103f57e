//! The seen-signature cache: a valid signature is good for one request.
//!
//! A signature is accepted while its timestamp is within the window of the
//! server's clock, so a copy could be sent again until `timestamp + window`.
//! The guard remembers every MAC it accepted until then and refuses it a
//! second time. Only signatures that verified get in, so only holders of
//! the secret can fill it; still it is bounded: when `entries_max` live
//! entries are held, new signatures are refused (503, counted) until the
//! oldest leaves the window, rather than forgetting one that could then be
//! replayed. Entries are evicted as they leave the window. Sans-IO: the
//! caller passes the time.

use std::collections::BTreeSet;

/// Why a verified signature is not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// This MAC was already used, and its timestamp is still in the window.
    Replayed,
    /// The guard is full; a slot frees in `retry_after_s` seconds.
    Full { retry_after_s: u64 },
}

/// MACs seen, each with the unix second after which it is stale anyway.
#[derive(Debug)]
pub struct ReplayGuard {
    /// `(expires_at, mac)`: ordered by expiry, so eviction pops the front.
    seen: BTreeSet<(u64, [u8; 32])>,
    entries_max: usize,
    window_s: u64,
}

impl ReplayGuard {
    pub fn new(entries_max: usize, window_s: u64) -> ReplayGuard {
        ReplayGuard {
            seen: BTreeSet::new(),
            entries_max,
            window_s,
        }
    }

    /// Admits `mac`, signed at `timestamp`, at unix second `now`.
    pub fn admit(&mut self, mac: [u8; 32], timestamp: u64, now: u64) -> Result<(), Refused> {
        self.evict(now);
        let entry = (timestamp.saturating_add(self.window_s), mac);
        if self.seen.contains(&entry) {
            return Err(Refused::Replayed);
        }
        if self.seen.len() >= self.entries_max {
            let oldest = self.seen.first().map_or(now, |(at, _)| *at);
            return Err(Refused::Full {
                retry_after_s: oldest.saturating_sub(now).max(1),
            });
        }
        self.seen.insert(entry);
        Ok(())
    }

    /// Drops every entry whose timestamp has left the window.
    fn evict(&mut self, now: u64) {
        while self.seen.first().is_some_and(|(at, _)| *at < now) {
            self.seen.pop_first();
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000;

    #[test]
    fn a_mac_is_admitted_once_while_in_the_window() {
        let mut g = ReplayGuard::new(10, 300);
        assert_eq!(g.admit([1; 32], T, T), Ok(()));
        assert_eq!(g.admit([1; 32], T, T + 300), Err(Refused::Replayed));
        assert_eq!(g.admit([2; 32], T, T), Ok(()));
        // Past the window the entry is gone (the signature's timestamp
        // would be refused as stale before it got here).
        assert_eq!(g.admit([3; 32], T + 301, T + 301), Ok(()));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn a_full_guard_refuses_until_the_oldest_entry_leaves_the_window() {
        let mut g = ReplayGuard::new(2, 300);
        g.admit([1; 32], T, T).expect("room");
        g.admit([2; 32], T + 100, T + 100).expect("room");
        assert_eq!(
            g.admit([3; 32], T + 200, T + 200),
            Err(Refused::Full { retry_after_s: 100 })
        );
        assert_eq!(g.len(), 2, "a refusal forgets nothing");
        assert_eq!(g.admit([3; 32], T + 301, T + 301), Ok(()));
        assert_eq!(g.admit([2; 32], T + 100, T + 301), Err(Refused::Replayed));
    }
}
