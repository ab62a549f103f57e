//! The real-time adapter: the relay behind HTTP, on tokio and axum.
//!
//! The very [`Relay`](crate::relay::Relay) the simulator drives, owned by one
//! task ([`actor`]), fed requests from HTTP handlers ([`http`]), downstream
//! answers from real calls ([`calls`]) and wake-ups from one timer armed at
//! `poll_timeout`, on a clock that maps tokio's monotonic time onto relay
//! time ([`clock`]). No pattern is implemented here a second time.
//!
//! - [`config`]: settings file, flags and environment, validated once;
//! - [`problem`]: RFC 9457 error bodies; [`correlation`]: request ids;
//!   [`signature`]: HMAC request signatures, [`replay_guard`]: each used once;
//!   [`auth`]: the operator token; [`job_handle`]: unguessable job names;
//!   [`payload_log`]: payloads kept out of logs unless asked for;
//! - [`views`], [`metrics`]: what `/stats`, `/metrics` and the job and
//!   dead-letter endpoints show;
//! - [`routes`]: `POST /relay/{name}`, a downstream and a cache key per route;
//! - [`app`]: start, drain and stop;
//! - [`downstream`], [`flaky`]: a standalone flaky service
//!   that counts side effects per idempotency key;
//! - [`listener`]: binding and serving, for both servers, under the
//!   [`limits`] (timeouts, head limits, connection caps, [`peer_cap`]) that the
//!   [`request_guard`] and [`body_deadline`] enforce and [`limit_log`]
//!   counts; [`json`]: what a valid JSON body is;
//! - [`store`]: where accepted work survives the process (SQLite by
//!   default), committed in groups before a turn's answers leave;
//! - [`client`]: a small HTTP client; [`bench`]: the accept-path benchmark;
//! - [`telemetry`]: a span per job over OTLP, when `[telemetry]` asks.

pub mod actor;
pub mod app;
pub mod auth;
pub mod bench;
pub mod body_deadline;
pub mod calls;
pub mod client;
pub mod clock;
pub mod config;
pub mod correlation;
pub mod downstream;
pub mod flaky;
pub mod http;
pub mod job_handle;
pub mod json;
pub mod limit_log;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod payload_log;
pub mod peer_cap;
pub mod problem;
pub mod replay_guard;
pub mod request_guard;
pub mod routes;
pub mod shutdown;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod views;

pub use app::{serve, DrainReport, Outcome, RelayServer};
pub use config::{ServeArgs, Settings};
pub use downstream::{run_downstream, DownstreamArgs, DownstreamService, DownstreamSettings};
