//! `tune`: relay settings searched for goodput, latency and calls, under
//! constraints, with a margin to the cliff.
//!
//! A setting that wins on the scenario as written can sit one notch from
//! collapse, so every candidate is also judged on the scenario's stress
//! variants ([`super::stress`]: a spike, an outage), and the recommendation
//! is the Pareto-optimal candidate, near the best goodput, that survives
//! the largest stress.
//!
//! - [`spec`]: the `[tune]` section, read with located errors;
//! - [`space`]: candidates spread over the knobs by a Halton sequence;
//! - [`halving`]: successive halving over nested seeds;
//! - [`pareto`]: dominance, the front, non-dominated layers;
//! - [`report`]: the tables, chart, TOML and summary a run writes.
//!
//! Every candidate of a round runs on the same seeds, every run is
//! deterministic, and results are sorted before use: the report is the
//! same bytes for any number of threads.

pub mod halving;
pub mod pareto;
pub mod report;
pub mod space;
pub mod spec;

use super::stages::{Halt, Stages};
use super::stress::{cliff, fare, Cliff, Fared, Stress};
use crate::experiment::seeds::SeedSet;
use crate::sim::{simulate, Scenario, SimOptions};
use crate::toml_doc::{LocatedError, TomlDoc};
use halving::{successive_halving, Round};
use pareto::{layers, Objectives};
use spec::TuneSpec;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

/// How the recommendation is chosen, for `--help` and `summary.md`.
pub const RULE: &str = "among the feasible candidates of the last round that no other \
dominates (goodput up, p99 down, amplification down), those within \
recommend_within_pct of the best goodput are bisected for their cliff; the one \
that survives the largest stress (the smaller of the spike and outage margins, \
each as a share of its searched range) wins; ties go to more goodput, then to \
the lower p99";

/// Front points whose margin is searched (the ones with most goodput).
const MARGIN_CANDIDATES_MAX: usize = 6;

/// A scenario file with its `[tune]` section, read and checked.
#[derive(Clone, Debug)]
pub struct Tuning {
    pub text: String,
    pub origin: String,
    pub spec: TuneSpec,
    /// The scenario as written: candidate 0, the yardstick.
    pub base: Scenario,
    /// The first seed; seed i of the search is `seed + i`.
    pub seed: u64,
}

impl Tuning {
    pub fn load(path: &Path) -> Result<Tuning, LocatedError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            LocatedError::outside(&origin, "", &format!("cannot read the scenario file: {e}"))
        })?;
        Tuning::from_text(text, origin)
    }

    pub fn from_text(text: String, origin: String) -> Result<Tuning, LocatedError> {
        let base = Scenario::from_toml(&text, &origin)?;
        let doc = TomlDoc::parse(origin.clone(), &text)?;
        let spec = TuneSpec::read(&doc, &text)?;
        Ok(Tuning {
            seed: base.seed,
            base,
            spec,
            text,
            origin,
        })
    }

    /// The stress variants that apply to this scenario.
    pub fn variants(&self) -> Vec<Stress> {
        let all = &self.spec.stress.variants;
        all.iter()
            .copied()
            .filter(|v| v.applies(&self.base))
            .collect()
    }

    /// The `--set` overrides that make a candidate.
    pub fn sets(&self, values: &[String]) -> Vec<String> {
        let knobs = self.spec.knobs.iter();
        knobs
            .zip(values)
            .map(|(k, v)| format!("{}={v}", k.path))
            .collect()
    }
}

/// One point of the search.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// One TOML literal per knob (for candidate 0, what the file says;
    /// empty where it says nothing).
    pub values: Vec<String>,
    /// The scenario with these settings, or why it is refused.
    pub scenario: Result<Scenario, String>,
}

/// One candidate on one seed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub objectives: Objectives,
    pub duplicates: u64,
    /// Per applicable variant, in order.
    pub stress: Vec<Fared>,
    /// The run stopped on a broken invariant (a bug): what broke.
    pub broken: Option<String>,
    /// Simulations it took.
    pub runs: u64,
}

