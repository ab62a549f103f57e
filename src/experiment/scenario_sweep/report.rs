//! The tables, charts and `summary.md` part a scenario sweep declares.

use super::path;
use super::{Axis, Plan, Point};
use crate::experiment::catalogue::{self, Metric};
use crate::experiment::chart::{Legend, LineChart, Scale, Series, Shade};
use crate::experiment::definition::Checks;
use crate::experiment::metrics::{self, MdColumn, PointSummary};
use crate::experiment::over_time::{self, OverTime};
use crate::experiment::registry::Outputs;
use crate::experiment::sweep::{by_point, Trial};
use crate::sim::{Scenario, Summary};
use serde::Deserialize;
use serde_json::json;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChart {
    name: String,
    title: String,
    description: String,
    /// The axis along x (its values must be numbers)…
    x: Option<Spanned<String>>,
    /// …or time: downstream calls per bucket of this many ms, one line per
    /// point, the scenario's first outage shaded.
    calls_bucket_ms: Option<Spanned<f64>>,
    /// Multiplies the axis values (e.g. 0.001 for ms shown in s).
    #[serde(default = "one")]
    x_factor: f64,
    #[serde(default)]
    x_label: String,
    #[serde(default)]
    x_log: bool,
    y_label: String,
    #[serde(default)]
    y_log: bool,
    legend: Legend,
    /// One line per metric, every other axis at its first value…
    #[serde(default)]
    lines: Vec<RawLine>,
    /// …or one metric, one line per value of the axis `series`.
    y: Option<Metric>,
    series: Option<Spanned<String>>,
    series_labels: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    label: String,
    metric: Metric,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSummary {
    title: String,
    /// Text before the table; `{scenario.<path>}` quotes the scenario.
    intro: Spanned<String>,
    key_header: String,
    columns: Vec<RawColumn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    header: String,
    metric: Metric,
    #[serde(default = "one")]
    factor: f64,
    decimals: usize,
}

fn one() -> f64 {
    1.0
}

/// A checked chart.
#[derive(Debug)]
pub(super) struct Chart {
    raw: RawChart,
    /// `None` for a chart over time.
    x_axis: Option<usize>,
    /// `Some((axis, labels))` for a chart of one line per level of `axis`.
    series: Option<(usize, Vec<String>)>,
}

impl Chart {
    /// The chart's file name (without extension).
    pub(super) fn name(&self) -> &str {
        &self.raw.name
    }
}

/// The checked `[summary]`.
#[derive(Debug)]
pub(super) struct SummarySpec {
    raw: RawSummary,
    intro: String,
}

/// Checks chart `index` (its field path is `charts[index]`, so every
/// message lands on the chart's own lines).
pub(super) fn check_chart(
    index: usize,
    raw: RawChart,
    axes: &[Axis],
    checks: &mut Checks<'_>,
) -> Chart {
    let field = format!("charts[{index}]");
    checks.check(
        is_scale(raw.x_factor),
        &format!("{field}.x_factor"),
        0..0,
        || format!("must be a finite number > 0, got {}", raw.x_factor),
    );
    let (x_axis, series) = match (&raw.x, &raw.calls_bucket_ms) {
        (Some(x), None) => {
            let x_axis = find_axis(x, axes, &field, checks);
            if let Some(axis) = axes.get(x_axis) {
                checks.check(
                    axis.levels.iter().all(|l| l.x.is_some()),
                    &field,
                    x.span(),
                    || format!("axis `{}` has values that are not numbers", axis.column),
                );
            }
            (
                Some(x_axis),
                check_series(&raw, x.span(), axes, &field, checks),
            )
        }
        (None, Some(bucket)) => {
            let ms = *bucket.get_ref();
            checks.check(
                (1.0..=60_000.0).contains(&ms),
                &field,
                bucket.span(),
                || format!("calls_bucket_ms must be between 1 and 60000, got {ms}"),
            );
            checks.check(
                raw.lines.is_empty() && raw.y.is_none() && raw.series.is_none(),
                &field,
                bucket.span(),
                || "a chart over time draws calls per bucket: no `lines`, `y` or `series`".into(),
            );
            (None, None)
        }
        _ => {
            checks.fail(
                &field,
                0..0,
                "give either `x` (an axis) or `calls_bucket_ms`",
            );
            (None, None)
        }
    };
    Chart {
        raw,
        x_axis,
        series,
    }
}

/// The index of the axis `name` names; reported with the axes if none.
fn find_axis(name: &Spanned<String>, axes: &[Axis], field: &str, checks: &mut Checks<'_>) -> usize {
    let found = axes.iter().position(|a| a.column == *name.get_ref());
    if found.is_none() {
        let known: Vec<&str> = axes.iter().map(|a| a.column.as_str()).collect();
        checks.fail(
            field,
            name.span(),
            format!("no axis `{}`; axes: {}", name.get_ref(), known.join(", ")),
        );
    }
    found.unwrap_or(0)
}

/// `lines`, or `y` with one line per level of the axis `series`.
fn check_series(
    raw: &RawChart,
    span: std::ops::Range<usize>,
    axes: &[Axis],
    field: &str,
    checks: &mut Checks<'_>,
) -> Option<(usize, Vec<String>)> {
    match (&raw.series, raw.y, raw.lines.is_empty()) {
        (Some(name), Some(_), true) => {
            let axis = find_axis(name, axes, field, checks);
            let levels = axes.get(axis).map_or(&[][..], |a| &a.levels[..]);
            let labels = raw
                .series_labels
                .clone()
                .unwrap_or_else(|| levels.iter().map(|l| l.label.clone()).collect());
            checks.check(labels.len() == levels.len(), field, name.span(), || {
                format!("give one series label per value ({})", levels.len())
            });
            Some((axis, labels))
        }
        (None, None, false) => None,
        _ => {
            checks.fail(field, span, "give either `lines`, or `y` with `series`");
            None
        }
    }
}

/// Checks `[summary]` and fills the scenario's values into its intro.
pub(super) fn check_summary(
    raw: RawSummary,
    base: &Scenario,
    checks: &mut Checks<'_>,
) -> SummarySpec {
    let value = path::to_value(base).unwrap_or(toml::Value::Boolean(false));
    let mut intro = String::new();
    let mut rest = raw.intro.get_ref().as_str();
    while let Some(start) = rest.find("{scenario.") {
        intro.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let key = &rest[start + "{scenario.".len()..start + len];
        match path::get(&value, key) {
            Some(v) => intro.push_str(&path::display(v)),
            None => checks.fail(
                "summary.intro",
                raw.intro.span(),
                format!("`{{scenario.{key}}}`: the scenario does not set `{key}`"),
            ),
        }
        rest = &rest[start + len + 1..];
    }
    intro.push_str(rest);
    for (i, c) in raw.columns.iter().enumerate() {
        let field = format!("summary.columns[{i}]");
        checks.check(
            c.decimals <= DECIMALS_MAX,
            &format!("{field}.decimals"),
            0..0,
            || format!("at most {DECIMALS_MAX}, got {}", c.decimals),
        );
        checks.check(is_scale(c.factor), &format!("{field}.factor"), 0..0, || {
            format!("must be a finite number > 0, got {}", c.factor)
        });
    }
    SummarySpec { raw, intro }
}

/// Most decimals a summary column may show.
const DECIMALS_MAX: usize = 12;

/// Whether `factor` can scale a number for reading.
fn is_scale(factor: f64) -> bool {
    factor.is_finite() && factor > 0.0
}

/// What a headline hook reads: the sweep and every catalogue metric of
/// every point.
pub struct View<'a> {
    pub sweep: &'a Plan,
    pub summaries: &'a [PointSummary<Point>],
}

