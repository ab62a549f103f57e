//! Named strategies, exclusions and the paired baseline of a sweep.
//!
//! A strategy is a named set of overrides of the scenario: "no backoff",
//! "full jitter", "token bucket" are each a few `path = value` pairs. They
//! form the sweep's first axis, `strategy`, so every strategy runs on every
//! other axis's values and on the same seeds; `[paired] baseline` then names
//! the one the others are measured against, seed by seed. `exclude` drops
//! the combinations a question does not need (a population only two
//! strategies are compared on), so a grid need not be full.
//!
//! ```toml
//! [[strategies]]
//! name = "no-backoff"
//! set = { "clients.0.retry.backoff.kind" = "none" }
//!
//! [[exclude]]                           # every listed axis matches: dropped
//! strategy = ["no-backoff"]
//! population = "1000 sharing 100/s"
//!
//! [paired]
//! baseline = "no-backoff"
//! metrics = ["served_pct", "downstream_calls"]
//! ```

use super::{Axis, Level};
use crate::experiment::catalogue::Metric;
use crate::experiment::definition::Checks;
use crate::experiment::table::Cell;
use serde::Deserialize;
use std::ops::Range;
use toml::{Spanned, Value};

/// The column of the strategy axis.
pub const STRATEGY: &str = "strategy";

/// Most strategies a sweep may name.
const STRATEGIES_MAX: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStrategy {
    name: String,
    /// What the strategy is, for `meta.json` and readers of the file.
    #[serde(default)]
    description: String,
    /// Overrides of the scenario; empty = the scenario as written.
    #[serde(default)]
    set: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPaired {
    baseline: Spanned<String>,
    metrics: Spanned<Vec<Metric>>,
}

/// The checked `[paired]`: the baseline's level on the strategy axis.
#[derive(Clone, Debug)]
pub struct Paired {
    pub baseline: String,
    pub baseline_level: usize,
    pub metrics: Vec<Metric>,
}

/// The strategy axis, from `[[strategies]]`.
pub(super) fn axis(raw: &Spanned<Vec<RawStrategy>>, checks: &mut Checks<'_>) -> Axis {
    let list = raw.get_ref();
    checks.check(
        (1..=STRATEGIES_MAX).contains(&list.len()),
        "strategies",
        raw.span(),
        || {
            format!(
                "name one to {STRATEGIES_MAX} strategies, got {}",
                list.len()
            )
        },
    );
    let levels: Vec<Level> = list
        .iter()
        .map(|s| Level {
            label: s.name.clone(),
            cell: Cell::text(s.name.clone()),
            x: None,
            set: s.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
        .collect();
    for (i, s) in list.iter().enumerate() {
        checks.check(
            !s.name.trim().is_empty(),
            "strategies.name",
            raw.span(),
            || "a strategy needs a name".into(),
        );
        checks.check(
            !list[..i].iter().any(|t| t.name == s.name),
            "strategies.name",
            raw.span(),
            || format!("`{}` is named twice", s.name),
        );
    }
    Axis {
        column: STRATEGY.to_string(),
        levels,
        span: raw.span(),
    }
}

/// The descriptions of the strategies, by name, for `meta.json`.
pub(super) fn descriptions(raw: &[RawStrategy]) -> Vec<(String, String)> {
    raw.iter()
        .map(|s| (s.name.clone(), s.description.clone()))
        .collect()
}

/// Checks `[paired]` against the strategy axis (the sweep's first axis).
pub(super) fn paired(raw: RawPaired, axes: &[Axis], checks: &mut Checks<'_>) -> Option<Paired> {
    let Some(strategies) = axes.first().filter(|a| a.column == STRATEGY) else {
        checks.fail(
            "paired",
            raw.baseline.span(),
            "a paired baseline needs [[strategies]] to compare",
        );
        return None;
    };
    let name = raw.baseline.get_ref();
    let level = strategies.levels.iter().position(|l| l.label == *name);
    if level.is_none() {
        let known: Vec<&str> = strategies.levels.iter().map(|l| l.label.as_str()).collect();
        checks.fail(
            "paired.baseline",
            raw.baseline.span(),
            format!(
                "no strategy named `{name}`; strategies: {}",
                known.join(", ")
            ),
        );
    }
    checks.check(
        !raw.metrics.get_ref().is_empty(),
        "paired.metrics",
        raw.metrics.span(),
        || format!("name at least one; known: {}", Metric::names()),
    );
    Some(Paired {
        baseline: name.clone(),
        baseline_level: level?,
        metrics: raw.metrics.into_inner(),
    })
}

/// Levels chosen per axis: a point is selected when, on every listed axis,
/// its level is one of the listed ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection(Vec<(usize, Vec<usize>)>);

impl Selection {
    pub fn selects(&self, levels: &[usize]) -> bool {
        self.0
            .iter()
            .all(|(axis, chosen)| levels.get(*axis).is_some_and(|l| chosen.contains(l)))
    }

    /// Whether `axis` is narrowed to a single level (a chart's legend can
    /// leave it out).
    pub fn fixes(&self, axis: usize) -> bool {
        self.0
            .iter()
            .any(|(a, chosen)| *a == axis && chosen.len() == 1)
    }

    /// Whether every axis it names is narrowed to a single level.
    pub fn fixes_all(&self) -> bool {
        self.0.iter().all(|(_, chosen)| chosen.len() == 1)
    }
}

/// Reads `{ column = "label" | ["label", …], … }`; an unknown column or
/// label is reported at `field` with the valid names.
pub(super) fn selection(
    table: &toml::Table,
    axes: &[Axis],
    field: &str,
    span: Range<usize>,
    checks: &mut Checks<'_>,
) -> Selection {
    let mut out = Vec::new();
    for (column, value) in table {
        let Some(a) = axes.iter().position(|a| a.column == *column) else {
            let known: Vec<&str> = axes.iter().map(|a| a.column.as_str()).collect();
            checks.fail(
                field,
                span.clone(),
                format!("no axis `{column}`; axes: {}", known.join(", ")),
            );
            continue;
        };
        let labels: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut chosen = Vec::new();
        for label in labels {
            let text = label
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| label.to_string());
            match axes[a].levels.iter().position(|l| l.label == text) {
                Some(l) => chosen.push(l),
                None => {
                    let known: Vec<&str> =
                        axes[a].levels.iter().map(|l| l.label.as_str()).collect();
                    checks.fail(
                        field,
                        span.clone(),
                        format!(
                            "axis `{column}` has no value labelled `{text}`; labels: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        out.push((a, chosen));
    }
    Selection(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_needs_every_listed_axis_to_match() {
        let s = Selection(vec![(0, vec![1, 2]), (2, vec![0])]);
        assert!(s.selects(&[1, 5, 0]));
        assert!(!s.selects(&[0, 5, 0]));
        assert!(!s.selects(&[2, 5, 1]));
        assert!(Selection::default().selects(&[3]));
        assert!(s.fixes(2) && !s.fixes(0) && !s.fixes(1));
    }
}
