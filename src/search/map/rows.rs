//! A map's lines as rows of text, and back: what a shard of a map writes
//! and `merge` reads.
//!
//! Lines are bisected independently, so a shard takes whole lines and
//! writes, per line, every point it evaluated with its tally. Values are
//! written in Rust's shortest exact form, so the merge replays the
//! bisection on the very numbers the shard ran.

use super::axis::{number, AxisSpec};
use super::bisect::Tally;
use super::{Plan, Variant};
use crate::experiment::seeds::SeedSet;
use crate::search::verdict::Unjudged;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A row's columns: the line's index, then its points as JSON.
pub const HEADER: [&str; 2] = ["line", "points"];

/// One evaluated point, as written.
#[derive(Serialize, Deserialize)]
struct Point {
    value: String,
    recovered: u32,
    stuck: u32,
    unchecked: Vec<(String, u32)>,
    violations: Vec<(u64, String)>,
}

/// The row of line `index` with its points.
pub fn row(index: usize, points: &[(f64, Tally)]) -> Vec<String> {
    let points: Vec<Point> = points
        .iter()
        .map(|(value, t)| Point {
            value: format!("{value:?}"),
            recovered: t.recovered,
            stuck: t.stuck,
            unchecked: t
                .unchecked
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect(),
            violations: t.violations.clone(),
        })
        .collect();
    let json = serde_json::to_string(&points).unwrap_or_default();
    vec![index.to_string(), json]
}

/// A row read back: the line's index and its points.
pub fn parse(record: &[String]) -> Result<(usize, Vec<(f64, Tally)>), String> {
    let [index, json] = record else {
        return Err(format!(
            "a map row has {} fields, not {}",
            record.len(),
            HEADER.len()
        ));
    };
    let index: usize = index
        .parse()
        .map_err(|_| format!("`{index}` is not a line index"))?;
    let points: Vec<Point> =
        serde_json::from_str(json).map_err(|e| format!("line {index}: the points: {e}"))?;
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        let value: f64 = p
            .value
            .parse()
            .map_err(|_| format!("line {index}: `{}` is not a number", p.value))?;
        let mut unchecked = Vec::with_capacity(p.unchecked.len());
        for (reason, n) in p.unchecked {
            let known = Unjudged::NAMES.iter().find(|r| **r == reason);
            let reason = known.ok_or_else(|| format!("line {index}: unknown reason `{reason}`"))?;
            unchecked.push((*reason, n));
        }
        let tally = Tally {
            recovered: p.recovered,
            stuck: p.stuck,
            unchecked,
            violations: p.violations,
        };
        out.push((value, tally));
    }
    Ok((index, out))
}

/// Everything that decides a map's lines, for a shard's manifest. The
/// command is kept without its `--out`: the merge adds its own.
pub fn params(plan: &Plan, command: &str) -> BTreeMap<String, String> {
    let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
    let variants: Vec<String> = plan
        .variants
        .iter()
        .map(|v| format!("{}:{}", v.name, v.sets.join(";")))
        .collect();
    let axes: Vec<String> = plan
        .axes
        .iter()
        .map(|a| format!("{}={}..{}", a.name, number(a.lo), number(a.hi)))
        .collect();
    let tolerance = plan.tolerance.map_or("none".to_string(), number);
    BTreeMap::from([
        ("origin".into(), plan.origin.clone()),
        ("text".into(), plan.text.clone()),
        ("sets".into(), json(&plan.sets)),
        ("variants".into(), json(&variants)),
        ("axes".into(), json(&axes)),
        ("bisect".into(), plan.bisect.to_string()),
        ("steps".into(), plan.steps.to_string()),
        ("first_seed".into(), plan.seeds.first.to_string()),
        ("seeds".into(), plan.seeds.count.to_string()),
        ("tolerance".into(), tolerance),
        ("command".into(), command.to_string()),
    ])
}

