//! A scenario's stress variants: its calm twin with one load spike or one
//! downstream outage placed after warm-up, and the largest of each it
//! still recovers from (its margin to the cliff).
//!
//! Settings that look good on the scenario as written may sit one notch
//! from collapse: a slightly larger spike or a slightly longer outage and
//! goodput never comes back. A variant starts from the calm twin (see
//! [`super::triggers::calm`]), so the scenario's own triggers do not
//! blur which stress did what, and runs long enough after the stress for
//! [`super::judge`] to decide liveness.

use super::triggers::{calm, RECOVER_WITHIN_S};
use super::verdict::{judge, Verdict};
use crate::fault::{DownstreamConfig, OutageConfig, OutageMode};
use crate::sim::clients::{ClientsConfig, RatePhase};
use crate::sim::Scenario;

/// Seconds of judged window after the time allowed to recover (the judge
/// needs at least 10).
const WINDOW_S: f64 = 20.0;

/// One stress, placed at `at_s` of the calm twin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stress {
    /// Every open-loop population at `factor` × its rate for `duration_s`.
    Spike { factor: f64, duration_s: f64 },
    /// The downstream (every route's) down for `duration_s`.
    Outage { duration_s: f64, mode: OutageMode },
}

/// Which way a stress grows, for the margin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Axis {
    /// The spike's multiplier.
    SpikeFactor,
    /// The outage's length in seconds.
    OutageS,
}

impl Axis {
    pub fn name(self) -> &'static str {
        match self {
            Axis::SpikeFactor => "spike factor",
            Axis::OutageS => "outage s",
        }
    }

    /// The size at which the stress is no stress at all (always survived).
    pub fn none(self) -> f64 {
        match self {
            Axis::SpikeFactor => 1.0,
            Axis::OutageS => 0.0,
        }
    }
}

impl Stress {
    pub fn axis(&self) -> Axis {
        match self {
            Stress::Spike { .. } => Axis::SpikeFactor,
            Stress::Outage { .. } => Axis::OutageS,
        }
    }

    /// Its size along its axis.
    pub fn size(&self) -> f64 {
        match *self {
            Stress::Spike { factor, .. } => factor,
            Stress::Outage { duration_s, .. } => duration_s,
        }
    }

    /// The same stress with size `size` along its axis.
    pub fn resized(&self, size: f64) -> Stress {
        match *self {
            Stress::Spike { duration_s, .. } => Stress::Spike {
                factor: size,
                duration_s,
            },
            Stress::Outage { mode, .. } => Stress::Outage {
                duration_s: size,
                mode,
            },
        }
    }

    fn duration_s(&self) -> f64 {
        match *self {
            Stress::Spike { duration_s, .. } | Stress::Outage { duration_s, .. } => duration_s,
        }
    }

    /// Whether it can stress `s` at all: a spike needs open-loop clients
    /// (closed-loop populations set their own pace).
    pub fn applies(&self, s: &Scenario) -> bool {
        match self {
            Stress::Spike { .. } => s
                .clients
                .iter()
                .any(|c| matches!(c, ClientsConfig::OpenLoop { .. })),
            Stress::Outage { .. } => true,
        }
    }
}

impl std::fmt::Display for Stress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stress::Spike { factor, duration_s } => {
                write!(f, "{factor:.2}× spike for {duration_s} s")
            }
            Stress::Outage { duration_s, mode } => {
                let mode = match mode {
                    OutageMode::FailFast => "fail-fast",
                    OutageMode::Hang => "hang",
                };
                write!(f, "{duration_s:.1} s {mode} outage")
            }
        }
    }
}

/// `s`'s calm twin with `stress` from `at_s`, its horizon stretched so that
/// liveness is judged after the stress ends.
pub fn variant(s: &Scenario, stress: &Stress, at_s: f64) -> Scenario {
    let mut v = calm(s);
    let end_s = at_s + stress.duration_s();
    v.horizon_s = v.horizon_s.max(end_s + RECOVER_WITHIN_S + WINDOW_S);
    let horizon_s = v.horizon_s;
    for c in &mut v.clients {
        if let ClientsConfig::OpenLoop {
            per_s, schedule, ..
        } = c
        {
            let phases = open_loop_phases(*per_s, schedule, horizon_s);
            let Some(rate) = phases.map(|p| p.per_s) else {
                continue; // traffic that ends by requests_max: left as is
            };
            let factor = match *stress {
                Stress::Spike { factor, .. } => factor,
                Stress::Outage { .. } => 1.0,
            };
            if factor != 1.0 {
                *per_s = None;
                *schedule = vec![
                    RatePhase {
                        until_s: at_s,
                        per_s: rate,
                    },
                    RatePhase {
                        until_s: end_s,
                        per_s: rate * factor,
                    },
                    RatePhase {
                        until_s: horizon_s,
                        per_s: rate,
                    },
                ];
            } else {
                *per_s = Some(rate);
                schedule.clear();
            }
        }
    }
    if let Stress::Outage { mode, .. } = *stress {
        let window = OutageConfig {
            start_s: at_s,
            end_s,
            mode,
        };
        let down = |d: &mut DownstreamConfig| d.outages = vec![window];
        down(&mut v.downstream);
        v.routes
            .iter_mut()
            .filter_map(|r| r.downstream.as_mut())
            .for_each(down);
    }
    v
}

