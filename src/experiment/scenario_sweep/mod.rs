//! A scenario sweep written entirely in TOML.
//!
//! Most questions about the relay have the same shape: take one scenario,
//! change one to three of its fields over a few values, run every
//! combination over the seeds, and read some numbers of the simulation
//! summary. A definition says exactly that and nothing else:
//!
//! ```toml
//! experiment = "queue-sizing"
//! question = "Queue capacity under a spike: …"
//!
//! [[axes]]                              # one to three; first is outermost
//! path = "relay.queue.capacity"         # any field of the scenario
//! values = [10, 100, 1000]
//!
//! [tables]                              # <name>.csv and <name>_summary.csv
//! name = "queue_sizing"
//! metrics = ["shed_429_pct", "latency_p99_ms"]   # see `catalogue`
//!
//! [[charts]]                            # metrics over an axis, or calls over time
//! [summary]                             # the Markdown table of summary.md
//! [scenario]                            # the scenario, inline
//! ```
//!
//! An axis can instead list labelled overlays, for points that change
//! several fields at once: `points = [{ label = "…", set = { "a.b" = 1 } }]`.
//! Named `[[strategies]]` are such overlays on an axis of their own (the
//! first), with a `[paired]` baseline, `[[exclude]]`d combinations, counters
//! per time bucket (`[series]`) and a `[recovery]` rule ([`strategies`],
//! [`dynamics`]).
//! Prose that depends on the numbers stays in Rust, as an optional
//! [`hooks`] function of the summaries.

mod dynamics;
mod hooks;
pub mod path;
mod report;
pub mod strategies;

use super::catalogue::Metric;
use super::definition::{Checks, DefinitionErrors, Resolved};
use super::registry::{Context, ExperimentError, Outputs};
use super::scenario_runs;
use super::sweep::Trial;
use super::table::Cell;
use crate::sim::Scenario;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use toml::{Spanned, Value};

