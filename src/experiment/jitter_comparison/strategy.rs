//! The five client strategies the jitter comparison sets against each other.

use crate::relay::BackoffKind;
use serde::Serialize;

/// What a client does between a failed write and its next read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Read again at once.
    NoBackoff,
    /// Sleep `min(cap, base · 2^n)` after the n-th failure.
    Exponential,
    /// Half of the exponential delay, plus a uniform draw of the other half.
    EqualJitter,
    /// A uniform draw between zero and the exponential delay.
    FullJitter,
    /// `min(cap, U(base, 3 · previous sleep))`.
    DecorrelatedJitter,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::NoBackoff,
        Strategy::Exponential,
        Strategy::EqualJitter,
        Strategy::FullJitter,
        Strategy::DecorrelatedJitter,
    ];

    /// The name used in definitions, CSVs and legends.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::NoBackoff => "no-backoff",
            Strategy::Exponential => "exponential",
            Strategy::EqualJitter => "equal-jitter",
            Strategy::FullJitter => "full-jitter",
            Strategy::DecorrelatedJitter => "decorrelated-jitter",
        }
    }

    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The relay's backoff kind that implements this strategy.
    pub fn backoff_kind(self) -> BackoffKind {
        match self {
            Strategy::NoBackoff => BackoffKind::None,
            Strategy::Exponential => BackoffKind::Exponential,
            Strategy::EqualJitter => BackoffKind::EqualJitter,
            Strategy::FullJitter => BackoffKind::FullJitter,
            Strategy::DecorrelatedJitter => BackoffKind::DecorrelatedJitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::from_name(s.name()), Some(s));
        }
        assert_eq!(Strategy::from_name("none"), None);
    }
}
