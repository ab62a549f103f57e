//! Means and 95 % confidence intervals over the seeds of one parameter set.
//!
//! A sweep runs each parameter set over tens of seeds, not thousands, so the
//! normal quantile 1.96 would understate the uncertainty: with 10 seeds the
//! right multiplier is 2.26. The interval therefore uses Student's t
//! quantile with `n - 1` degrees of freedom, computed here from the t
//! distribution's CDF (a regularized incomplete beta function) by bisection,
//! which is exact to about 1e-12 and needs no statistics crate.

/// Mean, sample standard deviation and 95 % confidence interval of a sample.
/// Fields that are undefined for the sample size (sd and interval for one
/// value, everything for none) are NaN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    /// Half-width of the two-sided 95 % interval around the mean.
    pub ci95_half: f64,
}

impl Estimate {
    /// Summarises `samples`, in the order given (sums are taken in that order,
    /// so sorted input gives bit-identical results).
    pub fn of(samples: &[f64]) -> Estimate {
        let n = samples.len();
        if n == 0 {
            return Estimate {
                n,
                mean: f64::NAN,
                sd: f64::NAN,
                ci95_half: f64::NAN,
            };
        }
        let mean = samples.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Estimate {
                n,
                mean,
                sd: f64::NAN,
                ci95_half: f64::NAN,
            };
        }
        let squares = samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
        let sd = (squares / (n - 1) as f64).sqrt();
        let t = student_t_quantile(0.975, (n - 1) as f64);
        Estimate {
            n,
            mean,
            sd,
            ci95_half: t * sd / (n as f64).sqrt(),
        }
    }

    pub fn ci95_low(&self) -> f64 {
        self.mean - self.ci95_half
    }

    pub fn ci95_high(&self) -> f64 {
        self.mean + self.ci95_half
    }
}

/// The `p` quantile of Student's t distribution with `df` degrees of freedom
/// (`df > 0`, `0 < p < 1`); NaN outside that domain.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    if !(p > 0.0 && p < 1.0 && df > 0.0 && df.is_finite()) {
        return f64::NAN;
    }
    if p < 0.5 {
        return -student_t_quantile(1.0 - p, df);
    }
    if p == 0.5 {
        return 0.0;
    }
    // Bracket the quantile by doubling, then bisect. Both loops are bounded:
    // 1100 doublings pass f64::MAX and 200 halvings pass any f64 spacing.
    let mut low = 0.0_f64;
    let mut high = 1.0_f64;
    for _ in 0..1100 {
        if student_t_cdf(high, df) >= p {
            break;
        }
        low = high;
        high *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if mid <= low || mid >= high {
            break;
        }
        if student_t_cdf(mid, df) < p {
            low = mid;
        } else {
            high = mid;
        }
    }
    0.5 * (low + high)
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
///
/// Uses P(|T| > t) = I_x(df/2, 1/2) with x = df / (df + t²).
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    let x = df / (df + t * t);
    let tail = 0.5 * regularized_incomplete_beta(0.5 * df, 0.5, x);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The regularized incomplete beta function I_x(a, b) for a, b > 0 and
/// x in [0, 1].
fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    // The continued fraction converges fast for x below the mean a/(a+b)
    // (roughly); above it, use the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - regularized_incomplete_beta(b, a, 1.0 - x);
    }
    let ln_front = a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b);
    ln_front.exp() * beta_continued_fraction(a, b, x) / a
}

/// The continued fraction 1 / (1 + d1 / (1 + d2 / (1 + …))) of the
/// incomplete beta function, evaluated front to back (modified Lentz), with
/// d(2m+1) = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)) and
/// d(2m) = m(b-m)x / ((a+2m-1)(a+2m)).
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const PAIRS_MAX: u32 = 10_000;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut value = d;
    for m in 1..=PAIRS_MAX {
        let m = f64::from(m);
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        value *= c * d;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let factor = c * d;
        value *= factor;
        if (factor - 1.0).abs() < 1e-15 {
            break;
        }
    }
    value
}

fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln Γ(x) for x > 0: shift x to z ≥ 15 with Γ(x+1) = x Γ(x), then
/// Stirling's series to the z⁻⁹ term; the first omitted term,
/// 691 / (360360 z¹¹), is below 3e-16 there.
fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    let mut product = 1.0;
    let mut z = x;
    // At most 15 steps, since x > 0.
    while z < 15.0 {
        product *= z;
        z += 1.0;
    }
    let inv = 1.0 / z;
    let inv2 = inv * inv;
    let series = inv
        * (1.0 / 12.0
            - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0 - inv2 / 1188.0))));
    (z - 0.5) * z.ln() - z + 0.5 * (2.0 * std::f64::consts::PI).ln() + series - product.ln()
}

