//! The shared fault model on real time: how long an answer takes and how
//! it fails, for the relay's built-in in-process downstream and the
//! standalone `downstream` service.
//!
//! The model is [`crate::fault`], the one the simulator runs; here its
//! windows count from the service's start and its runtime switch is thrown
//! by `POST /admin`. [`FaultConfig`] is the short way to write a model on a
//! command line or in `serve`'s `[downstream]`: a latency, a failure rate,
//! and the switch.

use super::clock::Clock;
use crate::fault::{DownstreamConfig, FaultModel, LatencyConfig, Switch, HANG_MS_MAX};
use crate::relay::{ensure, CallError, ConfigError};
use crate::rng::{Domain, Seed};
use crate::time::ms_to_nanos;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use crate::fault::FaultMode;

/// How answer times are spread around `latency_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyKind {
    /// Always `latency_ms`.
    #[default]
    Constant,
    /// Exponential with mean `latency_ms`.
    Exponential,
    /// Uniform on [0, 2 × `latency_ms`].
    Uniform,
    /// Log-normal with median `latency_ms` and sigma 1: a heavy tail.
    LogNormal,
}

impl LatencyKind {
    /// The distribution of this kind around `ms`.
    pub fn around(self, ms: f64) -> LatencyConfig {
        match self {
            LatencyKind::Constant => LatencyConfig::Constant { ms },
            LatencyKind::Exponential => LatencyConfig::Exponential { mean_ms: ms },
            LatencyKind::Uniform => LatencyConfig::Uniform {
                min_ms: 0.0,
                max_ms: 2.0 * ms,
            },
            LatencyKind::LogNormal => LatencyConfig::LogNormal {
                median_ms: ms,
                sigma: 1.0,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Probability that a call fails (503) in normal mode.
    pub failure_rate: f64,
    /// Constant, mean or median answer time.
    pub latency_ms: f64,
    pub latency: LatencyKind,
    pub mode: FaultMode,
    pub brownout_latency_factor: f64,
    pub brownout_failure_rate: f64,
    pub hang_ms: f64,
    /// Seed of the failure and latency draws.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        let switch = Switch::default();
        FaultConfig {
            failure_rate: 0.0,
            latency_ms: 10.0,
            latency: LatencyKind::Constant,
            mode: switch.mode,
            brownout_latency_factor: switch.brownout_latency_factor,
            brownout_failure_rate: switch.brownout_failure_rate,
            hang_ms: switch.hang_ms,
            seed: 1,
        }
    }
}

impl FaultConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (0.0..=HANG_MS_MAX).contains(&self.latency_ms),
            "latency_ms",
            "must be between 0 and 1 hour",
        )?;
        self.model().validate()?;
        self.switch().validate()
    }

    /// The model this writes: an outage fails at once, keys are not honoured.
    pub fn model(&self) -> DownstreamConfig {
        DownstreamConfig {
            latency: self.latency.around(self.latency_ms),
            failure_rate: self.failure_rate,
            fail_fast_ms: 0.0,
            ..DownstreamConfig::default()
        }
    }

    pub fn switch(&self) -> Switch {
        Switch {
            mode: self.mode,
            brownout_latency_factor: self.brownout_latency_factor,
            brownout_failure_rate: self.brownout_failure_rate,
            hang_ms: self.hang_ms,
        }
    }
}

/// A whole downstream to serve: the model, the switch at start, the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Flaky {
    pub model: DownstreamConfig,
    pub switch: Switch,
    pub seed: u64,
}

impl Flaky {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.model.validate()?;
        self.switch.validate()
    }
}

impl From<&FaultConfig> for Flaky {
    fn from(f: &FaultConfig) -> Flaky {
        Flaky {
            model: f.model(),
            switch: f.switch(),
            seed: f.seed,
        }
    }
}

/// One call's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fate {
    pub delay: Duration,
    pub result: Result<(), CallError>,
}

/// The fault model running on the service's clock.
pub struct FlakyDownstream {
    model: FaultModel,
    clock: Clock,
}

/// Longest delay served: every answer comes within an hour, even in a
/// window that hangs longer.
const DELAY_MAX: Duration = Duration::from_secs(3_600);

impl FlakyDownstream {
    /// Starts serving `flaky` (validated); its windows count from now.
    pub fn start(flaky: &Flaky) -> FlakyDownstream {
        let rng = Seed(flaky.seed).stream(Domain::Downstream, 0);
        let mut model = FaultModel::new(&flaky.model, rng);
        model.set_switch(flaky.switch);
        FlakyDownstream {
            model,
            clock: Clock::start(),
        }
    }

