//! Named per-run numbers, and the raw and summary tables built from them.
//!
//! The simulator-driven experiments all report a handful of numbers per run
//! (calls, latency quantiles, 429s, …) and want the same two tables: one row
//! per parameter set and seed, and one row per parameter set with the mean
//! and 95 % confidence interval of each number over the seeds. Declaring the
//! numbers once, as [`Column`]s, keeps the columns of the two tables, the
//! charts and the headline text in step.

use super::chart::{ChartPoint, Series};
use super::stats::Estimate;
use super::sweep::{by_point, Trial};
use super::table::{Cell, Table};

/// One number a run reports: its column name (unit last, e.g.
/// `latency_p99_ms`), how many decimals the CSV keeps, and how to read it
/// from a run's result. NaN means "undefined for this run" (e.g. a latency
/// quantile when nothing succeeded): an empty cell, left out of the mean.
pub struct Column<R> {
    pub name: &'static str,
    pub decimals: usize,
    pub value: fn(&R) -> f64,
}

impl<R> Column<R> {
    pub const fn new(name: &'static str, decimals: usize, value: fn(&R) -> f64) -> Column<R> {
        Column {
            name,
            decimals,
            value,
        }
    }
}

impl<R> Clone for Column<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Column<R> {}

/// The runs of one parameter set, summarised column by column.
#[derive(Clone, Debug)]
pub struct PointSummary<P> {
    pub point: P,
    /// Runs (seeds) of this parameter set.
    pub runs: usize,
    estimates: Vec<Estimate>,
}

impl<P> PointSummary<P> {
    /// The estimate of column `index` of the columns the summary was made
    /// with (experiments name their columns by constants, never by text).
    pub fn get(&self, index: usize) -> Estimate {
        self.estimates[index]
    }
}

/// Summarises every parameter set: for each metric, the mean and 95 % CI
/// of its defined (finite) values over the seeds, in seed order.
pub fn summarize<P: Clone, R>(
    points: &[P],
    trials: &[Trial<R>],
    metrics: &[Column<R>],
) -> Vec<PointSummary<P>> {
    by_point(trials, points.len())
        .into_iter()
        .zip(points)
        .map(|(results, point)| PointSummary {
            point: point.clone(),
            runs: results.len(),
            estimates: metrics
                .iter()
                .map(|m| {
                    let values: Vec<f64> = results
                        .iter()
                        .map(|r| (m.value)(r))
                        .filter(|v| v.is_finite())
                        .collect();
                    Estimate::of(&values)
                })
                .collect(),
        })
        .collect()
}

/// One row per run: `keys(point)`, the seed, then every metric.
pub fn raw_table<P, R>(
    name: &str,
    description: &str,
    key_columns: &[&str],
    keys: impl Fn(&P) -> Vec<Cell>,
    points: &[P],
    trials: &[Trial<R>],
    metrics: &[Column<R>],
) -> Table {
    let mut columns: Vec<&str> = key_columns.to_vec();
    columns.push("seed");
    columns.extend(metrics.iter().map(|m| m.name));
    let mut table = Table::new(name, description, &columns);
    for trial in trials {
        let mut row = keys(&points[trial.point]);
        row.push(Cell::count(trial.seed));
        row.extend(
            metrics
                .iter()
                .map(|m| Cell::fixed((m.value)(&trial.result), m.decimals)),
        );
        table.push(row);
    }
    table
}

