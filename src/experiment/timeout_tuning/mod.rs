//! Timeout tuning: how long should one downstream attempt be allowed?
//!
//! Against a downstream with a heavy latency tail, a short per-attempt
//! timeout cuts the tail short and retries, but the call it gave up on is
//! usually still running, and when it lands its side effect happens anyway:
//! unless the downstream deduplicates by idempotency key, the retry then
//! does the same work twice. A long timeout retries less but lets the slow
//! tail through to the client and holds a worker all that time. This
//! experiment runs one scenario per timeout, once with a downstream that
//! ignores the key and once with one that honours it; with the same seeds
//! both see exactly the same calls, so they differ only in duplicates.

mod report;

use super::definition::{Checks, DefinitionErrors};
use super::knobs;
use super::metrics::Metric;
use super::registry::{Context, Experiment, ExperimentError, Outputs};
use super::scenario_runs::{self, defined_if, ratio};
use crate::sim::{Scenario, SimResult};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The `timeout-tuning` experiment.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeoutTuning;

/// Longest per-attempt timeout a definition may sweep: an hour.
const TIMEOUT_MS_MAX: i64 = 3_600_000;

impl Experiment for TimeoutTuning {
    fn name(&self) -> &'static str {
        "timeout-tuning"
    }

    fn description(&self) -> &'static str {
        "Per-attempt timeout against a heavy-tailed downstream: success rate, latency, retries \
         and duplicate side effects, with and without the downstream honouring idempotency keys."
    }

    fn default_definition(&self) -> &'static str {
        include_str!("../../../experiments/timeout-tuning.toml")
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, ExperimentError> {
        let options = validate(ctx)?;
        let points = options.points();
        let trials = scenario_runs::run(
            ctx,
            "timeout-tuning",
            ctx.seeds(),
            &points,
            |point| scenario_for(point, &options.scenario),
            None,
            |_, result| outcome(&result),
        )?;
        let mut outputs = Outputs {
            options: serde_json::to_value(&options)?,
            ..Outputs::default()
        };
        report::append(&mut outputs, &options, &points, &trials);
        Ok(outputs)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    timeouts: RawTimeouts,
    scenario: Spanned<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    attempt_timeouts_ms: Spanned<Vec<Spanned<i64>>>,
    downstream_honours_key: Spanned<Vec<Spanned<bool>>>,
}

/// Every resolved option (written to `meta.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeoutOptions {
    /// Per-attempt timeouts, ascending.
    pub attempt_timeouts_ms: Vec<u64>,
    /// Whether the downstream deduplicates by idempotency key; `false` first.
    pub downstream_honours_key: Vec<bool>,
    /// Run once per (timeout, key handling), with
    /// `relay.retry.attempt_timeout_ms` and
    /// `downstream.honours_idempotency_key` replaced.
    pub scenario: Scenario,
}

/// One parameter set: a timeout and how the downstream treats keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutPoint {
    pub attempt_timeout_ms: u64,
    pub honours_key: bool,
}

impl TimeoutOptions {
    /// Timeouts ascending; for each, key ignored before key honoured.
    pub fn points(&self) -> Vec<TimeoutPoint> {
        self.attempt_timeouts_ms
            .iter()
            .flat_map(|&attempt_timeout_ms| {
                self.downstream_honours_key
                    .iter()
                    .map(move |&honours_key| TimeoutPoint {
                        attempt_timeout_ms,
                        honours_key,
                    })
            })
            .collect()
    }
}

fn validate(ctx: &Context<'_>) -> Result<TimeoutOptions, DefinitionErrors> {
    ctx.options(|raw: RawDefinition, checks: &mut Checks<'_>| {
        let field = "timeouts.attempt_timeouts_ms";
        let options = TimeoutOptions {
            attempt_timeouts_ms: knobs::whole_numbers(
                &raw.timeouts.attempt_timeouts_ms,
                field,
                1..=TIMEOUT_MS_MAX,
                checks,
            ),
            downstream_honours_key: knobs::flags(
                &raw.timeouts.downstream_honours_key,
                "timeouts.downstream_honours_key",
                checks,
            ),
            scenario: scenario_runs::check(&raw.scenario, "scenario", checks),
        };
        scenario_runs::check_points(
            &options.points(),
            |p| scenario_for(p, &options.scenario),
            field,
            raw.timeouts.attempt_timeouts_ms.span(),
            checks,
        );
        options
    })
}

