//! Paired differences against a baseline, beside the difference of two
//! independent means.
//!
//! Every strategy of a sweep runs on the same seeds, and a seed fixes the
//! arrivals, delays and failure draws (each entity draws from its own
//! stream), so strategy and baseline see the same world seed by seed. The
//! difference of one seed's two runs then cancels the noise both share, and
//! the 95 % interval of the mean of those differences is far tighter than
//! the interval for the difference of two means that ignores the pairing
//! (Welch's). Reporting both side by side shows how much the common random
//! numbers buy.

use super::stats::{student_t_quantile, Estimate};

/// One metric of one strategy against the baseline, over the seeds where
/// both runs define it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// Mean of the per-seed differences (strategy − baseline) and their
    /// 95 % interval.
    pub paired: Estimate,
    /// The same difference of means with the interval of two independent
    /// samples (Welch–Satterthwaite degrees of freedom).
    pub independent: Estimate,
}

impl Comparison {
    /// How many times wider the independent interval is than the paired
    /// one; NaN when the paired interval is zero or undefined.
    pub fn width_ratio(&self) -> f64 {
        let ratio = self.independent.ci95_half / self.paired.ci95_half;
        if ratio.is_finite() {
            ratio
        } else {
            f64::NAN
        }
    }
}

/// Compares `strategy` with `baseline`, both `(seed, value)` in any order;
/// only seeds present in both with finite values count.
pub fn compare(strategy: &[(u64, f64)], baseline: &[(u64, f64)]) -> Comparison {
    let mut pairs: Vec<(u64, f64, f64)> = strategy
        .iter()
        .filter(|(_, v)| v.is_finite())
        .filter_map(|&(seed, s)| {
            baseline
                .iter()
                .find(|(b_seed, b)| *b_seed == seed && b.is_finite())
                .map(|&(_, b)| (seed, s, b))
        })
        .collect();
    pairs.sort_by_key(|p| p.0);
    let differences: Vec<f64> = pairs.iter().map(|(_, s, b)| s - b).collect();
    let a: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let b: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    Comparison {
        paired: Estimate::of(&differences),
        independent: welch(&a, &b),
    }
}

/// The difference of the means of `a` and `b` with the 95 % interval of two
/// independent samples of unequal variance (Welch's t).
pub fn welch(a: &[f64], b: &[f64]) -> Estimate {
    let (ea, eb) = (Estimate::of(a), Estimate::of(b));
    let mean = ea.mean - eb.mean;
    let n = a.len().min(b.len());
    if a.len() < 2 || b.len() < 2 {
        return Estimate {
            n,
            mean,
            sd: f64::NAN,
            ci95_half: f64::NAN,
        };
    }
    let va = ea.sd * ea.sd / a.len() as f64;
    let vb = eb.sd * eb.sd / b.len() as f64;
    let se = (va + vb).sqrt();
    let ci95_half = if se == 0.0 {
        0.0
    } else {
        let df =
            (va + vb).powi(2) / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
        student_t_quantile(0.975, df) * se
    };
    Estimate {
        n,
        mean,
        sd: se,
        ci95_half,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_shared_noise_cancels_in_the_pairs_but_not_in_the_means() {
        // Each seed adds the same large noise to both runs; the strategy is
        // exactly 1 lower.
        let noise = [10.0, -7.0, 3.0, 25.0, -12.0, 0.5];
        let base: Vec<(u64, f64)> = noise
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u64, 100.0 + n))
            .collect();
        let strategy: Vec<(u64, f64)> = base.iter().rev().map(|&(s, v)| (s, v - 1.0)).collect();
        let c = compare(&strategy, &base);
        assert!(close(c.paired.mean, -1.0), "{c:?}");
        assert_eq!(c.paired.ci95_half, 0.0);
        assert!(close(c.independent.mean, -1.0));
        assert!(c.independent.ci95_half > 10.0, "{c:?}");
        assert!(
            c.width_ratio().is_nan(),
            "a zero-width paired interval has no ratio"
        );
    }

    #[test]
    fn only_seeds_both_runs_define_are_paired() {
        let base = [(1, 2.0), (2, f64::NAN), (3, 4.0), (4, 5.0)];
        let strategy = [(1, 3.0), (2, 9.0), (3, 6.0), (5, 1.0)];
        let c = compare(&strategy, &base);
        assert_eq!(c.paired.n, 2);
        assert!(close(c.paired.mean, 1.5));
        assert_eq!(c.independent.n, 2);
    }

    #[test]
    fn welch_matches_a_worked_example() {
        // Two samples of 5 with variances 2.5 and 10: se² = 0.5 + 2, df =
        // 2.5² / (0.5²/4 + 2²/4) = 6.25 / 1.0625 ≈ 5.882.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [2.0, 4.0, 6.0, 8.0, 10.0];
        let e = welch(&a, &b);
        assert!(close(e.mean, -3.0));
        let df = 6.25 / 1.0625;
        let expected = student_t_quantile(0.975, df) * 2.5_f64.sqrt();
        assert!(close(e.ci95_half, expected), "{e:?}");
        assert!(e.ci95_half > 2.447 * 2.5_f64.sqrt(), "t with under 6 df");
        assert!(welch(&[1.0], &b).ci95_half.is_nan());
    }
}
