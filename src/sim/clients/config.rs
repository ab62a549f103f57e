//! How a population of clients is written: open or closed loop, its rate
//! or size, and how each client retries.

use crate::relay::{
    ensure, ensure_ms, BackoffConfig, BackoffKind, BudgetConfig, ConfigError, RetryBreakerConfig,
    RetryGateConfig, ThrottleConfig, ATTEMPTS_LIMIT,
};
use serde::{Deserialize, Serialize};

/// How a client retries one logical request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientRetryConfig {
    /// Sends per logical request, the first included (1 = never retry).
    pub attempts_max: u32,
    pub backoff: BackoffConfig,
    /// Give up waiting for the outcome after this long and send again; 0 waits.
    pub timeout_ms: f64,
    /// Give up the logical request this long after it was created, wherever
    /// it is (counted as abandoned at its deadline); 0: no deadline.
    #[serde(skip_serializing_if = "is_zero")]
    pub deadline_ms: f64,
    /// Reuse the idempotency key on every send (the relay can then answer
    /// a retry with 409 or a replay). `false`: every send is a new request
    /// without a key, as most real clients do, and the outcome of a send
    /// the client stopped waiting for is ignored.
    #[serde(skip_serializing_if = "is_true")]
    pub keyed: bool,
    /// Wait at least the `Retry-After` of a 429/503 before the next send.
    #[serde(skip_serializing_if = "is_false")]
    pub honour_retry_after: bool,
    /// Where the retry gate lives: one for the population, or one per client.
    #[serde(skip_serializing_if = "GateScope::is_shared")]
    pub gate_scope: GateScope,
    /// A retry budget on the client's own re-sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// No re-sends while the client's failure ratio is above a threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_breaker: Option<RetryBreakerConfig>,
    /// Adaptive throttling: reject sends locally as accepts fall behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleConfig>,
}

/// Which clients of a population share one retry gate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateScope {
    /// One gate for the whole population.
    #[default]
    Shared,
    /// One gate per client id.
    PerClient,
}

impl GateScope {
    fn is_shared(&self) -> bool {
        *self == GateScope::Shared
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for ClientRetryConfig {
    fn default() -> Self {
        ClientRetryConfig {
            attempts_max: 1,
            backoff: BackoffConfig {
                kind: BackoffKind::FullJitter,
                base_ms: 100.0,
                cap_ms: 10_000.0,
                multiplier: 2.0,
            },
            timeout_ms: 0.0,
            deadline_ms: 0.0,
            keyed: true,
            honour_retry_after: false,
            gate_scope: GateScope::Shared,
            budget: None,
            retry_breaker: None,
            throttle: None,
        }
    }
}

impl ClientRetryConfig {
    /// The retry gate's controls; none configured means no gate at all.
    pub fn gate(&self) -> RetryGateConfig {
        RetryGateConfig {
            budget: self.budget,
            retry_breaker: self.retry_breaker,
            throttle: self.throttle,
        }
    }

    pub fn has_gate(&self) -> bool {
        self.budget.is_some() || self.retry_breaker.is_some() || self.throttle.is_some()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (1..=ATTEMPTS_LIMIT).contains(&self.attempts_max),
            "attempts_max",
            format!("must be between 1 and {ATTEMPTS_LIMIT}"),
        )?;
        ensure_ms(self.timeout_ms, "timeout_ms")?;
        ensure_ms(self.deadline_ms, "deadline_ms")?;
        self.gate().check()?;
        self.backoff.validate().map_err(|e| e.within("backoff"))
    }
}

/// One phase of an open-loop rate schedule: `per_s` until `until_s`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePhase {
    pub until_s: f64,
    pub per_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    deny_unknown_fields,
    try_from = "ClientsToml"
)]
pub enum ClientsConfig {
    /// Poisson arrivals at `per_s`, or following `schedule` (traffic ends
    /// with the last phase).
    OpenLoop {
        #[serde(default)]
        per_s: Option<f64>,
        #[serde(default)]
        schedule: Vec<RatePhase>,
        /// Stop after this many logical requests.
        #[serde(default)]
        requests_max: Option<u64>,
        /// Distinct client ids the requests are spread over (rate limiting).
        clients: u32,
        #[serde(default)]
        retry: ClientRetryConfig,
    },
    /// `population` clients, each sending `requests_per_client` requests one
    /// after another with exponential think time between them.
    ClosedLoop {
        population: u32,
        #[serde(default)]
        think_ms: f64,
        requests_per_client: u32,
        /// Spread the first sends uniformly over this long.
        #[serde(default)]
        start_spread_ms: f64,
        #[serde(default)]
        retry: ClientRetryConfig,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ClientsKind {
    OpenLoop,
    ClosedLoop,
}

/// `[[clients]]` as written: one flat table, so that a mistyped value is
/// reported with its exact field path and line (serde cannot see inside
/// internally tagged enums).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsToml {
    kind: ClientsKind,
    per_s: Option<f64>,
    #[serde(default)]
    schedule: Vec<RatePhase>,
    requests_max: Option<u64>,
    clients: Option<u32>,
    population: Option<u32>,
    think_ms: Option<f64>,
    requests_per_client: Option<u32>,
    start_spread_ms: Option<f64>,
    #[serde(default)]
    retry: ClientRetryConfig,
}

impl TryFrom<ClientsToml> for ClientsConfig {
    type Error = String;

