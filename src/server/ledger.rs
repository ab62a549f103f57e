//! Side-effect ledger: how many times each idempotency key took effect.
//!
//! "Exactly once" is a claim about effects, and a claim is only as good as
//! its measurement. The standalone downstream records every successful call
//! under its `Idempotency-Key`, so a duplicate (the same logical request
//! taking effect twice, e.g. a retry after a timeout that had in fact
//! succeeded) is counted rather than guessed. The ledger is bounded: past
//! `keys_max` distinct keys, new keys are counted but not tracked.

use serde::Serialize;
use std::collections::BTreeMap;

/// Duplicated keys listed in a report, at most.
pub const DUPLICATES_LISTED_MAX: usize = 1_000;

#[derive(Clone, Debug)]
pub struct Ledger {
    effects: BTreeMap<String, u32>,
    keys_max: usize,
    total: u64,
    duplicates: u64,
    without_key: u64,
    untracked: u64,
}

/// What the ledger reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerReport {
    /// Successful calls, all keys together.
    pub effects: u64,
    /// Distinct keys tracked.
    pub keys: usize,
    /// Effects beyond the first, over all keys.
    pub duplicate_effects: u64,
    pub without_key: u64,
    /// Effects of keys beyond `keys_max`, not checked for duplicates.
    pub untracked: u64,
    /// Keys that took effect more than once (at most
    /// [`DUPLICATES_LISTED_MAX`]), with their counts.
    pub duplicated: BTreeMap<String, u32>,
}

impl Ledger {
    pub fn new(keys_max: usize) -> Ledger {
        Ledger {
            effects: BTreeMap::new(),
            keys_max,
            total: 0,
            duplicates: 0,
            without_key: 0,
            untracked: 0,
        }
    }

    /// Records one effect; returns how many times `key` has now taken effect
    /// (0 when it is not tracked).
    pub fn record(&mut self, key: Option<&str>) -> u32 {
        self.total += 1;
        let Some(key) = key else {
            self.without_key += 1;
            return 0;
        };
        if let Some(n) = self.effects.get_mut(key) {
            *n += 1;
            self.duplicates += 1;
            return *n;
        }
        if self.effects.len() >= self.keys_max {
            self.untracked += 1;
            return 0;
        }
        self.effects.insert(key.to_owned(), 1);
        1
    }

    pub fn count(&self, key: &str) -> u32 {
        self.effects.get(key).copied().unwrap_or(0)
    }

    pub fn report(&self) -> LedgerReport {
        let duplicated = self
            .effects
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(DUPLICATES_LISTED_MAX)
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        LedgerReport {
            effects: self.total,
            keys: self.effects.len(),
            duplicate_effects: self.duplicates,
            without_key: self.without_key,
            untracked: self.untracked,
            duplicated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_per_key_within_its_bound() {
        let mut l = Ledger::new(2);
        assert_eq!(l.record(Some("a")), 1);
        assert_eq!(l.record(Some("a")), 2);
        assert_eq!(l.record(Some("b")), 1);
        assert_eq!(l.record(Some("c")), 0, "beyond keys_max");
        assert_eq!(l.record(None), 0);
        let r = l.report();
        assert_eq!((r.effects, r.keys, r.duplicate_effects), (5, 2, 1));
        assert_eq!((r.untracked, r.without_key), (1, 1));
        assert_eq!(r.duplicated.get("a"), Some(&2));
        assert_eq!(l.count("b"), 1);
    }
}
