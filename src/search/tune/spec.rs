//! The `[tune]` section of a scenario file: the knobs and their ranges,
//! the constraints, the stress variants and the budget, read once into
//! typed options. Errors point at the line that is wrong.

use crate::fault::OutageMode;
use crate::relay::{ensure, ConfigError};
use crate::search::stress::Stress;
use crate::sim::Scenario;
use crate::toml_doc::{LocatedError, TomlDoc};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

/// Knobs one search may turn (each one more dimension to cover).
pub const KNOBS_MAX: usize = 16;
/// Values of one enumerated knob.
const VALUES_MAX: usize = 64;
/// Candidates one search may sample.
pub const CANDIDATES_MAX: u32 = 100_000;
/// Seeds of the last round of halving.
pub const SEEDS_MAX: u32 = 1_024;

/// What `tune` searches, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneSpec {
    pub knobs: Vec<Knob>,
    pub constraints: Constraints,
    pub stress: StressSpec,
    /// Candidates sampled (the scenario's own settings come on top).
    pub candidates: u32,
    /// Seeds of the last round; halving starts at 2 and doubles up to it.
    pub seeds: u32,
    /// Front points within this share of the best goodput are eligible for
    /// the recommendation (the one with the most margin wins).
    pub recommend_within_pct: f64,
}

/// One setting to search, by its path in the scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Knob {
    /// E.g. `relay.retry.attempts_max`.
    pub path: String,
    pub range: Range,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Range {
    /// From `min` to `max`, whole numbers when both are written as such,
    /// on a log scale when asked (or, by default, when `max/min ≥ 10`).
    Numbers {
        min: f64,
        max: f64,
        integer: bool,
        log: bool,
    },
    /// One of these values, each a TOML literal (`"full-jitter"`, `5`).
    Values(Vec<String>),
}

/// What a candidate must achieve to be feasible (means over the seeds).
#[derive(Clone, Debug, PartialEq)]
pub struct Constraints {
    pub goodput_per_s_min: Option<f64>,
    pub p99_ms_max: Option<f64>,
    pub amplification_max: Option<f64>,
    /// Duplicate side effects summed over every seed.
    pub duplicates_max: u64,
    /// Recover after every stress variant on every seed.
    pub recover: bool,
}

/// The stress variants every candidate is judged on, and how far the
/// margin search goes.
#[derive(Clone, Debug, PartialEq)]
pub struct StressSpec {
    /// When the stress begins, after warm-up.
    pub at_s: f64,
    /// The variants (those that apply to the scenario).
    pub variants: Vec<Stress>,
    /// The margin searches up to these sizes.
    pub spike_factor_max: f64,
    pub outage_s_max: f64,
    /// Bisection steps per axis.
    pub margin_steps: u32,
    /// Seeds the margin is judged on (the first of the search's).
    pub margin_seeds: u32,
}

impl StressSpec {
    /// The upper end of the margin search along the stress's axis.
    pub fn hi(&self, stress: &Stress) -> f64 {
        match stress {
            Stress::Spike { .. } => self.spike_factor_max,
            Stress::Outage { .. } => self.outage_s_max,
        }
    }
}

/// `[tune]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TuneToml {
    knobs: Vec<KnobToml>,
    #[serde(default = "candidates_default")]
    candidates: u32,
    #[serde(default = "seeds_default")]
    seeds: u32,
    #[serde(default = "within_default")]
    recommend_within_pct: f64,
    #[serde(default)]
    constraints: ConstraintsToml,
    #[serde(default)]
    stress: StressToml,
}

