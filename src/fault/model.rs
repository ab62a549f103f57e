//! One downstream call's fate, decided when it starts.
//!
//! Faults are data: an ordered list of windows, the first that covers the
//! call's start time decides its fate; a runtime switch (thrown by hand on
//! a live service) overrides the windows. Time is whatever the driver says:
//! virtual time in the simulator, time since start in a real-time service.
//! The draw order per call is fixed (latency, then one draw for failure and
//! its kind when failures are possible), so a run is reproducible from its
//! seed on either driver.

use super::config::{ensure_at_least, DownstreamConfig, OutageMode};
use super::latency::Latency;
use crate::relay::CallError;
use crate::relay::{ensure, ensure_ms, ensure_probability, ConfigError};
use crate::rng::{unit, Stream};
use crate::time::ms_to_nanos;
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// A fault switched on by hand, over whatever the windows say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    /// Latency and failures as configured, windows included.
    #[default]
    Normal,
    /// Every call fails after `fail_fast_ms` (503).
    Outage,
    /// A brownout at `brownout_failure_rate`, slower by `brownout_latency_factor`.
    Brownout,
    /// Every call waits `hang_ms`, then fails: long past any sane timeout.
    Hang,
}

/// The runtime switch and the settings of the faults it can throw.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Switch {
    pub mode: FaultMode,
    pub brownout_latency_factor: f64,
    pub brownout_failure_rate: f64,
    pub hang_ms: f64,
}

impl Default for Switch {
    fn default() -> Self {
        Switch {
            mode: FaultMode::Normal,
            brownout_latency_factor: 5.0,
            brownout_failure_rate: 0.5,
            hang_ms: 30_000.0,
        }
    }
}

/// Longest hang a switch may ask for: every answer comes within an hour.
pub const HANG_MS_MAX: f64 = 3_600_000.0;

impl Switch {
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure_at_least(self.brownout_latency_factor, 1.0, "brownout_latency_factor")?;
        ensure_probability(self.brownout_failure_rate, "brownout_failure_rate")?;
        ensure_ms(self.hang_ms, "hang_ms")?;
        ensure(self.hang_ms <= HANG_MS_MAX, "hang_ms", "must be ≤ 1 hour")
    }
}

/// How one call will go, decided when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallPlan {
    pub done_at: Time,
    pub result: Result<(), CallError>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Time,
    end: Time,
}

impl Window {
    fn new(start_s: f64, end_s: f64) -> Window {
        Window {
            start: Time::from_secs_f64(start_s),
            end: Time::from_secs_f64(end_s),
        }
    }

    fn covers(self, t: Time) -> bool {
        self.start <= t && t < self.end
    }
}

/// A brownout in force: its failure rate and latency factor.
#[derive(Clone, Copy, Debug)]
struct Brownout {
    failure_rate: f64,
    latency_factor: f64,
}

/// The fault model of one downstream: config, windows, switch, load.
pub struct FaultModel {
    cfg: DownstreamConfig,
    latency: Latency,
    outages: Vec<(Window, OutageMode)>,
    brownouts: Vec<(Window, Brownout)>,
    switch: Switch,
    rng: Stream,
    in_flight: u32,
    in_flight_max_seen: u32,
    calls: u64,
}

impl FaultModel {
    /// A model of a validated `cfg`, drawing from `rng`.
    pub fn new(cfg: &DownstreamConfig, rng: Stream) -> FaultModel {
        let mut m = FaultModel {
            cfg: cfg.clone(),
            latency: Latency::new(cfg.latency),
            outages: Vec::new(),
            brownouts: Vec::new(),
            switch: Switch::default(),
            rng,
            in_flight: 0,
            in_flight_max_seen: 0,
            calls: 0,
        };
        m.reconfigure(cfg);
        m
    }

