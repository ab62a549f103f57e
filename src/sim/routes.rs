//! The simulated side of routes: which route each logical request takes,
//! and one downstream model per route.
//!
//! A scenario's `[[routes]]` name routes of `[[relay.routes]]` and give each
//! a weight (the share of logical requests that go there), a downstream
//! model (absent: the scenario's `[downstream]`) and a number of distinct
//! resources its requests ask for (the fallback cache's keys). The choice
//! and the resource are drawn from a stream keyed by the logical request,
//! so every send of a request goes to the same route for the same resource,
//! and two strategies on one seed see the same requests.

use super::downstream::{Downstream, DownstreamConfig};
use crate::fault::CallPlan;
use crate::relay::{ensure, ConfigError, RelaySettings, RouteId, RouteStats, Routing};
use crate::rng::{unit, Domain, Seed, Streams};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRouteConfig {
    /// A route of `[[relay.routes]]`.
    pub name: String,
    /// Share of the logical requests (relative to the other routes').
    #[serde(default = "one")]
    pub weight: f64,
    /// Distinct resources requests ask for, uniformly; each is a fallback
    /// cache key. 0: requests carry no cache key.
    #[serde(default)]
    pub resources: u64,
    /// Absent: the scenario's `[downstream]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<DownstreamConfig>,
}

fn one() -> f64 {
    1.0
}

/// Resources a route's requests may ask for.
const RESOURCES_MAX: u64 = 1 << 40;

impl SimRouteConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.weight.is_finite() && self.weight >= 0.0,
            "weight",
            "must be ≥ 0",
        )?;
        ensure(
            self.resources <= RESOURCES_MAX,
            "resources",
            format!("must be ≤ {RESOURCES_MAX}"),
        )?;
        if let Some(d) = &self.downstream {
            d.validate().map_err(|e| e.within("downstream"))?;
        }
        Ok(())
    }
}

/// Checks a scenario's `[[routes]]` against its relay's routes.
pub fn validate_routes(
    routes: &[SimRouteConfig],
    relay: &RelaySettings,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        r.validate().map_err(|e| e.within(&at))?;
        ensure(
            relay.route(&r.name).is_some(),
            &format!("{at}.name"),
            format!(
                "{:?} is not a route of the relay; add it to [[relay.routes]]",
                r.name
            ),
        )?;
        ensure(
            seen.insert(r.name.as_str()),
            &format!("{at}.name"),
            "named twice",
        )?;
    }
    let total: f64 = routes.iter().map(|r| r.weight).sum();
    ensure(
        routes.is_empty() || total > 0.0,
        "routes",
        "the weights add up to 0: no request would be sent",
    )?;
    Ok(())
}

/// Where logical requests go: cumulative weights over the routes named.
pub struct RouteMix {
    streams: Streams,
    /// `(cumulative share, route, resources)`, the last share exactly 1.
    table: Vec<(f64, RouteId, u64)>,
}

impl RouteMix {
    /// `routes` checked by [`validate_routes`]; empty: every request goes
    /// to the default route, without a cache key.
    pub fn new(routes: &[SimRouteConfig], relay: &RelaySettings, seed: Seed) -> RouteMix {
        let total: f64 = routes.iter().map(|r| r.weight).sum();
        let mut sum = 0.0;
        let mut table = Vec::with_capacity(routes.len());
        for r in routes {
            sum += r.weight;
            let id = relay.route(&r.name).expect("validated");
            table.push(((sum / total).min(1.0), id, r.resources));
        }
        if let Some(last) = table.last_mut() {
            last.0 = 1.0;
        }
        RouteMix {
            streams: seed.streams(),
            table,
        }
    }

    /// The route and cache key of logical request `request`.
    pub fn routing(&self, request: u64) -> Routing {
        if self.table.is_empty() {
            return Routing::default();
        }
        let mut rng = self
            .streams
            .stream(Domain::Route, request & ((1 << 48) - 1));
        let u = unit(&mut rng);
        let &(_, route, resources) = self
            .table
            .iter()
            .find(|(share, ..)| u < *share)
            .unwrap_or(&self.table[self.table.len() - 1]);
        let cache_key = (resources > 0).then(|| (unit(&mut rng) * resources as f64) as u64);
        Routing { route, cache_key }
    }
}

/// One downstream model per relay route.
pub struct Downstreams {
    routes: Vec<Downstream>,
}

impl Downstreams {
    pub fn new(
        default: &DownstreamConfig,
        routes: &[SimRouteConfig],
        relay: &RelaySettings,
        seed: Seed,
    ) -> Downstreams {
        let routes = relay
            .routes()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let own = routes.iter().find(|s| s.name == r.name());
                let cfg = own.and_then(|s| s.downstream.as_ref()).unwrap_or(default);
                Downstream::of_route(cfg, seed, i as u64)
            })
            .collect();
        Downstreams { routes }
    }

    pub fn start(&mut self, route: RouteId, now: Time, request: u64, step: u64) -> CallPlan {
        self.routes[route.index()].start(now, request, step)
    }

    pub fn finish(
        &mut self,
        route: RouteId,
        request: Option<u64>,
        keyed: bool,
        landed: bool,
    ) -> bool {
        self.routes[route.index()].finish(request, keyed, landed)
    }

    pub fn throttle_retry_after(&self, route: RouteId) -> Duration {
        self.routes[route.index()].throttle_retry_after()
    }

    /// Calls in progress at every downstream.
    pub fn in_progress(&self) -> u32 {
        self.routes.iter().map(Downstream::in_progress).sum()
    }

    pub fn calls(&self) -> u64 {
        self.routes.iter().map(Downstream::calls).sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.routes.iter().map(Downstream::duplicates).sum()
    }

    pub fn duplicates_keyless(&self) -> u64 {
        self.routes.iter().map(Downstream::duplicates_keyless).sum()
    }

    pub fn effects_total(&self) -> u64 {
        self.routes.iter().map(Downstream::effects_total).sum()
    }

    /// The most calls one downstream had in progress at once (the largest
    /// over the routes; with one route, exactly its own).
    pub fn in_flight_max_seen(&self) -> u32 {
        self.routes
            .iter()
            .map(Downstream::in_flight_max_seen)
            .max()
            .unwrap_or(0)
    }

    pub fn route_calls(&self, route: usize) -> u64 {
        self.routes[route].calls()
    }
}

/// One route's part of a run's summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteSummary {
    pub name: String,
    pub requests: u64,
    pub accepted: u64,
    pub refused: u64,
    pub fallbacks_at_door: u64,
    pub fallbacks_after_failure: u64,
    pub succeeded: u64,
    pub dead_lettered: u64,
    pub downstream_calls: u64,
    /// Successes per second of the run.
    pub goodput_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

impl RouteSummary {
    pub fn of(name: &str, s: &RouteStats, calls: u64, end: Time) -> RouteSummary {
        let secs = end.as_secs_f64();
        RouteSummary {
            name: name.to_string(),
            requests: s.requests,
            accepted: s.accepted,
            refused: s.refused.values().sum(),
            fallbacks_at_door: s.fallbacks_at_door,
            fallbacks_after_failure: s.fallbacks_after_failure,
            succeeded: s.succeeded,
            dead_lettered: s.dead_lettered.values().sum(),
            downstream_calls: calls,
            goodput_per_s: if secs > 0.0 {
                s.succeeded as f64 / secs
            } else {
                0.0
            },
            latency_p50_ms: s.job_latency.quantile_ms(0.5),
            latency_p99_ms: s.job_latency.quantile_ms(0.99),
        }
    }
}
