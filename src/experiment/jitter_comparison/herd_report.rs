//! Tables, charts and headline text of part (b).

use super::herd::{HerdOutcome, BUCKET_MS};
use super::options::RelayOptions;
use super::strategy::Strategy;
use crate::experiment::chart::{Legend, LineChart, Scale, Shade};
use crate::experiment::metrics::{self, pm, Column, PointSummary};
use crate::experiment::over_time::{self, OverTime};
use crate::experiment::registry::Outputs;
use crate::experiment::seeds::SeedSet;
use crate::experiment::sweep::{by_point, Trial};
use crate::experiment::table::{Cell, Table};
use crate::sim::clients::ClientsConfig;
use crate::sim::downstream::OutageMode;
use crate::sim::Scenario;
use std::fmt::Write as _;

/// What every run reports, in column order.
pub const METRICS: [Column<HerdOutcome>; 9] = [
    Column::new("downstream_calls", 0, |o| o.downstream_calls as f64),
    Column::new("calls_per_100ms_max", 0, |o| {
        f64::from(o.calls_per_100ms_max)
    }),
    Column::new("drain_s", 3, |o| o.drain_s),
    Column::new("completion_p99_ms", 1, |o| o.completion_p99_ms),
    Column::new("idle_after_outage_s", 1, |o| o.idle_after_outage_s),
    Column::new("shed_429", 0, |o| o.shed_429 as f64),
    Column::new("duplicate_side_effects", 0, |o| {
        o.duplicate_side_effects as f64
    }),
    Column::new("clients_succeeded", 0, |o| o.clients_succeeded as f64),
    Column::new("clients_abandoned", 0, |o| o.clients_abandoned as f64),
];

// Indices into [`METRICS`] (and into the summaries made with it).
const DOWNSTREAM_CALLS: usize = 0;
const CALLS_PER_100MS_MAX: usize = 1;
const DRAIN_S: usize = 2;
const COMPLETION_P99_MS: usize = 3;
const IDLE_AFTER_OUTAGE_S: usize = 4;
const SHED_429: usize = 5;
const DUPLICATE_SIDE_EFFECTS: usize = 6;
const CLIENTS_SUCCEEDED: usize = 7;
const CLIENTS_ABANDONED: usize = 8;

/// Adds part (b)'s tables, charts and headline text to `outputs`.
pub(super) fn append(
    outputs: &mut Outputs,
    options: &RelayOptions,
    seeds: &SeedSet,
    trials: &[Trial<HerdOutcome>],
) {
    let strategies = &options.strategies[..];
    let outage_end_s = options.outage_end_s;
    let keys = |s: &Strategy| vec![Cell::text(s.name())];
    let summaries = metrics::summarize(strategies, trials, &METRICS);
    outputs.tables.push(metrics::raw_table(
        "relay",
        "one row per strategy and seed: clients retrying into the relay through an outage",
        &["strategy"],
        keys,
        strategies,
        trials,
        &METRICS,
    ));
    outputs.tables.push(metrics::summary_table(
        "relay_summary",
        "per strategy: mean and 95% CI (Student t) over the seeds of every relay.csv column",
        &["strategy"],
        keys,
        &summaries,
        &METRICS,
    ));
    let over_time = calls_over_time(strategies, trials);
    outputs.tables.push(over_time_table(&over_time));
    let outage = options
        .scenario
        .downstream
        .outages
        .first()
        .map(|o| (o.start_s, o.end_s));
    outputs
        .charts
        .push(over_time_chart(&over_time, 0.0, outage));
    outputs
        .charts
        .push(over_time_chart(&over_time, outage_end_s, None));
    outputs
        .summary_markdown
        .push_str(&headline(&summaries, options, seeds));
}

/// Downstream calls per bucket, per strategy, over the seeds.
fn calls_over_time(strategies: &[Strategy], trials: &[Trial<HerdOutcome>]) -> Vec<OverTime> {
    let runs: Vec<Vec<&[u32]>> = by_point(trials, strategies.len())
        .into_iter()
        .map(|seeds| seeds.iter().map(|o| &o.calls_per_bucket[..]).collect())
        .collect();
    over_time::over_seeds(
        &runs,
        strategies.iter().map(|s| s.name().to_string()).collect(),
        strategies
            .iter()
            .map(|s| vec![Cell::text(s.name())])
            .collect(),
    )
}