    fn try_from(t: ClientsToml) -> Result<Self, String> {
        let misplaced = |name: &str, present: bool, kind: &str| {
            if present {
                Err(format!("`{name}` does not apply to {kind} clients"))
            } else {
                Ok(())
            }
        };
        match t.kind {
            ClientsKind::OpenLoop => {
                for (field, written) in [
                    ("population", t.population.is_some()),
                    ("think_ms", t.think_ms.is_some()),
                    ("requests_per_client", t.requests_per_client.is_some()),
                    ("start_spread_ms", t.start_spread_ms.is_some()),
                ] {
                    misplaced(field, written, "open-loop")?;
                }
                Ok(ClientsConfig::OpenLoop {
                    per_s: t.per_s,
                    schedule: t.schedule,
                    requests_max: t.requests_max,
                    clients: t.clients.unwrap_or(1),
                    retry: t.retry,
                })
            }
            ClientsKind::ClosedLoop => {
                for (field, written) in [
                    ("per_s", t.per_s.is_some()),
                    ("schedule", !t.schedule.is_empty()),
                    ("requests_max", t.requests_max.is_some()),
                ] {
                    misplaced(field, written, "closed-loop")?;
                }
                misplaced(
                    "clients",
                    t.clients.is_some(),
                    "closed-loop (use `population`)",
                )?;
                Ok(ClientsConfig::ClosedLoop {
                    population: t
                        .population
                        .ok_or("closed-loop clients need `population`")?,
                    think_ms: t.think_ms.unwrap_or(0.0),
                    requests_per_client: t
                        .requests_per_client
                        .ok_or("closed-loop clients need `requests_per_client`")?,
                    start_spread_ms: t.start_spread_ms.unwrap_or(0.0),
                    retry: t.retry,
                })
            }
        }
    }
}

/// Bounds on a population, so a typo cannot ask for a billion clients.
pub const POPULATION_MAX: u32 = 10_000_000;
pub const REQUESTS_MAX: u64 = 100_000_000;
const PHASES_MAX: usize = 10_000;

impl ClientsConfig {
    pub fn validate(&self, horizon_s: f64) -> Result<(), ConfigError> {
        match self {
            ClientsConfig::OpenLoop {
                per_s,
                schedule,
                requests_max,
                clients,
                retry,
            } => {
                ensure(
                    per_s.is_some() == schedule.is_empty(),
                    "per_s",
                    "give exactly one of `per_s` or `schedule`",
                )?;
                if let Some(r) = per_s {
                    ensure(r.is_finite() && *r > 0.0, "per_s", "must be > 0")?;
                }
                ensure(
                    schedule.len() <= PHASES_MAX,
                    "schedule",
                    format!("at most {PHASES_MAX} phases"),
                )?;
                let mut last = 0.0;
                for (i, p) in schedule.iter().enumerate() {
                    ensure(
                        p.until_s > last,
                        &format!("schedule[{i}].until_s"),
                        "phases must end in increasing order",
                    )?;
                    ensure(
                        p.per_s.is_finite() && p.per_s >= 0.0,
                        &format!("schedule[{i}].per_s"),
                        "must be ≥ 0",
                    )?;
                    last = p.until_s;
                }
                ensure(
                    requests_max.is_some() || horizon_s > 0.0,
                    "requests_max",
                    "an open-loop source needs `requests_max` or a scenario `horizon_s` to end",
                )?;
                ensure(
                    requests_max.unwrap_or(0) <= REQUESTS_MAX,
                    "requests_max",
                    format!("must be ≤ {REQUESTS_MAX}"),
                )?;
                ensure(
                    (1..=POPULATION_MAX).contains(clients),
                    "clients",
                    format!("must be 1..={POPULATION_MAX}"),
                )?;
                retry.validate().map_err(|e| e.within("retry"))
            }
            ClientsConfig::ClosedLoop {
                population,
                think_ms,
                requests_per_client,
                start_spread_ms,
                retry,
            } => {
                ensure(
                    (1..=POPULATION_MAX).contains(population),
                    "population",
                    format!("must be 1..={POPULATION_MAX}"),
                )?;
                ensure_ms(*think_ms, "think_ms")?;
                ensure_ms(*start_spread_ms, "start_spread_ms")?;
                ensure(
                    *requests_per_client >= 1,
                    "requests_per_client",
                    "must be ≥ 1",
                )?;
                ensure(
                    u64::from(*population) * u64::from(*requests_per_client) <= REQUESTS_MAX,
                    "requests_per_client",
                    format!("population × requests_per_client must be ≤ {REQUESTS_MAX}"),
                )?;
                retry.validate().map_err(|e| e.within("retry"))
            }
        }
    }

    pub fn retry(&self) -> &ClientRetryConfig {
        match self {
            ClientsConfig::OpenLoop { retry, .. } | ClientsConfig::ClosedLoop { retry, .. } => {
                retry
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_without_an_end_is_refused() {
        let c = ClientsConfig::OpenLoop {
            per_s: Some(1.0),
            schedule: vec![],
            requests_max: None,
            clients: 1,
            retry: ClientRetryConfig::default(),
        };
        assert_eq!(c.validate(0.0).unwrap_err().field, "requests_max");
        assert!(c.validate(10.0).is_ok());
    }
}