/// One row per parameter set: `keys(point)`, the number of seeds, then
/// `<metric>_mean`, `<metric>_ci95_low`, `<metric>_ci95_high` per metric.
pub fn summary_table<P, R>(
    name: &str,
    description: &str,
    key_columns: &[&str],
    keys: impl Fn(&P) -> Vec<Cell>,
    summaries: &[PointSummary<P>],
    metrics: &[Column<R>],
) -> Table {
    let mut columns: Vec<String> = key_columns.iter().map(|c| (*c).to_string()).collect();
    columns.push("seeds".to_string());
    for m in metrics {
        for stat in ["mean", "ci95_low", "ci95_high"] {
            columns.push(format!("{}_{stat}", m.name));
        }
    }
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut table = Table::new(name, description, &columns);
    for s in summaries {
        let mut row = keys(&s.point);
        row.push(Cell::count(s.runs as u64));
        for (i, m) in metrics.iter().enumerate() {
            let e = s.get(i);
            row.extend([
                Cell::fixed(e.mean, m.decimals),
                Cell::fixed(e.ci95_low(), m.decimals),
                Cell::fixed(e.ci95_high(), m.decimals),
            ]);
        }
        table.push(row);
    }
    table
}

/// Chart lines of column `metric`: one series per distinct `line(point)`, in
/// order of first appearance, each point at `x(point)` with its 95 % CI as
/// the band. `scale` converts the metric's unit for the chart (e.g. 100
/// for a fraction shown in %).
pub fn series<P>(
    summaries: &[PointSummary<P>],
    metric: usize,
    scale: f64,
    line: impl Fn(&P) -> String,
    x: impl Fn(&P) -> f64,
) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for s in summaries {
        let label = line(&s.point);
        let e = s.get(metric);
        let point = ChartPoint {
            x: x(&s.point),
            y: e.mean * scale,
            y_low: e.ci95_low() * scale,
            y_high: e.ci95_high() * scale,
        };
        match out.iter_mut().find(|series| series.name == label) {
            Some(series) => series.points.push(point),
            None => out.push(Series {
                dots: false,
                name: label,
                points: vec![point],
            }),
        }
    }
    for series in &mut out {
        series.points.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    out
}

/// One chart line per column, over the parameter sets: `(legend, column
/// index)` pairs, each point at `x(point)` with its 95 % CI as the band,
/// the values multiplied by `scale`.
pub fn lines<P>(
    summaries: &[PointSummary<P>],
    metrics: &[(&str, usize)],
    scale: f64,
    x: impl Fn(&P) -> f64,
) -> Vec<Series> {
    metrics
        .iter()
        .map(|&(legend, metric)| {
            let mut points: Vec<ChartPoint> = summaries
                .iter()
                .map(|s| {
                    let e = s.get(metric);
                    ChartPoint {
                        x: x(&s.point),
                        y: e.mean * scale,
                        y_low: e.ci95_low() * scale,
                        y_high: e.ci95_high() * scale,
                    }
                })
                .collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            Series {
                dots: false,
                name: legend.to_string(),
                points,
            }
        })
        .collect()
}

/// One column of a Markdown table of summaries: header, column index, the
/// factor that converts its unit for reading, decimals.
pub struct MdColumn<'a> {
    pub header: &'a str,
    pub metric: usize,
    pub factor: f64,
    pub decimals: usize,
}

