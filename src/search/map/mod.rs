//! A map of where a scenario recovers from its trigger and where it stays
//! down: for each point of a few axes, the share of seeds whose goodput
//! comes back (see [`super::verdict`]), with a Wilson interval.
//!
//! The boundary is found by bisection along one axis ([`bisect`]) over a
//! coarse grid of the others, so a map costs hundreds of runs where a full
//! grid would cost tens of thousands. Metastability studies publish such
//! boundaries as hand-found points ("a spike of this size and length
//! recovers, slightly larger or longer stays down"); a map draws the line.
//!
//! - [`axis`]: what an axis changes (a path, or a named trigger axis);
//! - [`bisect`]: the search along one axis;
//! - [`report`]: the tables, the heatmap and `summary.md`, as data;
//! - [`rows`]: a shard's lines as text, for `merge`.
//!
//! A map runs in two steps: [`run_lines`] bisects the lines (all of them,
//! or a shard's), then [`assemble`] replays the bisection on the recorded
//! tallies and builds the map. The whole run and a merge of shards take
//! the same second step, so they give the same bytes.

pub mod axis;
pub mod bisect;
pub mod report;
pub mod rows;

use super::shard::Shard;
use super::verdict::{judge_with, CalmTwins, Verdict};
use crate::experiment::seeds::SeedSet;
use crate::experiment::sweep::Sweep;
use crate::sim::Scenario;
use axis::{Axis, AxisSpec};
use bisect::{Line, Step, Tally};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Most axes a map takes: a grid of two beside the bisected one.
pub const AXES_MAX: usize = 3;
/// Most grid values per axis.
pub const STEPS_MAX: usize = 33;
/// Most lines (grid points times variants) one map bisects.
pub const LINES_MAX: usize = 2048;
/// Most variants compared side by side.
pub const VARIANTS_MAX: usize = 8;
/// The default tolerance is this fraction of the bisected axis's range.
pub const TOLERANCE_SHARE: f64 = 1.0 / 32.0;

/// One version of the scenario to map: a name and its overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub name: String,
    pub sets: Vec<String>,
}

impl FromStr for Variant {
    type Err = String;

    /// `NAME` or `NAME:PATH=VALUE;PATH=VALUE`.
    fn from_str(text: &str) -> Result<Variant, String> {
        let (name, sets) = text.split_once(':').unwrap_or((text, ""));
        let name = name.trim();
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if name.is_empty() || !name.chars().all(ok) {
            return Err(format!(
                "`{text}`: a variant is NAME or NAME:PATH=VALUE;PATH=VALUE, its name made of \
                 letters, digits, `-` and `_`, e.g. `budget:clients[0].retry.budget.kind=token-bucket`"
            ));
        }
        let sets = sets
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Variant {
            name: name.to_string(),
            sets,
        })
    }
}

/// What to map.
#[derive(Clone, Debug)]
pub struct Plan {
    /// How errors and reproduce commands name the scenario (its path).
    pub origin: String,
    pub text: String,
    /// Overrides for every variant.
    pub sets: Vec<String>,
    /// At least one; each a panel of the map.
    pub variants: Vec<Variant>,
    pub axes: Vec<AxisSpec>,
    /// Which axis is bisected.
    pub bisect: usize,
    /// Grid values of every other axis, ends included.
    pub steps: usize,
    pub seeds: SeedSet,
    /// Bisection stops at a bracket this wide; default [`TOLERANCE_SHARE`]
    /// of the range.
    pub tolerance: Option<f64>,
    /// The command that reruns this map, for `summary.md`.
    pub command: String,
}

/// One line of the map: a variant, the grid values of the other axes
/// (`NaN` at the bisected one), and the search along the bisected axis.
#[derive(Clone, Debug)]
pub struct MapLine {
    pub variant: usize,
    pub grid: Vec<f64>,
    pub line: Line,
}

/// A run that broke an invariant: a bug, with what reproduces it.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub variant: String,
    pub seed: u64,
    pub what: String,
    /// Every override of the point, for `simulate --set`.
    pub sets: Vec<String>,
}

