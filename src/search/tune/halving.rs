//! Successive halving over seeds: every candidate on a few seeds, the
//! better half on twice as many, and so on up to the full count.
//!
//! Most candidates are plainly worse after two seeds; spending the seeds
//! on the ones still in the race buys a sharper answer for the same
//! number of runs. Seeds are nested (round r uses seeds 0..n_r, a prefix
//! of the next round's), so a candidate's earlier runs are reused, and
//! every candidate of a round is measured on the same seeds: their
//! differences are the settings', not the draws' (common random numbers).

/// One round: who ran, and on how many seeds (the first `seeds`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    pub alive: Vec<usize>,
    pub seeds: u32,
}

/// Seeds per round: 2, 4, 8, … ending exactly at `seeds_max`.
pub fn seed_schedule(seeds_max: u32) -> Vec<u32> {
    let mut schedule = Vec::new();
    let mut n = 2.min(seeds_max.max(1));
    while n < seeds_max {
        schedule.push(n);
        n *= 2;
    }
    schedule.push(seeds_max.max(1));
    schedule
}

/// Runs the rounds over candidates `0..count`. `evaluate(alive, from..to)`
/// runs the alive candidates on seeds `from..to` (those not run before),
/// or stops the search; `rank(alive, seeds)` orders them best first. After
/// each round but the last, the better half (rounded up) goes on, and so
/// does every candidate in `pinned` (the yardstick).
pub fn successive_halving<E>(
    count: usize,
    seeds_max: u32,
    pinned: &[usize],
    mut evaluate: impl FnMut(&[usize], std::ops::Range<u32>) -> Result<(), E>,
    mut rank: impl FnMut(&[usize], u32) -> Vec<usize>,
) -> Result<Vec<Round>, E> {
    let mut alive: Vec<usize> = (0..count).collect();
    let mut rounds = Vec::new();
    let mut done = 0;
    let schedule = seed_schedule(seeds_max);
    for (r, &seeds) in schedule.iter().enumerate() {
        evaluate(&alive, done..seeds)?;
        done = seeds;
        rounds.push(Round {
            alive: alive.clone(),
            seeds,
        });
        if r + 1 == schedule.len() {
            break;
        }
        let ranked = rank(&alive, seeds);
        let keep = alive.len().div_ceil(2);
        let mut next: Vec<usize> = ranked.into_iter().take(keep).collect();
        for p in pinned {
            if alive.contains(p) && !next.contains(p) {
                next.push(*p);
            }
        }
        next.sort_unstable();
        alive = next;
    }
    Ok(rounds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{unit, Domain, Seed};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[test]
    fn the_schedule_doubles_up_to_the_budget() {
        assert_eq!(seed_schedule(8), vec![2, 4, 8]);
        assert_eq!(seed_schedule(6), vec![2, 4, 6]);
        assert_eq!(seed_schedule(1), vec![1]);
        assert_eq!(seed_schedule(2), vec![2]);
    }

    /// A synthetic objective: candidate c is worth c (higher better), and
    /// each seed adds the same noise to every candidate (common random
    /// numbers) plus a little of its own.
    #[test]
    fn halving_keeps_the_best_and_spends_seeds_on_the_survivors() {
        let count = 32;
        let score: RefCell<BTreeMap<(usize, u32), f64>> = RefCell::new(BTreeMap::new());
        let mut evaluations = 0;
        let rounds = successive_halving(
            count,
            8,
            &[0],
            |alive, seeds| {
                for &c in alive {
                    for s in seeds.clone() {
                        let mut common = Seed(u64::from(s)).stream(Domain::Experiment, 0);
                        let mut own = Seed(u64::from(s)).stream(Domain::Experiment, 1 + c as u64);
                        let noise = 20.0 * unit(&mut common) + 0.5 * unit(&mut own);
                        let fresh = score
                            .borrow_mut()
                            .insert((c, s), c as f64 + noise)
                            .is_none();
                        assert!(fresh, "run twice");
                        evaluations += 1;
                    }
                }
                Ok::<(), ()>(())
            },
            |alive, seeds| {
                let all = score.borrow();
                let mean = |c: usize| (0..seeds).map(|s| all[&(c, s)]).sum::<f64>();
                let mut ranked = alive.to_vec();
                ranked.sort_by(|a, b| mean(*b).total_cmp(&mean(*a)));
                ranked
            },
        )
        .expect("never stops");
        let sizes: Vec<(usize, u32)> = rounds.iter().map(|r| (r.alive.len(), r.seeds)).collect();
        assert_eq!(
            sizes,
            vec![(32, 2), (17, 4), (10, 8)],
            "halved, the yardstick kept"
        );
        // The noise of its own (< 1) never swaps two candidates: the best
        // nine of seventeen, and the yardstick.
        let mut best: Vec<usize> = (23..32).collect();
        best.insert(0, 0);
        assert_eq!(rounds[2].alive, best);
        assert_eq!(
            evaluations,
            32 * 2 + 17 * 2 + 10 * 4,
            "earlier seeds reused"
        );
    }
}
