//! Side-effect ledgers: how many times each idempotency key took effect.
//!
//! "Exactly once" is a claim about effects, and a claim is only as good as
//! its measurement. Every call that lands adds one effect to its key,
//! unless the downstream honours idempotency keys, so a duplicate (the same
//! logical request taking effect twice, e.g. a retry after a timeout that
//! had in fact succeeded) is counted rather than guessed. Two stores, one
//! rule: dense numbers for the simulator's keys (a vector, fast at millions
//! of calls), text for a service's `Idempotency-Key` (a bounded map).

use serde::Serialize;
use std::collections::BTreeMap;

/// Effects per dense numeric key, saturating at 255 per key.
#[derive(Clone, Debug, Default)]
pub struct DenseLedger {
    effects: Vec<u8>,
    honours_key: bool,
    total: u64,
    duplicates: u64,
}

impl DenseLedger {
    pub fn new(honours_key: bool) -> DenseLedger {
        DenseLedger {
            honours_key,
            ..DenseLedger::default()
        }
    }

    /// Records one landed call on `key`; returns whether its effect was a
    /// duplicate. Keys are dense request numbers, so the store grows with
    /// the run's requests, which the scenario bounds.
    pub fn record(&mut self, key: u64) -> bool {
        self.record_as(key, true)
    }

    /// [`DenseLedger::record`] for a call that may not have carried its
    /// idempotency key: `key` is the logical request either way, so a
    /// repeat is counted honestly, but only a call that carried the key
    /// (`keyed`) can be deduplicated by a downstream that honours keys.
    pub fn record_as(&mut self, key: u64, keyed: bool) -> bool {
        let index = usize::try_from(key).unwrap_or(usize::MAX);
        if index >= self.effects.len() {
            self.effects.resize(index.saturating_add(1), 0);
        }
        let seen = self.effects[index];
        if seen > 0 && self.honours_key && keyed {
            return false;
        }
        self.effects[index] = seen.saturating_add(1);
        self.total += 1;
        let duplicate = seen > 0;
        self.duplicates += u64::from(duplicate);
        duplicate
    }

    /// Side effects on `key` so far.
    pub fn effects_on(&self, key: u64) -> u8 {
        usize::try_from(key)
            .ok()
            .and_then(|i| self.effects.get(i))
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

/// Duplicated keys listed in a report, at most.
pub const DUPLICATES_LISTED_MAX: usize = 1_000;

/// Effects per text key. Bounded: past `keys_max` distinct keys, new keys
/// are counted but not tracked.
#[derive(Clone, Debug)]
pub struct Ledger {
    effects: BTreeMap<String, u32>,
    keys_max: usize,
    honours_key: bool,
    total: u64,
    duplicates: u64,
    without_key: u64,
    untracked: u64,
}

/// What the ledger reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerReport {
    /// Successful calls that took effect, all keys together.
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
    pub fn new(keys_max: usize, honours_key: bool) -> Ledger {
        Ledger {
            effects: BTreeMap::new(),
            keys_max,
            honours_key,
            total: 0,
            duplicates: 0,
            without_key: 0,
            untracked: 0,
        }
    }

    /// Records one landed call; returns how many times `key` has now taken
    /// effect (0 when it is not tracked).
    pub fn record(&mut self, key: Option<&str>) -> u32 {
        let Some(key) = key else {
            self.total += 1;
            self.without_key += 1;
            return 0;
        };
        if let Some(n) = self.effects.get_mut(key) {
            if self.honours_key {
                return *n;
            }
            *n += 1;
            self.total += 1;
            self.duplicates += 1;
            return *n;
        }
        self.total += 1;
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
        let mut l = Ledger::new(2, false);
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

    #[test]
    fn both_ledgers_drop_a_repeat_when_keys_are_honoured() {
        let mut text = Ledger::new(10, true);
        text.record(Some("a"));
        assert_eq!(text.record(Some("a")), 1);
        assert_eq!(text.report().duplicate_effects, 0);
        let mut dense = DenseLedger::new(true);
        dense.record(3);
        assert!(!dense.record(3));
        assert_eq!((dense.effects_on(3), dense.duplicates()), (1, 0));
    }

    #[test]
    fn a_keyless_repeat_is_a_duplicate_even_where_keys_are_honoured() {
        let mut d = DenseLedger::new(true);
        assert!(!d.record_as(5, false));
        assert!(d.record_as(5, false));
        assert!(!d.record_as(5, true), "a keyed repeat is deduplicated");
        assert_eq!((d.effects_on(5), d.duplicates()), (2, 1));
    }

    #[test]
    fn a_second_effect_on_a_dense_key_is_a_duplicate() {
        let mut d = DenseLedger::new(false);
        assert!(!d.record(3));
        assert!(d.record(3));
        assert_eq!((d.effects_on(3), d.duplicates(), d.total()), (2, 1, 2));
    }
}