    /// Takes a new validated config; draws, load and counts carry on.
    pub fn reconfigure(&mut self, cfg: &DownstreamConfig) {
        self.latency = Latency::new(cfg.latency);
        self.outages = cfg
            .outages
            .iter()
            .map(|o| (Window::new(o.start_s, o.end_s), o.mode))
            .collect();
        self.brownouts = cfg
            .brownouts
            .iter()
            .map(|b| {
                let brownout = Brownout {
                    failure_rate: b.failure_rate,
                    latency_factor: b.latency_factor,
                };
                (Window::new(b.start_s, b.end_s), brownout)
            })
            .collect();
        self.cfg = cfg.clone();
    }

    pub fn config(&self) -> &DownstreamConfig {
        &self.cfg
    }

    pub fn switch(&self) -> Switch {
        self.switch
    }

    /// Throws the runtime switch (validated by the caller).
    pub fn set_switch(&mut self, switch: Switch) {
        self.switch = switch;
    }

    /// A call starts at `now`: decide when it answers and how, drawing
    /// from the model's own stream (one sequence in call order).
    pub fn start(&mut self, now: Time) -> CallPlan {
        let mut rng = self.rng.clone();
        let plan = self.start_drawing(now, &mut rng);
        self.rng = rng;
        plan
    }

    /// [`FaultModel::start`] drawing from `rng`: a caller that keys a stream
    /// by the call's identity (not its order) gives every strategy compared
    /// on one seed the same latency and failure draw for the same call.
    pub fn start_drawing(&mut self, now: Time, rng: &mut Stream) -> CallPlan {
        let in_progress = self.in_flight;
        self.calls += 1;
        self.in_flight += 1;
        self.in_flight_max_seen = self.in_flight_max_seen.max(self.in_flight);
        let after = |ms: f64| Time::from_nanos(now.as_nanos().saturating_add(ms_to_nanos(ms)));
        let failed = |done_at| CallPlan {
            done_at,
            result: Err(CallError::ServerError),
        };
        match self.switch.mode {
            FaultMode::Outage => return failed(after(self.cfg.fail_fast_ms)),
            FaultMode::Hang => return failed(after(self.switch.hang_ms)),
            FaultMode::Normal | FaultMode::Brownout => {}
        }
        if let Some((w, mode)) = self.outages.iter().find(|(w, _)| w.covers(now)).copied() {
            return failed(match mode {
                OutageMode::FailFast => after(self.cfg.fail_fast_ms),
                OutageMode::Hang => w.end,
            });
        }
        let (mut failure_rate, mut factor) = (self.cfg.failure_rate, 1.0);
        if let Some(b) = self.brownout_at(now) {
            failure_rate = b.failure_rate;
            factor = b.latency_factor;
        }
        if let Some(c) = self.cfg.capacity {
            let excess = self.in_flight.saturating_sub(c.concurrency_max);
            if excess > 0 {
                factor *=
                    1.0 + c.slowdown_per_excess * f64::from(excess) / f64::from(c.concurrency_max);
                failure_rate = 1.0 - (1.0 - failure_rate) * (1.0 - c.failure_rate_over);
            }
        }
        let load_ms = self.cfg.load_slope_ms * f64::from(in_progress);
        let done_at = after(self.latency.draw_ms(rng) * factor + load_ms);
        let u = if failure_rate > 0.0 { unit(rng) } else { 1.0 };
        let result = if u < failure_rate {
            Err(self.cfg.failure_mix.kind_at(u / failure_rate))
        } else {
            Ok(())
        };
        CallPlan { done_at, result }
    }

    fn brownout_at(&self, now: Time) -> Option<Brownout> {
        if self.switch.mode == FaultMode::Brownout {
            return Some(Brownout {
                failure_rate: self.switch.brownout_failure_rate,
                latency_factor: self.switch.brownout_latency_factor,
            });
        }
        self.brownouts
            .iter()
            .find(|(w, _)| w.covers(now))
            .map(|(_, b)| *b)
    }

