//! Queue sizing: how big should the waiting room in front of the workers be?
//!
//! A bounded queue trades refusals for waiting. Too small, and a burst the
//! workers would have absorbed a moment later is refused with 429s; too
//! large, and every request is accepted but waits so long that it is late
//! (the client has given up, or the answer is useless), while the queue
//! holds memory for all of them. This experiment runs one spike scenario
//! with several queue capacities and measures both sides: 429s and requests
//! given up, latency, accepted jobs that miss their deadline, and the most
//! bytes the queue actually held (sampled from the relay's structures after
//! every event).

mod report;

use super::definition::{Checks, DefinitionErrors};
use super::knobs;
use super::metrics::Metric;
use super::registry::{Context, Experiment, ExperimentError, Outputs};
use super::scenario_runs::{self, defined_if, ratio};
use crate::sim::{Scenario, SimResult};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The `queue-sizing` experiment.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueSizing;

/// Largest capacity a definition may sweep (the relay's own limit).
const CAPACITY_MAX: i64 = 10_000_000;

impl Experiment for QueueSizing {
    fn name(&self) -> &'static str {
        "queue-sizing"
    }

    fn description(&self) -> &'static str {
        "Queue capacity under a spike: 429s, latency, accepted jobs that miss their deadline, \
         and the most bytes the queue held, per capacity."
    }

    fn default_definition(&self) -> &'static str {
        include_str!("../../../experiments/queue-sizing.toml")
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, ExperimentError> {
        let options = validate(ctx)?;
        let trials = scenario_runs::run(
            ctx,
            "queue-sizing",
            ctx.seeds(),
            &options.capacities,
            |&capacity| scenario_for(capacity, &options.scenario),
            None,
            |_, result| outcome(&result),
        )?;
        let mut outputs = Outputs {
            options: serde_json::to_value(&options)?,
            ..Outputs::default()
        };
        report::append(&mut outputs, &options, &trials);
        Ok(outputs)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    sizing: RawSizing,
    scenario: Spanned<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSizing {
    capacities: Spanned<Vec<Spanned<i64>>>,
}

/// Every resolved option (written to `meta.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueSizingOptions {
    /// Queue capacities, ascending.
    pub capacities: Vec<u64>,
    /// Run once per capacity, with `relay.queue.capacity` replaced.
    pub scenario: Scenario,
}

fn validate(ctx: &Context<'_>) -> Result<QueueSizingOptions, DefinitionErrors> {
    ctx.options(|raw: RawDefinition, checks: &mut Checks<'_>| {
        let field = "sizing.capacities";
        let capacities =
            knobs::whole_numbers(&raw.sizing.capacities, field, 1..=CAPACITY_MAX, checks);
        let scenario = scenario_runs::check(&raw.scenario, "scenario", checks);
        checks.check(
            scenario.deadline_ms.is_some(),
            "scenario.deadline_ms",
            raw.scenario.span(),
            || {
                "set a deadline: late accepted jobs are half of what this experiment measures"
                    .to_string()
            },
        );
        scenario_runs::check_points(
            &capacities,
            |&c| scenario_for(c, &scenario),
            field,
            raw.sizing.capacities.span(),
            checks,
        );
        QueueSizingOptions {
            capacities,
            scenario,
        }
    })
}

/// The base scenario with a queue of `capacity`.
fn scenario_for(capacity: u64, base: &Scenario) -> Scenario {
    let mut scenario = base.clone();
    scenario.name = format!("{}-queue-{capacity}", base.name);
    scenario.relay.queue.capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
    scenario
}

/// What one run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueOutcome {
    pub sends: u64,
    pub shed_429: u64,
    pub accepted: u64,
    /// Logical requests whose client gave up after its last send.
    pub requests: u64,
    pub requests_abandoned: u64,
    pub queue_bytes_max: u64,
    pub queue_depth_max: u64,
    /// Accepted → success, per job.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// First send → success, per logical request: what the client waited,
    /// 429s and backoff included.
    pub client_latency_p99_ms: f64,
    /// Accepted jobs that succeeded later than the scenario's deadline.
    pub deadline_missed: u64,
}

fn outcome(result: &SimResult) -> QueueOutcome {
    let s = &result.summary;
    QueueOutcome {
        sends: s.sends,
        shed_429: s.shed_429,
        accepted: s.accepted,
        requests: s.arrivals,
        requests_abandoned: s.client_abandoned,
        queue_bytes_max: s.queue_bytes_max,
        queue_depth_max: s.queue_depth_max,
        latency_p50_ms: defined_if(s.latency.count, s.latency.p50_ms),
        latency_p99_ms: defined_if(s.latency.count, s.latency.p99_ms),
        client_latency_p99_ms: defined_if(s.client_latency.count, s.client_latency.p99_ms),
        deadline_missed: s.deadline_missed,
    }
}

/// What every run reports, in column order.
pub const METRICS: [Metric<QueueOutcome>; 11] = [
    Metric {
        name: "sends",
        decimals: 0,
        value: |o| o.sends as f64,
    },
    Metric {
        name: "shed_429",
        decimals: 0,
        value: |o| o.shed_429 as f64,
    },
    Metric {
        name: "shed_429_pct",
        decimals: 2,
        value: |o| 100.0 * ratio(o.shed_429, o.sends),
    },
    Metric {
        name: "requests_abandoned_pct",
        decimals: 2,
        value: |o| 100.0 * ratio(o.requests_abandoned, o.requests),
    },
    Metric {
        name: "queue_bytes_max",
        decimals: 0,
        value: |o| o.queue_bytes_max as f64,
    },
    Metric {
        name: "queue_depth_max",
        decimals: 0,
        value: |o| o.queue_depth_max as f64,
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
        name: "client_latency_p99_ms",
        decimals: 2,
        value: |o| o.client_latency_p99_ms,
    },
    Metric {
        name: "deadline_missed",
        decimals: 0,
        value: |o| o.deadline_missed as f64,
    },
    Metric {
        name: "deadline_missed_pct",
        decimals: 2,
        value: |o| 100.0 * ratio(o.deadline_missed, o.accepted),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_capacity_changes() {
        let base = Scenario::from_toml(
            "name = \"b\"\n[[clients]]\nkind = \"open-loop\"\nper_s = 1\nrequests_max = 1\n",
            "inline",
        )
        .expect("valid");
        let s = scenario_for(1000, &base);
        assert_eq!(s.relay.queue.capacity, 1000);
        assert_eq!(s.name, "b-queue-1000");
        let mut back = s.clone();
        back.relay.queue.capacity = base.relay.queue.capacity;
        back.name = base.name.clone();
        assert_eq!(back, base);
    }
}