/// The base scenario with this timeout and key handling.
fn scenario_for(point: &TimeoutPoint, base: &Scenario) -> Scenario {
    let mut scenario = base.clone();
    let keys = if point.honours_key {
        "key-honoured"
    } else {
        "key-ignored"
    };
    scenario.name = format!("{}-{}ms-{keys}", base.name, point.attempt_timeout_ms);
    scenario.relay.retry.attempt_timeout_ms = point.attempt_timeout_ms as f64;
    scenario.downstream.honours_idempotency_key = point.honours_key;
    scenario
}

/// What one run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeoutOutcome {
    pub requests: u64,
    pub accepted: u64,
    pub succeeded: u64,
    pub dead_lettered: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub relay_retries: u64,
    pub downstream_calls: u64,
    /// Answers to attempts that had already timed out: calls that went on
    /// running after the relay gave up on them.
    pub late_results: u64,
    pub duplicate_side_effects: u64,
}

fn outcome(result: &SimResult) -> TimeoutOutcome {
    let s = &result.summary;
    TimeoutOutcome {
        requests: s.arrivals,
        accepted: s.accepted,
        succeeded: s.succeeded,
        dead_lettered: s.dead_lettered,
        latency_p50_ms: defined_if(s.latency.count, s.latency.p50_ms),
        latency_p99_ms: defined_if(s.latency.count, s.latency.p99_ms),
        relay_retries: s.relay_retries,
        downstream_calls: s.downstream_calls,
        late_results: s.late_results,
        duplicate_side_effects: s.duplicate_side_effects,
    }
}

/// What every run reports, in column order.
pub const METRICS: [Metric<TimeoutOutcome>; 11] = [
    Metric {
        name: "success_pct",
        decimals: 2,
        value: |o| 100.0 * ratio(o.succeeded, o.accepted),
    },
    Metric {
        name: "dead_lettered",
        decimals: 0,
        value: |o| o.dead_lettered as f64,
    },
    Metric {
        name: "latency_p50_ms",
        decimals: 2,
        value: |o| o.latency_p50_ms,
    },
    Metric {
        name: "latency_p99_ms",
        decimals: 2,
        value: |o| o.latency_p99_ms,
    },
    Metric {
        name: "relay_retries",
        decimals: 0,
        value: |o| o.relay_retries as f64,
    },
    Metric {
        name: "retries_per_100_requests",
        decimals: 2,
        value: |o| 100.0 * ratio(o.relay_retries, o.requests),
    },
    Metric {
        name: "downstream_calls",
        decimals: 0,
        value: |o| o.downstream_calls as f64,
    },
    Metric {
        name: "late_results",
        decimals: 0,
        value: |o| o.late_results as f64,
    },
    Metric {
        name: "late_results_per_100_requests",
        decimals: 2,
        value: |o| 100.0 * ratio(o.late_results, o.requests),
    },
    Metric {
        name: "duplicate_side_effects",
        decimals: 0,
        value: |o| o.duplicate_side_effects as f64,
    },
    Metric {
        name: "duplicates_per_100_requests",
        decimals: 2,
        value: |o| 100.0 * ratio(o.duplicate_side_effects, o.requests),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_pair_every_timeout_with_every_key_handling() {
        let options = TimeoutOptions {
            attempt_timeouts_ms: vec![1000, 5000],
            downstream_honours_key: vec![false, true],
            scenario: Scenario::from_toml(
                "name = \"b\"\n[[clients]]\nkind = \"open-loop\"\nper_s = 1\nrequests_max = 1\n",
                "inline",
            )
            .expect("valid"),
        };
        let points = options.points();
        assert_eq!(points.len(), 4);
        assert_eq!(
            points[1],
            TimeoutPoint {
                attempt_timeout_ms: 1000,
                honours_key: true
            }
        );
        let s = scenario_for(&points[1], &options.scenario);
        assert_eq!(s.relay.retry.attempt_timeout_ms, 1000.0);
        assert!(s.downstream.honours_idempotency_key);
        assert_eq!(s.name, "b-1000ms-key-honoured");
    }
}