/// The plan a shard's manifest recorded, and its command without `--out`.
pub fn plan_of(params: &BTreeMap<String, String>) -> Result<(Plan, String), String> {
    let get = |key: &str| {
        params
            .get(key)
            .ok_or_else(|| format!("the manifest has no `{key}`"))
    };
    let number = |key: &str| -> Result<u64, String> {
        get(key)?
            .parse()
            .map_err(|_| format!("the manifest's `{key}` is not a number"))
    };
    let list = |key: &str| -> Result<Vec<String>, String> {
        serde_json::from_str(get(key)?).map_err(|e| format!("the manifest's `{key}`: {e}"))
    };
    let variants = list("variants")?
        .iter()
        .map(|v| v.parse::<Variant>())
        .collect::<Result<Vec<_>, _>>()?;
    let axes = list("axes")?
        .iter()
        .map(|a| a.parse::<AxisSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let tolerance = match get("tolerance")?.as_str() {
        "none" => None,
        t => Some(
            t.parse()
                .map_err(|_| "the manifest's `tolerance` is not a number".to_string())?,
        ),
    };
    let seeds = u32::try_from(number("seeds")?).map_err(|_| "too many seeds".to_string())?;
    let plan = Plan {
        origin: get("origin")?.clone(),
        text: get("text")?.clone(),
        sets: list("sets")?,
        variants,
        axes,
        bisect: number("bisect")? as usize,
        steps: number("steps")? as usize,
        seeds: SeedSet {
            first: number("first_seed")?,
            count: seeds,
        },
        tolerance,
        command: String::new(),
    };
    Ok((plan, get("command")?.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_back_as_the_exact_points() {
        let points = vec![
            (0.1 + 0.2, Tally::default()),
            (
                1.0 / 3.0,
                Tally {
                    recovered: 3,
                    stuck: 1,
                    unchecked: vec![("horizon too short", 2)],
                    violations: vec![(7, "a \"quoted\", odd\nwhat".into())],
                },
            ),
        ];
        let (index, back) = parse(&row(12, &points)).expect("reads back");
        assert_eq!(index, 12);
        assert_eq!(back, points);
        assert_eq!(back[0].0.to_bits(), (0.1_f64 + 0.2).to_bits());
    }

    #[test]
    fn every_reason_a_verdict_gives_reads_back() {
        let reasons = [
            Unjudged::NoTrigger,
            Unjudged::ShortHorizon { end_s: 1.0 },
            Unjudged::CalmOverloaded {
                successes: 1,
                first_tries: 2,
            },
        ];
        for why in reasons {
            let t = Tally {
                unchecked: vec![(why.name(), 1)],
                ..Tally::default()
            };
            let (_, back) = parse(&row(0, &[(1.0, t.clone())])).expect("reads back");
            assert_eq!(back[0].1, t);
        }
    }

    #[test]
    fn a_plan_reads_back_from_its_params() {
        let plan = Plan {
            origin: "x.toml".into(),
            text: "name = \"x\"\n".into(),
            sets: vec!["horizon_s=120".into(), "a.b='c;d'".into()],
            variants: vec![
                "plain".parse().expect("variant"),
                "budget:a=1;b=2".parse().expect("variant"),
            ],
            axes: vec![
                "duration=0.1..20".parse().expect("axis"),
                "load=30..1e3".parse().expect("axis"),
            ],
            bisect: 1,
            steps: 4,
            seeds: SeedSet { first: 9, count: 3 },
            tolerance: Some(1.0 / 3.0),
            command: "ignored".into(),
        };
        let (back, command) = plan_of(&params(&plan, "map x.toml")).expect("reads back");
        assert_eq!(command, "map x.toml");
        let text = |p: &Plan| {
            format!(
                "{:?}",
                Plan {
                    command: String::new(),
                    ..p.clone()
                }
            )
        };
        assert_eq!(text(&back), text(&plan));
        let mut bad = params(&plan, "c");
        bad.remove("axes");
        assert!(plan_of(&bad).expect_err("refused").contains("`axes`"));
    }

    #[test]
    fn a_bad_row_says_what_is_wrong() {
        let bad = |fields: &[&str]| {
            let record: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            parse(&record).expect_err("refused")
        };
        assert!(bad(&["1"]).contains("fields"));
        assert!(bad(&["x", "[]"]).contains("line index"));
        assert!(bad(&["1", "{"]).contains("points"));
        let odd =
            r#"[{"value":"1","recovered":0,"stuck":0,"unchecked":[["why",1]],"violations":[]}]"#;
        assert!(bad(&["1", odd]).contains("unknown reason"));
    }
}
