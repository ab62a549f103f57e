//! The tables, charts and `summary.md` part a scenario sweep declares.

use super::path;
use super::strategies::{self, Selection};
use super::{dynamics, Axis, Plan, Point};
use crate::experiment::catalogue::{self, Metric};
use crate::experiment::chart::{Legend, LineChart, Scale, Series, Shade};
use crate::experiment::definition::Checks;
use crate::experiment::metrics::{self, MdColumn, PointSummary};
use crate::experiment::over_time::{self, OverTime};
use crate::experiment::paired::{self, Comparison};
use crate::experiment::registry::Outputs;
use crate::experiment::sweep::{by_point, Trial};
use crate::experiment::table::{Cell, Table};
use crate::experiment::time_series::SeriesMetric;
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
    /// point, the scenario's first outage shaded…
    calls_bucket_ms: Option<Spanned<f64>>,
    /// …or time: this counter of `[series]`, one line per point.
    over_time: Option<Spanned<SeriesMetric>>,
    /// Only the points these axes' labels select (`{ trigger = "spike" }`);
    /// over `x`, one label per named axis, the other axes at their first.
    only: Option<Spanned<toml::Table>>,
    /// A stretch of time to shade (instead of the scenario's outage).
    shade: Option<RawShade>,
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
struct RawShade {
    from_s: f64,
    to_s: f64,
    label: String,
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
    /// The points a chart over a counter draws.
    only: Selection,
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
    let only = match &raw.only {
        Some(t) => strategies::selection(t.get_ref(), axes, &field, t.span(), checks),
        None => Selection::default(),
    };
    checks.check(
        raw.only.is_none() || raw.over_time.is_some() || raw.x.is_some(),
        &field,
        0..0,
        || "`only` selects the points of a chart with `over_time` or `x`".into(),
    );
    checks.check(
        raw.x.is_none() || only.fixes_all(),
        &format!("{field}.only"),
        0..0,
        || {
            "a chart over `x` takes one label per axis in `only` (its lines must not mix points)"
                .into()
        },
    );
    if let Some(shade) = &raw.shade {
        checks.check(
            shade.from_s.is_finite() && shade.to_s.is_finite() && shade.from_s < shade.to_s,
            &format!("{field}.shade"),
            0..0,
            || {
                format!(
                    "needs from_s < to_s, got {} and {}",
                    shade.from_s, shade.to_s
                )
            },
        );
    }
    let (x_axis, series) = match (&raw.x, &raw.calls_bucket_ms, &raw.over_time) {
        (None, None, Some(metric)) => {
            checks.check(
                raw.lines.is_empty() && raw.y.is_none() && raw.series.is_none(),
                &field,
                metric.span(),
                || "a chart over time draws one counter: no `lines`, `y` or `series`".into(),
            );
            (None, None)
        }
        (Some(x), None, None) => {
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
        (None, Some(bucket), None) => {
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
                "give one of `x` (an axis), `calls_bucket_ms` or `over_time` (a counter of [series])",
            );
            (None, None)
        }
    };
    Chart {
        raw,
        x_axis,
        series,
        only,
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

impl Plan {
    /// The header of the key column of `summary.md`'s tables.
    pub(super) fn summary_key_header(&self) -> &str {
        &self.summary.raw.key_header
    }
}

impl Chart {
    /// The counter of a chart over `[series]`.
    pub(super) fn over_time(&self) -> Option<SeriesMetric> {
        self.raw.over_time.as_ref().map(|m| *m.get_ref())
    }

    /// The bucket of a chart over time.
    pub(super) fn calls_bucket_ms(&self) -> Option<(f64, std::ops::Range<usize>)> {
        self.raw
            .calls_bucket_ms
            .as_ref()
            .map(|b| (*b.get_ref(), b.span()))
    }
}

/// What every run of a sweep kept.
pub(super) struct Runs<'a> {
    pub summaries: &'a [Trial<Summary>],
    /// Downstream calls per bucket (empty unless a chart counts them).
    pub calls: &'a [Trial<Vec<u32>>],
    /// The counters `[series]`, `[recovery]` and the charts need, in the
    /// order of [`dynamics::Dynamics::needed`].
    pub series: &'a [Trial<Vec<Vec<u32>>>],
}

/// Every table, chart and the Markdown of a sweep.
pub(super) fn outputs(sweep: &Plan, runs: &Runs<'_>, notes: Option<Notes>) -> Outputs {
    let (trials, calls) = (runs.summaries, runs.calls);
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
    tables.extend(sweep.dynamics.table(sweep, runs.series));
    for c in &sweep.charts {
        if let Some(metric) = c.over_time() {
            let series = sweep.dynamics.over_seeds(sweep, runs.series, metric);
            let bucket_ms = sweep.dynamics.bucket_ms().unwrap_or(1000.0);
            charts.push(counter_chart(c, sweep, &series, bucket_ms));
            continue;
        }
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
    let mut summary_markdown = markdown(&view, notes);
    if let Some((recovery_tables, md)) = dynamics::recovery_outputs(sweep, runs.series) {
        tables.extend(recovery_tables);
        summary_markdown.push('\n');
        summary_markdown.push_str(&md);
    }
    if let Some(p) = &sweep.paired {
        let (table, md) = paired_outputs(sweep, p, trials);
        tables.push(table);
        summary_markdown.push('\n');
        summary_markdown.push_str(&md);
    }
    Outputs {
        options: options_json(sweep),
        tables,
        charts,
        summary_markdown,
    }
}

/// One counter over time, one line per point the chart selects, named by
/// the levels `only` leaves free.
fn counter_chart(c: &Chart, sweep: &Plan, series: &[OverTime], bucket_ms: f64) -> LineChart {
    let selected: Vec<OverTime> = sweep
        .points
        .iter()
        .zip(series)
        .filter(|(p, _)| c.only.selects(&p.levels))
        .map(|(p, s)| {
            let name = sweep
                .axes
                .iter()
                .enumerate()
                .filter(|(a, _)| !c.only.fixes(*a))
                .map(|(a, axis)| axis.levels[p.levels[a]].label.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            OverTime { name, ..s.clone() }
        })
        .collect();
    let mut chart = time_chart(c, sweep, &selected, bucket_ms);
    if let Some(shade) = &c.raw.shade {
        chart.shade = Some(Shade {
            from: shade.from_s,
            to: shade.to_s,
            label: shade.label.clone(),
        });
    }
    chart
}

/// Per-seed values of `metric` at every point.
fn per_seed(sweep: &Plan, trials: &[Trial<Summary>], metric: Metric) -> Vec<Vec<(u64, f64)>> {
    let value = metric.entry().value;
    let mut out = vec![Vec::new(); sweep.points.len()];
    for t in trials {
        out[t.point].push((t.seed, value(&t.result)));
    }
    out
}

/// The point that runs the baseline where `point` runs its strategy.
fn baseline_of(sweep: &Plan, point: &Point, baseline_level: usize) -> Option<usize> {
    sweep
        .points
        .iter()
        .position(|q| q.levels[0] == baseline_level && q.levels[1..] == point.levels[1..])
}

/// Every strategy against the baseline, per metric: the paired difference
/// and the independent one, as a table and a Markdown section.
fn paired_outputs(
    sweep: &Plan,
    spec: &strategies::Paired,
    trials: &[Trial<Summary>],
) -> (Table, String) {
    let mut key_columns: Vec<&str> = sweep.axes.iter().map(|a| a.column.as_str()).collect();
    key_columns.extend([
        "metric",
        "pairs",
        "difference_mean",
        "paired_ci95_low",
        "paired_ci95_high",
        "independent_ci95_low",
        "independent_ci95_high",
        "width_ratio",
    ]);
    let mut table = Table::new(
        &format!("{}_paired", sweep.tables.name),
        &format!(
            "per point and metric: the difference against `{}` on the same seeds, with the \
             95% CI of the paired differences and of two independent means (Welch)",
            spec.baseline
        ),
        &key_columns,
    );
    let mut md = format!(
        "## Paired differences against `{}`\n\nEvery strategy runs on the same seeds as the \
         baseline, and a seed fixes the arrivals, delays and failure draws: the paired \
         difference (strategy − baseline, seed by seed) cancels the noise both runs share. \
         Beside it, the same difference of means with the interval of two independent samples \
         (Welch). Mean difference ± 95% CI half-width.\n\n\
         | {} | metric | difference | paired 95% CI (±) | independent 95% CI (±) | independent / paired width |\n\
         |---|---|---:|---:|---:|---:|\n",
        spec.baseline,
        sweep.summary_key_header(),
    );
    for &metric in &spec.metrics {
        let values = per_seed(sweep, trials, metric);
        let decimals = metric.entry().decimals;
        for (i, point) in sweep.points.iter().enumerate() {
            if point.levels[0] == spec.baseline_level {
                continue;
            }
            let Some(b) = baseline_of(sweep, point, spec.baseline_level) else {
                continue;
            };
            let c: Comparison = paired::compare(&values[i], &values[b]);
            let mut row = sweep.keys(point);
            row.extend([
                Cell::text(metric.name()),
                Cell::count(c.paired.n as u64),
                Cell::fixed(c.paired.mean, decimals),
                Cell::fixed(c.paired.ci95_low(), decimals),
                Cell::fixed(c.paired.ci95_high(), decimals),
                Cell::fixed(c.independent.ci95_low(), decimals),
                Cell::fixed(c.independent.ci95_high(), decimals),
                Cell::fixed(c.width_ratio(), 1),
            ]);
            table.push(row);
            let half = |e: f64| {
                if e.is_finite() {
                    format!("{e:.decimals$}")
                } else {
                    "–".to_string()
                }
            };
            let ratio = c.width_ratio();
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                sweep.label(point),
                metric.name(),
                half(c.paired.mean),
                half(c.paired.ci95_half),
                half(c.independent.ci95_half),
                if ratio.is_finite() {
                    format!("{ratio:.1}×")
                } else {
                    "–".to_string()
                },
            ));
        }
    }
    (table, md)
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
    let mut options = json!({
        "axes": axes,
        "metrics": metrics,
        "scenario": serde_json::to_value(&sweep.base).unwrap_or_default(),
    });
    // Only sweeps with strategies say so: the others' meta.json stay as
    // they were.
    if let Some(map) = options.as_object_mut() {
        if !sweep.strategy_notes.is_empty() {
            let notes: serde_json::Map<String, serde_json::Value> = sweep
                .strategy_notes
                .iter()
                .map(|(n, d)| (n.clone(), json!(d)))
                .collect();
            map.insert("strategies".into(), json!(notes));
        }
        if let Some(p) = &sweep.paired {
            let names: Vec<&str> = p.metrics.iter().map(|m| m.name()).collect();
            map.insert(
                "paired".into(),
                json!({ "baseline": p.baseline, "metrics": names }),
            );
        }
        if let Some(d) = sweep.dynamics.describe() {
            map.insert("dynamics".into(), d);
        }
    }
    options
}

/// The points a chart draws: every axis but x (and the series axis) at its
/// first level.
fn chart_points(view: &View<'_>, chart: &Chart) -> Vec<PointSummary<Point>> {
    let free = |axis: usize| {
        Some(axis) == chart.x_axis || chart.series.as_ref().is_some_and(|s| s.0 == axis)
    };
    // Every other axis at the level `only` names, or else at its first.
    view.summaries
        .iter()
        .filter(|s| {
            chart.only.selects(&s.point.levels)
                && s.point
                    .levels
                    .iter()
                    .enumerate()
                    .all(|(a, &l)| free(a) || chart.only.fixes(a) || l == 0)
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
