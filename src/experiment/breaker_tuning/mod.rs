//! Breaker tuning: what does a circuit breaker buy during a downstream
//! outage?
//!
//! Without a breaker, every job the relay takes during an outage burns all
//! its attempts against a downstream that cannot answer, and is
//! dead-lettered; the clients retry, and the cycle repeats until the
//! downstream is back. A breaker opens after a run of failures (or a high
//! failure ratio), refuses new work with 503 and stops calling, so the
//! downstream sees far fewer calls; how long it stays open decides how soon
//! the relay notices the recovery. This experiment runs one outage scenario
//! with no breaker and with every (trip rule, open duration).

mod report;

use super::catalogue::Metric;
use super::definition::{Checks, DefinitionErrors};
use super::knobs;
use super::registry::{Context, Experiment, ExperimentError, Outputs};
use super::scenario_runs;
use crate::relay::{BreakerConfig, TripConfig};
use crate::sim::Scenario;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The `breaker-tuning` experiment.
#[derive(Clone, Copy, Debug, Default)]
pub struct BreakerTuning;

/// Longest open duration a definition may sweep: an hour.
const OPEN_MS_MAX: i64 = 3_600_000;

impl Experiment for BreakerTuning {
    fn name(&self) -> &'static str {
        "breaker-tuning"
    }

    fn description(&self) -> &'static str {
        "Circuit breaker during a downstream outage: downstream calls, retries, 503s, dead \
         letters and latency, with no breaker and per trip rule and open duration."
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, ExperimentError> {
        let options = validate(ctx)?;
        let points = options.points();
        let trials = scenario_runs::run(
            ctx,
            "breaker-tuning",
            ctx.seeds(),
            &points,
            |point| scenario_for(point, &options),
            None,
            |_, result| result.summary,
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
    breakers: RawBreakers,
    scenario: Spanned<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakers {
    trips: Spanned<Vec<TripConfig>>,
    open_ms: Spanned<Vec<Spanned<i64>>>,
    success_threshold: u32,
    half_open_probes_max: u32,
}

/// Every resolved option (written to `meta.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerOptions {
    /// Trip rules, in the definition's order.
    pub trips: Vec<TripConfig>,
    /// Open durations, ascending.
    pub open_ms: Vec<u64>,
    pub success_threshold: u32,
    pub half_open_probes_max: u32,
    /// Run once with no breaker and once per (trip, open duration), with
    /// `relay.breaker` replaced.
    pub scenario: Scenario,
}

/// One parameter set: no breaker, or a trip rule with an open duration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerPoint {
    /// `None`: no breaker (then `open_ms` is 0).
    pub trip: Option<TripConfig>,
    pub open_ms: u64,
}

impl BreakerPoint {
    /// The trip rule as one word, e.g. `consecutive-failures-5`; `none`
    /// without a breaker.
    pub fn trip_label(&self) -> String {
        self.trip.map_or_else(|| "none".to_string(), trip_label)
    }
}

/// A trip rule as one word, with its parameters.
pub fn trip_label(trip: TripConfig) -> String {
    match trip {
        TripConfig::ConsecutiveFailures { failures } => format!("consecutive-failures-{failures}"),
        TripConfig::FailureRatio {
            ratio,
            window_ms,
            calls_min,
        } => format!("failure-ratio-{ratio}-{window_ms}ms-{calls_min}calls"),
        TripConfig::FailureRatioCount { ratio, calls } => {
            format!("failure-ratio-{ratio}-last-{calls}calls")
        }
    }
}

impl BreakerOptions {
    /// No breaker first; then each trip rule with its open durations
    /// ascending.
    pub fn points(&self) -> Vec<BreakerPoint> {
        let none = BreakerPoint {
            trip: None,
            open_ms: 0,
        };
        std::iter::once(none)
            .chain(self.trips.iter().flat_map(|&trip| {
                self.open_ms.iter().map(move |&open_ms| BreakerPoint {
                    trip: Some(trip),
                    open_ms,
                })
            }))
            .collect()
    }
}