/// Most axes a sweep may have: past three, nobody reads the tables.
pub const AXES_MAX: usize = 3;
/// Most points per axis and in the whole grid.
const LEVELS_MAX: usize = 64;
const POINTS_MAX: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    question: String,
    axes: Option<Spanned<Vec<RawAxis>>>,
    strategies: Option<Spanned<Vec<strategies::RawStrategy>>>,
    /// Combinations left out: each table selects points to drop.
    #[serde(default)]
    exclude: Vec<Spanned<toml::Table>>,
    paired: Option<strategies::RawPaired>,
    series: Option<dynamics::RawSeries>,
    recovery: Option<dynamics::RawRecovery>,
    tables: RawTables,
    #[serde(default)]
    charts: Vec<report::RawChart>,
    summary: report::RawSummary,
    scenario: Spanned<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAxis {
    /// Column name in the tables; the path's last segment if not given.
    column: Option<String>,
    path: Option<Spanned<String>>,
    values: Option<Spanned<Vec<Value>>>,
    /// How the values read in the Markdown table and legends.
    labels: Option<Spanned<Vec<String>>>,
    points: Option<Spanned<Vec<RawOverlay>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverlay {
    label: String,
    set: Spanned<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTables {
    /// `<name>.csv` (one row per point and seed) and `<name>_summary.csv`.
    name: String,
    raw_description: String,
    summary_description: String,
    metrics: Spanned<Vec<Metric>>,
}

/// One swept dimension, checked.
#[derive(Clone, Debug)]
pub struct Axis {
    pub column: String,
    pub levels: Vec<Level>,
    /// Where the axis is written, for messages.
    span: Range<usize>,
}

/// One value of an axis: what it sets, and how it is written.
#[derive(Clone, Debug)]
pub struct Level {
    pub label: String,
    /// The CSV cell of the key column.
    pub cell: Cell,
    /// Where a chart puts it (numbers only).
    pub x: Option<f64>,
    pub set: Vec<(String, Value)>,
}

/// One combination of levels, one per axis.
#[derive(Clone, PartialEq, Eq)]
pub struct Point {
    /// Its place among the sweep's points (and their scenarios).
    index: usize,
    pub levels: Vec<usize>,
    /// `column = label` pairs, for messages.
    describe: String,
}

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

/// A validated sweep: every point, the scenario it runs, what to write.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub question: String,
    pub axes: Vec<Axis>,
    pub points: Vec<Point>,
    /// The scenario each point runs, in point order.
    pub scenarios: Vec<Scenario>,
    pub base: Scenario,
    tables: RawTables,
    charts: Vec<report::Chart>,
    summary: report::SummarySpec,
    /// `[paired]`, checked against the strategies.
    paired: Option<strategies::Paired>,
    /// `[series]` and `[recovery]`, checked.
    dynamics: dynamics::Dynamics,
    /// Each strategy's description, for `meta.json`.
    strategy_notes: Vec<(String, String)>,
}

/// The question a definition asks, if it is a sweep (for `list`, and to
/// tell a sweep from a definition naming an unknown model).
pub fn question(resolved: &Resolved<'_>) -> Option<String> {
    #[derive(Deserialize)]
    struct Question {
        question: Option<String>,
    }
    resolved.peek::<Question>().and_then(|q| q.question)
}

/// Checks the definition, runs every point and seed, and returns the files.
pub fn run(ctx: &Context<'_>, name: &str) -> Result<Outputs, ExperimentError> {
    let sweep = validate(ctx, name)?;
    let bucket_ms = sweep
        .charts
        .iter()
        .find_map(report::Chart::calls_bucket_ms)
        .map(|b| b.0);
    let needed = sweep.dynamics.needed();
    let buckets = scenario_runs::Buckets {
        calls_ms: bucket_ms,
        series_ms: sweep.dynamics.bucket_ms().filter(|_| !needed.is_empty()),
    };
    let trials = scenario_runs::run_counting(
        ctx,
        name,
        ctx.seeds(),
        &sweep.points,
        |p| sweep.scenario_of(p).clone(),
        buckets,
        |_, result| {
            let series: Vec<Vec<u32>> = needed.iter().map(|m| m.of(&result)).collect();
            (result.summary, result.calls_per_bucket, series)
        },
    )?;
    let mut summaries = Vec::with_capacity(trials.len());
    let mut calls = Vec::with_capacity(trials.len());
    let mut series = Vec::with_capacity(trials.len());
    for t in trials {
        let (point, seed) = (t.point, t.seed);
        let (summary, per_bucket, counters) = t.result;
        let trial = |result| Trial {
            point,
            seed,
            result,
        };
        summaries.push(trial(summary));
        calls.push(Trial {
            point,
            seed,
            result: per_bucket,
        });
        series.push(Trial {
            point,
            seed,
            result: counters,
        });
    }
    let columns: Vec<&str> = sweep.axes.iter().map(|a| a.column.as_str()).collect();
    Ok(report::outputs(
        &sweep,
        &report::Runs {
            summaries: &summaries,
            calls: &calls,
            series: &series,
        },
        hooks::notes(name, &columns),
    ))
}

impl Plan {
    fn scenario_of(&self, point: &Point) -> &Scenario {
        &self.scenarios[point.index]
    }

    /// `label` of every axis at `point`, joined by ", ".
    pub fn label(&self, point: &Point) -> String {
        self.axes
            .iter()
            .zip(&point.levels)
            .map(|(axis, &l)| axis.levels[l].label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key cells of `point`'s row: one per axis.
    pub fn keys(&self, point: &Point) -> Vec<Cell> {
        self.axes
            .iter()
            .zip(&point.levels)
            .map(|(axis, &l)| axis.levels[l].cell.clone())
            .collect()
    }
}

/// Longest file name a table or chart may have.
const FILE_NAME_BYTES_MAX: usize = 64;

/// Tables and charts become files in the output directory: their names are
/// plain (lower-case letters, digits, `_`, `-`) and distinct, so that none
/// writes outside the directory or over another.
fn file_names(table: &str, extra: &[String], charts: &[report::Chart], checks: &mut Checks<'_>) {
    let plain = |name: &str| {
        (1..=FILE_NAME_BYTES_MAX).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    let summary = format!("{table}_summary");
    let mut taken: Vec<&str> = vec![table, &summary];
    taken.extend(extra.iter().map(String::as_str));
    let mut names = vec![("tables.name".to_string(), table)];
    names.extend(
        charts
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("charts[{i}].name"), c.name())),
    );
    for (i, (field, name)) in names.iter().enumerate() {
        if !plain(name) {
            checks.fail(
                field,
                0..0,
                format!(
                    "`{name}` is not a file name: use 1 to {FILE_NAME_BYTES_MAX} lower-case \
                     letters, digits, `_` or `-`"
                ),
            );
        } else if i > 0 && taken.contains(name) {
            checks.fail(
                field,
                0..0,
                format!("`{name}` names another table or chart"),
            );
        }
        if i > 0 {
            taken.push(name);
        }
    }
}

fn validate(ctx: &Context<'_>, name: &str) -> Result<Plan, DefinitionErrors> {
    ctx.options(|raw: Raw, checks: &mut Checks<'_>| {
        let base = scenario_runs::check(&raw.scenario, "scenario", checks);
        let mut axes = match &raw.axes {
            Some(written) => axes(written, raw.strategies.is_some(), checks),
            None => Vec::new(),
        };
        if let Some(s) = &raw.strategies {
            axes.insert(0, strategies::axis(s, checks));
        }
        checks.check(
            !axes.is_empty(),
            "axes",
            raw.scenario.span().start..raw.scenario.span().start,
            || "give [[axes]] or [[strategies]] (or both)".into(),
        );
        let excluded: Vec<strategies::Selection> = raw
            .exclude
            .iter()
            .map(|e| strategies::selection(e.get_ref(), &axes, "exclude", e.span(), checks))
            .collect();
        let points = grid(&axes, &excluded);
        let grid_span = raw
            .axes
            .as_ref()
            .map(Spanned::span)
            .or(raw.strategies.as_ref().map(Spanned::span))
            .unwrap_or(0..0);
        checks.check(
            (1..=POINTS_MAX).contains(&points.len()),
            "axes",
            grid_span,
            || format!("{} points; give 1 to {POINTS_MAX}", points.len()),
        );
        let scenarios = scenarios(&base, &axes, &points, checks);
        checks.check(
            !raw.tables.metrics.get_ref().is_empty(),
            "tables.metrics",
            raw.tables.metrics.span(),
            || format!("name at least one; known: {}", Metric::names()),
        );
        let charts: Vec<report::Chart> = raw
            .charts
            .into_iter()
            .enumerate()
            .map(|(i, c)| report::check_chart(i, c, &axes, checks))
            .collect();
        let buckets: Vec<_> = charts
            .iter()
            .filter_map(report::Chart::calls_bucket_ms)
            .collect();
        for (ms, span) in &buckets[buckets.len().min(1)..] {
            checks.check(*ms == buckets[0].0, "charts", span.clone(), || {
                format!(
                    "every chart over time needs the same calls_bucket_ms ({})",
                    buckets[0].0
                )
            });
        }
        let tables_name = &raw.tables.name;
        let dynamics = dynamics::check(raw.series, raw.recovery, &charts, &base, checks);
        let paired = raw
            .paired
            .and_then(|p| strategies::paired(p, &axes, checks));
        let mut extra = dynamics.table_names(tables_name);
        if paired.is_some() {
            extra.push(format!("{tables_name}_paired"));
        }
        file_names(tables_name, &extra, &charts, checks);
        let summary = report::check_summary(raw.summary, &base, checks);
        let strategy_notes = raw
            .strategies
            .as_ref()
            .map(|s| strategies::descriptions(s.get_ref()))
            .unwrap_or_default();
        Plan {
            name: name.to_string(),
            question: raw.question,
            axes,
            points,
            scenarios,
            base,
            tables: raw.tables,
            charts,
            summary,
            paired,
            dynamics,
            strategy_notes,
        }
    })
}

fn axes(raw: &Spanned<Vec<RawAxis>>, with_strategies: bool, checks: &mut Checks<'_>) -> Vec<Axis> {
    let count = raw.get_ref().len();
    let max = AXES_MAX - usize::from(with_strategies);
    checks.check((1..=max).contains(&count), "axes", raw.span(), || {
        if with_strategies {
            format!("give one to {max} [[axes]] beside the strategies, got {count}")
        } else {
            format!("give one to {AXES_MAX} [[axes]], got {count}")
        }
    });
    let axes: Vec<Axis> = raw
        .get_ref()
        .iter()
        .filter_map(|a| axis(a, raw.span(), checks))
        .collect();
    for (i, a) in axes.iter().enumerate() {
        checks.check(
            a.column != strategies::STRATEGY || !with_strategies,
            "axes",
            a.span.clone(),
            || "the column `strategy` belongs to [[strategies]]".into(),
        );
        checks.check(
            !axes[..i].iter().any(|b| b.column == a.column),
            "axes",
            a.span.clone(),
            || format!("two axes write the column `{}`", a.column),
        );
    }
    axes
}

fn axis(raw: &RawAxis, outer: Range<usize>, checks: &mut Checks<'_>) -> Option<Axis> {
    let levels = match (&raw.path, &raw.values, &raw.points) {
        (Some(path), Some(values), None) => values_axis(path, values, raw.labels.as_ref(), checks),
        (None, None, Some(points)) => overlay_axis(points, checks)?,
        _ => {
            checks.fail(
                "axes",
                outer,
                "an axis has either `path` and `values` (optionally `labels`), or `points`",
            );
            return None;
        }
    };
    let span = raw
        .path
        .as_ref()
        .map(Spanned::span)
        .or_else(|| raw.points.as_ref().map(Spanned::span))
        .unwrap_or(outer);
    let column = match (&raw.column, &raw.path) {
        (Some(column), _) => column.clone(),
        (None, Some(path)) => path.get_ref().rsplit('.').next().unwrap_or("").to_string(),
        (None, None) => {
            checks.fail("axes.column", span, "name the column of a `points` axis");
            return None;
        }
    };
    let ok = checks.check(
        (1..=LEVELS_MAX).contains(&levels.len()),
        "axes",
        span.clone(),
        || format!("give one to {LEVELS_MAX} values, got {}", levels.len()),
    );
    for (i, level) in levels.iter().enumerate() {
        checks.check(
            !levels[..i].iter().any(|l| l.label == level.label),
            "axes",
            span.clone(),
            || format!("`{}` is listed twice", level.label),
        );
    }
    ok.then_some(Axis {
        column,
        levels,
        span,
    })
}

fn values_axis(
    path: &Spanned<String>,
    values: &Spanned<Vec<Value>>,
    labels: Option<&Spanned<Vec<String>>>,
    checks: &mut Checks<'_>,
) -> Vec<Level> {
    let values = values.get_ref();
    if let Some(labels) = labels {
        checks.check(
            labels.get_ref().len() == values.len(),
            "axes.labels",
            labels.span(),
            || format!("give one label per value ({})", values.len()),
        );
    }
    values
        .iter()
        .enumerate()
        .map(|(i, value)| Level {
            label: labels
                .and_then(|l| l.get_ref().get(i).cloned())
                .unwrap_or_else(|| path::display(value)),
            cell: match value {
                Value::Integer(n) => Cell::Int(*n),
                other => Cell::text(path::display(other)),
            },
            x: match value {
                Value::Integer(n) => Some(*n as f64),
                Value::Float(f) => Some(*f),
                _ => None,
            },
            set: vec![(path.get_ref().clone(), value.clone())],
        })
        .collect()
}

fn overlay_axis(points: &Spanned<Vec<RawOverlay>>, checks: &mut Checks<'_>) -> Option<Vec<Level>> {
    let levels = points
        .get_ref()
        .iter()
        .map(|p| {
            checks.check(
                !p.set.get_ref().is_empty(),
                "axes.points",
                p.set.span(),
                || format!("`{}` sets nothing", p.label),
            );
            Level {
                label: p.label.clone(),
                cell: Cell::text(p.label.clone()),
                x: None,
                set: p
                    .set
                    .get_ref()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        })
        .collect();
    Some(levels)
}

/// Every combination of levels not excluded, the first axis outermost.
fn grid(axes: &[Axis], excluded: &[strategies::Selection]) -> Vec<Point> {
    let mut points = vec![Vec::new()];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|p: Vec<usize>| {
                (0..axis.levels.len()).map(move |l| {
                    let mut next = p.clone();
                    next.push(l);
                    next
                })
            })
            .collect();
    }
    points
        .into_iter()
        .filter(|p| p.len() == axes.len() && !axes.is_empty())
        .filter(|p| !excluded.iter().any(|e| e.selects(p)))
        .enumerate()
        .map(|(index, levels)| Point {
            index,
            describe: axes
                .iter()
                .zip(&levels)
                .map(|(a, &l)| format!("{} = {}", a.column, a.levels[l].label))
                .collect::<Vec<_>>()
                .join(", "),
            levels,
        })
        .collect()
}