    /// A call arrives: when to answer, and how.
    pub fn call(&mut self) -> Fate {
        let now = self.clock.now();
        let plan = self.model.start(now);
        let delay = Duration::from_nanos(plan.done_at.as_nanos().saturating_sub(now.as_nanos()));
        Fate {
            delay: delay.min(DELAY_MAX),
            result: plan.result,
        }
    }

    /// A call has answered (or its caller gave up).
    pub fn finish(&mut self) {
        self.model.finish();
    }

    pub fn model(&self) -> &FaultModel {
        &self.model
    }

    pub fn model_mut(&mut self) -> &mut FaultModel {
        &mut self.model
    }

    /// Seconds since the service started: where its windows are.
    pub fn elapsed_s(&mut self) -> f64 {
        self.clock.now().as_secs_f64()
    }

    /// What a throttled answer asks the caller to wait.
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(ms_to_nanos(self.model.config().throttle_retry_after_ms))
    }
}

/// A [`FlakyDownstream`] shared by the tasks that serve its calls.
#[derive(Clone)]
pub struct SharedFlaky(Arc<Mutex<FlakyDownstream>>);

impl SharedFlaky {
    pub fn start(flaky: &Flaky) -> SharedFlaky {
        SharedFlaky(Arc::new(Mutex::new(FlakyDownstream::start(flaky))))
    }

    /// The model; a panic elsewhere while it was held leaves plain
    /// counters, still usable, so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, FlakyDownstream> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Draws a call's fate; the call counts as in flight (for capacity)
    /// until the returned guard is dropped, answered or abandoned.
    pub fn call(&self) -> (Fate, InFlight) {
        let fate = self.lock().call();
        (fate, InFlight(self.clone()))
    }
}

/// One call in flight; dropping it ends the call.
pub struct InFlight(SharedFlaky);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fates(cfg: &FaultConfig, n: usize) -> Vec<Fate> {
        let mut d = FlakyDownstream::start(&Flaky::from(cfg));
        (0..n).map(|_| d.call()).collect()
    }

    #[test]
    fn failure_rate_is_roughly_honoured_and_seeded() {
        let cfg = FaultConfig {
            failure_rate: 0.3,
            ..FaultConfig::default()
        };
        let failed = |f: Vec<Fate>| f.iter().filter(|f| f.result.is_err()).count();
        let n = failed(fates(&cfg, 10_000));
        assert_eq!(n, failed(fates(&cfg, 10_000)), "same seed, same draws");
        assert!((2_700..3_300).contains(&n), "{n} failures");
    }

    #[test]
    fn outage_fails_at_once_and_hang_waits() {
        let mut cfg = FaultConfig {
            mode: FaultMode::Outage,
            ..FaultConfig::default()
        };
        let fate = fates(&cfg, 1)[0];
        assert_eq!(
            (fate.delay, fate.result),
            (Duration::ZERO, Err(CallError::ServerError))
        );
        cfg.mode = FaultMode::Hang;
        cfg.hang_ms = 250.0;
        assert_eq!(fates(&cfg, 1)[0].delay, Duration::from_millis(250));
    }

    #[test]
    fn a_call_is_in_flight_until_its_guard_drops() {
        let shared = SharedFlaky::start(&Flaky::from(&FaultConfig::default()));
        let (_, first) = shared.call();
        let (_, second) = shared.call();
        assert_eq!(shared.lock().model().in_flight(), 2);
        drop(first);
        drop(second);
        assert_eq!(shared.lock().model().in_flight(), 0);
        assert_eq!(shared.lock().model().in_flight_max_seen(), 2);
    }

    #[test]
    fn bad_values_name_their_field() {
        let d = FaultConfig::default;
        for (cfg, field) in [
            (
                FaultConfig {
                    failure_rate: 1.5,
                    ..d()
                },
                "failure_rate",
            ),
            (
                FaultConfig {
                    latency_ms: 4e6,
                    ..d()
                },
                "latency_ms",
            ),
            (
                FaultConfig {
                    hang_ms: f64::NAN,
                    ..d()
                },
                "hang_ms",
            ),
            (
                FaultConfig {
                    brownout_latency_factor: 0.5,
                    ..d()
                },
                "brownout_latency_factor",
            ),
        ] {
            assert_eq!(cfg.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn every_latency_kind_writes_a_valid_distribution() {
        for kind in [
            LatencyKind::Constant,
            LatencyKind::Exponential,
            LatencyKind::Uniform,
            LatencyKind::LogNormal,
        ] {
            kind.around(10.0).validate().expect("valid");
        }
    }
}