fn candidates_default() -> u32 {
    32
}
fn seeds_default() -> u32 {
    8
}
fn within_default() -> f64 {
    2.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobToml {
    path: String,
    min: Option<Bound>,
    max: Option<Bound>,
    values: Option<Vec<toml::Value>>,
    scale: Option<ScaleToml>,
}

#[derive(Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum ScaleToml {
    Linear,
    Log,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintsToml {
    goodput_per_s_min: Option<f64>,
    p99_ms_max: Option<f64>,
    amplification_max: Option<f64>,
    #[serde(default)]
    duplicates_max: u64,
    #[serde(default = "yes")]
    recover: bool,
}

fn yes() -> bool {
    true
}

impl Default for ConstraintsToml {
    fn default() -> Self {
        ConstraintsToml {
            goodput_per_s_min: None,
            p99_ms_max: None,
            amplification_max: None,
            duplicates_max: 0,
            recover: true,
        }
    }
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum VariantToml {
    Spike,
    Outage,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StressToml {
    at_s: f64,
    variants: Vec<VariantToml>,
    spike_factor: f64,
    spike_s: f64,
    outage_s: f64,
    outage_mode: OutageMode,
    spike_factor_max: f64,
    outage_s_max: f64,
    margin_steps: u32,
    margin_seeds: u32,
}

impl Default for StressToml {
    fn default() -> Self {
        StressToml {
            at_s: 10.0,
            variants: vec![VariantToml::Spike, VariantToml::Outage],
            spike_factor: 3.0,
            spike_s: 10.0,
            outage_s: 15.0,
            outage_mode: OutageMode::FailFast,
            spike_factor_max: 10.0,
            outage_s_max: 120.0,
            margin_steps: 6,
            margin_seeds: 2,
        }
    }
}

/// A range's end, remembering whether it was written as a whole number.
#[derive(Clone, Copy, Debug)]
struct Bound {
    value: f64,
    integer: bool,
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bound, D::Error> {
        struct Number;
        impl Visitor<'_> for Number {
            type Value = Bound;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bound, E> {
                Ok(Bound {
                    value: v as f64,
                    integer: true,
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bound, E> {
                Ok(Bound {
                    value: v as f64,
                    integer: true,
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bound, E> {
                Ok(Bound {
                    value: v,
                    integer: false,
                })
            }
        }
        d.deserialize_any(Number)
    }
}

const NO_SECTION: &str = "no [tune] section: add one with at least one [[tune.knobs]] \
(`path`, and `min`/`max` or `values`), e.g. experiments/scenarios/steady.toml";

impl TuneSpec {
    /// Reads `[tune]` from `doc` and checks every knob against `scenario`
    /// (the file without it): each end of each range must make a valid
    /// scenario.
    pub fn read(doc: &TomlDoc<'_>, text: &str) -> Result<TuneSpec, LocatedError> {
        let Some(section) = doc.table().get("tune") else {
            return Err(doc.error_at("", None, NO_SECTION));
        };
        let toml::de::DeValue::Table(table) = section.get_ref() else {
            return Err(doc.error_at("tune", None, "must be a section: [tune]"));
        };
        let raw: TuneToml =
            crate::toml_doc::deserialize(Spanned::new(section.span(), table.clone()))
                .map_err(|e| doc.error_at(&join("tune", &e.field), e.span, &e.message))?;
        let spec = build(&raw).map_err(|e| doc.config_error(&e.within("tune")))?;
        for (i, knob) in spec.knobs.iter().enumerate() {
            check_ends(doc, text, i, knob)?;
        }
        Ok(spec)
    }
}

fn join(section: &str, field: &str) -> String {
    if field.is_empty() {
        section.to_string()
    } else {
        format!("{section}.{field}")
    }
}

fn build(raw: &TuneToml) -> Result<TuneSpec, ConfigError> {
    ensure(
        !raw.knobs.is_empty() && raw.knobs.len() <= KNOBS_MAX,
        "knobs",
        format!("give 1 to {KNOBS_MAX} [[tune.knobs]]"),
    )?;
    let mut knobs: Vec<Knob> = Vec::with_capacity(raw.knobs.len());
    for (i, k) in raw.knobs.iter().enumerate() {
        let knob = knob(k).map_err(|e| e.within(&format!("knobs[{i}]")))?;
        ensure(
            knobs.iter().all(|other| other.path != knob.path),
            &format!("knobs[{i}].path"),
            format!("`{}` is searched twice", knob.path),
        )?;
        knobs.push(knob);
    }
    ensure(
        (1..=CANDIDATES_MAX).contains(&raw.candidates),
        "candidates",
        format!("must be 1 to {CANDIDATES_MAX}"),
    )?;
    ensure(
        (1..=SEEDS_MAX).contains(&raw.seeds),
        "seeds",
        format!("must be 1 to {SEEDS_MAX}"),
    )?;
    ensure(
        (0.0..=100.0).contains(&raw.recommend_within_pct),
        "recommend_within_pct",
        "must be between 0 and 100",
    )?;
    Ok(TuneSpec {
        knobs,
        constraints: constraints(&raw.constraints).map_err(|e| e.within("constraints"))?,
        stress: stress(&raw.stress).map_err(|e| e.within("stress"))?,
        candidates: raw.candidates,
        seeds: raw.seeds,
        recommend_within_pct: raw.recommend_within_pct,
    })
}

fn knob(k: &KnobToml) -> Result<Knob, ConfigError> {
    let path = k.path.trim().to_string();
    let named = !path.is_empty() && path.split('.').all(|p| !p.is_empty());
    ensure(named, "path", "name a setting, e.g. `relay.workers`")?;
    let range = match (&k.min, &k.max, &k.values) {
        (Some(min), Some(max), None) => numbers(*min, *max, k.scale)?,
        (None, None, Some(values)) => {
            ensure(
                k.scale.is_none(),
                "scale",
                "only a min/max range has a scale",
            )?;
            ensure(
                (1..=VALUES_MAX).contains(&values.len()),
                "values",
                format!("give 1 to {VALUES_MAX} values"),
            )?;
            Range::Values(values.iter().map(toml::Value::to_string).collect())
        }
        _ => {
            return Err(ConfigError::new(
                "min",
                "give either `min` and `max`, or `values`",
            ))
        }
    };
    Ok(Knob { path, range })
}

fn numbers(min: Bound, max: Bound, scale: Option<ScaleToml>) -> Result<Range, ConfigError> {
    ensure(min.value.is_finite(), "min", "must be a finite number")?;
    ensure(
        max.value.is_finite() && max.value >= min.value,
        "max",
        format!("must be ≥ min ({})", min.value),
    )?;
    let log = match scale {
        Some(ScaleToml::Log) => {
            ensure(min.value > 0.0, "min", "a log scale needs min > 0")?;
            true
        }
        Some(ScaleToml::Linear) => false,
        None => min.value > 0.0 && max.value / min.value >= 10.0,
    };
    Ok(Range::Numbers {
        min: min.value,
        max: max.value,
        integer: min.integer && max.integer,
        log,
    })
}

fn constraints(c: &ConstraintsToml) -> Result<Constraints, ConfigError> {
    let positive = |v: Option<f64>, field: &str| match v {
        Some(x) => ensure(x.is_finite() && x >= 0.0, field, "must be a number ≥ 0"),
        None => Ok(()),
    };
    positive(c.goodput_per_s_min, "goodput_per_s_min")?;
    positive(c.p99_ms_max, "p99_ms_max")?;
    positive(c.amplification_max, "amplification_max")?;
    Ok(Constraints {
        goodput_per_s_min: c.goodput_per_s_min,
        p99_ms_max: c.p99_ms_max,
        amplification_max: c.amplification_max,
        duplicates_max: c.duplicates_max,
        recover: c.recover,
    })
}

fn stress(s: &StressToml) -> Result<StressSpec, ConfigError> {
    ensure(
        s.at_s.is_finite() && s.at_s > 0.0,
        "at_s",
        "must be > 0 (after warm-up)",
    )?;
    ensure(
        s.spike_factor.is_finite() && s.spike_factor > 1.0,
        "spike_factor",
        "must be > 1",
    )?;
    ensure(
        s.spike_factor_max >= s.spike_factor && s.spike_factor_max <= 1000.0,
        "spike_factor_max",
        format!("must be from spike_factor ({}) to 1000", s.spike_factor),
    )?;
    let seconds = |v: f64, field: &str| {
        ensure(
            v.is_finite() && v > 0.0 && v <= 3600.0,
            field,
            "must be > 0 and ≤ 3600 s",
        )
    };
    seconds(s.spike_s, "spike_s")?;
    seconds(s.outage_s, "outage_s")?;
    seconds(s.outage_s_max, "outage_s_max")?;
    ensure(
        s.outage_s_max >= s.outage_s,
        "outage_s_max",
        format!("must be ≥ outage_s ({})", s.outage_s),
    )?;
    ensure(
        (1..=20).contains(&s.margin_steps),
        "margin_steps",
        "must be 1 to 20",
    )?;
    ensure(
        (1..=64).contains(&s.margin_seeds),
        "margin_seeds",
        "must be 1 to 64",
    )?;
    let mut variants = Vec::new();
    for (i, v) in s.variants.iter().enumerate() {
        ensure(
            !s.variants[..i].contains(v),
            "variants",
            format!("{v:?} is listed twice"),
        )?;
        variants.push(match v {
            VariantToml::Spike => Stress::Spike {
                factor: s.spike_factor,
                duration_s: s.spike_s,
            },
            VariantToml::Outage => Stress::Outage {
                duration_s: s.outage_s,
                mode: s.outage_mode,
            },
        });
    }
    Ok(StressSpec {
        at_s: s.at_s,
        variants,
        spike_factor_max: s.spike_factor_max,
        outage_s_max: s.outage_s_max,
        margin_steps: s.margin_steps,
        margin_seeds: s.margin_seeds,
    })
}

/// Each end of a knob's range (each value of an enumerated one) must make a
/// valid scenario; the error points at the end that does not.
fn check_ends(doc: &TomlDoc<'_>, text: &str, i: usize, knob: &Knob) -> Result<(), LocatedError> {
    let ends: Vec<(String, String)> = match &knob.range {
        Range::Numbers { min, max, .. } => {
            let integer = matches!(knob.range, Range::Numbers { integer: true, .. });
            let lit = |v: f64| literal(v, integer);
            vec![("min".into(), lit(*min)), ("max".into(), lit(*max))]
        }
        Range::Values(values) => values
            .iter()
            .enumerate()
            .map(|(j, v)| (format!("values[{j}]"), v.clone()))
            .collect(),
    };
    for (field, value) in ends {
        let set = format!("{}={value}", knob.path);
        if let Err(e) = Scenario::from_toml_with(text, doc.origin(), std::slice::from_ref(&set)) {
            let at = format!("tune.knobs[{i}].{field}");
            let message = format!("the scenario refuses `{set}`: {}", e.message);
            return Err(doc.error_at(&at, None, &message));
        }
    }
    Ok(())
}

/// A number as the TOML literal a knob writes.
pub fn literal(v: f64, integer: bool) -> String {
    if integer {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEADY: &str = include_str!("../../../experiments/scenarios/steady.toml");

    /// The steady scenario without its own [tune] section.
    fn base() -> &'static str {
        STEADY.split("\n[tune]").next().expect("some text")
    }

    fn read(tune: &str) -> Result<TuneSpec, String> {
        let text = format!("{}\n{tune}", base());
        let doc = TomlDoc::parse("s.toml", &text).map_err(|e| e.to_string())?;
        TuneSpec::read(&doc, &text).map_err(|e| e.to_string())
    }

    /// The line of `s.toml` where `needle` is written, 1-based.
    fn line_of(tune: &str, needle: &str) -> usize {
        let text = format!("{}\n{tune}", base());
        text.lines()
            .position(|l| l.starts_with(needle))
            .expect("written")
            + 1
    }

    #[test]
    fn a_section_reads_into_typed_knobs_with_inferred_scales() {
        let tune = "[tune]\ncandidates = 4\n[[tune.knobs]]\npath = \"relay.retry.attempts_max\"\nmin = 1\nmax = 6\n\
                    [[tune.knobs]]\npath = \"relay.retry.backoff.base_ms\"\nmin = 5.0\nmax = 500.0\n\
                    [[tune.knobs]]\npath = \"relay.retry.backoff.kind\"\nvalues = [\"full-jitter\", \"equal-jitter\"]\n";
        let spec = read(tune).expect("valid");
        assert_eq!(spec.candidates, 4);
        assert_eq!(spec.seeds, 8);
        assert_eq!(
            spec.knobs[0].range,
            Range::Numbers {
                min: 1.0,
                max: 6.0,
                integer: true,
                log: false
            }
        );
        assert_eq!(
            spec.knobs[1].range,
            Range::Numbers {
                min: 5.0,
                max: 500.0,
                integer: false,
                log: true
            }
        );
        assert_eq!(
            spec.knobs[2].range,
            Range::Values(vec!["\"full-jitter\"".into(), "\"equal-jitter\"".into()])
        );
        assert_eq!(spec.stress.variants.len(), 2);
        assert!(spec.constraints.recover);
    }

    #[test]
    fn bad_sections_are_refused_at_their_line() {
        let typo =
            "[tune]\n[[tune.knobs]]\npath = \"relay.workers\"\nmin = 1\nmax = 4\nscal = \"log\"\n";
        let err = read(typo).expect_err("typo");
        let want = format!(
            "s.toml:{}:1: tune.knobs[0].scal: unknown field",
            line_of(typo, "scal")
        );
        assert!(err.starts_with(&want), "{err}");

        let upside = "[tune]\n[[tune.knobs]]\npath = \"relay.workers\"\nmin = 8\nmax = 4\n";
        let err = read(upside).expect_err("max < min");
        let want = format!(
            "s.toml:{}:7: tune.knobs[0].max: must be ≥ min",
            line_of(upside, "max = 4")
        );
        assert!(err.starts_with(&want), "{err}");

        let refused = "[tune]\n[[tune.knobs]]\npath = \"relay.workers\"\nmin = 0\nmax = 4\n";
        let err = read(refused).expect_err("0 workers");
        let want = format!(
            "s.toml:{}:7: tune.knobs[0].min: the scenario refuses `relay.workers=0`",
            line_of(refused, "min = 0")
        );
        assert!(err.starts_with(&want), "{err}");

        let word = "[tune]\n[[tune.knobs]]\npath = \"relay.retry.backoff.kind\"\nvalues = [\"full-jiter\"]\n";
        let err = read(word).expect_err("no such backoff");
        assert!(
            err.contains("tune.knobs[0].values[0]: the scenario refuses"),
            "{err}"
        );

        let text =
            read("[tune]\n[[tune.knobs]]\npath = \"relay.workers\"\nmin = \"few\"\nmax = 4\n")
                .expect_err("not a number");
        assert!(
            text.contains("tune.knobs[0].min: invalid type: string \"few\", expected a number"),
            "{text}"
        );

        let err = read("").expect_err("no section");
        assert!(err.contains("no [tune] section"), "{err}");

        let stress = "[tune]\n[[tune.knobs]]\npath = \"relay.workers\"\nmin = 2\nmax = 4\n[tune.stress]\nspike_factor = 0.5\n";
        let err = read(stress).expect_err("a spike below 1");
        let want = format!(
            "s.toml:{}:16: tune.stress.spike_factor: must be > 1",
            line_of(stress, "spike_factor =")
        );
        assert!(err.starts_with(&want), "{err}");
    }
}
