//! The axes of a map: what each one changes in the scenario.
//!
//! An axis is `NAME=LO..HI`. `NAME` is either a numeric path of the
//! scenario (`relay.workers`, `clients[0].schedule[1].per_s`, also written
//! `clients.0.schedule.1.per_s`) or one of the named trigger axes, which
//! find the scenario's one trigger and change it without the user having
//! to know where it is written:
//!
//! - `spike` (or `trigger`): the peak rate of the spike, in req/s;
//! - `duration`: the length of the spike or outage window, in s (it starts
//!   where it starts; for a spike, later phases move with its end, the last
//!   phase keeps its end);
//! - `load`: the rate the run settles at, in req/s: the trigger's
//!   population's last phase (or its `per_s`), every other phase but the
//!   spike scaled by the same factor.
//!
//! Every point becomes a list of `path=value` overrides applied with
//! `--set`'s own rules, so a point is reproduced by `simulate --set …`.

use crate::sim::clients::ClientsConfig;
use crate::sim::Scenario;
use std::fmt;
use std::str::FromStr;

/// An axis as written: `NAME=LO..HI`.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisSpec {
    pub name: String,
    pub lo: f64,
    pub hi: f64,
}

impl FromStr for AxisSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<AxisSpec, String> {
        const FORM: &str =
            "write an axis as NAME=LO..HI, e.g. `duration=1..20` or `relay.workers=10..40`";
        let (name, range) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: {FORM}"))?;
        let (lo, hi) = range
            .split_once("..")
            .ok_or_else(|| format!("`{text}`: the range needs `..`; {FORM}"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("`{text}`: `{}` is not a number; {FORM}", s.trim()))
        };
        let (name, lo, hi) = (name.trim(), number(lo)?, number(hi)?);
        if name.is_empty() {
            return Err(format!("`{text}`: the axis has no name; {FORM}"));
        }
        if lo >= hi {
            return Err(format!("`{text}`: LO must be below HI"));
        }
        Ok(AxisSpec {
            name: name.to_string(),
            lo,
            hi,
        })
    }
}

/// What an axis changes.
#[derive(Clone, Debug, PartialEq)]
pub enum Knob {
    Path(String),
    Spike,
    Duration,
    Load,
}

impl Knob {
    fn of(name: &str) -> Knob {
        match name {
            "spike" | "trigger" => Knob::Spike,
            "duration" => Knob::Duration,
            "load" => Knob::Load,
            path => Knob::Path(path.to_string()),
        }
    }
}

/// The scenario's one trigger, for the named axes.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// Phase `phase` of open-loop population `client` (the highest before
    /// the last), starting at `start_s`.
    Spike {
        client: usize,
        phase: usize,
        start_s: f64,
    },
    /// `downstream.outages[index]`, starting at `start_s`.
    Outage { index: usize, start_s: f64 },
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Spike { client, phase, .. } => {
                write!(f, "the spike clients[{client}].schedule[{phase}]")
            }
            Trigger::Outage { index, .. } => write!(f, "the outage downstream.outages[{index}]"),
        }
    }
}

