//! Tables, charts and headline text of part (a).

use super::contention::Outcome;
use super::strategy::Strategy;
use super::ContentionPoint;
use crate::experiment::chart::{ChartPoint, Legend, LineChart, Scale, Series};
use crate::experiment::registry::Outputs;
use crate::experiment::stats::Estimate;
use crate::experiment::sweep::{by_point, Trial};
use crate::experiment::table::{Cell, Table};
use std::fmt::Write as _;

/// Columns of the raw table, exactly.
pub const RAW_COLUMNS: [&str; 5] = ["strategy", "clients", "seed", "calls", "completion_ms"];

/// Client counts from which the study's shape is expected to be clear.
pub const SHAPE_CLIENTS_MIN: u32 = 50;

/// Mean and spread over the seeds of one parameter set.
#[derive(Clone, Debug)]
struct PointSummary {
    point: ContentionPoint,
    runs: usize,
    unfinished: usize,
    calls: Estimate,
    /// Over finished runs only.
    completion_ms: Estimate,
}

/// Adds part (a)'s tables, charts and headline text to `outputs`.
pub(super) fn append(outputs: &mut Outputs, points: &[ContentionPoint], trials: &[Trial<Outcome>]) {
    let summaries = summarize(points, trials);
    outputs.tables.push(raw_table(points, trials));
    outputs.tables.push(summary_table(&summaries));
    outputs.charts.push(chart(
        &summaries,
        "contention_calls",
        "Write calls until every client has written",
        "write calls per run (mean, 95% CI)",
        Scale::Linear,
        |s| s.calls,
    ));
    outputs.charts.push(chart(
        &summaries,
        "contention_completion",
        "Time until the last client has written",
        "completion time (ms, log scale; mean, 95% CI)",
        // Exponential without jitter is ten times slower than the rest; a
        // log axis keeps the jittered strategies apart.
        Scale::Log,
        |s| s.completion_ms,
    ));
    outputs.summary_markdown.push_str(&headline(&summaries));
}

fn summarize(points: &[ContentionPoint], trials: &[Trial<Outcome>]) -> Vec<PointSummary> {
    by_point(trials, points.len())
        .into_iter()
        .zip(points)
        .map(|(outcomes, &point)| {
            let calls: Vec<f64> = outcomes.iter().map(|o| o.calls as f64).collect();
            let completion_ms: Vec<f64> = outcomes
                .iter()
                .filter_map(|o| o.completion_ns)
                .map(|ns| ns as f64 / 1e6)
                .collect();
            PointSummary {
                point,
                runs: outcomes.len(),
                unfinished: outcomes.len() - completion_ms.len(),
                calls: Estimate::of(&calls),
                completion_ms: Estimate::of(&completion_ms),
            }
        })
        .collect()
}

fn raw_table(points: &[ContentionPoint], trials: &[Trial<Outcome>]) -> Table {
    let mut table = Table::new(
        "contention",
        "one row per strategy, client count and seed: write calls and completion time \
         (empty if some client gave up)",
        &RAW_COLUMNS,
    );
    for trial in trials {
        let point = points[trial.point];
        table.push(vec![
            Cell::text(point.strategy.name()),
            Cell::count(u64::from(point.clients)),
            Cell::count(trial.seed),
            Cell::count(trial.result.calls),
            trial
                .result
                .completion_ns
                .map_or(Cell::Empty, |ns| Cell::fixed(ns as f64 / 1e6, 3)),
        ]);
    }
    table
}

fn summary_table(summaries: &[PointSummary]) -> Table {
    let mut table = Table::new(
        "contention_summary",
        "per strategy and client count: mean, sd and 95% CI (Student t) of calls and completion",
        &[
            "strategy",
            "clients",
            "seeds",
            "unfinished",
            "calls_mean",
            "calls_sd",
            "calls_ci95_low",
            "calls_ci95_high",
            "completion_ms_mean",
            "completion_ms_sd",
            "completion_ms_ci95_low",
            "completion_ms_ci95_high",
        ],
    );
    for s in summaries {
        let mut row = vec![
            Cell::text(s.point.strategy.name()),
            Cell::count(u64::from(s.point.clients)),
            Cell::count(s.runs as u64),
            Cell::count(s.unfinished as u64),
        ];
        row.extend(estimate_cells(&s.calls, 2));
        row.extend(estimate_cells(&s.completion_ms, 3));
        table.push(row);
    }
    table
}

fn estimate_cells(e: &Estimate, decimals: usize) -> [Cell; 4] {
    [
        Cell::fixed(e.mean, decimals),
        Cell::fixed(e.sd, decimals),
        Cell::fixed(e.ci95_low(), decimals),
        Cell::fixed(e.ci95_high(), decimals),
    ]
}

fn chart(
    summaries: &[PointSummary],
    name: &str,
    title: &str,
    y_label: &str,
    y_scale: Scale,
    metric: impl Fn(&PointSummary) -> Estimate,
) -> LineChart {
    let series = strategies(summaries)
        .into_iter()
        .map(|strategy| Series {
            dots: false,
            name: strategy.name().to_string(),
            points: summaries
                .iter()
                .filter(|s| s.point.strategy == strategy)
                .map(|s| {
                    let e = metric(s);
                    ChartPoint {
                        x: f64::from(s.point.clients),
                        y: e.mean,
                        y_low: e.ci95_low(),
                        y_high: e.ci95_high(),
                    }
                })
                .collect(),
        })
        .collect();
    LineChart {
        name: name.to_string(),
        description: format!("{} vs clients, one line per strategy", title.to_lowercase()),
        title: title.to_string(),
        x_label: "number of clients".to_string(),
        y_label: y_label.to_string(),
        x_scale: Scale::Linear,
        y_scale,
        markers: true,
        legend: Legend::UpperLeft,
        series,
        shade: None,
    }
}