/// A Markdown table with one row per parameter set: `key(point)` under
/// `key_header`, then `mean ± CI half-width` per column.
pub fn markdown_table<P>(
    summaries: &[PointSummary<P>],
    key_header: &str,
    key: impl Fn(&P) -> String,
    columns: &[MdColumn<'_>],
) -> String {
    let mut md = format!("| {key_header} |");
    let mut rule = String::from("|---|");
    for c in columns {
        md.push_str(&format!(" {} |", c.header));
        rule.push_str("---:|");
    }
    md.push('\n');
    md.push_str(&rule);
    md.push('\n');
    for s in summaries {
        md.push_str(&format!("| {} |", key(&s.point)));
        for c in columns {
            md.push_str(&format!(" {} |", pm(s.get(c.metric), c.factor, c.decimals)));
        }
        md.push('\n');
    }
    md
}

/// `mean ± CI half-width`, both times `factor`; just the mean when there
/// is no interval (one seed), "–" when the metric is undefined.
pub fn pm(e: Estimate, factor: f64, decimals: usize) -> String {
    if !e.mean.is_finite() {
        return "–".to_string();
    }
    if !e.ci95_half.is_finite() {
        return format!("{:.decimals$}", e.mean * factor);
    }
    format!(
        "{:.decimals$} ± {:.decimals$}",
        e.mean * factor,
        e.ci95_half * factor
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: [Column<(f64, f64)>; 2] = [
        Column {
            name: "a_ms",
            decimals: 1,
            value: |r| r.0,
        },
        Column {
            name: "b",
            decimals: 0,
            value: |r| r.1,
        },
    ];

    fn trials() -> Vec<Trial<(f64, f64)>> {
        let t = |point, seed, a, b| Trial {
            point,
            seed,
            result: (a, b),
        };
        vec![
            t(0, 1, 1.0, 10.0),
            t(0, 2, 3.0, f64::NAN),
            t(1, 1, 5.0, 7.0),
            t(1, 2, 5.0, 9.0),
        ]
    }

    #[test]
    fn raw_rows_carry_keys_seed_and_every_metric() {
        let points = ["x", "y"];
        let table = raw_table(
            "r",
            "d",
            &["p"],
            |p: &&str| vec![Cell::text(*p)],
            &points,
            &trials(),
            &METRICS,
        );
        assert_eq!(
            table.to_csv_string(),
            "p,seed,a_ms,b\nx,1,1.0,10\nx,2,3.0,\ny,1,5.0,7\ny,2,5.0,9\n"
        );
    }

    #[test]
    fn summaries_leave_undefined_values_out() {
        let points = ["x", "y"];
        let summaries = summarize(&points, &trials(), &METRICS);
        assert_eq!(summaries[0].get(0).mean, 2.0);
        assert_eq!(summaries[0].get(1).n, 1);
        assert_eq!(summaries[1].get(1).mean, 8.0);
        let table = summary_table(
            "s",
            "d",
            &["p"],
            |p: &&str| vec![Cell::text(*p)],
            &summaries,
            &METRICS,
        );
        let csv = table.to_csv_string();
        let header = csv.lines().next().expect("header");
        assert_eq!(
            header,
            "p,seeds,a_ms_mean,a_ms_ci95_low,a_ms_ci95_high,b_mean,b_ci95_low,b_ci95_high"
        );
        assert!(csv.contains("\ny,2,5.0,5.0,5.0,8,"), "{csv}");
    }

    #[test]
    fn markdown_rows_show_mean_and_half_width() {
        let points = ["x", "y"];
        let summaries = summarize(&points, &trials(), &METRICS);
        let md = markdown_table(
            &summaries,
            "p",
            |p| p.to_string(),
            &[MdColumn {
                header: "a (s)",
                metric: 0,
                factor: 1e-3,
                decimals: 4,
            }],
        );
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| p | a (s) |");
        assert_eq!(lines[1], "|---|---:|");
        assert!(lines[2].starts_with("| x | 0.0020 ± "), "{md}");
        assert_eq!(lines[3], "| y | 0.0050 ± 0.0000 |");
        assert_eq!(pm(Estimate::of(&[]), 1.0, 1), "–");
        assert_eq!(pm(Estimate::of(&[2.0]), 1.0, 1), "2.0");
    }

    #[test]
    fn series_group_by_line_and_sort_by_x() {
        let points = [(2.0, "a"), (1.0, "a"), (1.0, "b")];
        let trials: Vec<Trial<(f64, f64)>> = (0..3)
            .map(|point| Trial {
                point,
                seed: 1,
                result: (point as f64, 0.0),
            })
            .collect();
        let summaries = summarize(&points, &trials, &METRICS);
        let lines = series(&summaries, 0, 10.0, |p| p.1.to_string(), |p| p.0);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].name, "a");
        let xs: Vec<(f64, f64)> = lines[0].points.iter().map(|p| (p.x, p.y)).collect();
        assert_eq!(xs, vec![(1.0, 10.0), (2.0, 0.0)]);
    }
}