fn validate(ctx: &Context<'_>) -> Result<BreakerOptions, DefinitionErrors> {
    ctx.options(|raw: RawDefinition, checks: &mut Checks<'_>| {
        let field = "breakers.open_ms";
        let trips = raw.breakers.trips.get_ref().clone();
        checks.check(
            !trips.is_empty(),
            "breakers.trips",
            raw.breakers.trips.span(),
            || "give at least one trip rule".to_string(),
        );
        for (i, trip) in trips.iter().enumerate() {
            checks.check(
                !trips[..i].contains(trip),
                "breakers.trips",
                raw.breakers.trips.span(),
                || format!("{} is listed twice", trip_label(*trip)),
            );
        }
        let options = BreakerOptions {
            trips,
            open_ms: knobs::whole_numbers(&raw.breakers.open_ms, field, 1..=OPEN_MS_MAX, checks),
            success_threshold: raw.breakers.success_threshold,
            half_open_probes_max: raw.breakers.half_open_probes_max,
            scenario: scenario_runs::check(&raw.scenario, "scenario", checks),
        };
        checks.check(
            options.scenario.relay.breaker.is_none(),
            "scenario.relay.breaker",
            raw.scenario.span(),
            || "leave it out: each run sets it from [breakers]".to_string(),
        );
        scenario_runs::check_points(
            &options.points(),
            |p| scenario_for(p, &options),
            "breakers",
            raw.breakers.trips.span(),
            checks,
        );
        options
    })
}

/// The base scenario with the point's breaker (or none).
fn scenario_for(point: &BreakerPoint, options: &BreakerOptions) -> Scenario {
    let mut scenario = options.scenario.clone();
    scenario.relay.breaker = point.trip.map(|trip| BreakerConfig {
        trip,
        success_threshold: options.success_threshold,
        open_ms: point.open_ms as f64,
        half_open_probes_max: options.half_open_probes_max,
        ..BreakerConfig::default()
    });
    scenario.name = match point.trip {
        None => format!("{}-no-breaker", options.scenario.name),
        Some(_) => format!(
            "{}-{}-open-{}ms",
            options.scenario.name,
            point.trip_label(),
            point.open_ms
        ),
    };
    scenario
}

/// What every run reports, in column order.
pub const METRICS: [Metric; 9] = [
    Metric::DownstreamCalls,
    Metric::RelayRetries,
    Metric::Unavailable503,
    Metric::Shed429,
    Metric::Succeeded,
    Metric::DeadLettered,
    Metric::BreakerTransitions,
    Metric::LatencyP99Ms,
    Metric::ClientLatencyP99Ms,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_breaker_changes() {
        let base = Scenario::from_toml(
            "name = \"b\"\nhorizon_s = 1\n[[clients]]\nkind = \"open-loop\"\nper_s = 1\n",
            "inline",
        )
        .expect("valid");
        let options = BreakerOptions {
            trips: vec![TripConfig::ConsecutiveFailures { failures: 5 }],
            open_ms: vec![1000, 5000],
            success_threshold: 2,
            half_open_probes_max: 1,
            scenario: base.clone(),
        };
        let points = options.points();
        assert_eq!(points.len(), 3);
        let none = scenario_for(&points[0], &options);
        assert_eq!(
            (none.relay.breaker, none.name.as_str()),
            (None, "b-no-breaker")
        );
        let s = scenario_for(&points[2], &options);
        let breaker = s.relay.breaker.expect("a breaker");
        assert_eq!(breaker.open_ms, 5000.0);
        assert_eq!(s.name, "b-consecutive-failures-5-open-5000ms");
        assert_eq!(s.clients, base.clients);
        assert_eq!(
            trip_label(TripConfig::FailureRatio {
                ratio: 0.5,
                window_ms: 2000.0,
                calls_min: 20
            }),
            "failure-ratio-0.5-2000ms-20calls"
        );
    }
}
