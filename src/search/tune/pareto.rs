//! Pareto dominance over the three objectives: more goodput, lower p99,
//! lower amplification. No weights: a candidate is kept when no other is
//! at least as good on every objective and better on one.

/// A candidate's objectives (means over its seeds).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Objectives {
    /// Logical requests that succeeded, per second: more is better.
    #[serde(with = "crate::search::stages::exact")]
    pub goodput_per_s: f64,
    /// Client-observed p99 latency: less is better (NaN, when nothing
    /// succeeded, counts as worst).
    #[serde(with = "crate::search::stages::exact")]
    pub p99_ms: f64,
    /// Downstream calls per accepted job: less is better.
    #[serde(with = "crate::search::stages::exact")]
    pub amplification: f64,
}

impl Objectives {
    /// Each objective as a number where less is better.
    fn costs(&self) -> [f64; 3] {
        let worst = |v: f64| if v.is_nan() { f64::INFINITY } else { v };
        [
            worst(-self.goodput_per_s),
            worst(self.p99_ms),
            worst(self.amplification),
        ]
    }
}

/// Whether `a` dominates `b`.
pub fn dominates(a: &Objectives, b: &Objectives) -> bool {
    let (a, b) = (a.costs(), b.costs());
    a.iter().zip(&b).all(|(x, y)| x <= y) && a.iter().zip(&b).any(|(x, y)| x < y)
}

/// Indices (into `points`) of the points no other point dominates, in order.
pub fn front(points: &[Objectives]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| !points.iter().any(|p| dominates(p, &points[i])))
        .collect()
}

/// Each point's layer: 0 for the front, 1 for the front of the rest, … (the
/// non-dominated sorting of NSGA-II, quadratic per layer: fine for the
/// hundreds of candidates a tuning run keeps).
pub fn layers(points: &[Objectives]) -> Vec<usize> {
    let mut layer = vec![usize::MAX; points.len()];
    let mut left: Vec<usize> = (0..points.len()).collect();
    let mut depth = 0;
    while !left.is_empty() {
        let (top, rest): (Vec<usize>, Vec<usize>) = left
            .iter()
            .partition(|&&i| !left.iter().any(|&j| dominates(&points[j], &points[i])));
        for &i in &top {
            layer[i] = depth;
        }
        left = rest;
        depth += 1;
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(goodput_per_s: f64, p99_ms: f64, amplification: f64) -> Objectives {
        Objectives {
            goodput_per_s,
            p99_ms,
            amplification,
        }
    }

    #[test]
    fn the_front_of_known_points() {
        let points = [
            p(100.0, 50.0, 1.0),   // front: best goodput at this latency
            p(90.0, 20.0, 1.0),    // front: fastest
            p(90.0, 60.0, 1.2),    // dominated by both above
            p(100.0, 50.0, 1.5),   // dominated by the first (same, but more calls)
            p(80.0, 30.0, 0.9),    // front: fewest calls
            p(0.0, f64::NAN, 0.0), // front: no calls at all (and nothing else)
        ];
        assert_eq!(front(&points), vec![0, 1, 4, 5]);
        assert_eq!(layers(&points), vec![0, 0, 1, 1, 0, 0]);
        assert!(dominates(&points[0], &points[3]));
        assert!(!dominates(&points[0], &points[0]), "not itself");
        assert!(!dominates(&points[0], &points[1]) && !dominates(&points[1], &points[0]));
    }
}
