//! What a sweep shows over time: counters per bucket (`[series]`) and
//! whether each run recovered after its trigger (`[recovery]`).
//!
//! ```toml
//! [series]                      # <tables.name>_over_time.csv
//! bucket_ms = 1000
//! metrics = ["starts", "successes", "retries", "timeouts", "in_progress"]
//!
//! [recovery]                    # <tables.name>_recovery[_summary].csv
//! after_s = 25                  # the trigger's end
//! share = 0.9                   # goodput ≥ 90 % of the first tries…
//! window_s = 5                  # …in every 5 s window to the end
//! ```

use super::report::Chart;
use super::{Plan, Point};
use crate::experiment::definition::Checks;
use crate::experiment::metrics::pm;
use crate::experiment::over_time::{self, OverTime};
use crate::experiment::recovery::{self, Rule};
use crate::experiment::stats::Estimate;
use crate::experiment::sweep::{by_point, Trial};
use crate::experiment::table::{Cell, Table};
use crate::experiment::time_series::SeriesMetric;
use crate::sim::Scenario;
use serde::Deserialize;
use std::fmt::Write as _;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSeries {
    bucket_ms: Spanned<f64>,
    metrics: Spanned<Vec<SeriesMetric>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecovery {
    after_s: Spanned<f64>,
    #[serde(default = "default_share")]
    share: f64,
    #[serde(default = "default_window_s")]
    window_s: f64,
    /// The reference window starts this much earlier (about one healthy
    /// latency), so that goodput is compared with the same requests.
    #[serde(default)]
    lag_s: f64,
    /// Windows whose reference counts fewer prove nothing either way.
    #[serde(default = "one")]
    offered_min: u64,
    #[serde(default = "default_goodput")]
    goodput: SeriesMetric,
    #[serde(default = "default_reference")]
    reference: SeriesMetric,
}

fn default_share() -> f64 {
    0.9
}

fn default_window_s() -> f64 {
    5.0
}

fn one() -> u64 {
    1
}

fn default_goodput() -> SeriesMetric {
    SeriesMetric::Successes
}

fn default_reference() -> SeriesMetric {
    SeriesMetric::FirstTries
}

/// The checked `[series]` and `[recovery]`.
#[derive(Debug, Default)]
pub struct Dynamics {
    bucket_ms: Option<f64>,
    /// The counters of the over-time table, in the order written.
    table: Vec<SeriesMetric>,
    /// Every counter a run must keep: the table's, the recovery rule's and
    /// the charts', sorted and distinct.
    needed: Vec<SeriesMetric>,
    recovery: Option<RecoverySpec>,
}

#[derive(Clone, Copy, Debug)]
struct RecoverySpec {
    after_s: f64,
    share: f64,
    window_s: f64,
    lag_s: f64,
    offered_min: u64,
    goodput: SeriesMetric,
    reference: SeriesMetric,
}

/// Longest bucket a series may have, and most buckets a run may count.
const BUCKET_MS_MAX: f64 = 60_000.0;
const BUCKETS_MAX: f64 = 100_000.0;

pub(super) fn check(
    series: Option<RawSeries>,
    recovery: Option<RawRecovery>,
    charts: &[Chart],
    base: &Scenario,
    checks: &mut Checks<'_>,
) -> Dynamics {
    let mut out = Dynamics::default();
    let over_time_charts: Vec<SeriesMetric> = charts.iter().filter_map(Chart::over_time).collect();
    let Some(series) = series else {
        checks.check(
            recovery.is_none() && over_time_charts.is_empty(),
            "series",
            0..0,
            || "[recovery] and charts with `over_time` need a [series] section".into(),
        );
        return out;
    };
    let ms = *series.bucket_ms.get_ref();
    checks.check(
        (1.0..=BUCKET_MS_MAX).contains(&ms),
        "series.bucket_ms",
        series.bucket_ms.span(),
        || format!("must be between 1 and {BUCKET_MS_MAX}, got {ms}"),
    );
    checks.check(
        base.horizon_s > 0.0 && base.horizon_s * 1e3 / ms <= BUCKETS_MAX,
        "series.bucket_ms",
        series.bucket_ms.span(),
        || {
            format!(
                "a series needs a horizon_s > 0 and at most {BUCKETS_MAX} buckets in it \
                 (horizon {} s)",
                base.horizon_s
            )
        },
    );
    out.bucket_ms = Some(ms);
    out.table = series.metrics.get_ref().clone();
    let mut needed = out.table.clone();
    needed.extend(over_time_charts);
    if let Some(r) = recovery {
        let after = *r.after_s.get_ref();
        checks.check(
            after >= 0.0 && after < base.horizon_s,
            "recovery.after_s",
            r.after_s.span(),
            || {
                format!(
                    "must be in [0, horizon_s = {}), got {after}",
                    base.horizon_s
                )
            },
        );
        checks.check(
            r.share > 0.0 && r.share <= 1.0,
            "recovery.share",
            r.after_s.span(),
            || format!("must be in (0, 1], got {}", r.share),
        );
        let buckets = r.window_s * 1e3 / ms;
        checks.check(
            r.window_s > 0.0 && (buckets - buckets.round()).abs() < 1e-9 && buckets >= 1.0,
            "recovery.window_s",
            r.after_s.span(),
            || {
                format!(
                    "must be a whole number of {ms} ms buckets, got {} s",
                    r.window_s
                )
            },
        );
        let lag = r.lag_s * 1e3 / ms;
        checks.check(
            r.lag_s >= 0.0 && (lag - lag.round()).abs() < 1e-9 && r.lag_s <= after,
            "recovery.lag_s",
            r.after_s.span(),
            || {
                format!(
                    "must be a whole number of {ms} ms buckets, at most after_s, got {} s",
                    r.lag_s
                )
            },
        );
        needed.extend([r.goodput, r.reference]);
        out.recovery = Some(RecoverySpec {
            after_s: after,
            share: r.share,
            window_s: r.window_s,
            lag_s: r.lag_s,
            offered_min: r.offered_min,
            goodput: r.goodput,
            reference: r.reference,
        });
    }
    needed.sort();
    needed.dedup();
    out.needed = needed;
    out
}

impl Dynamics {
    pub fn bucket_ms(&self) -> Option<f64> {
        self.bucket_ms
    }

    /// Every counter a run keeps, in the order of its trial's vectors.
    pub fn needed(&self) -> Vec<SeriesMetric> {
        self.needed.clone()
    }

    /// The tables this writes, for the file-name check.
    pub fn table_names(&self, stem: &str) -> Vec<String> {
        let mut names = Vec::new();
        if self.bucket_ms.is_some() {
            names.push(format!("{stem}_over_time"));
        }
        if self.recovery.is_some() {
            names.push(format!("{stem}_recovery"));
            names.push(format!("{stem}_recovery_summary"));
        }
        names
    }

    /// `[series]` and `[recovery]` for `meta.json`, if set.
    pub fn describe(&self) -> Option<serde_json::Value> {
        let ms = self.bucket_ms?;
        let table: Vec<&str> = self.table.iter().map(|m| m.name()).collect();
        let recovery = self.recovery.map(|r| {
            serde_json::json!({
                "after_s": r.after_s,
                "share": r.share,
                "window_s": r.window_s,
                "lag_s": r.lag_s,
                "offered_min": r.offered_min,
                "goodput": r.goodput.name(),
                "reference": r.reference.name(),
            })
        });
        Some(serde_json::json!({ "bucket_ms": ms, "series": table, "recovery": recovery }))
    }

    fn index(&self, metric: SeriesMetric) -> Option<usize> {
        self.needed.iter().position(|m| *m == metric)
    }

    /// `metric` averaged over the seeds of every point, padded to the
    /// horizon.
    pub fn over_seeds(
        &self,
        sweep: &Plan,
        series: &[Trial<Vec<Vec<u32>>>],
        metric: SeriesMetric,
    ) -> Vec<OverTime> {
        let (Some(i), Some(ms)) = (self.index(metric), self.bucket_ms) else {
            return Vec::new();
        };
        let len = (sweep.base.horizon_s * 1e3 / ms).ceil() as usize;
        let runs: Vec<Vec<&[u32]>> = by_point(series, sweep.points.len())
            .into_iter()
            .map(|seeds| seeds.into_iter().map(|c| &c[i][..]).collect())
            .collect();
        over_time::over_seeds_to(
            &runs,
            sweep.points.iter().map(|p| sweep.label(p)).collect(),
            sweep.points.iter().map(|p| sweep.keys(p)).collect(),
            len,
        )
    }

    /// The over-time table: every counter of `[series]`.
    pub fn table(&self, sweep: &Plan, series: &[Trial<Vec<Vec<u32>>>]) -> Option<Table> {
        let ms = self.bucket_ms?;
        let counters: Vec<(&str, Vec<OverTime>)> = self
            .table
            .iter()
            .map(|&m| (m.name(), self.over_seeds(sweep, series, m)))
            .collect();
        let borrowed: Vec<(&str, &[OverTime])> =
            counters.iter().map(|(n, s)| (*n, &s[..])).collect();
        let names: Vec<&str> = self.table.iter().map(|m| m.name()).collect();
        let key_columns: Vec<&str> = sweep.axes.iter().map(|a| a.column.as_str()).collect();
        Some(over_time::table_of(
            &format!("{}_over_time", sweep.tables.name),
            &format!(
                "per point and {ms} ms bucket: mean and 95% CI over the seeds of {}",
                names.join(", ")
            ),
            &key_columns,
            &borrowed,
            ms,
        ))
    }
}

/// Every run's recovery: seconds after the trigger's end, NaN if stuck.
fn per_run(sweep: &Plan, dynamics: &Dynamics, series: &[Trial<Vec<Vec<u32>>>]) -> Vec<Trial<f64>> {
    let (Some(spec), Some(ms)) = (dynamics.recovery, dynamics.bucket_ms) else {
        return Vec::new();
    };
    let (Some(g), Some(r)) = (dynamics.index(spec.goodput), dynamics.index(spec.reference)) else {
        return Vec::new();
    };
    series
        .iter()
        .map(|t| {
            let rule = Rule {
                after_s: spec.after_s,
                share: spec.share,
                window_s: spec.window_s,
                lag_s: spec.lag_s,
                offered_min: spec.offered_min,
                bucket_ms: ms,
                horizon_s: sweep.scenarios[sweep.points[t.point].index].horizon_s,
            };
            Trial {
                point: t.point,
                seed: t.seed,
                result: recovery::recovered_after(&rule, &t.result[g], &t.result[r])
                    .unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// One point's recoveries: how many seeds recovered, and how long after
/// the trigger's end (over the seeds that did).
struct Recovered {
    seeds: usize,
    recovered: usize,
    after: Estimate,
}

fn summarize(sweep: &Plan, runs: &[Trial<f64>]) -> Vec<Recovered> {
    by_point(runs, sweep.points.len())
        .into_iter()
        .map(|seeds| {
            let times: Vec<f64> = seeds
                .iter()
                .copied()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            Recovered {
                seeds: seeds.len(),
                recovered: times.len(),
                after: Estimate::of(&times),
            }
        })
        .collect()
}

/// The recovery tables and the Markdown section, if `[recovery]` is set.
pub(super) fn recovery_outputs(
    sweep: &Plan,
    series: &[Trial<Vec<Vec<u32>>>],
) -> Option<(Vec<Table>, String)> {
    let dynamics = &sweep.dynamics;
    let spec = dynamics.recovery?;
    let runs = per_run(sweep, dynamics, series);
    let name = &sweep.tables.name;
    let mut key_columns: Vec<&str> = sweep.axes.iter().map(|a| a.column.as_str()).collect();
    let mut raw_columns = key_columns.clone();
    raw_columns.extend(["seed", "recovered", "recovery_s"]);
    let mut raw = Table::new(
        &format!("{name}_recovery"),
        "one row per point and seed: whether the run recovered after the trigger, and when (s after its end)",
        &raw_columns,
    );
    for t in &runs {
        let mut row = sweep.keys(&sweep.points[t.point]);
        row.extend([
            Cell::count(t.seed),
            Cell::count(u64::from(t.result.is_finite())),
            Cell::fixed(t.result, 0),
        ]);
        raw.push(row);
    }
    key_columns.extend([
        "seeds",
        "recovered_pct",
        "recovery_s_mean",
        "recovery_s_ci95_low",
        "recovery_s_ci95_high",
    ]);
    let mut summary = Table::new(
        &format!("{name}_recovery_summary"),
        "per point: share of seeds that recovered, and the mean and 95% CI of the time to recover over those that did",
        &key_columns,
    );
    let summaries = summarize(sweep, &runs);
    for (point, s) in sweep.points.iter().zip(&summaries) {
        let mut row = sweep.keys(point);
        row.extend([
            Cell::count(s.seeds as u64),
            Cell::fixed(share_pct(s), 1),
            Cell::fixed(s.after.mean, 2),
            Cell::fixed(s.after.ci95_low(), 2),
            Cell::fixed(s.after.ci95_high(), 2),
        ]);
        summary.push(row);
    }
    Some((
        vec![raw, summary],
        markdown(sweep, spec, &sweep.points, &summaries),
    ))
}

fn share_pct(s: &Recovered) -> f64 {
    if s.seeds == 0 {
        f64::NAN
    } else {
        100.0 * s.recovered as f64 / s.seeds as f64
    }
}

fn markdown(sweep: &Plan, spec: RecoverySpec, points: &[Point], summaries: &[Recovered]) -> String {
    let lag = if spec.lag_s > 0.0 {
        format!(" taken {} s earlier", spec.lag_s)
    } else {
        String::new()
    };
    let thin = if spec.offered_min > 1 {
        format!(
            " (windows with fewer than {} {} prove nothing either way)",
            spec.offered_min,
            spec.reference.name()
        )
    } else {
        String::new()
    };
    let mut md = format!(
        "## Recovery\n\nA run has recovered at the first second, from {after} s on, from which \
         every {window} s window until the end of the run has {goodput} at least {share:.0} % of \
         the {reference} of the same window{lag}{thin}; a run with no such second is stuck. The \
         time to recover is counted from {after} s, over the seeds that recovered (mean ± 95% CI \
         half-width).\n\n\
         | {key} | recovered (seeds) | time to recover (s) |\n|---|---:|---:|\n",
        after = spec.after_s,
        window = spec.window_s,
        goodput = spec.goodput.name(),
        share = spec.share * 100.0,
        reference = spec.reference.name(),
        key = sweep.summary_key_header(),
    );
    for (point, s) in points.iter().zip(summaries) {
        let time = if s.recovered == 0 {
            "stuck".to_string()
        } else {
            pm(s.after, 1.0, 1)
        };
        let _ = writeln!(
            md,
            "| {} | {} of {} | {} |",
            sweep.label(point),
            s.recovered,
            s.seeds,
            time
        );
    }
    md
}