/// The normal quantile for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval (95 %) for `successes` out of `trials`: unlike
/// the normal approximation p ± z·sqrt(p(1-p)/n), it stays inside [0, 1]
/// and keeps a width at 0 or n successes, which is where a map of
/// "recovers / stays down" lives. `(NaN, NaN)` for no trials.
pub fn wilson95(successes: u64, trials: u64) -> (f64, f64) {
    if trials == 0 {
        return (f64::NAN, f64::NAN);
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        // Γ(n) = (n-1)!, Γ(1/2) = √π.
        let mut factorial = 1.0_f64;
        for n in 1..25 {
            let lg = ln_gamma(f64::from(n));
            assert!(close(lg, factorial.ln(), 1e-12), "n={n}: {lg}");
            factorial *= f64::from(n);
        }
        let half = ln_gamma(0.5);
        assert!(close(half, std::f64::consts::PI.sqrt().ln(), 1e-13));
    }

    #[test]
    fn t_quantile_matches_closed_forms_for_one_and_two_degrees_of_freedom() {
        for i in 1..100 {
            let p = f64::from(i) / 100.0;
            // df = 1 is the Cauchy distribution.
            let cauchy = (std::f64::consts::PI * (p - 0.5)).tan();
            let q1 = student_t_quantile(p, 1.0);
            assert!(close(q1, cauchy, 1e-9 * cauchy.abs().max(1.0)), "p={p}");
            let two = (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
            let q2 = student_t_quantile(p, 2.0);
            assert!(close(q2, two, 1e-9 * two.abs().max(1.0)), "p={p}");
        }
    }

    #[test]
    fn t_quantile_matches_published_table_values() {
        // Two-sided 95 % (p = 0.975) and 99 % (p = 0.995) critical values.
        let table = [
            (0.975, 3.0, 3.182_446_305),
            (0.975, 4.0, 2.776_445_105),
            (0.975, 5.0, 2.570_581_836),
            (0.975, 9.0, 2.262_157_163),
            (0.975, 10.0, 2.228_138_852),
            (0.975, 19.0, 2.093_024_054),
            (0.975, 29.0, 2.045_229_642),
            (0.975, 30.0, 2.042_272_456),
            (0.975, 99.0, 1.984_216_952),
            (0.995, 10.0, 3.169_272_673),
            (0.995, 30.0, 2.749_995_654),
            (0.95, 10.0, 1.812_461_123),
        ];
        for (p, df, expected) in table {
            let q = student_t_quantile(p, df);
            assert!(close(q, expected, 1e-8), "p={p} df={df}: {q}");
        }
    }

    #[test]
    fn t_quantile_tends_to_the_normal_quantile() {
        let q = student_t_quantile(0.975, 1e6);
        assert!(close(q, 1.959_963_985, 1e-5), "{q}");
    }

    #[test]
    fn t_quantile_is_antisymmetric_and_rejects_bad_input() {
        assert_eq!(
            student_t_quantile(0.025, 7.0),
            -student_t_quantile(0.975, 7.0)
        );
        assert_eq!(student_t_quantile(0.5, 7.0), 0.0);
        assert!(student_t_quantile(0.0, 7.0).is_nan());
        assert!(student_t_quantile(1.0, 7.0).is_nan());
        assert!(student_t_quantile(0.9, 0.0).is_nan());
    }

    /// Newcombe (1998), "Two-sided confidence intervals for the single
    /// proportion", Table I, method 3 (Wilson score, no continuity correction).
    #[test]
    fn wilson_matches_newcombes_table() {
        let table = [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ];
        for (k, n, low, high) in table {
            let (l, h) = wilson95(k, n);
            assert!(
                close(l, low, 5e-5) && close(h, high, 5e-5),
                "{k}/{n}: {l} {h}"
            );
        }
        let (l, h) = wilson95(10, 10);
        assert!(close(l, 0.7225, 5e-5) && close(h, 1.0, 1e-12), "{l} {h}");
        let (l, h) = wilson95(5, 10);
        assert!(close(l + h, 1.0, 1e-12), "symmetric about one half");
        assert!(wilson95(0, 0).0.is_nan());
    }

    #[test]
    fn estimate_of_one_to_five() {
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(e.n, 5);
        assert!(close(e.mean, 3.0, 1e-15));
        assert!(close(e.sd, 2.5_f64.sqrt(), 1e-15));
        // t(0.975, 4) · sd / √5 = 2.776445105 · 1.58113883 / 2.236067977
        assert!(close(e.ci95_half, 1.963_243_161, 1e-8), "{}", e.ci95_half);
        assert!(close(e.ci95_low(), 3.0 - 1.963_243_161, 1e-8));
    }

    #[test]
    fn estimate_of_tiny_samples_is_nan_where_undefined() {
        let one = Estimate::of(&[4.0]);
        assert_eq!(one.mean, 4.0);
        assert!(one.sd.is_nan() && one.ci95_half.is_nan());
        assert!(Estimate::of(&[]).mean.is_nan());
        let constant = Estimate::of(&[2.0, 2.0, 2.0]);
        assert_eq!((constant.sd, constant.ci95_half), (0.0, 0.0));
    }
}
