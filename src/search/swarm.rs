//! `swarm`: many drawn scenarios judged, the failures shrunk.
//!
//! Run `i` of a swarm with seed `S` draws its scenario from, and simulates
//! it on, one seed derived from `(S, i)`: any run replays alone from that
//! seed, in any order, on any number of threads.

use super::draw::draw;
use super::shrink::{shrink, Shrunk};
use super::verdict::{judge, Verdict};
use crate::rng::{Domain, Seed};
use crate::sim::Scenario;
use rand::Rng;
use std::collections::BTreeMap;

/// The seed of run `index` of the swarm seeded `swarm_seed`.
pub fn run_seed(swarm_seed: u64, index: u64) -> u64 {
    Seed(swarm_seed).stream(Domain::Swarm, index + 1).random()
}

/// One run: its seed, and how it was judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub index: u64,
    pub seed: u64,
    pub verdict: Verdict,
}

/// Draws and judges run `index`.
pub fn run_one(swarm_seed: u64, index: u64) -> Outcome {
    let seed = run_seed(swarm_seed, index);
    Outcome {
        index,
        seed,
        verdict: judge(&draw(seed), seed),
    }
}

/// The scenario of a failed run, and its shrunk form.
pub fn shrink_run(scenario: &Scenario, seed: u64, verdict: &Verdict, budget: u32) -> Shrunk {
    shrink(scenario, verdict, budget, |s| judge(s, seed))
}

/// How a run ended, as counted: `recovered`, `stuck`, `violation` or
/// `liveness unchecked: <why>`.
pub fn ending(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Recovered => "recovered".to_string(),
        Verdict::Unchecked(why) => format!("liveness unchecked: {}", why.name()),
        Verdict::Violation(_) => "violation".to_string(),
        Verdict::Stuck(_) => "stuck".to_string(),
    }
}

/// The columns of a swarm's rows.
pub const ROW_HEADER: [&str; 4] = ["run", "seed", "ending", "verdict"];

/// One run as a row: what a shard writes and a merge reads.
pub fn row(o: &Outcome) -> Vec<String> {
    vec![
        o.index.to_string(),
        o.seed.to_string(),
        ending(&o.verdict),
        o.verdict.to_string(),
    ]
}

/// How many runs ended each way, by [`ending`], in a fixed order.
pub fn tally<'a>(endings: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in endings {
        *counts.entry(e.to_string()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::shrink::Shrunk;

    #[test]
    fn runs_replay_from_their_seed_alone() {
        let a = run_one(1, 5);
        let b = run_one(1, 5);
        assert_eq!(a, b);
        assert_ne!(run_seed(1, 5), run_seed(1, 6));
        assert_ne!(run_seed(1, 5), run_seed(2, 5));
    }

    use crate::planted::{self, Bug};

    /// Plants `bug`, finds the first run of swarm 1 that fails, shrinks it,
    /// and checks the shrunk scenario fails only because of the bug.
    fn found_and_shrunk(bug: Bug, runs: u64) -> (Outcome, Shrunk) {
        planted::with(bug, || {
            let found = (0..runs)
                .map(|i| run_one(1, i))
                .find(|o| o.verdict.failed())
                .unwrap_or_else(|| panic!("{bug:?} not found in {runs} runs of swarm seed 1"));
            let shrunk = shrink_run(&draw(found.seed), found.seed, &found.verdict, 400);
            (found, shrunk)
        })
    }

    fn size(s: &Scenario) -> usize {
        s.clients.len()
            + s.downstream.outages.len()
            + s.downstream.brownouts.len()
            + s.faults.crash.len()
            + usize::from(s.relay.rate_limit.is_some())
            + usize::from(s.relay.retry.budget.is_some())
            + usize::from(s.relay.hedge.is_some())
    }

    #[test]
    fn the_swarm_finds_and_shrinks_a_breaker_that_never_closes() {
        let (found, shrunk) = found_and_shrunk(Bug::BreakerStaysOpen, 200);
        assert!(
            matches!(found.verdict, Verdict::Stuck(_)),
            "{}",
            found.verdict
        );
        assert!(
            matches!(shrunk.verdict, Verdict::Stuck(_)),
            "{}",
            shrunk.verdict
        );
        let small = &shrunk.scenario;
        assert!(small.relay.breaker.is_some(), "the bug needs a breaker");
        assert!(
            size(small) < size(&draw(found.seed)) || size(small) <= 2,
            "{small:?}"
        );
        assert!(
            !judge(small, found.seed).failed(),
            "seed {}: the shrunk scenario fails without the bug too",
            found.seed
        );
    }

    #[test]
    fn the_swarm_finds_and_shrinks_a_store_that_forgets_successes() {
        let (found, shrunk) = found_and_shrunk(Bug::ForgetsSuccess, 400);
        assert!(
            matches!(found.verdict, Verdict::Violation(_)),
            "{}",
            found.verdict
        );
        let Verdict::Violation(what) = &shrunk.verdict else {
            panic!("{}", shrunk.verdict)
        };
        assert!(what.contains("again"), "{what}");
        // The bug needs no trigger and little time: shrinking drops them.
        let small = &shrunk.scenario;
        assert!(
            small.downstream.outages.is_empty() && small.faults.crash.is_empty(),
            "{small:?}"
        );
        assert!(
            small.horizon_s <= draw(found.seed).horizon_s / 2.0,
            "{small:?}"
        );
        assert!(
            !judge(&shrunk.scenario, found.seed).failed(),
            "seed {}: the shrunk scenario fails without the bug too",
            found.seed
        );
    }

    #[test]
    fn a_small_swarm_holds_every_invariant_and_mostly_judges_liveness() {
        let outcomes: Vec<Outcome> = (0..40).map(|i| run_one(11, i)).collect();
        for o in &outcomes {
            assert!(
                !o.verdict.failed(),
                "run {} (seed {}): {}\nreproduce with: cargo run --release -- swarm --seed 11 --runs {}",
                o.index,
                o.seed,
                o.verdict,
                o.index + 1
            );
        }
        let judged = outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Recovered)
            .count();
        let endings: Vec<String> = outcomes.iter().map(|o| ending(&o.verdict)).collect();
        assert!(
            judged >= 20,
            "{:?}",
            tally(endings.iter().map(String::as_str))
        );
    }
}
