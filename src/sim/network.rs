//! Network delay between the simulated parties, drawn per message.
//!
//! Two links, each a [`LatencyConfig`] drawn independently for every
//! message in either direction: client ↔ relay (a request on its way in,
//! the relay's answer and the news that a job finished on their way out)
//! and relay ↔ downstream (before a call reaches the downstream and after
//! its answer leaves it). Every draw comes from a stream keyed by who the
//! message belongs to (logical request, send, leg or relay attempt), never
//! by the order messages happen to be sent, so strategies compared on one
//! seed see the same delays for the same messages.

use crate::fault::{Latency, LatencyConfig};
use crate::relay::{ConfigError, ATTEMPTS_LIMIT};
use crate::rng::{Domain, Seed, Streams};
use crate::time::{ms_to_nanos, Time};
use serde::{Deserialize, Serialize};

/// `[network]`: absent links add no delay (and draw nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Each way between a client and the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_relay: Option<LatencyConfig>,
    /// Each way between the relay and the downstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_downstream: Option<LatencyConfig>,
}

impl NetworkConfig {
    pub fn is_none(&self) -> bool {
        self.client_relay.is_none() && self.relay_downstream.is_none()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(l) = &self.client_relay {
            l.validate().map_err(|e| e.within("client_relay"))?;
        }
        if let Some(l) = &self.relay_downstream {
            l.validate().map_err(|e| e.within("relay_downstream"))?;
        }
        Ok(())
    }
}

/// A message between a client and the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientLeg {
    /// The request, client → relay.
    Request = 0,
    /// The relay's immediate answer, relay → client.
    Answer = 1,
    /// The news that the job finished, relay → client.
    News = 2,
}

const CLIENT_LEGS: u64 = 3;

/// Steps reserved per send for relay attempts; above [`ATTEMPTS_LIMIT`]
/// so that extra attempts (hedges) have room too.
const ATTEMPT_STEPS: u64 = 4 * ATTEMPTS_LIMIT as u64;

/// The stream step of relay attempt `attempt` of the job created by send
/// `send` of a logical request: its identity, not its place in call order.
pub fn call_step(send: u32, attempt: u32) -> u64 {
    u64::from(send) * ATTEMPT_STEPS + u64::from(attempt).min(ATTEMPT_STEPS - 1)
}

/// The links of a run, ready to draw from.
pub struct Network {
    streams: Streams,
    client_relay: Option<Latency>,
    relay_downstream: Option<Latency>,
}

impl Network {
    pub fn new(cfg: &NetworkConfig, seed: Seed) -> Network {
        Network {
            streams: seed.streams(),
            client_relay: cfg.client_relay.map(Latency::new),
            relay_downstream: cfg.relay_downstream.map(Latency::new),
        }
    }

    pub fn has_client_relay(&self) -> bool {
        self.client_relay.is_some()
    }

    pub fn has_relay_downstream(&self) -> bool {
        self.relay_downstream.is_some()
    }

    /// When message `leg` of send `send` of logical request `request`,
    /// leaving at `now`, arrives.
    pub fn client_relay(&self, now: Time, request: u64, send: u32, leg: ClientLeg) -> Time {
        let Some(l) = &self.client_relay else {
            return now;
        };
        let step = u64::from(send) * CLIENT_LEGS + leg as u64;
        let mut rng = self
            .streams
            .step_stream(Domain::ClientNetwork, request, step);
        after(now, l.draw_ms(&mut rng))
    }

    /// The two delays (there, back) of a downstream call at `step` of
    /// logical request `request`.
    pub fn relay_downstream(&self, request: u64, step: u64) -> (f64, f64) {
        let Some(l) = &self.relay_downstream else {
            return (0.0, 0.0);
        };
        let mut rng = self.streams.step_stream(Domain::CallNetwork, request, step);
        let there = l.draw_ms(&mut rng);
        (there, l.draw_ms(&mut rng))
    }
}

/// `now` plus `ms` milliseconds, saturating.
pub fn after(now: Time, ms: f64) -> Time {
    Time::from_nanos(now.as_nanos().saturating_add(ms_to_nanos(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_link_adds_nothing_and_a_present_one_is_keyed_by_identity() {
        let none = Network::new(&NetworkConfig::default(), Seed(1));
        let t = Time::from_millis(5);
        assert_eq!(none.client_relay(t, 3, 1, ClientLeg::Request), t);
        assert_eq!(none.relay_downstream(3, call_step(1, 1)), (0.0, 0.0));
        let cfg = NetworkConfig {
            client_relay: Some(LatencyConfig::Exponential { mean_ms: 100.0 }),
            relay_downstream: Some(LatencyConfig::Exponential { mean_ms: 100.0 }),
        };
        let net = Network::new(&cfg, Seed(1));
        let a = net.client_relay(t, 3, 1, ClientLeg::Request);
        assert!(a > t);
        assert_eq!(a, net.client_relay(t, 3, 1, ClientLeg::Request));
        assert_ne!(a, net.client_relay(t, 3, 1, ClientLeg::Answer));
        assert_ne!(a, net.client_relay(t, 4, 1, ClientLeg::Request));
        let (there, back) = net.relay_downstream(3, call_step(1, 1));
        assert!(there > 0.0 && back > 0.0 && there != back);
        assert_ne!(net.relay_downstream(3, call_step(1, 2)).0, there);
    }
}