/// A candidate's samples over the first `seeds` seeds, and the verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// Means over the seeds.
    pub objectives: Objectives,
    /// Summed over the seeds.
    pub duplicates: u64,
    /// Whether every variant recovered on every seed (`None`: none judged).
    pub recovered: Option<bool>,
    pub seeds: u32,
    /// Every constraint missed; empty means feasible.
    pub violations: Vec<String>,
}

impl Score {
    pub fn feasible(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Its largest survived stress along each variant's axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Margins {
    pub cliffs: Vec<(Stress, Cliff)>,
    /// The smallest survived share of a searched range (0 to 1).
    pub score: f64,
}

/// Everything a run found, sorted and ready to write.
#[derive(Clone, Debug)]
pub struct Report {
    pub candidates: Vec<Candidate>,
    pub rounds: Vec<Round>,
    /// Score on the seeds of its last round, for every valid candidate.
    pub scores: BTreeMap<usize, Score>,
    /// The Pareto front of the last round, by goodput, highest first.
    pub front: Vec<usize>,
    /// For the front points near the best goodput, and for candidate 0.
    pub margins: BTreeMap<usize, Margins>,
    pub recommended: Option<usize>,
    /// Simulations run in all.
    pub runs: u64,
    /// Broken invariants met on the way: (candidate, seed, what).
    pub broken: Vec<(usize, u64, String)>,
}

impl Report {
    /// The round a candidate was last run in (0-based), if it ran.
    pub fn last_round(&self, id: usize) -> Option<usize> {
        self.rounds.iter().rposition(|r| r.alive.contains(&id))
    }
}

/// The candidates: the scenario as written, then `spec.candidates` sampled
/// (repeats dropped: integer and enumerated knobs can draw one twice).
pub fn candidates(t: &Tuning) -> Vec<Candidate> {
    let written = written_values(t);
    let mut seen = vec![written.clone()];
    let mut out = vec![Candidate {
        values: written,
        scenario: Ok(t.base.clone()),
    }];
    for values in space::sample(&t.spec.knobs, t.spec.candidates as usize, t.seed) {
        if seen.contains(&values) {
            continue;
        }
        seen.push(values.clone());
        let scenario =
            Scenario::from_toml_with(&t.text, &t.origin, &t.sets(&values)).map_err(|e| e.message);
        out.push(Candidate { values, scenario });
    }
    out
}

/// What the scenario says at each knob's path, as TOML.
fn written_values(t: &Tuning) -> Vec<String> {
    let root = toml::Value::try_from(&t.base).ok();
    t.spec
        .knobs
        .iter()
        .map(|k| {
            let mut here = root.as_ref();
            for part in k.path.split('.') {
                here = here.and_then(|v| v.get(part));
            }
            here.map(toml::Value::to_string).unwrap_or_default()
        })
        .collect()
}

/// Runs one candidate on one seed: the scenario as written for the
/// objectives, then each variant for recovery (when it is a constraint).
pub fn evaluate(t: &Tuning, scenario: &Scenario, seed: u64) -> Sample {
    let mut runs = 1;
    let (objectives, duplicates, broken) = match simulate(scenario, &SimOptions::seed(seed)) {
        Ok(r) => {
            let s = &r.summary;
            let secs = s.simulated_s.max(1e-9);
            let objectives = Objectives {
                goodput_per_s: s.client_succeeded as f64 / secs,
                p99_ms: s.client_latency.p99_ms,
                amplification: s.retry_amplification,
            };
            (objectives, s.duplicate_side_effects, None)
        }
        Err(failure) => {
            let none = Objectives {
                goodput_per_s: 0.0,
                p99_ms: f64::NAN,
                amplification: f64::NAN,
            };
            (none, 0, Some(failure.to_string()))
        }
    };
    let mut stress = Vec::new();
    if t.spec.constraints.recover && broken.is_none() {
        for v in t.variants() {
            stress.push(fare(scenario, &v, t.spec.stress.at_s, seed, &mut runs));
        }
    }
    Sample {
        objectives,
        duplicates,
        stress,
        broken,
        runs,
    }
}

/// Aggregates samples (seed order) and checks the constraints.
pub fn score(t: &Tuning, samples: &[&Sample], first_seed: u64) -> Score {
    let n = samples.len().max(1) as f64;
    let mean =
        |f: fn(&Objectives) -> f64| samples.iter().map(|s| f(&s.objectives)).sum::<f64>() / n;
    let objectives = Objectives {
        goodput_per_s: mean(|o| o.goodput_per_s),
        p99_ms: mean(|o| o.p99_ms),
        amplification: mean(|o| o.amplification),
    };
    let duplicates = samples.iter().map(|s| s.duplicates).sum();
    let judged = samples.iter().any(|s| !s.stress.is_empty());
    let failed = first_failure(t, samples, first_seed);
    let mut violations = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if let Some(what) = &s.broken {
            let seed = first_seed + i as u64;
            violations.push(format!("invariant broken on seed {seed}: {what}"));
        }
    }
    violations.extend(missed(&t.spec.constraints, &objectives, duplicates));
    if let Some(what) = &failed {
        violations.push(format!("no recovery: {what}"));
    }
    Score {
        objectives,
        duplicates,
        recovered: judged.then_some(failed.is_none()),
        seeds: samples.len() as u32,
        violations,
    }
}

