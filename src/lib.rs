//! Resilient Relay: the patterns that keep a service correct under retries,
//! spikes and partial outages, written as sans-IO state machines, and a
//! deterministic discrete-event simulator that drives them.
//!
//! - [`relay`]: the patterns and the [`relay::Relay`] that composes them.
//!   Depends on nothing that does I/O.
//! - [`fault`]: one downstream fault model for the simulator and the server.
//! - [`sim`]: scheduler, clients, downstream and faults on virtual time.
//! - [`experiment`]: parameter sweeps that write CSVs, charts and summaries.
//! - [`search`]: swarm testing over drawn scenarios, with liveness and shrinking.
//! - [`loadgen`]: the simulator's clients played in real time against a live relay.
//!
//! Driving the relay by hand, with a clock that only moves when told:
//!
//! ```
//! use resilient_relay::relay::{Answer, Output, Relay, RelayConfig, Request};
//! use resilient_relay::rng::{Domain, Seed};
//! use resilient_relay::time::Time;
//!
//! let settings = RelayConfig::default().check().expect("defaults are valid");
//! let mut relay: Relay<u64, &str> = Relay::new(&settings, Seed(7).stream(Domain::Relay, 0));
//! let now = Time::from_millis(1);
//! let req = Request { client: 1, key: Some(42), fingerprint: 0, payload: "hello" };
//! let Answer::Accepted { job } = relay.handle_request(now, req) else { panic!("queued") };
//! // The relay asks for a downstream call; the driver makes it and reports back.
//! let Some(Output::Call { call, .. }) = relay.poll_output() else { panic!("a call") };
//! relay.handle_call_result(Time::from_millis(20), call, Ok("done"));
//! // The same key again replays the stored answer without a second call.
//! let again = Request { client: 1, key: Some(42), fingerprint: 0, payload: "hello" };
//! assert_eq!(relay.handle_request(Time::from_millis(30), again), Answer::Replayed { job, response: "done" });
//! ```

pub mod rng;
pub mod time;

pub mod cli;
pub mod decision_log;
pub mod experiment;
pub mod fault;
pub mod loadgen;
#[cfg(test)]
mod planted;
pub mod relay;
pub mod search;
pub mod server;
pub mod sim;
pub mod toml_doc;