fn over_time_table(series: &[OverTime]) -> Table {
    over_time::table(
        "relay_calls_over_time",
        "downstream calls started per 100 ms bucket, per strategy: mean and 95% CI over the seeds",
        &["strategy"],
        series,
        BUCKET_MS,
    )
}

/// The mean calls per bucket from `from_s` on, one line per strategy. Drawn
/// twice: the whole run, where the retry storm against the failing
/// downstream sets the scale, and from the moment it is back, where the
/// scale is the relay's own throughput and the herd's waves show. `outage`
/// is drawn as a shaded band.
fn over_time_chart(over_time: &[OverTime], from_s: f64, outage: Option<(f64, f64)>) -> LineChart {
    let whole = from_s <= 0.0;
    let series = over_time::lines(over_time, BUCKET_MS, from_s);
    let (name, title, description) = if whole {
        (
            "relay_calls_over_time",
            "Downstream calls per 100 ms: outage, then recovery",
            "downstream calls per 100 ms over the whole run, one line per strategy (mean over seeds)",
        )
    } else {
        (
            "relay_calls_after_outage",
            "Downstream calls per 100 ms once the downstream is back",
            "the same from the end of the outage on, where the herd's waves show",
        )
    };
    LineChart {
        name: name.to_string(),
        description: description.to_string(),
        title: title.to_string(),
        x_label: "time (s)".to_string(),
        y_label: "downstream calls per 100 ms (mean over seeds)".to_string(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        markers: false,
        // After the outage, exponential backoff's last waves reach the right
        // edge; the top middle is the one corner the lines leave free.
        legend: if whole {
            Legend::UpperRight
        } else {
            Legend::UpperMiddle
        },
        series,
        shade: outage.map(|(from, to)| Shade {
            from,
            to,
            label: "downstream down".to_string(),
        }),
    }
}

fn headline(
    summaries: &[PointSummary<Strategy>],
    options: &RelayOptions,
    seeds: &SeedSet,
) -> String {
    let mut md = String::from("## Through the relay (part b)\n\n");
    let _ = writeln!(
        md,
        "The definition's `[relay.scenario]` ({}), run once per strategy with that strategy as \
         the backoff of the relay's retries and of every client. Time to drain runs from the \
         end of the outage until the last request has its final answer. Seeds: {} (at most \
         `relay.seeds_max`); means over seeds, ± the 95% CI half-width.\n",
        scenario_facts(&options.scenario),
        seeds.describe()
    );
    md.push_str(
        "| strategy | downstream calls | peak calls per 100 ms | time to drain (s) | \
         downstream idle meanwhile (s) | p99 completion (s) | 429s | duplicate side effects | \
         clients served |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in summaries {
        let served = s.get(CLIENTS_SUCCEEDED).mean;
        let all = served + s.get(CLIENTS_ABANDONED).mean;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} % |",
            s.point.name(),
            pm(s.get(DOWNSTREAM_CALLS), 1.0, 0),
            pm(s.get(CALLS_PER_100MS_MAX), 1.0, 0),
            pm(s.get(DRAIN_S), 1.0, 2),
            pm(s.get(IDLE_AFTER_OUTAGE_S), 1.0, 1),
            pm(s.get(COMPLETION_P99_MS), 1e-3, 2),
            pm(s.get(SHED_429), 1.0, 0),
            pm(s.get(DUPLICATE_SIDE_EFFECTS), 1.0, 0),
            100.0 * served / all,
        );
    }
    md.push('\n');
    md.push_str(&extremes(summaries));
    md
}