/// The first variant that did not recover, on the first seed it failed.
fn first_failure(t: &Tuning, samples: &[&Sample], first_seed: u64) -> Option<String> {
    let variants = t.variants();
    samples.iter().enumerate().find_map(|(i, s)| {
        s.stress.iter().zip(&variants).find_map(|(f, v)| match f {
            Fared::Recovered => None,
            Fared::Failed(why) => Some(format!("{v} on seed {}: {why}", first_seed + i as u64)),
        })
    })
}

/// The numeric constraints a candidate's means miss, in words.
fn missed(c: &spec::Constraints, o: &Objectives, duplicates: u64) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(min) = c.goodput_per_s_min.filter(|&m| o.goodput_per_s < m) {
        out.push(format!("goodput {:.1}/s < {min}", o.goodput_per_s));
    }
    // NaN (nothing succeeded) misses any bound.
    let over = |v: f64, max: Option<f64>| max.filter(|&m| v.is_nan() || v > m);
    if let Some(max) = over(o.p99_ms, c.p99_ms_max) {
        out.push(format!("p99 {:.1} ms > {max}", o.p99_ms));
    }
    if let Some(max) = over(o.amplification, c.amplification_max) {
        out.push(format!("amplification {:.3} > {max}", o.amplification));
    }
    if duplicates > c.duplicates_max {
        out.push(format!(
            "{duplicates} duplicate side effects > {}",
            c.duplicates_max
        ));
    }
    out
}

/// Best first: feasible ones by Pareto layer, then goodput; then the
/// infeasible by how many constraints they miss, then goodput.
pub fn rank(scores: &BTreeMap<usize, Score>, alive: &[usize]) -> Vec<usize> {
    let feasible: Vec<usize> = alive
        .iter()
        .copied()
        .filter(|i| scores[i].feasible())
        .collect();
    let points: Vec<Objectives> = feasible.iter().map(|i| scores[i].objectives).collect();
    let layer: BTreeMap<usize, usize> = feasible.iter().copied().zip(layers(&points)).collect();
    let key = |i: &usize| {
        let s = &scores[i];
        let group = layer.get(i).copied().unwrap_or(usize::MAX);
        (s.violations.len(), group)
    };
    let mut ranked = alive.to_vec();
    ranked.sort_by(|a, b| {
        key(a)
            .cmp(&key(b))
            .then(
                scores[b]
                    .objectives
                    .goodput_per_s
                    .total_cmp(&scores[a].objectives.goodput_per_s),
            )
            .then(a.cmp(b))
    });
    ranked
}

