//! The jitter comparison's knobs: raw TOML in, validated options out.

use super::strategy::Strategy;
use crate::experiment::definition::{Checks, DefinitionErrors};
use crate::experiment::registry::Context;
use crate::experiment::scenario_runs;
use crate::experiment::seeds::{SeedSet, SEEDS_PER_POINT_MAX};
use crate::relay::BackoffConfig;
use crate::sim::Scenario;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Most clients one run may simulate.
pub const CLIENTS_MAX: i64 = 100_000;
/// Most write attempts one client may make before it gives up.
pub const WRITES_PER_CLIENT_MAX: i64 = 1_000_000;
/// Longest message latency or backoff a definition may ask for: an hour.
const MS_MAX: f64 = 3_600_000.0;

/// The experiment's sections, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    contention: RawContention,
    relay: RawRelay,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContention {
    strategies: Spanned<Vec<Spanned<String>>>,
    clients: Spanned<Vec<Spanned<i64>>>,
    base_ms: Spanned<f64>,
    cap_ms: Spanned<f64>,
    latency_ms_mean: Spanned<f64>,
    latency_ms_sd: Spanned<f64>,
    writes_per_client_max: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    strategies: Spanned<Vec<Spanned<String>>>,
    seeds_max: Spanned<i64>,
    scenario: Spanned<Scenario>,
}

/// Every resolved option of the experiment (written to `meta.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JitterOptions {
    pub contention: ContentionOptions,
    pub relay: RelayOptions,
}

/// Part (b): clients retrying into the relay through an outage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelayOptions {
    /// In the order given; rows and legends follow it.
    pub strategies: Vec<Strategy>,
    /// This part runs the first `min(seeds_max, count)` seeds of the
    /// definition's set: one of its runs costs as much as hundreds of
    /// contention runs.
    pub seeds_max: u32,
    /// The scenario every strategy runs; each run replaces the backoff kind
    /// of the relay's retries and of every client population.
    pub scenario: Scenario,
    /// When the last outage window ends: time to drain counts from here.
    pub outage_end_s: f64,
}

/// Part (a): N clients contending for one record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContentionOptions {
    /// In the order given; rows and legends follow it.
    pub strategies: Vec<Strategy>,
    /// Client counts, ascending.
    pub clients: Vec<u32>,
    pub base_ms: f64,
    pub cap_ms: f64,
    /// Growth factor of the exponential delay; the study doubles.
    pub multiplier: f64,
    /// Each message takes |Normal(mean, sd)|.
    pub latency_ms_mean: f64,
    pub latency_ms_sd: f64,
    /// A client that fails this many writes gives up; its run is reported
    /// as unfinished instead of looping on.
    pub writes_per_client_max: u32,
}

impl RelayOptions {
    /// The seeds this part runs: the first `seeds_max` of `all`.
    pub fn seeds(&self, all: &SeedSet) -> SeedSet {
        SeedSet {
            first: all.first,
            count: all.count.min(self.seeds_max),
        }
    }
}

impl ContentionOptions {
    /// The backoff policy for `strategy` with these options.
    pub fn backoff_config(&self, strategy: Strategy) -> BackoffConfig {
        BackoffConfig {
            kind: strategy.backoff_kind(),
            base_ms: self.base_ms,
            cap_ms: self.cap_ms,
            multiplier: self.multiplier,
        }
    }
}

/// Parses and validates the definition, reporting every bad value.
pub fn validate(ctx: &Context<'_>) -> Result<JitterOptions, DefinitionErrors> {
    ctx.options(|raw: RawDefinition, checks| JitterOptions {
        contention: contention(&raw.contention, checks),
        relay: relay(&raw.relay, checks),
    })
}

fn relay(raw: &RawRelay, checks: &mut Checks<'_>) -> RelayOptions {
    let scenario = scenario_runs::check(&raw.scenario, "relay.scenario", checks);
    let outage_end_s = scenario
        .downstream
        .outages
        .iter()
        .map(|o| o.end_s)
        .fold(f64::NAN, f64::max);
    checks.check(
        outage_end_s.is_finite(),
        "relay.scenario.downstream.outages",
        raw.scenario.span(),
        || "add at least one outage window: time to drain counts from its end".to_string(),
    );
    RelayOptions {
        strategies: strategies(&raw.strategies, "relay.strategies", checks),
        seeds_max: count(
            &raw.seeds_max,
            "relay.seeds_max",
            i64::from(SEEDS_PER_POINT_MAX),
            checks,
        ),
        scenario,
        outage_end_s,
    }
}

