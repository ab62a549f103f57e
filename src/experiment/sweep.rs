//! Running every (parameter set, seed) of a sweep in parallel.
//!
//! Each run is independent and deterministic, so the runs can execute on
//! any number of threads in any order; the results are then sorted by
//! (parameter set, seed) before anyone looks at them. That is what makes
//! the outputs byte-identical for every `--jobs`.

use super::seeds::SeedSet;
use crate::rng::Seed;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::io::IsTerminal;

/// The result of one run: which parameter set (index into the points the
/// sweep was given), which seed, and what the model returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial<R> {
    pub point: usize,
    pub seed: u64,
    pub result: R,
}

/// A thread pool of `--jobs` threads plus the progress display.
#[derive(Debug)]
pub struct Sweep {
    pool: rayon::ThreadPool,
    jobs: usize,
    progress: bool,
}

impl Sweep {
    /// A pool of `jobs` threads. `progress` asks for a bar on stderr, shown
    /// only when stderr is a terminal.
    pub fn new(jobs: usize, progress: bool) -> Result<Sweep, rayon::ThreadPoolBuildError> {
        let jobs = jobs.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .thread_name(|i| format!("sweep-{i}"))
            .build()?;
        Ok(Sweep {
            pool,
            jobs,
            progress: progress && std::io::stderr().is_terminal(),
        })
    }

    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Runs `run(point, seed)` for every point and seed, and returns the
    /// trials sorted by (point index, seed).
    pub fn run<P, R, F>(&self, label: &str, points: &[P], seeds: &SeedSet, run: F) -> Vec<Trial<R>>
    where
        P: Sync,
        R: Send,
        F: Fn(&P, Seed) -> R + Sync,
    {
        let tasks: Vec<(usize, u64)> = (0..points.len())
            .flat_map(|point| seeds.iter().map(move |seed| (point, seed)))
            .collect();
        let bar = self.progress_bar(label, tasks.len() as u64);
        let mut trials: Vec<Trial<R>> = self.pool.install(|| {
            tasks
                .par_iter()
                .map(|&(point, seed)| {
                    let result = run(&points[point], Seed(seed));
                    bar.inc(1);
                    Trial {
                        point,
                        seed,
                        result,
                    }
                })
                .collect()
        });
        bar.finish_and_clear();
        trials.sort_by_key(|t| (t.point, t.seed));
        trials
    }

    fn progress_bar(&self, label: &str, len: u64) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(
            "{prefix:>20} [{bar:40}] {pos}/{len} runs, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(label.to_string())
    }
}

/// Groups sorted trials by parameter set: entry `i` holds point `i`'s
/// results in seed order.
pub fn by_point<R>(trials: &[Trial<R>], points: usize) -> Vec<Vec<&R>> {
    let mut groups: Vec<Vec<&R>> = (0..points).map(|_| Vec::new()).collect();
    for trial in trials {
        groups[trial.point].push(&trial.result);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn results_are_sorted_and_the_same_for_any_thread_count() {
        let points = [3_u32, 1, 2];
        let seeds = SeedSet {
            first: 10,
            count: 50,
        };
        let run = |p: &u32, seed: Seed| {
            let mut rng = seed.stream(crate::rng::Domain::Experiment, u64::from(*p));
            rng.random::<u64>()
        };
        let one = Sweep::new(1, false)
            .expect("pool")
            .run("t", &points, &seeds, run);
        let two = Sweep::new(2, false)
            .expect("pool")
            .run("t", &points, &seeds, run);
        assert_eq!(one, two);
        assert_eq!(one.len(), 150);
        assert!(one
            .windows(2)
            .all(|w| (w[0].point, w[0].seed) < (w[1].point, w[1].seed)));
        let groups = by_point(&one, points.len());
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![50; 3]);
    }
}
