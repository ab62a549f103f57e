//! The tables, charts and `summary.md` part a scenario sweep declares.

use super::path;
use super::{Axis, Point, Sweep};
use crate::experiment::catalogue::{self, Metric};
use crate::experiment::chart::{Legend, LineChart, Scale, Series};
use crate::experiment::definition::Checks;
use crate::experiment::metrics::{self, MdColumn, PointSummary};
use crate::experiment::registry::Outputs;
use crate::experiment::sweep::Trial;
use crate::experiment::table::Cell;
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
    /// The axis along x (its values must be numbers).
    x: Spanned<String>,
    /// Multiplies the axis values (e.g. 0.001 for ms shown in s).
    #[serde(default = "one")]
    x_factor: f64,
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
    x_axis: usize,
    /// `Some((axis, labels))` for a chart of one line per level of `axis`.
    series: Option<(usize, Vec<String>)>,
}

/// The checked `[summary]`.
#[derive(Debug)]
pub(super) struct SummarySpec {
    raw: RawSummary,
    intro: String,
}

pub(super) fn check_chart(raw: RawChart, axes: &[Axis], checks: &mut Checks<'_>) -> Chart {
    let field = format!("charts.{}", raw.name);
    let find = |name: &Spanned<String>, checks: &mut Checks<'_>| {
        let found = axes.iter().position(|a| a.column == *name.get_ref());
        if found.is_none() {
            let known: Vec<&str> = axes.iter().map(|a| a.column.as_str()).collect();
            checks.fail(
                &field,
                name.span(),
                format!("no axis `{}`; axes: {}", name.get_ref(), known.join(", ")),
            );
        }
        found.unwrap_or(0)
    };
    let x_axis = find(&raw.x, checks);
    if let Some(axis) = axes.get(x_axis) {
        checks.check(
            axis.levels.iter().all(|l| l.x.is_some()),
            &field,
            raw.x.span(),
            || format!("axis `{}` has values that are not numbers", axis.column),
        );
    }
    let series = match (&raw.series, raw.y, raw.lines.is_empty()) {
        (Some(name), Some(_), true) => {
            let axis = find(name, checks);
            let levels = axes.get(axis).map_or(&[][..], |a| &a.levels[..]);
            let labels = raw
                .series_labels
                .clone()
                .unwrap_or_else(|| levels.iter().map(|l| l.label.clone()).collect());
            checks.check(labels.len() == levels.len(), &field, name.span(), || {
                format!("give one series label per value ({})", levels.len())
            });
            Some((axis, labels))
        }
        (None, None, false) => None,
        _ => {
            checks.fail(
                &field,
                raw.x.span(),
                "give either `lines`, or `y` with `series`",
            );
            None
        }
    };
    Chart {
        raw,
        x_axis,
        series,
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
    SummarySpec { raw, intro }
}

/// What a headline hook reads: the sweep and every catalogue metric of
/// every point.
pub struct View<'a> {
    pub sweep: &'a Sweep,
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

pub(super) fn outputs(sweep: &Sweep, trials: &[Trial<Summary>], notes: Option<Notes>) -> Outputs {
    let all = metrics::summarize(&sweep.points, trials, &catalogue::columns());
    let selected: Vec<_> = sweep
        .tables
        .metrics
        .get_ref()
        .iter()
        .map(|m| m.column())
        .collect();
    let key_columns: Vec<&str> = sweep.axes.iter().map(|a| a.column.as_str()).collect();
    let keys = |p: &Point| -> Vec<Cell> {
        sweep
            .axes
            .iter()
            .zip(&p.levels)
            .map(|(a, &l)| a.levels[l].cell.clone())
            .collect()
    };
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
    Outputs {
        options: options_json(sweep),
        tables: vec![raw, summary],
        charts: sweep.charts.iter().map(|c| chart(c, &view)).collect(),
        summary_markdown: markdown(&view, notes),
    }
}

fn options_json(sweep: &Sweep) -> serde_json::Value {
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
    let free =
        |axis: usize| axis == chart.x_axis || chart.series.as_ref().is_some_and(|s| s.0 == axis);
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
    let x_axis = &view.sweep.axes[chart.x_axis];
    let x = |p: &Point| x_axis.levels[p.levels[chart.x_axis]].x.unwrap_or(f64::NAN) * raw.x_factor;
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