fn contention(raw: &RawContention, checks: &mut Checks<'_>) -> ContentionOptions {
    let options = ContentionOptions {
        strategies: strategies(&raw.strategies, "contention.strategies", checks),
        clients: clients(&raw.clients, checks),
        base_ms: *raw.base_ms.get_ref(),
        cap_ms: *raw.cap_ms.get_ref(),
        multiplier: 2.0,
        latency_ms_mean: *raw.latency_ms_mean.get_ref(),
        latency_ms_sd: *raw.latency_ms_sd.get_ref(),
        writes_per_client_max: count(
            &raw.writes_per_client_max,
            "contention.writes_per_client_max",
            WRITES_PER_CLIENT_MAX,
            checks,
        ),
    };
    backoff(raw, &options, checks);
    for (field, value) in [
        ("contention.latency_ms_mean", &raw.latency_ms_mean),
        ("contention.latency_ms_sd", &raw.latency_ms_sd),
    ] {
        let v = *value.get_ref();
        checks.check((0.0..=MS_MAX).contains(&v), field, value.span(), || {
            format!("must be between 0 and {MS_MAX} ms, got {v}")
        });
    }
    options
}

/// Checks base and cap with the relay's own backoff validation, so the
/// messages match the ones a relay configuration gets.
fn backoff(raw: &RawContention, options: &ContentionOptions, checks: &mut Checks<'_>) {
    let base = *raw.base_ms.get_ref();
    checks.check(base > 0.0, "contention.base_ms", raw.base_ms.span(), || {
        format!("must be > 0 ms (decorrelated jitter grows from it), got {base}")
    });
    let cap = *raw.cap_ms.get_ref();
    checks.check(
        cap <= MS_MAX,
        "contention.cap_ms",
        raw.cap_ms.span(),
        || format!("must be at most {MS_MAX} ms, got {cap}"),
    );
    // Every strategy shares base, cap and multiplier; any kind checks them.
    if let Err(e) = options.backoff_config(Strategy::FullJitter).validate() {
        let span = match e.field.as_str() {
            "base_ms" => raw.base_ms.span(),
            "cap_ms" => raw.cap_ms.span(),
            _ => raw.base_ms.span(),
        };
        checks.fail(&format!("contention.{}", e.field), span, e.reason);
    }
}

fn strategies(
    raw: &Spanned<Vec<Spanned<String>>>,
    field: &str,
    checks: &mut Checks<'_>,
) -> Vec<Strategy> {
    checks.check(!raw.get_ref().is_empty(), field, raw.span(), || {
        "name at least one strategy".to_string()
    });
    let mut strategies = Vec::new();
    for name in raw.get_ref() {
        match Strategy::from_name(name.get_ref()) {
            Some(s) if strategies.contains(&s) => {
                checks.fail(
                    field,
                    name.span(),
                    format!("`{}` is listed twice", s.name()),
                );
            }
            Some(s) => strategies.push(s),
            None => {
                let known: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
                checks.fail(
                    field,
                    name.span(),
                    format!(
                        "unknown strategy `{}`; known: {}",
                        name.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
    }
    strategies
}

fn clients(raw: &Spanned<Vec<Spanned<i64>>>, checks: &mut Checks<'_>) -> Vec<u32> {
    let field = "contention.clients";
    checks.check(!raw.get_ref().is_empty(), field, raw.span(), || {
        "give at least one client count".to_string()
    });
    let mut clients: Vec<u32> = Vec::new();
    for n in raw.get_ref() {
        let value = count(n, field, CLIENTS_MAX, checks);
        if clients.contains(&value) {
            checks.fail(field, n.span(), format!("{value} is listed twice"));
        } else if value > 0 {
            clients.push(value);
        }
    }
    clients.sort_unstable();
    clients
}

/// A whole number in `1..=max`; 0 (after recording the error) otherwise.
fn count(raw: &Spanned<i64>, field: &str, max: i64, checks: &mut Checks<'_>) -> u32 {
    let v = *raw.get_ref();
    let ok = checks.check((1..=max).contains(&v), field, raw.span(), || {
        format!("must be between 1 and {max}, got {v}")
    });
    if ok {
        u32::try_from(v).unwrap_or(0)
    } else {
        0
    }
}
