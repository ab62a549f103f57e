//! What a downstream does wrong, as data: the `[downstream]` of a scenario.
//!
//! Latency, a failure rate split by kind, outage and brownout windows,
//! capacity, and whether side effects are deduplicated by key. The same
//! table drives the simulator (windows on virtual time) and the real-time
//! services (windows relative to their start).

use super::latency::LatencyConfig;
use crate::relay::CallError;
use crate::relay::{ensure, ensure_ms, ensure_probability, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutageMode {
    /// Calls fail at once (connection refused).
    FailFast,
    /// Calls hang until the window ends (or the caller's timeout fires first).
    Hang,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageConfig {
    pub start_s: f64,
    pub end_s: f64,
    pub mode: OutageMode,
}

/// A partial outage: more failures and slower answers for a while.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrownoutConfig {
    pub start_s: f64,
    pub end_s: f64,
    pub failure_rate: f64,
    #[serde(default = "one")]
    pub latency_factor: f64,
}

fn one() -> f64 {
    1.0
}

/// Beyond `concurrency_max` calls at once, each extra call is slower, or fails.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    pub concurrency_max: u32,
    /// Latency multiplier per call over the limit, relative to the limit
    /// (1.0: twice the load, twice the latency).
    #[serde(default = "one")]
    pub slowdown_per_excess: f64,
    /// Probability that a call over the limit fails outright.
    #[serde(default)]
    pub failure_rate_over: f64,
}

/// How failures split by kind, as relative weights. Absent, every failure
/// is a server error (503); written, unnamed kinds weigh 0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureMix {
    #[serde(default)]
    pub server_error: f64,
    /// 429 with `Retry-After`.
    #[serde(default)]
    pub throttled: f64,
    /// A 4xx other than 429: the request is refused as wrong.
    #[serde(default)]
    pub client_error: f64,
}

impl FailureMix {
    pub const SERVER_ERRORS: FailureMix = FailureMix {
        server_error: 1.0,
        throttled: 0.0,
        client_error: 0.0,
    };

    fn is_server_errors(&self) -> bool {
        *self == FailureMix::SERVER_ERRORS
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (w, field) in [
            (self.server_error, "failure_mix.server_error"),
            (self.throttled, "failure_mix.throttled"),
            (self.client_error, "failure_mix.client_error"),
        ] {
            ensure_at_least(w, 0.0, field)?;
        }
        ensure(
            self.server_error + self.throttled + self.client_error > 0.0,
            "failure_mix",
            "give at least one kind a weight > 0",
        )
    }

