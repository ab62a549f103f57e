//! The seeds every parameter set of a sweep runs with.
//!
//! Every parameter set runs with the same seeds (common random numbers): two
//! strategies compared at seed 7 see the same client streams, so their
//! difference reflects the strategy rather than luck of the draw.

use serde::Serialize;

/// Upper bound on seeds per parameter set, so a typo cannot start a sweep
/// that runs for days.
pub const SEEDS_PER_POINT_MAX: u32 = 1_000_000;

/// A contiguous range of master seeds: `first, first + 1, …, first + count - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SeedSet {
    pub first: u64,
    pub count: u32,
}

impl SeedSet {
    /// The seeds in increasing order. `first + count` never overflows: the
    /// definition loader rejects such sets.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..u64::from(self.count)).map(move |i| self.first.wrapping_add(i))
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `first..=last` as written in summaries.
    pub fn describe(&self) -> String {
        match self.count {
            0 => "none".to_string(),
            1 => format!("{}", self.first),
            n => format!("{}..={} ({n} per parameter set)", self.first, self.last()),
        }
    }

    fn last(&self) -> u64 {
        self.first + u64::from(self.count.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_first_to_last() {
        let s = SeedSet { first: 5, count: 3 };
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![5, 6, 7]);
        assert_eq!(s.describe(), "5..=7 (3 per parameter set)");
    }
}