/// Finds the trigger the named axes change: exactly one spike or outage.
pub fn trigger(s: &Scenario) -> Result<Trigger, String> {
    let mut found = Vec::new();
    for (client, c) in s.clients.iter().enumerate() {
        if let ClientsConfig::OpenLoop { schedule, .. } = c {
            if schedule.len() > 1 {
                let before_last = &schedule[..schedule.len() - 1];
                let phase = (0..before_last.len())
                    .rev()
                    .max_by(|&a, &b| before_last[a].per_s.total_cmp(&before_last[b].per_s))
                    .unwrap_or(0);
                let start_s = if phase == 0 {
                    0.0
                } else {
                    schedule[phase - 1].until_s
                };
                found.push(Trigger::Spike {
                    client,
                    phase,
                    start_s,
                });
            }
        }
    }
    for (index, o) in s.downstream.outages.iter().enumerate() {
        found.push(Trigger::Outage {
            index,
            start_s: o.start_s,
        });
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(
            "the scenario has no spike (an open-loop schedule of two or more phases) \
                  nor outage (`[[downstream.outages]]`) for `spike`, `duration` or `load` \
                  to change; map a path instead"
                .to_string(),
        ),
        _ => Err(format!(
            "the scenario has {} triggers ({}); `spike`, `duration` and `load` need exactly \
             one: map their paths instead",
            found.len(),
            found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A resolved axis: its range, what it changes, and whether its values
/// must be whole numbers (a count such as `relay.workers`).
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub name: String,
    pub knob: Knob,
    pub lo: f64,
    pub hi: f64,
    pub integral: bool,
}

impl Axis {
    /// Checks `spec` against `base` (the scenario with every fixed override
    /// applied); `build` turns overrides into a scenario, as a point will.
    pub fn resolve(
        spec: &AxisSpec,
        base: &Scenario,
        build: &dyn Fn(&[String]) -> Result<Scenario, String>,
    ) -> Result<Axis, String> {
        let knob = Knob::of(&spec.name);
        let mut axis = Axis {
            name: spec.name.clone(),
            knob,
            lo: spec.lo,
            hi: spec.hi,
            integral: false,
        };
        if let Knob::Path(_) = axis.knob {
            // A value with a fraction tells a count from a rate: a count
            // refuses it and takes the rounded value.
            let probe = spec.lo + (spec.hi - spec.lo) * 0.378_125;
            let fraction = if probe.fract() == 0.0 {
                probe + 0.25
            } else {
                probe
            };
            if let Err(float_error) = build(&axis.sets(base, fraction)?) {
                axis.integral = true;
                if spec.lo.fract() != 0.0 || spec.hi.fract() != 0.0 {
                    return Err(format!("axis `{}`: {float_error}", spec.name));
                }
                build(&axis.sets(base, probe.round())?)
                    .map_err(|_| format!("axis `{}`: {float_error}", spec.name))?;
            }
        }
        for v in [spec.lo, spec.hi] {
            build(&axis.sets(base, v)?)
                .map_err(|e| format!("axis `{}` at {}: {e}", spec.name, number(v)))?;
        }
        Ok(axis)
    }

    /// The overrides that put this axis at `value` in `base`.
    pub fn sets(&self, base: &Scenario, value: f64) -> Result<Vec<String>, String> {
        let v = if self.integral { value.round() } else { value };
        match &self.knob {
            Knob::Path(path) => Ok(vec![format!("{path}={}", number(v))]),
            Knob::Spike => match trigger(base)? {
                Trigger::Spike { client, phase, .. } => Ok(vec![format!(
                    "clients[{client}].schedule[{phase}].per_s={}",
                    number(v)
                )]),
                Trigger::Outage { .. } => Err(format!(
                    "axis `{}`: the trigger is an outage, which has no peak rate; \
                     map its `duration`, or `load`",
                    self.name
                )),
            },
            Knob::Duration => duration_sets(base, v),
            Knob::Load => load_sets(base, v),
        }
    }
}

/// `value` as a TOML number: a whole number without a fraction, else the
/// shortest text that reads back as the same f64.
pub fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:?}")
    }
}

fn schedule(base: &Scenario, client: usize) -> &[crate::sim::clients::RatePhase] {
    match base.clients.get(client) {
        Some(ClientsConfig::OpenLoop { schedule, .. }) => schedule,
        _ => &[],
    }
}

fn duration_sets(base: &Scenario, d: f64) -> Result<Vec<String>, String> {
    match trigger(base)? {
        Trigger::Outage { index, start_s } => Ok(vec![format!(
            "downstream.outages[{index}].end_s={}",
            number(start_s + d)
        )]),
        Trigger::Spike {
            client,
            phase,
            start_s,
        } => {
            let phases = schedule(base, client);
            let shift = start_s + d - phases[phase].until_s;
            Ok((phase..phases.len() - 1)
                .map(|i| {
                    format!(
                        "clients[{client}].schedule[{i}].until_s={}",
                        number(phases[i].until_s + shift)
                    )
                })
                .collect())
        }
    }
}