/// Searches; `stages` runs the candidates of each round in parallel (or
/// answers them from a record, or stops at a shard's stage).
pub fn tune(t: &Tuning, stages: &mut Stages) -> Result<Report, Halt> {
    let candidates = candidates(t);
    let ids: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].scenario.is_ok())
        .collect();
    let samples: RefCell<BTreeMap<(usize, u32), Sample>> = RefCell::new(BTreeMap::new());
    let score_of = |id: usize, seeds: u32| {
        let all = samples.borrow();
        let mine: Vec<&Sample> = (0..seeds).map(|s| &all[&(id, s)]).collect();
        score(t, &mine, t.seed)
    };
    let rounds_of_positions = successive_halving(
        ids.len(),
        t.spec.seeds,
        &[0],
        |alive, seeds| {
            let points: Vec<usize> = alive.iter().map(|&p| ids[p]).collect();
            let new = run_round(t, stages, &candidates, &points, seeds)?;
            samples.borrow_mut().extend(new);
            Ok(())
        },
        |alive, seeds| {
            let scores: BTreeMap<usize, Score> = alive
                .iter()
                .map(|&p| (p, score_of(ids[p], seeds)))
                .collect();
            rank(&scores, alive)
        },
    )?;
    let rounds: Vec<Round> = rounds_of_positions
        .into_iter()
        .map(|r| Round {
            alive: r.alive.iter().map(|&p| ids[p]).collect(),
            seeds: r.seeds,
        })
        .collect();
    let mut scores = BTreeMap::new();
    for r in &rounds {
        for &id in &r.alive {
            scores.insert(id, score_of(id, r.seeds));
        }
    }
    let front = last_front(&rounds, &scores);
    let eligible = eligible(&front, &scores, t.spec.recommend_within_pct);
    let (margins, margin_runs) = margins(t, stages, &candidates, &eligible)?;
    let recommended = recommend(&eligible, &scores, &margins);
    let all = samples.into_inner();
    let broken = all
        .iter()
        .filter_map(|(&(id, s), sample)| {
            let what = sample.broken.clone()?;
            Some((id, t.seed + u64::from(s), what))
        })
        .collect();
    Ok(Report {
        runs: all.values().map(|s| s.runs).sum::<u64>() + margin_runs,
        candidates,
        rounds,
        scores,
        front,
        margins,
        recommended,
        broken,
    })
}

/// A sample's candidate and seed index (from `t.seed`).
type SampleKey = (usize, u32);

/// Runs `points` on seeds `seeds` (indices from `t.seed`) in parallel,
/// keyed by (candidate, seed index).
fn run_round(
    t: &Tuning,
    stages: &mut Stages,
    candidates: &[Candidate],
    points: &[usize],
    seeds: std::ops::Range<u32>,
) -> Result<Vec<(SampleKey, Sample)>, Halt> {
    let set = SeedSet {
        first: t.seed + u64::from(seeds.start),
        count: seeds.end - seeds.start,
    };
    let label = format!("tune: {} on {}", points.len(), seeds.end);
    let trials = stages.run(&label, points, &set, |&id, seed| {
        let scenario = candidates[id].scenario.as_ref();
        evaluate(t, scenario.expect("only valid ones run"), seed.0)
    })?;
    Ok(trials
        .into_iter()
        .map(|trial| {
            let s = trial.seed.wrapping_sub(t.seed) as u32;
            ((points[trial.point], s), trial.result)
        })
        .collect())
}

/// The feasible, non-dominated candidates of the last round, most goodput first.
fn last_front(rounds: &[Round], scores: &BTreeMap<usize, Score>) -> Vec<usize> {
    let Some(last) = rounds.last() else {
        return Vec::new();
    };
    let feasible: Vec<usize> = last
        .alive
        .iter()
        .copied()
        .filter(|i| scores[i].feasible())
        .collect();
    let points: Vec<Objectives> = feasible.iter().map(|i| scores[i].objectives).collect();
    let mut front: Vec<usize> = pareto::front(&points)
        .into_iter()
        .map(|k| feasible[k])
        .collect();
    front.sort_by(|a, b| {
        let (x, y) = (&scores[a].objectives, &scores[b].objectives);
        y.goodput_per_s.total_cmp(&x.goodput_per_s).then(a.cmp(b))
    });
    front
}