/// A finished map.
#[derive(Clone, Debug)]
pub struct Map {
    pub plan: Plan,
    /// The resolved axes (the same for every variant).
    pub axes: Vec<Axis>,
    pub step: Step,
    pub lines: Vec<MapLine>,
    pub rounds: u32,
    /// (point, seed) runs judged, each a run and, when liveness applies,
    /// its calm twin.
    pub runs: u64,
    pub violations: Vec<Violation>,
}

/// Everything that must hold before a single run.
struct Prepared {
    /// Each variant's scenario before the axes, and its overrides.
    bases: Vec<(Scenario, Vec<String>)>,
    axes: Vec<Axis>,
    step: Step,
    lines: Vec<MapLine>,
}

impl Plan {
    fn build(&self, sets: &[String]) -> Result<Scenario, String> {
        Scenario::from_toml_with(&self.text, &self.origin, sets).map_err(|e| e.to_string())
    }

    /// Lines the map bisects: the runs of its search, for sharding.
    pub fn line_count(&self) -> Result<usize, String> {
        self.prepare().map(|p| p.lines.len())
    }

    fn check_shape(&self) -> Result<(), String> {
        if self.axes.is_empty() || self.axes.len() > AXES_MAX {
            return Err(format!(
                "give 1 to {AXES_MAX} axes (--axis NAME=LO..HI), got {}",
                self.axes.len()
            ));
        }
        for (i, a) in self.axes.iter().enumerate() {
            if self.axes[..i].iter().any(|b| b.name == a.name) {
                return Err(format!("axis `{}` is given twice", a.name));
            }
        }
        if self.bisect >= self.axes.len() {
            return Err("the bisected axis must be one of the axes".to_string());
        }
        if !(2..=STEPS_MAX).contains(&self.steps) {
            return Err(format!("--steps must be between 2 and {STEPS_MAX}"));
        }
        if self.variants.is_empty() || self.variants.len() > VARIANTS_MAX {
            return Err(format!("give 1 to {VARIANTS_MAX} variants"));
        }
        for (i, v) in self.variants.iter().enumerate() {
            if self.variants[..i].iter().any(|w| w.name == v.name) {
                return Err(format!("variant `{}` is given twice", v.name));
            }
        }
        if self.seeds.is_empty() {
            return Err("--seeds must be at least 1".to_string());
        }
        match self.tolerance {
            Some(t) if !(t.is_finite() && t > 0.0) => {
                Err("--tolerance must be a number > 0".to_string())
            }
            _ => Ok(()),
        }
    }

    fn prepare(&self) -> Result<Prepared, String> {
        self.check_shape()?;
        let mut bases = Vec::new();
        let mut axes = Vec::new();
        for v in &self.variants {
            let sets: Vec<String> = self.sets.iter().chain(&v.sets).cloned().collect();
            let base = self
                .build(&sets)
                .map_err(|e| format!("variant `{}`: {e}", v.name))?;
            let build = |extra: &[String]| {
                let all: Vec<String> = sets.iter().chain(extra).cloned().collect();
                self.build(&all)
            };
            let resolved = self
                .axes
                .iter()
                .map(|a| Axis::resolve(a, &base, &build))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("variant `{}`: {e}", v.name))?;
            if axes.is_empty() {
                axes = resolved;
            }
            bases.push((base, sets));
        }
        let b = &axes[self.bisect];
        let step = Step {
            tolerance: self.tolerance.unwrap_or((b.hi - b.lo) * TOLERANCE_SHARE),
            integral: b.integral,
        };
        let lines = self.lines(&axes)?;
        Ok(Prepared {
            bases,
            axes,
            step,
            lines,
        })
    }

    /// Every variant times every grid point of the axes not bisected.
    fn lines(&self, axes: &[Axis]) -> Result<Vec<MapLine>, String> {
        let mut grids: Vec<Vec<f64>> = vec![Vec::new()];
        for (i, a) in axes.iter().enumerate() {
            let values = if i == self.bisect {
                vec![f64::NAN]
            } else {
                grid_values(a, self.steps)
            };
            grids = grids
                .iter()
                .flat_map(|g| {
                    values.iter().map(move |v| {
                        let mut next = g.clone();
                        next.push(*v);
                        next
                    })
                })
                .collect();
        }
        let count = grids.len() * self.variants.len();
        if count > LINES_MAX {
            return Err(format!(
                "{count} lines to bisect; at most {LINES_MAX}: lower --steps"
            ));
        }
        let b = &axes[self.bisect];
        Ok((0..self.variants.len())
            .flat_map(|variant| {
                grids.iter().map(move |grid| MapLine {
                    variant,
                    grid: grid.clone(),
                    line: Line::new(b.lo, b.hi),
                })
            })
            .collect())
    }
}