fn load_sets(base: &Scenario, rate: f64) -> Result<Vec<String>, String> {
    let (client, spike) = match trigger(base)? {
        Trigger::Spike { client, phase, .. } => (client, Some(phase)),
        Trigger::Outage { .. } => {
            let open = base
                .clients
                .iter()
                .position(|c| matches!(c, ClientsConfig::OpenLoop { .. }));
            (
                open.ok_or("axis `load` needs an open-loop population to scale")?,
                None,
            )
        }
    };
    let phases = schedule(base, client);
    let Some(last) = phases.last() else {
        return Ok(vec![format!("clients[{client}].per_s={}", number(rate))]);
    };
    if last.per_s <= 0.0 {
        return Err("axis `load`: the last phase's rate is 0, nothing to scale".to_string());
    }
    let factor = rate / last.per_s;
    Ok(phases
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != spike)
        .map(|(i, p)| {
            format!(
                "clients[{client}].schedule[{i}].per_s={}",
                number(p.per_s * factor)
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORM: &str = include_str!("../../../experiments/scenarios/retry-storm.toml");

    fn storm() -> Scenario {
        Scenario::from_toml(STORM, "retry-storm.toml").expect("valid")
    }

    fn build(sets: &[String]) -> Result<Scenario, String> {
        Scenario::from_toml_with(STORM, "retry-storm.toml", sets).map_err(|e| e.to_string())
    }

    fn axis(text: &str) -> Result<Axis, String> {
        Axis::resolve(&text.parse()?, &storm(), &build)
    }

    #[test]
    fn axis_syntax_errors_say_what_to_write() {
        for (bad, says) in [
            ("duration", "NAME=LO..HI"),
            ("duration=1-20", "needs `..`"),
            ("duration=a..20", "`a` is not a number"),
            ("duration=20..1", "LO must be below HI"),
            ("=1..2", "no name"),
        ] {
            let err = bad.parse::<AxisSpec>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn named_axes_find_the_spike() {
        let s = storm();
        assert_eq!(
            trigger(&s),
            Ok(Trigger::Spike {
                client: 0,
                phase: 1,
                start_s: 20.0
            })
        );
        let spike = axis("spike=40..160").expect("spike");
        assert_eq!(
            spike.sets(&s, 100.0),
            Ok(vec!["clients[0].schedule[1].per_s=100".to_string()])
        );
        let d = axis("duration=1..20").expect("duration");
        let long = build(&d.sets(&s, 12.5).expect("sets")).expect("valid");
        let ClientsConfig::OpenLoop { schedule, .. } = &long.clients[0] else {
            panic!("open loop")
        };
        assert_eq!(schedule[1].until_s, 32.5);
        assert_eq!(schedule[2].until_s, 80.0, "the last phase keeps its end");
        let load = axis("load=20..60").expect("load");
        assert_eq!(
            load.sets(&s, 60.0),
            Ok(vec![
                "clients[0].schedule[0].per_s=60".to_string(),
                "clients[0].schedule[2].per_s=60".to_string()
            ])
        );
    }

    #[test]
    fn a_count_axis_is_integral_and_a_bad_path_is_named() {
        assert!(axis("relay.workers=10..40").expect("count").integral);
        assert!(
            !axis("clients[0].schedule[1].per_s=40..160")
                .expect("rate")
                .integral
        );
        let err = axis("relay.wrkers=1..4").expect_err("typo");
        assert!(
            err.contains("relay.wrkers") && err.contains("unknown field"),
            "{err}"
        );
        let err = axis("clients[3].per_s=1..4").expect_err("no such population");
        assert!(err.contains("out of range"), "{err}");
        let outage = Scenario::from_toml(
            include_str!("../../../experiments/scenarios/outage.toml"),
            "outage.toml",
        )
        .expect("valid");
        let spike = Axis {
            name: "spike".into(),
            knob: Knob::Spike,
            lo: 1.0,
            hi: 2.0,
            integral: false,
        };
        let err = spike.sets(&outage, 1.5).expect_err("an outage has no rate");
        assert!(err.contains("outage"), "{err}");
    }
}