/// The calm rate of an open-loop population (calm twins have `per_s`).
fn open_loop_phases(per_s: Option<f64>, schedule: &[RatePhase], until_s: f64) -> Option<RatePhase> {
    match per_s {
        Some(r) => Some(RatePhase { until_s, per_s: r }),
        None => schedule.last().copied(),
    }
}

/// How a candidate fared under one stress on one seed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Fared {
    Recovered,
    /// Stuck, liveness not judged, or an invariant broke: the text says.
    Failed(String),
}

/// Judges `s` under `stress` on `seed`; counts the simulations in `runs`.
pub fn fare(s: &Scenario, stress: &Stress, at_s: f64, seed: u64, runs: &mut u64) -> Fared {
    // The judge runs the variant and, past its first checks, the calm twin.
    *runs += 2;
    match judge(&variant(s, stress, at_s), seed) {
        Verdict::Recovered => Fared::Recovered,
        Verdict::Violation(what) => Fared::Failed(format!("violation: {what}")),
        Verdict::Stuck(_) => Fared::Failed("stuck".into()),
        Verdict::Unchecked(why) => Fared::Failed(format!("unjudged: {}", why.name())),
    }
}

/// The largest stress along an axis that a scenario survives.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cliff {
    /// The largest size survived on every seed (the axis's `none()` if even
    /// the smallest step failed).
    #[serde(with = "crate::search::stages::exact")]
    pub survived: f64,
    /// The smallest size tried that failed; `None` if `hi` was survived.
    #[serde(with = "crate::search::stages::exact_option")]
    pub failed: Option<f64>,
}

/// Bisects on `stress`'s axis between no stress and `hi`, `steps` times:
/// the largest size `s` still recovers from on every seed. Assumes more
/// stress never helps; `runs` counts the simulations.
pub fn cliff(
    s: &Scenario,
    stress: &Stress,
    at_s: f64,
    hi: f64,
    steps: u32,
    seeds: &[u64],
    runs: &mut u64,
) -> Cliff {
    let mut survives = |size: f64| {
        let st = stress.resized(size);
        seeds
            .iter()
            .all(|&seed| fare(s, &st, at_s, seed, runs) == Fared::Recovered)
    };
    if survives(hi) {
        return Cliff {
            survived: hi,
            failed: None,
        };
    }
    let (mut lo, mut hi) = (stress.axis().none(), hi);
    for _ in 0..steps {
        let mid = (lo + hi) / 2.0;
        if survives(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Cliff {
        survived: lo,
        failed: Some(hi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::triggers::last_end;

    fn scenario(name: &str) -> Scenario {
        let path = format!(
            "{}/experiments/scenarios/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        Scenario::load(std::path::Path::new(&path)).expect("valid")
    }

    #[test]
    fn a_spike_variant_multiplies_the_calm_rate_in_its_window_only() {
        let s = scenario("spike");
        let v = variant(
            &s,
            &Stress::Spike {
                factor: 3.0,
                duration_s: 5.0,
            },
            10.0,
        );
        v.validate().expect("the variant is valid");
        let ClientsConfig::OpenLoop { schedule, .. } = &v.clients[0] else {
            panic!("open loop")
        };
        let rates: Vec<(f64, f64)> = schedule.iter().map(|p| (p.until_s, p.per_s)).collect();
        assert_eq!(rates, vec![(10.0, 100.0), (15.0, 300.0), (65.0, 100.0)]);
        assert_eq!(last_end(&v), Some(15.0));
        assert_eq!(v.horizon_s, 15.0 + RECOVER_WITHIN_S + WINDOW_S);
        assert!(v.downstream.outages.is_empty());
    }

    #[test]
    fn an_outage_variant_replaces_the_scenarios_own_outage() {
        let s = scenario("outage");
        let stress = Stress::Outage {
            duration_s: 8.0,
            mode: OutageMode::Hang,
        };
        let v = variant(&s, &stress, 12.0);
        v.validate().expect("the variant is valid");
        assert_eq!(
            v.downstream.outages,
            vec![OutageConfig {
                start_s: 12.0,
                end_s: 20.0,
                mode: OutageMode::Hang
            }]
        );
        assert_eq!(last_end(&v), Some(20.0));
        assert!(!Stress::Spike {
            factor: 2.0,
            duration_s: 1.0
        }
        .applies(&s));
        assert!(stress.applies(&s));
    }

    #[test]
    fn the_cliff_lies_between_what_recovers_and_what_stays_down() {
        // The retry storm's calm twin recovers from a small spike and stays
        // down after a large one (the published collapse).
        let s = scenario("retry-storm");
        let spike = Stress::Spike {
            factor: 2.0,
            duration_s: 5.0,
        };
        let mut runs = 0;
        let c = cliff(&s, &spike, 20.0, 3.0, 4, &[1], &mut runs);
        let failed = c.failed.expect("a 3× spike brings the storm");
        assert!(c.survived > 1.0 && c.survived < failed, "{c:?}");
        assert!(failed - c.survived <= 2.0 / 16.0 + 1e-9, "{c:?}");
        let mut check = 0;
        assert_eq!(
            fare(&s, &spike.resized(c.survived), 20.0, 1, &mut check),
            Fared::Recovered
        );
        assert_ne!(
            fare(&s, &spike.resized(failed), 20.0, 1, &mut check),
            Fared::Recovered
        );
        assert_eq!(runs, 2 * 5, "one try at hi, then four steps");
    }
}