/// `steps` values from `lo` to `hi`, ends included (whole numbers for a
/// count, repeats dropped).
fn grid_values(a: &Axis, steps: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..steps)
        .map(|i| {
            let v = a.lo + (a.hi - a.lo) * i as f64 / (steps - 1) as f64;
            if a.integral {
                v.round()
            } else {
                v
            }
        })
        .collect();
    out.dedup();
    out
}

/// The overrides of one point: the variant's, then each axis's.
fn point_sets(
    prepared: &Prepared,
    line: &MapLine,
    bisect: usize,
    value: f64,
) -> Result<Vec<String>, String> {
    let (base, sets) = &prepared.bases[line.variant];
    let mut all = sets.clone();
    for (i, a) in prepared.axes.iter().enumerate() {
        let v = if i == bisect { value } else { line.grid[i] };
        all.extend(a.sets(base, v)?);
    }
    Ok(all)
}

/// A line's evaluated points, in increasing value.
pub type Points = Vec<(f64, Tally)>;

/// Runs the map: each round's points times the seeds, judged on `sweep`,
/// each calm twin run once per seed.
pub fn run(plan: &Plan, sweep: &Sweep) -> Result<Map, String> {
    let twins = CalmTwins::default();
    run_with(plan, sweep, |s, seed| judge_with(s, seed, Some(&twins)))
}

/// [`run`] with another judge (tests put a known answer in its place).
pub fn run_with(
    plan: &Plan,
    sweep: &Sweep,
    judge: impl Fn(&Scenario, u64) -> Verdict + Sync,
) -> Result<Map, String> {
    let lines = run_lines(plan, sweep, judge, Shard::WHOLE)?;
    assemble(plan, &lines.into_iter().collect())
}

/// Bisects the lines `shard` owns (line `i` is run `i` of the search),
/// and gives back each one's points by its index.
pub fn run_lines(
    plan: &Plan,
    sweep: &Sweep,
    judge: impl Fn(&Scenario, u64) -> Verdict + Sync,
    shard: Shard,
) -> Result<Vec<(usize, Points)>, String> {
    let prepared = plan.prepare()?;
    let owned: Vec<usize> = (0..prepared.lines.len())
        .filter(|&i| shard.owns(i as u64))
        .collect();
    let mut search_lines: Vec<Line> = owned
        .iter()
        .map(|&i| prepared.lines[i].line.clone())
        .collect();
    bisect::search(&mut search_lines, prepared.step, |round, asked| {
        let mut scenarios = Vec::with_capacity(asked.len());
        for &(k, value) in asked {
            let sets = point_sets(&prepared, &prepared.lines[owned[k]], plan.bisect, value)?;
            scenarios.push(plan.build(&sets).map_err(|e| {
                format!(
                    "at {} = {}: {e}",
                    prepared.axes[plan.bisect].name,
                    axis::number(value)
                )
            })?);
        }
        let label = format!("map round {}", round + 1);
        let trials = sweep.run(&label, &scenarios, &plan.seeds, |s, seed| judge(s, seed.0));
        let mut tallies = vec![Tally::default(); asked.len()];
        for t in trials {
            let tally = &mut tallies[t.point];
            match t.result {
                Verdict::Recovered => tally.recovered += 1,
                Verdict::Stuck(_) => tally.stuck += 1,
                Verdict::Unchecked(why) => tally.count_unchecked(why.name()),
                Verdict::Violation(what) => tally.violations.push((t.seed, what)),
            }
        }
        Ok::<_, String>(tallies)
    })?;
    Ok(owned
        .into_iter()
        .zip(search_lines)
        .map(|(i, l)| (i, l.points))
        .collect())
}