impl View<'_> {
    pub fn mean(&self, s: &PointSummary<Point>, metric: Metric) -> f64 {
        s.get(metric.index()).mean
    }

    /// The scenario point `s` ran.
    pub fn scenario(&self, s: &PointSummary<Point>) -> &Scenario {
        self.sweep.scenario_of(&s.point)
    }

    pub fn label(&self, s: &PointSummary<Point>) -> String {
        self.sweep.label(&s.point)
    }
}

/// Prose after the table, from the numbers.
pub type Notes = fn(&View<'_>) -> String;

impl Chart {
    /// The bucket of a chart over time.
    pub(super) fn calls_bucket_ms(&self) -> Option<(f64, std::ops::Range<usize>)> {
        self.raw
            .calls_bucket_ms
            .as_ref()
            .map(|b| (*b.get_ref(), b.span()))
    }
}

/// Every run's summary, and its downstream calls per bucket (empty unless a
/// chart is over time).
pub(super) fn outputs(
    sweep: &Plan,
    trials: &[Trial<Summary>],
    calls: &[Trial<Vec<u32>>],
    notes: Option<Notes>,
) -> Outputs {
    let all = metrics::summarize(&sweep.points, trials, &catalogue::columns());
    let selected: Vec<_> = sweep
        .tables
        .metrics
        .get_ref()
        .iter()
        .map(|m| m.column())
        .collect();
    let key_columns: Vec<&str> = sweep.axes.iter().map(|a| a.column.as_str()).collect();
    let keys = |p: &Point| sweep.keys(p);
    let name = &sweep.tables.name;
    let raw = metrics::raw_table(
        name,
        &sweep.tables.raw_description,
        &key_columns,
        keys,
        &sweep.points,
        trials,
        &selected,
    );
    let summary = metrics::summary_table(
        &format!("{name}_summary"),
        &sweep.tables.summary_description,
        &key_columns,
        keys,
        &metrics::summarize(&sweep.points, trials, &selected),
        &selected,
    );
    let view = View {
        sweep,
        summaries: &all,
    };
    let mut tables = vec![raw, summary];
    let mut charts = Vec::new();
    for c in &sweep.charts {
        match c.calls_bucket_ms() {
            None => charts.push(chart(c, &view)),
            Some((bucket_ms, _)) => {
                let series = calls_over_time(sweep, calls);
                tables.push(over_time::table(
                    &c.raw.name,
                    &format!("{} (the data of {}.png)", c.raw.description, c.raw.name),
                    &key_columns,
                    &series,
                    bucket_ms,
                ));
                charts.push(time_chart(c, sweep, &series, bucket_ms));
            }
        }
    }
    Outputs {
        options: options_json(sweep),
        tables,
        charts,
        summary_markdown: markdown(&view, notes),
    }
}

fn calls_over_time(sweep: &Plan, calls: &[Trial<Vec<u32>>]) -> Vec<OverTime> {
    let runs: Vec<Vec<&[u32]>> = by_point(calls, sweep.points.len())
        .into_iter()
        .map(|seeds| seeds.into_iter().map(|c| &c[..]).collect())
        .collect();
    let keys = sweep.points.iter().map(|p| sweep.keys(p)).collect();
    over_time::over_seeds(
        &runs,
        sweep.points.iter().map(|p| sweep.label(p)).collect(),
        keys,
    )
}

/// Calls per bucket over the whole run, one line per point, the base
/// scenario's first outage shaded.
fn time_chart(c: &Chart, sweep: &Plan, series: &[OverTime], bucket_ms: f64) -> LineChart {
    let raw = &c.raw;
    let scale = |log| if log { Scale::Log } else { Scale::Linear };
    LineChart {
        name: raw.name.clone(),
        description: raw.description.clone(),
        title: raw.title.clone(),
        x_label: if raw.x_label.is_empty() {
            "time (s)".to_string()
        } else {
            raw.x_label.clone()
        },
        y_label: raw.y_label.clone(),
        x_scale: Scale::Linear,
        y_scale: scale(raw.y_log),
        markers: false,
        legend: raw.legend,
        series: over_time::lines(series, bucket_ms, 0.0),
        shade: outage_shade(sweep),
    }
}

/// The base scenario's first outage, when every point shares it: a sweep
/// that moves the outage has no one window to shade.
fn outage_shade(sweep: &Plan) -> Option<Shade> {
    let moved = sweep.axes.iter().any(|a| {
        a.levels.iter().any(|l| {
            l.set
                .iter()
                .any(|(path, _)| path.starts_with("downstream.outages"))
        })
    });
    let o = sweep.base.downstream.outages.first().filter(|_| !moved)?;
    Some(Shade {
        from: o.start_s,
        to: o.end_s,
        label: "downstream down".to_string(),
    })
}

fn options_json(sweep: &Plan) -> serde_json::Value {
    let axes: Vec<serde_json::Value> = sweep
        .axes
        .iter()
        .map(|a| {
            let levels: Vec<serde_json::Value> = a
                .levels
                .iter()
                .map(|l| {
                    let set: serde_json::Map<String, serde_json::Value> = l
                        .set
                        .iter()
                        .map(|(p, v)| (p.clone(), serde_json::to_value(v).unwrap_or_default()))
                        .collect();
                    json!({ "label": l.label, "set": set })
                })
                .collect();
            json!({ "column": a.column, "levels": levels })
        })
        .collect();
    let metrics: Vec<&str> = sweep
        .tables
        .metrics
        .get_ref()
        .iter()
        .map(|m| m.name())
        .collect();
    json!({
        "axes": axes,
        "metrics": metrics,
        "scenario": serde_json::to_value(&sweep.base).unwrap_or_default(),
    })
}

/// The points a chart draws: every axis but x (and the series axis) at its
/// first level.
fn chart_points(view: &View<'_>, chart: &Chart) -> Vec<PointSummary<Point>> {
    let free = |axis: usize| {
        Some(axis) == chart.x_axis || chart.series.as_ref().is_some_and(|s| s.0 == axis)
    };
    view.summaries
        .iter()
        .filter(|s| {
            s.point
                .levels
                .iter()
                .enumerate()
                .all(|(a, &l)| free(a) || l == 0)
        })
        .cloned()
        .collect()
}

fn chart(chart: &Chart, view: &View<'_>) -> LineChart {
    let raw = &chart.raw;
    let a = chart.x_axis.unwrap_or(0);
    let x_axis = &view.sweep.axes[a];
    let x = |p: &Point| x_axis.levels[p.levels[a]].x.unwrap_or(f64::NAN) * raw.x_factor;
    let points = chart_points(view, chart);
    let series: Vec<Series> = match (&chart.series, raw.y) {
        (Some((axis, labels)), Some(y)) => metrics::series(
            &points,
            y.index(),
            1.0,
            |p| labels[p.levels[*axis]].clone(),
            x,
        ),
        _ => {
            let lines: Vec<(&str, usize)> = raw
                .lines
                .iter()
                .map(|l| (l.label.as_str(), l.metric.index()))
                .collect();
            metrics::lines(&points, &lines, 1.0, x)
        }
    };
    let scale = |log| if log { Scale::Log } else { Scale::Linear };
    LineChart {
        name: raw.name.clone(),
        description: raw.description.clone(),
        title: raw.title.clone(),
        x_label: raw.x_label.clone(),
        y_label: raw.y_label.clone(),
        x_scale: scale(raw.x_log),
        y_scale: scale(raw.y_log),
        markers: true,
        legend: raw.legend,
        series,
        shade: None,
    }
}

fn markdown(view: &View<'_>, notes: Option<Notes>) -> String {
    let summary = &view.sweep.summary;
    let mut md = format!(
        "## {}\n\n{}\n\n",
        summary.raw.title,
        summary.intro.trim_end()
    );
    let columns: Vec<MdColumn<'_>> = summary
        .raw
        .columns
        .iter()
        .map(|c| MdColumn {
            header: &c.header,
            metric: c.metric.index(),
            factor: c.factor,
            decimals: c.decimals,
        })
        .collect();
    md.push_str(&metrics::markdown_table(
        view.summaries,
        &summary.raw.key_header,
        |p| view.sweep.label(p),
        &columns,
    ));
    md.push('\n');
    if let Some(notes) = notes {
        md.push_str(&notes(view));
    }
    md
}