/// Strategies in the order they first appear.
fn strategies(summaries: &[PointSummary]) -> Vec<Strategy> {
    let mut out: Vec<Strategy> = Vec::new();
    for s in summaries {
        if !out.contains(&s.point.strategy) {
            out.push(s.point.strategy);
        }
    }
    out
}

fn headline(summaries: &[PointSummary]) -> String {
    let mut md = String::from("## Contention (part a)\n\n");
    md.push_str(
        "N clients each read one record, then write it back conditionally on the version \
         they read; one write per round wins. A call is one write attempt; completion is \
         when the last client learns its write succeeded. Means over seeds, ± the 95% CI \
         half-width.\n\n",
    );
    let _ = writeln!(md, "| clients | strategy | calls | completion (ms) |");
    let _ = writeln!(md, "|---:|---|---:|---:|");
    for clients in headline_clients(summaries) {
        for s in summaries.iter().filter(|s| s.point.clients == clients) {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} ± {:.0} | {:.0} ± {:.0} |",
                clients,
                s.point.strategy.name(),
                s.calls.mean,
                s.calls.ci95_half,
                s.completion_ms.mean,
                s.completion_ms.ci95_half
            );
        }
    }
    let unfinished: usize = summaries.iter().map(|s| s.unfinished).sum();
    let _ = writeln!(
        md,
        "\nRuns in which some client gave up (excluded from completion): {unfinished}.\n"
    );
    md.push_str(&shape_text(summaries));
    md
}

/// Up to three client counts to tabulate: the largest, and those nearest
/// to a half and a quarter of it.
fn headline_clients(summaries: &[PointSummary]) -> Vec<u32> {
    let mut all: Vec<u32> = summaries.iter().map(|s| s.point.clients).collect();
    all.sort_unstable();
    all.dedup();
    let Some(&largest) = all.last() else {
        return Vec::new();
    };
    let nearest = |target: u32| {
        all.iter()
            .copied()
            .min_by_key(|&n| (n.abs_diff(target), n))
            .unwrap_or(largest)
    };
    let mut picked = vec![nearest(largest / 4), nearest(largest / 2), largest];
    picked.dedup();
    picked
}

fn shape_text(summaries: &[PointSummary]) -> String {
    let mut md = format!("### Expected shape (at {SHAPE_CLIENTS_MIN}+ clients)\n\n");
    for claim in shape_claims(summaries) {
        let _ = writeln!(md, "- {}: **{}**", claim.statement, claim.verdict);
    }
    md
}

/// One published observation and whether this run reproduces it.
struct Claim {
    statement: &'static str,
    verdict: String,
}

fn shape_claims(summaries: &[PointSummary]) -> Vec<Claim> {
    use Strategy::*;
    let calls = |s: &PointSummary| s.calls.mean;
    let completion = |s: &PointSummary| s.completion_ms.mean;
    let backoffs = [Exponential, EqualJitter, FullJitter, DecorrelatedJitter];
    vec![
        Claim {
            statement: "no backoff costs the most calls",
            verdict: verdict(
                summaries,
                &Strategy::ALL,
                &[NoBackoff],
                Extreme::Highest,
                calls,
            ),
        },
        Claim {
            statement: "exponential without jitter takes the longest to finish",
            verdict: verdict(
                summaries,
                &Strategy::ALL,
                &[Exponential],
                Extreme::Highest,
                completion,
            ),
        },
        Claim {
            statement: "full and equal jitter cost the fewest calls",
            verdict: verdict(
                summaries,
                &Strategy::ALL,
                &[FullJitter, EqualJitter],
                Extreme::Lowest,
                calls,
            ),
        },
        Claim {
            statement: "full and decorrelated jitter finish soonest among the backoffs",
            verdict: verdict(
                summaries,
                &backoffs,
                &[FullJitter, DecorrelatedJitter],
                Extreme::Lowest,
                completion,
            ),
        },
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Extreme {
    Highest,
    Lowest,
}

/// Whether, at every client count ≥ [`SHAPE_CLIENTS_MIN`], the `expected`
/// strategies are the `expected.len()` highest (or lowest) of `among` by
/// `metric`. Says which counts break it, or that it could not be checked.
fn verdict(
    summaries: &[PointSummary],
    among: &[Strategy],
    expected: &[Strategy],
    extreme: Extreme,
    metric: impl Fn(&PointSummary) -> f64,
) -> String {
    let mut clients: Vec<u32> = summaries
        .iter()
        .map(|s| s.point.clients)
        .filter(|&n| n >= SHAPE_CLIENTS_MIN)
        .collect();
    clients.sort_unstable();
    clients.dedup();
    let mut checked = 0;
    let mut broken = Vec::new();
    for n in clients {
        let mut ranked: Vec<(f64, Strategy)> = summaries
            .iter()
            .filter(|s| s.point.clients == n && among.contains(&s.point.strategy))
            .map(|s| (metric(s), s.point.strategy))
            .collect();
        if ranked.len() != among.len() || ranked.iter().any(|(v, _)| !v.is_finite()) {
            continue;
        }
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        if extreme == Extreme::Highest {
            ranked.reverse();
        }
        checked += 1;
        if !ranked[..expected.len()]
            .iter()
            .all(|(_, s)| expected.contains(s))
        {
            broken.push(n.to_string());
        }
    }
    match (checked, broken.is_empty()) {
        (0, _) => {
            format!("not checked (needs all these strategies at {SHAPE_CLIENTS_MIN}+ clients)")
        }
        (_, true) => format!("yes, at all {checked} client counts"),
        (_, false) => format!("no, not at {} clients", broken.join(", ")),
    }
}