/// The map from every line's recorded points: the bisection replayed on
/// them (so the rounds and boundaries are the search's own), then the
/// violations, line by line.
pub fn assemble(plan: &Plan, recorded: &BTreeMap<usize, Points>) -> Result<Map, String> {
    let prepared = plan.prepare()?;
    let mut lines = prepared.lines.clone();
    if let Some(extra) = recorded.keys().find(|&&i| i >= lines.len()) {
        return Err(format!(
            "line {extra} is recorded, the map has {} lines",
            lines.len()
        ));
    }
    let mut search_lines: Vec<Line> = lines.iter().map(|l| l.line.clone()).collect();
    let mut used = 0;
    let rounds = bisect::search(&mut search_lines, prepared.step, |_, asked| {
        asked
            .iter()
            .map(|&(i, value)| {
                let points = recorded.get(&i).map_or(&[][..], Vec::as_slice);
                let found = points.iter().find(|(v, _)| v.to_bits() == value.to_bits());
                used += 1;
                found.map(|(_, t)| t.clone()).ok_or_else(|| {
                    format!(
                        "line {i} has no recorded point at {}: were its shards run with \
                         other settings or another version?",
                        axis::number(value)
                    )
                })
            })
            .collect::<Result<Vec<Tally>, String>>()
    })?;
    let recorded_points: usize = recorded.values().map(Vec::len).sum();
    if used != recorded_points {
        return Err(format!(
            "{recorded_points} points are recorded, the bisection asks for {used}"
        ));
    }
    for (l, s) in lines.iter_mut().zip(search_lines) {
        l.line = s;
    }
    let violations = violations(plan, &prepared, &lines)?;
    let points: u64 = lines.iter().map(|l| l.line.points.len() as u64).sum();
    Ok(Map {
        plan: plan.clone(),
        axes: prepared.axes,
        step: prepared.step,
        lines,
        rounds,
        runs: points * u64::from(plan.seeds.count),
        violations,
    })
}

