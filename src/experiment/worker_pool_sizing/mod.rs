//! Worker pool sizing: how many downstream calls should the relay make at
//! once?
//!
//! The pool is the relay's service capacity: too few workers and the queue
//! fills, latency is mostly waiting and the excess is refused with 429s;
//! more workers raise throughput until the offered load is served, and
//! beyond that only raise the concurrency the downstream has to bear, which
//! costs latency once the downstream itself is past its own limit. This
//! experiment runs one steady open-loop scenario per pool size.

mod report;

use super::definition::{Checks, DefinitionErrors};
use super::knobs;
use super::metrics::Metric;
use super::registry::{Context, Experiment, ExperimentError, Outputs};
use super::scenario_runs::{self, defined_if, ratio};
use crate::relay::WORKERS_LIMIT;
use crate::sim::{Scenario, SimResult};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The `worker-pool-sizing` experiment.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerPoolSizing;

impl Experiment for WorkerPoolSizing {
    fn name(&self) -> &'static str {
        "worker-pool-sizing"
    }

    fn description(&self) -> &'static str {
        "Worker pool size under steady load: throughput, latency, downstream concurrency and \
         429s, per number of workers."
    }

    fn default_definition(&self) -> &'static str {
        include_str!("../../../experiments/worker-pool-sizing.toml")
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, ExperimentError> {
        let options = validate(ctx)?;
        let trials = scenario_runs::run(
            ctx,
            "worker-pool-sizing",
            ctx.seeds(),
            &options.workers,
            |&workers| scenario_for(workers, &options.scenario),
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
    pool: RawPool,
    scenario: Spanned<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    workers: Spanned<Vec<Spanned<i64>>>,
}

/// Every resolved option (written to `meta.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolOptions {
    /// Pool sizes, ascending.
    pub workers: Vec<u64>,
    /// Run once per pool size, with `relay.workers` replaced. Needs a
    /// horizon: throughput is successes per second of it.
    pub scenario: Scenario,
}

fn validate(ctx: &Context<'_>) -> Result<PoolOptions, DefinitionErrors> {
    ctx.options(|raw: RawDefinition, checks: &mut Checks<'_>| {
        let field = "pool.workers";
        let limit = i64::try_from(WORKERS_LIMIT).unwrap_or(i64::MAX);
        let workers = knobs::whole_numbers(&raw.pool.workers, field, 1..=limit, checks);
        let scenario = scenario_runs::check(&raw.scenario, "scenario", checks);
        checks.check(
            scenario.horizon_s > 0.0,
            "scenario.horizon_s",
            raw.scenario.span(),
            || "set a horizon: throughput is successes per second of it".to_string(),
        );
        scenario_runs::check_points(
            &workers,
            |&w| scenario_for(w, &scenario),
            field,
            raw.pool.workers.span(),
            checks,
        );
        PoolOptions { workers, scenario }
    })
}

/// The base scenario with a pool of `workers`.
fn scenario_for(workers: u64, base: &Scenario) -> Scenario {
    let mut scenario = base.clone();
    scenario.name = format!("{}-{workers}-workers", base.name);
    scenario.relay.workers = usize::try_from(workers).unwrap_or(usize::MAX);
    scenario
}

/// What one run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolOutcome {
    pub simulated_s: f64,
    pub requests: u64,
    pub sends: u64,
    pub succeeded: u64,
    pub shed_429: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub downstream_concurrency_max: u64,
    /// Time-average jobs in the relay (queued, in flight, backing off).
    pub jobs_in_relay_avg: f64,
}

fn outcome(result: &SimResult) -> PoolOutcome {
    let s = &result.summary;
    PoolOutcome {
        simulated_s: s.simulated_s,
        requests: s.arrivals,
        sends: s.sends,
        succeeded: s.succeeded,
        shed_429: s.shed_429,
        latency_p50_ms: defined_if(s.latency.count, s.latency.p50_ms),
        latency_p99_ms: defined_if(s.latency.count, s.latency.p99_ms),
        downstream_concurrency_max: s.downstream_concurrency_max,
        jobs_in_relay_avg: s.live_jobs_mean,
    }
}

fn per_s(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        f64::NAN
    }
}

/// What every run reports, in column order.
pub const METRICS: [Metric<PoolOutcome>; 7] = [
    Metric {
        name: "offered_per_s",
        decimals: 2,
        value: |o| per_s(o.requests, o.simulated_s),
    },
    Metric {
        name: "throughput_per_s",
        decimals: 2,
        value: |o| per_s(o.succeeded, o.simulated_s),
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
        name: "downstream_concurrency_max",
        decimals: 0,
        value: |o| o.downstream_concurrency_max as f64,
    },
    Metric {
        name: "jobs_in_relay_avg",
        decimals: 3,
        value: |o| o.jobs_in_relay_avg,
    },
    Metric {
        name: "shed_429_pct",
        decimals: 2,
        value: |o| 100.0 * ratio(o.shed_429, o.sends),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pool_size_changes() {
        let base = Scenario::from_toml(
            "name = \"b\"\nhorizon_s = 1\n[[clients]]\nkind = \"open-loop\"\nper_s = 1\n",
            "inline",
        )
        .expect("valid");
        let s = scenario_for(20, &base);
        assert_eq!((s.relay.workers, s.name.as_str()), (20, "b-20-workers"));
        assert_eq!(s.clients, base.clients);
        assert!(per_s(3, 0.0).is_nan());
        assert_eq!(per_s(30, 2.0), 15.0);
    }
}