    /// The kind of a failure at `x` in `[0, 1)`: the weights cut that range
    /// in order. The caller reuses the draw that decided the failure, so
    /// naming a kind costs no extra draw.
    pub fn kind_at(&self, x: f64) -> CallError {
        let at = x * (self.server_error + self.throttled + self.client_error);
        if at < self.server_error {
            CallError::ServerError
        } else if at < self.server_error + self.throttled {
            CallError::Throttled
        } else {
            CallError::ClientError
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamConfig {
    pub latency: LatencyConfig,
    /// Probability that an attempt fails (no side effect). A failed attempt
    /// takes its full latency, like a 500 after the work was tried.
    pub failure_rate: f64,
    /// Which kinds those failures are.
    #[serde(skip_serializing_if = "FailureMix::is_server_errors")]
    pub failure_mix: FailureMix,
    /// What a throttled answer asks the caller to wait: the `downstream`
    /// service's `Retry-After` header (whole seconds, rounded up), and the
    /// simulator's throttled answers. The relay waits at least this long
    /// before retrying a throttled attempt when `relay.retry.
    /// honour_retry_after` is on; the simulator draws nothing from it.
    #[serde(skip_serializing_if = "is_default_retry_after")]
    pub throttle_retry_after_ms: f64,
    /// How long a call takes to fail during a fail-fast outage.
    pub fail_fast_ms: f64,
    /// Deduplicate side effects by idempotency key, as a well-behaved API does.
    pub honours_idempotency_key: bool,
    pub outages: Vec<OutageConfig>,
    pub brownouts: Vec<BrownoutConfig>,
    pub capacity: Option<CapacityConfig>,
    /// Added latency per call already in progress when a call starts (ms),
    /// counted at the downstream whether or not its caller still waits: a
    /// downstream that slows with its load. 0: latency does not depend on load.
    #[serde(skip_serializing_if = "is_zero")]
    pub load_slope_ms: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

const RETRY_AFTER_MS_DEFAULT: f64 = 1_000.0;

fn is_default_retry_after(ms: &f64) -> bool {
    *ms == RETRY_AFTER_MS_DEFAULT
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        DownstreamConfig {
            latency: LatencyConfig::Exponential { mean_ms: 10.0 },
            failure_rate: 0.0,
            failure_mix: FailureMix::SERVER_ERRORS,
            throttle_retry_after_ms: RETRY_AFTER_MS_DEFAULT,
            fail_fast_ms: 1.0,
            honours_idempotency_key: false,
            outages: vec![],
            brownouts: vec![],
            capacity: None,
            load_slope_ms: 0.0,
        }
    }
}

/// Fault windows per list; more is a mistake, not a scenario.
const WINDOWS_MAX: usize = 1000;

impl DownstreamConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.latency.validate()?;
        ensure_probability(self.failure_rate, "failure_rate")?;
        self.failure_mix.validate()?;
        ensure_ms(self.throttle_retry_after_ms, "throttle_retry_after_ms")?;
        ensure_ms(self.fail_fast_ms, "fail_fast_ms")?;
        ensure_ms(self.load_slope_ms, "load_slope_ms")?;
        ensure(
            self.outages.len() <= WINDOWS_MAX,
            "outages",
            format!("at most {WINDOWS_MAX} windows"),
        )?;
        ensure(
            self.brownouts.len() <= WINDOWS_MAX,
            "brownouts",
            format!("at most {WINDOWS_MAX} windows"),
        )?;
        for (i, o) in self.outages.iter().enumerate() {
            window_ok(o.start_s, o.end_s, &format!("outages[{i}]"))?;
        }
        for (i, b) in self.brownouts.iter().enumerate() {
            window_ok(b.start_s, b.end_s, &format!("brownouts[{i}]"))?;
            ensure_probability(b.failure_rate, &format!("brownouts[{i}].failure_rate"))?;
            ensure_at_least(
                b.latency_factor,
                0.0,
                &format!("brownouts[{i}].latency_factor"),
            )?;
        }
        if let Some(c) = &self.capacity {
            ensure(
                c.concurrency_max >= 1,
                "capacity.concurrency_max",
                "must be ≥ 1",
            )?;
            ensure_at_least(c.slowdown_per_excess, 0.0, "capacity.slowdown_per_excess")?;
            ensure_probability(c.failure_rate_over, "capacity.failure_rate_over")?;
        }
        Ok(())
    }
}

/// A finite number no smaller than `min`.
pub(super) fn ensure_at_least(value: f64, min: f64, field: &str) -> Result<(), ConfigError> {
    ensure(
        value.is_finite() && value >= min,
        field,
        format!("must be ≥ {min}"),
    )
}

fn window_ok(start_s: f64, end_s: f64, field: &str) -> Result<(), ConfigError> {
    ensure(
        start_s.is_finite() && start_s >= 0.0,
        &format!("{field}.start_s"),
        "must be ≥ 0",
    )?;
    ensure(
        end_s.is_finite() && end_s > start_s,
        &format!("{field}.end_s"),
        "must be after start_s",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_mix_is_all_server_errors_and_a_written_one_weighs_only_its_kinds() {
        let d: DownstreamConfig = toml::from_str("failure_rate = 0.5").expect("parses");
        assert_eq!(d.failure_mix, FailureMix::SERVER_ERRORS);
        let d: DownstreamConfig =
            toml::from_str("failure_mix = { throttled = 1 }").expect("parses");
        assert_eq!(d.failure_mix.kind_at(0.0), CallError::Throttled);
        assert_eq!(d.failure_mix.kind_at(0.999), CallError::Throttled);
    }

    #[test]
    fn the_mix_cuts_the_unit_range_in_order() {
        let m = FailureMix {
            server_error: 2.0,
            throttled: 1.0,
            client_error: 1.0,
        };
        assert_eq!(m.kind_at(0.49), CallError::ServerError);
        assert_eq!(m.kind_at(0.51), CallError::Throttled);
        assert_eq!(m.kind_at(0.76), CallError::ClientError);
    }

    #[test]
    fn an_all_zero_mix_is_refused() {
        let d = DownstreamConfig {
            failure_mix: FailureMix {
                server_error: 0.0,
                throttled: 0.0,
                client_error: 0.0,
            },
            ..DownstreamConfig::default()
        };
        assert_eq!(d.validate().unwrap_err().field, "failure_mix");
    }

    #[test]
    fn defaults_add_nothing_to_a_written_config() {
        let json = serde_json::to_value(DownstreamConfig::default()).expect("serializes");
        assert!(json.get("failure_mix").is_none());
        assert!(json.get("throttle_retry_after_ms").is_none());
    }
}