/// Every broken invariant, by line, point and seed, with the overrides
/// that rebuild its scenario.
fn violations(
    plan: &Plan,
    prepared: &Prepared,
    lines: &[MapLine],
) -> Result<Vec<Violation>, String> {
    let mut out = Vec::new();
    for l in lines {
        for (value, tally) in &l.line.points {
            for (seed, what) in &tally.violations {
                out.push(Violation {
                    variant: plan.variants[l.variant].name.clone(),
                    seed: *seed,
                    what: what.clone(),
                    sets: point_sets(prepared, l, plan.bisect, *value)?,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::bisect::Boundary;
    use super::*;

    const STORM: &str = include_str!("../../../experiments/scenarios/retry-storm.toml");

    /// The retry storm's spike at `spike_per_s`, its length bisected over
    /// 1..20 s, for each variant; 120 s of horizon leave room to recover.
    fn storm_plan(spike_per_s: u32, variants: &[&str], seeds: u32, tolerance: f64) -> Plan {
        Plan {
            origin: "retry-storm.toml".into(),
            text: STORM.into(),
            sets: vec![
                "horizon_s=120".into(),
                "clients[0].schedule[2].until_s=120".into(),
                format!("clients[0].schedule[1].per_s={spike_per_s}"),
            ],
            variants: variants
                .iter()
                .map(|v| v.parse().expect("variant"))
                .collect(),
            axes: vec!["duration=1..20".parse().expect("axis")],
            bisect: 0,
            steps: 2,
            seeds: SeedSet {
                first: 1,
                count: seeds,
            },
            tolerance: Some(tolerance),
            command: "test".into(),
        }
    }

    const BUDGET: &str = "budget:clients[0].retry.budget.kind=token-bucket;\
        clients[0].retry.budget.tokens_max=10;clients[0].retry.budget.tokens_per_success=0.1";

    fn sweep(jobs: usize) -> Sweep {
        Sweep::new(jobs, false).expect("pool")
    }

    #[test]
    fn variants_are_a_name_and_overrides() {
        let v: Variant = "budget: a.b=1; c[0].d=x ;".parse().expect("valid");
        assert_eq!(v.name, "budget");
        assert_eq!(v.sets, vec!["a.b=1".to_string(), "c[0].d=x".to_string()]);
        assert_eq!("plain".parse::<Variant>().expect("valid").sets.len(), 0);
        assert!("no budget:a=1".parse::<Variant>().is_err());
        assert!(":a=1".parse::<Variant>().is_err());
    }

    #[test]
    fn a_small_map_is_the_same_for_any_thread_count() {
        let plan = storm_plan(80, &["as-written"], 3, 4.0);
        let one = run(&plan, &sweep(1)).expect("maps");
        let two = run(&plan, &sweep(2)).expect("maps");
        let bytes = |m: &Map| {
            (
                m.points_table().to_csv_string(),
                m.boundary_table().to_csv_string(),
                m.summary("t", ""),
            )
        };
        assert_eq!(bytes(&one), bytes(&two));
        assert_eq!(one.runs, 3 * one.points() as u64);
        assert!(one.points() >= 3, "the two ends and at least one middle");
        assert!(matches!(
            one.lines[0].line.boundary(),
            Some(Boundary::Between { .. })
        ));
    }

    /// The published shape: a spike the budget rides out keeps the storm
    /// without one down.
    #[test]
    fn the_storm_without_a_budget_stays_down_where_the_budget_recovers() {
        let plan = storm_plan(105, &["no-budget", BUDGET], 6, 2.0);
        let m = run(&plan, &sweep(2)).expect("maps");
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        let bare = m.lines[0].line.boundary().cloned();
        let budget = m.lines[1].line.boundary().cloned();
        let Some(Boundary::Between {
            high,
            recovers_below: true,
            ..
        }) = bare
        else {
            panic!("the storm without a budget should cross: {bare:?}")
        };
        match budget {
            Some(Boundary::RecoversThroughout) => {}
            Some(Boundary::Between {
                low,
                recovers_below: true,
                ..
            }) => {
                assert!(
                    high < low,
                    "no budget down from {high} s, budget from {low} s"
                )
            }
            other => panic!("the budget should recover longer: {other:?}"),
        }
    }

    #[test]
    fn unchecked_runs_are_counted_apart_and_stop_their_line() {
        let mut plan = storm_plan(80, &["a"], 2, 1.0);
        plan.axes = vec!["load=30..120".parse().expect("axis")];
        let m = run(&plan, &sweep(2)).expect("maps");
        let line = &m.lines[0].line;
        assert_eq!(line.boundary(), Some(&Boundary::Unjudged { at: 120.0 }));
        let (_, over) = &line.points[1];
        assert_eq!((over.judged(), over.unchecked_total()), (0, 2));
        assert!(over.share().is_nan());
        assert!(m
            .summary("t", "")
            .contains("over capacity without a trigger: 2"));
    }

    /// A violation is kept with its seed and every override of its point,
    /// which rebuild the very scenario that broke.
    #[test]
    fn a_violation_names_its_seed_and_the_overrides_that_rebuild_it() {
        let plan = storm_plan(80, &["a"], 3, 4.0);
        let long = |s: &Scenario| match &s.clients[0] {
            crate::sim::clients::ClientsConfig::OpenLoop { schedule, .. } => {
                schedule[1].until_s - 20.0
            }
            _ => 0.0,
        };
        let m = run_with(&plan, &sweep(2), |s, seed| {
            if seed == 2 && long(s) > 15.0 {
                Verdict::Violation("planted".into())
            } else {
                Verdict::Recovered
            }
        })
        .expect("maps");
        assert_eq!(m.violations.len(), 1, "only the end at 20 s is that long");
        let v = &m.violations[0];
        assert_eq!(
            (v.seed, v.what.as_str(), v.variant.as_str()),
            (2, "planted", "a")
        );
        let rebuilt = plan.build(&v.sets).expect("the overrides are valid");
        assert_eq!(long(&rebuilt), 20.0);
        let (_, tally) = m.lines[0].line.points.last().expect("the far end");
        assert_eq!((tally.recovered, tally.violations.len()), (2, 1));
    }

    #[test]
    fn a_bad_plan_says_what_is_wrong() {
        let mut plan = storm_plan(80, &["a"], 1, 1.0);
        plan.axes.push("duration=1..5".parse().expect("axis"));
        assert!(run(&plan, &sweep(1))
            .expect_err("twice")
            .contains("given twice"));
        let mut plan = storm_plan(80, &["a"], 1, 1.0);
        plan.axes = vec!["relay.wrkers=1..4".parse().expect("axis")];
        let err = run(&plan, &sweep(1)).expect_err("unknown path");
        assert!(err.contains("relay.wrkers"), "{err}");
        let plan = storm_plan(80, &["a", "a"], 1, 1.0);
        assert!(run(&plan, &sweep(1))
            .expect_err("twice")
            .contains("given twice"));
    }
}