    /// A call started by [`FaultModel::start`] has answered.
    pub fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub fn calls(&self) -> u64 {
        self.calls
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    pub fn in_flight_max_seen(&self) -> u32 {
        self.in_flight_max_seen
    }

    /// Is `t` inside an outage window?
    pub fn is_down(&self, t: Time) -> bool {
        self.outages.iter().any(|(w, _)| w.covers(t))
    }

    /// When the last fault window ends.
    pub fn faults_end(&self) -> Time {
        let outages = self.outages.iter().map(|(w, _)| w.end);
        let brownouts = self.brownouts.iter().map(|(w, _)| w.end);
        outages.chain(brownouts).max().unwrap_or(Time::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{FailureMix, OutageConfig};
    use super::super::latency::LatencyConfig;
    use super::*;
    use crate::rng::{Domain, Seed};

    fn model(cfg: DownstreamConfig) -> FaultModel {
        cfg.validate().expect("valid");
        FaultModel::new(&cfg, Seed(1).stream(Domain::Downstream, 0))
    }

    #[test]
    fn outage_fails_fast_or_hangs_until_the_window_ends() {
        let mut d = model(DownstreamConfig {
            latency: LatencyConfig::Constant { ms: 10.0 },
            outages: vec![
                OutageConfig {
                    start_s: 1.0,
                    end_s: 2.0,
                    mode: OutageMode::FailFast,
                },
                OutageConfig {
                    start_s: 3.0,
                    end_s: 4.0,
                    mode: OutageMode::Hang,
                },
            ],
            ..DownstreamConfig::default()
        });
        let ok = d.start(Time::from_millis(500));
        assert_eq!(
            ok,
            CallPlan {
                done_at: Time::from_millis(510),
                result: Ok(())
            }
        );
        let fast = d.start(Time::from_millis(1500));
        assert_eq!(
            fast,
            CallPlan {
                done_at: Time::from_millis(1501),
                result: Err(CallError::ServerError)
            }
        );
        let hang = d.start(Time::from_millis(3100));
        assert_eq!(hang.done_at, Time::from_millis(4000));
        assert!(d.is_down(Time::from_millis(3999)) && !d.is_down(Time::from_millis(4000)));
    }

    #[test]
    fn failure_rate_is_respected_and_split_by_kind() {
        let mut d = model(DownstreamConfig {
            failure_rate: 0.8,
            failure_mix: FailureMix {
                server_error: 1.0,
                throttled: 1.0,
                client_error: 0.0,
            },
            ..DownstreamConfig::default()
        });
        let results: Vec<_> = (0..10_000).map(|_| d.start(Time::ZERO).result).collect();
        let count = |r: Result<(), CallError>| results.iter().filter(|x| **x == r).count();
        let throttled = count(Err(CallError::Throttled));
        let server = count(Err(CallError::ServerError));
        assert!(
            (7_700..8_300).contains(&(throttled + server)),
            "{throttled} + {server}"
        );
        assert!((3_700..4_300).contains(&throttled), "{throttled} throttled");
        assert_eq!(count(Err(CallError::ClientError)), 0);
    }

    #[test]
    fn the_switch_overrides_the_windows_and_goes_back() {
        let mut d = model(DownstreamConfig {
            latency: LatencyConfig::Constant { ms: 10.0 },
            fail_fast_ms: 0.0,
            ..DownstreamConfig::default()
        });
        d.set_switch(Switch {
            mode: FaultMode::Hang,
            hang_ms: 250.0,
            ..Switch::default()
        });
        let hang = d.start(Time::ZERO);
        assert_eq!(hang.done_at, Time::from_millis(250));
        assert_eq!(hang.result, Err(CallError::ServerError));
        d.set_switch(Switch {
            mode: FaultMode::Brownout,
            brownout_failure_rate: 1.0,
            brownout_latency_factor: 3.0,
            ..Switch::default()
        });
        let slow = d.start(Time::ZERO);
        assert_eq!(slow.done_at, Time::from_millis(30));
        assert!(slow.result.is_err());
        d.set_switch(Switch::default());
        assert_eq!(d.start(Time::ZERO).result, Ok(()));
    }
}