/// The scenario of every point; a path that names no field, or a value the
/// scenario refuses, is reported at its axis.
fn scenarios(
    base: &Scenario,
    axes: &[Axis],
    points: &[Point],
    checks: &mut Checks<'_>,
) -> Vec<Scenario> {
    let value = match path::to_value(base) {
        Ok(value) => value,
        Err(e) => {
            checks.fail("scenario", 0..0, e);
            return Vec::new();
        }
    };
    // The base scenario's own error is reported where it is written; a
    // point that fails only with that error has nothing more to say.
    let base_error = base.validate().err().map(|e| e.to_string());
    let mut reported = vec![false; axes.len()];
    let mut said: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(points.len());
    for point in points {
        let mut v = value.clone();
        let mut failed = None;
        for (a, (axis, &l)) in axes.iter().zip(&point.levels).enumerate() {
            for (p, new) in &axis.levels[l].set {
                if let Err(e) = path::set(&mut v, p, new.clone()) {
                    failed.get_or_insert((a, e));
                }
            }
        }
        let scenario = match failed {
            None => path::from_value(v).map_err(|e| (usize::MAX, e)),
            Some(f) => Err(f),
        };
        match scenario {
            Ok(s) => out.push(s),
            Err((a, e)) => {
                let a = if a == usize::MAX { blame(point) } else { a };
                // One message per distinct error: several points that fail
                // the same way share the first one's.
                let repeated = base_error.as_deref() == Some(e.as_str()) || said.contains(&e);
                if !repeated && !std::mem::replace(&mut reported[a], true) {
                    said.push(e.clone());
                    checks.fail(
                        &format!("axes.{}", axes[a].column),
                        axes[a].span.clone(),
                        format!(
                            "with {point:?} the scenario is invalid: {}",
                            crate::toml_doc::friendly(&e)
                        ),
                    );
                }
                out.push(base.clone());
            }
        }
    }
    out
}

/// The axis to blame for an invalid point: the last one not at its first
/// level (the first levels together made a valid scenario, or the base did).
fn blame(point: &Point) -> usize {
    point.levels.iter().rposition(|&l| l > 0).unwrap_or(0)
}