/// The front points eligible for the recommendation.
pub fn eligible(front: &[usize], scores: &BTreeMap<usize, Score>, within_pct: f64) -> Vec<usize> {
    let Some(best) = front.first().map(|i| scores[i].objectives.goodput_per_s) else {
        return Vec::new();
    };
    let floor = best * (1.0 - within_pct / 100.0);
    let near = front
        .iter()
        .copied()
        .filter(|i| scores[i].objectives.goodput_per_s >= floor);
    near.take(MARGIN_CANDIDATES_MAX).collect()
}

/// Bisects the cliff of each eligible front point and of candidate 0.
fn margins(
    t: &Tuning,
    stages: &mut Stages,
    candidates: &[Candidate],
    eligible: &[usize],
) -> Result<(BTreeMap<usize, Margins>, u64), Halt> {
    let mut who = eligible.to_vec();
    if !who.contains(&0) {
        who.push(0);
    }
    let variants = t.variants();
    let tasks: Vec<(usize, usize)> = who
        .iter()
        .flat_map(|&id| (0..variants.len()).map(move |v| (id, v)))
        .collect();
    let st = &t.spec.stress;
    let seeds: Vec<u64> = (0..u64::from(st.margin_seeds))
        .map(|i| t.seed + i)
        .collect();
    let once = SeedSet { first: 0, count: 1 };
    let trials = stages.run("tune: margins", &tasks, &once, |&(id, v), _| {
        let scenario = candidates[id]
            .scenario
            .as_ref()
            .expect("only valid ones run");
        let stress = variants[v];
        let mut runs = 0;
        let c = cliff(
            scenario,
            &stress,
            st.at_s,
            st.hi(&stress),
            st.margin_steps,
            &seeds,
            &mut runs,
        );
        (c, runs)
    })?;
    let none = || Margins {
        cliffs: Vec::new(),
        score: 1.0,
    };
    let mut out: BTreeMap<usize, Margins> = who.iter().map(|&id| (id, none())).collect();
    let mut runs = 0;
    for trial in trials {
        let (id, v) = tasks[trial.point];
        let (c, n) = trial.result;
        runs += n;
        out.entry(id)
            .or_insert_with(none)
            .cliffs
            .push((variants[v], c));
    }
    for m in out.values_mut() {
        m.score = m
            .cliffs
            .iter()
            .map(|(s, c)| share(s, c, st.hi(s)))
            .fold(1.0, f64::min);
    }
    Ok((out, runs))
}

/// How much of its searched range a cliff survived.
fn share(stress: &Stress, c: &Cliff, hi: f64) -> f64 {
    let none = stress.axis().none();
    if hi <= none {
        return 1.0;
    }
    (c.survived - none) / (hi - none)
}

/// The eligible front point with the largest margin; ties to more
/// goodput, then lower p99.
fn recommend(
    eligible: &[usize],
    scores: &BTreeMap<usize, Score>,
    margins: &BTreeMap<usize, Margins>,
) -> Option<usize> {
    eligible
        .iter()
        .copied()
        .filter(|i| margins.contains_key(i))
        .min_by(|a, b| {
            let (ma, mb) = (margins[a].score, margins[b].score);
            let (sa, sb) = (&scores[a].objectives, &scores[b].objectives);
            mb.total_cmp(&ma)
                .then(sb.goodput_per_s.total_cmp(&sa.goodput_per_s))
                .then(sa.p99_ms.total_cmp(&sb.p99_ms))
                .then(sa.amplification.total_cmp(&sb.amplification))
                .then(a.cmp(b))
        })
}

#[cfg(test)]
mod tests;