/// The scenario in one phrase, read from it so that an edited copy is
/// described truly.
fn scenario_facts(scenario: &Scenario) -> String {
    let clients: u64 = scenario
        .clients
        .iter()
        .map(|c| match c {
            ClientsConfig::ClosedLoop {
                population,
                requests_per_client,
                ..
            } => u64::from(*population) * u64::from(*requests_per_client),
            ClientsConfig::OpenLoop { requests_max, .. } => requests_max.unwrap_or(0),
        })
        .sum();
    let outages: Vec<String> = scenario
        .downstream
        .outages
        .iter()
        .map(|o| {
            let mode = match o.mode {
                OutageMode::FailFast => "fail-fast",
                OutageMode::Hang => "hanging",
            };
            format!("{}–{} s, {mode}", o.start_s, o.end_s)
        })
        .collect();
    let relay = &scenario.relay;
    format!(
        "{clients} logical requests; {} workers, a queue of {}, {} relay attempts per job; \
         client sends per request: {}; outage {}; {}",
        relay.workers,
        relay.queue.capacity,
        relay.retry.attempts_max,
        scenario
            .clients
            .iter()
            .map(|c| c.retry().attempts_max.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        outages.join(" and "),
        if relay.breaker.is_some() {
            "with a circuit breaker"
        } else {
            "no circuit breaker"
        }
    )
}

/// What the numbers say, read off them whatever the definition: which
/// strategy drained slowest and fastest, which left the downstream idle
/// longest, which dropped clients, which hit the downstream hardest.
fn extremes(summaries: &[PointSummary<Strategy>]) -> String {
    let mut md = String::new();
    // A strategy whose clients gave up has little left to drain: rank only
    // those that served nearly everyone.
    let served: Vec<PointSummary<Strategy>> = summaries
        .iter()
        .filter(|s| {
            let ok = s.get(CLIENTS_SUCCEEDED).mean;
            ok >= 0.99 * (ok + s.get(CLIENTS_ABANDONED).mean)
        })
        .cloned()
        .collect();
    let drain = ranked(&served, DRAIN_S);
    if let (Some(fast), Some(slow)) = (drain.first(), drain.last()) {
        let idle = summaries
            .iter()
            .find(|s| s.point == slow.1)
            .map_or(f64::NAN, |s| s.get(IDLE_AFTER_OUTAGE_S).mean);
        let _ = writeln!(
            md,
            "- Among the strategies that served at least 99 % of the requests, slowest to \
             drain: **{}** ({:.2} s, of which the downstream sat idle {:.1} s between waves of \
             retries); fastest: **{}** ({:.2} s).",
            slow.1.name(),
            slow.0,
            idle,
            fast.1.name(),
            fast.0
        );
    }
    if let Some(worst) = ranked(summaries, CLIENTS_ABANDONED)
        .last()
        .filter(|w| w.0 > 0.0)
    {
        let _ = writeln!(
            md,
            "- Most requests given up: **{}** ({:.0} per run). A client that gives up no longer \
             waits, so a backlog can also \"drain\" by being dropped: read time to drain with \
             the share of clients served.",
            worst.1.name(),
            worst.0
        );
    }
    let calls = ranked(summaries, CALLS_PER_100MS_MAX);
    if let (Some(low), Some(high)) = (calls.first(), calls.last()) {
        let busiest: Vec<&str> = calls
            .iter()
            .filter(|(v, _)| *v >= 0.995 * high.0)
            .map(|(_, s)| s.name())
            .collect();
        let _ = writeln!(
            md,
            "- Busiest 100 ms for the downstream: {:.0} calls ({}); least: {:.0} ({}). During \
             the outage each call fails at once, so the relay's retries run as fast as its \
             workers allow unless the backoff holds them back.",
            high.0,
            busiest.join(", "),
            low.0,
            low.1.name()
        );
    }
    if summaries
        .iter()
        .all(|s| s.get(DUPLICATE_SIDE_EFFECTS).mean == 0.0)
    {
        md.push_str(
            "- No duplicate side effects for any strategy: a failed call here fails before it \
             does anything, and a client's retry starts a new job only after the previous one \
             has ended, because the relay holds the idempotency key while a job lives.\n",
        );
    }
    md
}

/// `(mean of metric, strategy)` for every strategy where it is defined,
/// lowest first; ties in strategy order.
fn ranked(summaries: &[PointSummary<Strategy>], metric: usize) -> Vec<(f64, Strategy)> {
    let mut ranked: Vec<(f64, Strategy)> = summaries
        .iter()
        .map(|s| (s.get(metric).mean, s.point))
        .filter(|(v, _)| v.is_finite())
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_index_names_its_column() {
        let named = [
            (DOWNSTREAM_CALLS, "downstream_calls"),
            (CALLS_PER_100MS_MAX, "calls_per_100ms_max"),
            (DRAIN_S, "drain_s"),
            (COMPLETION_P99_MS, "completion_p99_ms"),
            (IDLE_AFTER_OUTAGE_S, "idle_after_outage_s"),
            (SHED_429, "shed_429"),
            (DUPLICATE_SIDE_EFFECTS, "duplicate_side_effects"),
            (CLIENTS_SUCCEEDED, "clients_succeeded"),
            (CLIENTS_ABANDONED, "clients_abandoned"),
        ];
        for (index, name) in named {
            assert_eq!(METRICS[index].name, name);
        }
    }
}
