//! Candidates spread over the knob space by a Halton sequence.
//!
//! Random draws leave holes and clumps; a low-discrepancy sequence covers
//! every range evenly for any prefix, so a small budget still tries both
//! ends of every knob. Halton is the simplest such sequence (one prime
//! base per dimension, [`radical_inverse`]) and is good up to the dozen or
//! so dimensions a tuning run has. The seed shifts every point by one
//! uniform offset per dimension, modulo 1 (a Cranley–Patterson rotation):
//! another seed, another equally even set.

use super::spec::{literal, Knob, Range, KNOBS_MAX};
use crate::rng::{unit, Domain, Seed};

/// The first primes, one Halton base per knob.
const PRIMES: [u64; KNOBS_MAX] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];

/// Stream of the rotation, within [`Domain::Experiment`].
const ROTATION_STREAM: u64 = 0x7475_6e65; // "tune"

/// Significant digits of a sampled real value: a setting someone would
/// write, and the same text in every output.
const DIGITS: i32 = 3;

/// `index` written in base `base`, digits mirrored after the point: the
/// `index`-th point of the van der Corput sequence in that base.
pub fn radical_inverse(mut index: u64, base: u64) -> f64 {
    let (mut value, mut scale) = (0.0, 1.0 / base as f64);
    while index > 0 {
        value += (index % base) as f64 * scale;
        index /= base;
        scale /= base as f64;
    }
    value
}

/// `count` points of the rotated Halton sequence in `[0, 1)^dims`.
pub fn halton(count: usize, dims: usize, seed: u64) -> Vec<Vec<f64>> {
    assert!(dims <= KNOBS_MAX, "at most {KNOBS_MAX} dimensions");
    let mut rng = Seed(seed).stream(Domain::Experiment, ROTATION_STREAM);
    let shift: Vec<f64> = (0..dims).map(|_| unit(&mut rng)).collect();
    // Index 0 is the origin in every base: start at 1.
    (1..=count as u64)
        .map(|i| {
            (0..dims)
                .map(|d| (radical_inverse(i, PRIMES[d]) + shift[d]).fract())
                .collect()
        })
        .collect()
}

/// `count` candidates: for each, one TOML literal per knob.
pub fn sample(knobs: &[Knob], count: usize, seed: u64) -> Vec<Vec<String>> {
    halton(count, knobs.len(), seed)
        .into_iter()
        .map(|u| {
            knobs
                .iter()
                .zip(u)
                .map(|(k, u)| value(&k.range, u))
                .collect()
        })
        .collect()
}

/// The value at `u ∈ [0, 1)` of a range.
pub fn value(range: &Range, u: f64) -> String {
    match range {
        Range::Values(values) => {
            let i = ((u * values.len() as f64) as usize).min(values.len() - 1);
            values[i].clone()
        }
        &Range::Numbers {
            min,
            max,
            integer: true,
            log,
        } => {
            let v = if log {
                // Each whole number gets the log-width of [v - 1/2, v + 1/2).
                let (lo, hi) = ((min - 0.5).max(min / 2.0).ln(), (max + 0.5).ln());
                (lo + u * (hi - lo)).exp().round()
            } else {
                (min + (u * (max - min + 1.0)).floor()).min(max)
            };
            literal(v.clamp(min, max), true)
        }
        &Range::Numbers {
            min,
            max,
            integer: false,
            log,
        } => {
            let v = if log {
                (min.ln() + u * (max.ln() - min.ln())).exp()
            } else {
                min + u * (max - min)
            };
            let text = significant(v.clamp(min, max));
            match text.parse::<f64>() {
                Ok(r) if (min..=max).contains(&r) => text,
                _ => literal(v.clamp(min, max), false),
            }
        }
    }
}

/// `v` with [`DIGITS`] significant digits, as a TOML float.
fn significant(v: f64) -> String {
    if v == 0.0 {
        return "0.0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let step = 10f64.powi(magnitude - (DIGITS - 1));
    let decimals = (DIGITS - 1 - magnitude).max(1) as usize;
    let text = format!("{:.decimals$}", (v / step).round() * step);
    let trimmed = text.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(min: f64, max: f64, integer: bool, log: bool) -> Knob {
        Knob {
            path: "x".into(),
            range: Range::Numbers {
                min,
                max,
                integer,
                log,
            },
        }
    }

    #[test]
    fn the_van_der_corput_points_are_the_mirrored_digits() {
        let base2: Vec<f64> = (1..=4).map(|i| radical_inverse(i, 2)).collect();
        assert_eq!(base2, vec![0.5, 0.25, 0.75, 0.125]);
        assert!((radical_inverse(5, 3) - (2.0 / 3.0 + 1.0 / 9.0)).abs() < 1e-12);
    }

    #[test]
    fn sampling_is_seeded_deterministic_and_covers_every_range() {
        let knobs = vec![
            numbers(1.0, 8.0, true, false),
            numbers(5.0, 5000.0, false, true),
            Knob {
                path: "k".into(),
                range: Range::Values(vec!["\"a\"".into(), "\"b\"".into(), "\"c\"".into()]),
            },
        ];
        let a = sample(&knobs, 48, 1);
        assert_eq!(a, sample(&knobs, 48, 1), "same seed, same candidates");
        assert_ne!(a, sample(&knobs, 48, 2), "another seed, another set");
        let ints: Vec<i64> = a.iter().map(|c| c[0].parse().expect("whole")).collect();
        for v in 1..=8 {
            assert!(ints.contains(&v), "{v} never drawn: {ints:?}");
        }
        let reals: Vec<f64> = a.iter().map(|c| c[1].parse().expect("number")).collect();
        assert!(
            reals.iter().all(|v| (5.0..=5000.0).contains(v)),
            "{reals:?}"
        );
        // Log scale: each decade gets about a third of the points.
        for (lo, hi) in [(5.0, 50.0), (50.0, 500.0), (500.0, 5000.0)] {
            let n = reals.iter().filter(|v| (lo..hi).contains(*v)).count();
            assert!((12..=20).contains(&n), "{n} of 48 in [{lo}, {hi})");
        }
        for v in ["\"a\"", "\"b\"", "\"c\""] {
            let n = a.iter().filter(|c| c[2] == v).count();
            assert!((14..=18).contains(&n), "{v}: {n} of 48");
        }
    }

    #[test]
    fn real_values_keep_three_significant_digits() {
        assert_eq!(significant(123.456), "123.0");
        assert_eq!(significant(0.012345), "0.0123");
        assert_eq!(significant(4567.8), "4570.0");
        let knob = numbers(0.5, 0.9, false, false);
        assert_eq!(value(&knob.range, 0.0), "0.5");
        assert_eq!(value(&numbers(1.0, 3.0, true, true).range, 0.999), "3");
    }
}
