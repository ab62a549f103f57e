//! The server's settings: one file, overridable by flags and environment.
//!
//! The `[relay]` section is the very [`RelayConfig`] the simulator's
//! scenarios use, so a scenario's relay can be served as it is. Around it,
//! `[server]` holds what only a real server has (address, body limit, HMAC
//! secret, drain deadline, channel bounds) and `[downstream]` says whom the
//! relay calls. Sources are layered: built-in defaults, then the file, then
//! `--set path=value` (or `RELAY_SET`), then the named flags (or their
//! `RELAY_*` variables). The result is validated once; an error names the
//! file, line, column and field, or the flag or variable that set it.

use super::flaky::{FaultConfig, LatencyKind};
use super::limits::ConnectionLimits;
use super::routes::ServerRouteConfig;
use super::store::committer::COMMIT_WAIT_MS_MAX;
use super::store::{StoreSpec, StoreSync};
use super::telemetry::TelemetryConfig;
use crate::relay::{ensure, ensure_ms, ConfigError, RelayConfig};
use crate::time::ms_to_nanos;
use crate::toml_doc::{LocatedError, TomlDoc};
use clap::builder::TypedValueParser;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// What only the real-time server has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted (413 beyond).
    pub body_bytes_max: usize,
    /// When set, every `POST /relay` must carry a valid `X-Signature`.
    pub hmac_secret: Option<Secret>,
    /// How far a signature's timestamp may be from the server's clock, in
    /// seconds either way; a signature is also good once within it.
    pub signature_window_s: u64,
    /// Signatures remembered to refuse replays; when this many are live,
    /// new signed requests get 503 until the oldest leaves the window.
    pub replay_cache_max: usize,
    /// When set, `/dlq*`, `/stats` and `/metrics` want
    /// `Authorization: Bearer <token>`; when not, they answer loopback peers only.
    pub operator_token: Option<Secret>,
    /// Write payloads (escaped) into log lines; off: ids, keys and sizes only.
    pub log_payloads: bool,
    /// On SIGTERM or Ctrl-C, how long accepted work may still run.
    pub drain_deadline_ms: f64,
    /// Requests waiting for the relay's task; one more answers 503.
    pub commands_max: usize,
    /// Downstream answers waiting to be fed back (bounds the result channel).
    pub results_max: usize,
    /// Bound on one downstream call when the relay sets no attempt timeout.
    pub call_timeout_ms_max: f64,
    /// Largest downstream answer read.
    pub response_bytes_max: usize,
    /// Seed of the relay's jitter draws.
    pub seed: u64,
    /// Timeouts, head limits and the connection cap (`[server.limits]`).
    pub limits: ConnectionLimits,
    /// Where accepted work is kept: `memory`, `sqlite:PATH` (relative to
    /// this file's directory) or `postgres://…`. `serve` uses
    /// `sqlite:relay.db` when neither the file nor `--store` says.
    pub store: StoreSpec,
    /// How hard a commit insists its records reached the disk.
    pub store_sync: StoreSync,
    /// How long the store waits for more records to join a commit, in ms.
    /// 0 by default: the turns that arrive while a commit syncs join the
    /// next one anyway, and a fixed wait caps a closed loop of `c` clients
    /// at `c` requests per wait (measured in the README).
    pub commit_wait_ms: u64,
    /// PostgreSQL only: how long a replica's jobs stay its own without a
    /// renewal (renewed every third of it); after it, another replica
    /// takes them over. In ms.
    pub store_lease_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            body_bytes_max: 64 * 1024,
            hmac_secret: None,
            signature_window_s: 300,
            replay_cache_max: 500_000,
            operator_token: None,
            log_payloads: false,
            drain_deadline_ms: 10_000.0,
            commands_max: 4_096,
            results_max: 4_096,
            call_timeout_ms_max: 60_000.0,
            response_bytes_max: 1024 * 1024,
            seed: 1,
            limits: ConnectionLimits::default(),
            store: StoreSpec::Memory,
            store_sync: StoreSync::Full,
            commit_wait_ms: 0,
            store_lease_ms: 10_000,
        }
    }
}

/// Bounds of `store_lease_ms`.
pub const STORE_LEASE_MS_MIN: u64 = 300;
pub const STORE_LEASE_MS_MAX: u64 = 600_000;

/// Upper bound on body limits: the relay holds bodies in memory.
const BODY_BYTES_LIMIT: usize = 64 * 1024 * 1024;
const CHANNEL_LIMIT: usize = 1_000_000;
/// Upper bound on the replay cache (64 bytes an entry, measured: 10M is 640 MB).
const REPLAY_CACHE_LIMIT: usize = 10_000_000;

impl ServerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits.validate().map_err(|e| e.within("limits"))?;
        let bytes = |v: usize, field: &str| {
            ensure(
                (1..=BODY_BYTES_LIMIT).contains(&v),
                field,
                format!("must be between 1 and {BODY_BYTES_LIMIT} bytes, got {v}"),
            )
        };
        bytes(self.body_bytes_max, "body_bytes_max")?;
        bytes(self.response_bytes_max, "response_bytes_max")?;
        for (secret, field) in [
            (&self.hmac_secret, "hmac_secret"),
            (&self.operator_token, "operator_token"),
        ] {
            if let Some(s) = secret {
                ensure(!s.0.is_empty(), field, "must not be empty when set")?;
                ensure(
                    s.0 != REDACTED,
                    field,
                    "is the placeholder --print-config writes, not a secret: give the real one",
                )?;
            }
        }
        ensure(
            (1..=3_600).contains(&self.signature_window_s),
            "signature_window_s",
            format!(
                "must be between 1 and 3600 seconds, got {}",
                self.signature_window_s
            ),
        )?;
        ensure(
            (1..=REPLAY_CACHE_LIMIT).contains(&self.replay_cache_max),
            "replay_cache_max",
            format!(
                "must be between 1 and {REPLAY_CACHE_LIMIT}, got {}",
                self.replay_cache_max
            ),
        )?;
        ensure_ms(self.drain_deadline_ms, "drain_deadline_ms")?;
        ensure(
            self.drain_deadline_ms <= 3_600_000.0,
            "drain_deadline_ms",
            "must be ≤ 1 hour",
        )?;
        for (v, field) in [
            (self.commands_max, "commands_max"),
            (self.results_max, "results_max"),
        ] {
            ensure(
                (1..=CHANNEL_LIMIT).contains(&v),
                field,
                format!("must be between 1 and {CHANNEL_LIMIT}, got {v}"),
            )?;
        }
        ensure(
            self.commit_wait_ms <= COMMIT_WAIT_MS_MAX,
            "commit_wait_ms",
            format!(
                "must be between 0 and {COMMIT_WAIT_MS_MAX} ms (a longer wait only delays \
                 every answer), got {}",
                self.commit_wait_ms
            ),
        )?;
        ensure(
            (STORE_LEASE_MS_MIN..=STORE_LEASE_MS_MAX).contains(&self.store_lease_ms),
            "store_lease_ms",
            format!(
                "must be between {STORE_LEASE_MS_MIN} and {STORE_LEASE_MS_MAX} ms (shorter \
                 leases expire under a slow database; longer ones delay a takeover), got {}",
                self.store_lease_ms
            ),
        )?;
        ensure_ms(self.call_timeout_ms_max, "call_timeout_ms_max")?;
        ensure(
            (1.0..=3_600_000.0).contains(&self.call_timeout_ms_max),
            "call_timeout_ms_max",
            "must be between 1 ms and 1 hour",
        )
    }

    pub fn drain_deadline(&self) -> Duration {
        Duration::from_nanos(ms_to_nanos(self.drain_deadline_ms))
    }

    pub fn call_timeout_max(&self) -> Duration {
        Duration::from_nanos(ms_to_nanos(self.call_timeout_ms_max))
    }
}

/// A secret that never shows in logs or printed settings: it is read like
/// a string, and written (`--print-config`, `Debug`) as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

/// What a secret shows as.
pub const REDACTED: &str = "<redacted>";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// Setting paths that hold secrets: not accepted through `--set`, which
/// would put them on the command line.
const SECRET_PATHS: [&str; 2] = ["server.hmac_secret", "server.operator_token"];

/// Whom the relay calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DownstreamConfig {
    /// The built-in in-process flaky downstream.
    Flaky(FaultConfig),
    /// A real HTTP service; each attempt is a `POST url`.
    Url { url: String },
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        DownstreamConfig::Flaky(FaultConfig::default())
    }
}

impl DownstreamConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            DownstreamConfig::Flaky(f) => f.validate(),
            DownstreamConfig::Url { url } => {
                let parsed: Result<hyper::Uri, _> = url.parse();
                let ok = parsed.is_ok_and(|u| u.scheme_str() == Some("http") && u.host().is_some());
                ensure(
                    ok,
                    "url",
                    format!("must be an http:// URL with a host, got `{url}`"),
                )
            }
        }
    }
}

/// Everything `serve` needs, resolved and validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default = "server_relay_defaults")]
    pub relay: RelayConfig,
    #[serde(default)]
    pub downstream: DownstreamConfig,
    /// `[[routes]]`: a route's own downstream and cache key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ServerRouteConfig>,
    /// Absent: no spans are exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryConfig>,
}

/// Finished jobs the server remembers for `GET /relay/{id}` unless told otherwise.
pub const HISTORY_MAX_DEFAULT: usize = 10_000;

fn server_relay_defaults() -> RelayConfig {
    RelayConfig {
        history_max: HISTORY_MAX_DEFAULT,
        ..RelayConfig::default()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server: ServerConfig::default(),
            relay: server_relay_defaults(),
            downstream: DownstreamConfig::default(),
            routes: Vec::new(),
            telemetry: None,
        }
    }
}

impl Settings {
    /// Checks every section; the error names the field with its section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.relay.validate().map_err(|e| e.within("relay"))?;
        super::routes::validate(&self.routes, &self.relay)?;
        self.downstream
            .validate()
            .map_err(|e| e.within("downstream"))?;
        match &self.telemetry {
            Some(t) => t.validate().map_err(|e| e.within("telemetry")),
            None => Ok(()),
        }
    }

    /// Reads settings from TOML text plus `path=value` overrides (not yet
    /// validated: flags come next).
    pub fn from_toml(text: &str, sets: &[String]) -> Result<Settings, LocatedError> {
        let mut doc = TomlDoc::parse("settings", text)?;
        doc.set_all(sets)?;
        Settings::from_doc(&mut doc)
    }

    /// Reads settings from a parsed document. A scenario file is refused
    /// with a hint: its `[downstream]` is the simulator's, not the server's.
    pub fn from_doc(doc: &mut TomlDoc<'_>) -> Result<Settings, LocatedError> {
        if let Some(key) = ["clients", "horizon_s"].into_iter().find(|k| doc.has(k)) {
            return Err(doc.error_at(key, None, SCENARIO_HINT));
        }
        default_downstream_kind(doc.table_mut());
        let mut settings: Settings = doc.deserialize()?;
        if !doc.has("relay.history_max") {
            settings.relay.history_max = HISTORY_MAX_DEFAULT;
        }
        Ok(settings)
    }
}

const SCENARIO_HINT: &str = "this is a scenario file; `serve --config` reads a settings file \
with [server], [relay] and [downstream] sections (see experiments/server/relay.toml): \
copy the scenario's [relay] section into one";

/// A `[downstream]` section that does not say its kind is the built-in
/// one, and so is a route's `downstream`.
fn default_downstream_kind(table: &mut DeTable<'_>) {
    default_kind(table);
    if let Some(DeValue::Array(routes)) = table.get_mut("routes").map(Spanned::get_mut) {
        for route in routes.iter_mut() {
            if let DeValue::Table(r) = route.get_mut() {
                default_kind(r);
            }
        }
    }
}

fn default_kind(table: &mut DeTable<'_>) {
    if let Some(DeValue::Table(d)) = table.get_mut("downstream").map(Spanned::get_mut) {
        if d.get("kind").is_none() {
            d.insert(
                Spanned::new(0..0, Cow::Borrowed("kind")),
                Spanned::new(0..0, DeValue::String(Cow::Borrowed("flaky"))),
            );
        }
    }
}

/// `serve`'s command line. Every flag also reads a `RELAY_*` variable.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Settings file (TOML) with `[server]`, `[relay]` and `[downstream]`
    /// sections, e.g. experiments/server/relay.toml (a scenario file is refused).
    #[arg(long, env = "RELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one)
    /// [default: 127.0.0.1:3000, or the file's `server.listen`].
    #[arg(long, env = "RELAY_LISTEN", value_parser = Typed::<SocketAddr>::new(ADDRESS))]
    pub listen: Option<SocketAddr>,
    /// Use the built-in in-process flaky downstream.
    #[arg(long, value_enum, env = "RELAY_DOWNSTREAM")]
    pub downstream: Option<DownstreamKind>,
    /// Call a real downstream: each attempt is a POST to this URL.
    #[arg(long, env = "RELAY_DOWNSTREAM_URL", value_name = "URL")]
    pub downstream_url: Option<String>,
    /// Built-in downstream: probability that a call fails.
    #[arg(long, env = "RELAY_FAILURE_RATE", value_parser = Typed::<f64>::new(NUMBER))]
    pub failure_rate: Option<f64>,
    /// Built-in downstream: constant or mean latency.
    #[arg(long, env = "RELAY_LATENCY_MS", value_parser = Typed::<f64>::new(NUMBER))]
    pub latency_ms: Option<f64>,
    /// Built-in downstream: latency distribution.
    #[arg(long, value_enum, env = "RELAY_LATENCY_KIND")]
    pub latency_kind: Option<LatencyKind>,
    /// Built-in downstream: seed of its draws.
    #[arg(long, env = "RELAY_SEED", value_parser = Typed::<u64>::new(WHOLE))]
    pub seed: Option<u64>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RELAY_BODY_BYTES_MAX", value_parser = Typed::<usize>::new(WHOLE))]
    pub body_bytes_max: Option<usize>,
    /// Deprecated: the secret shows in the process list. Use
    /// --hmac-secret-file or the RELAY_HMAC_SECRET variable.
    #[arg(long, env = "RELAY_HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,
    /// Require signed `POST /relay` (`X-Signature: v1=<hex>`, see README),
    /// with the secret in this file (one trailing newline is ignored). Or
    /// set RELAY_HMAC_SECRET to the secret itself.
    #[arg(long, env = "RELAY_HMAC_SECRET_FILE", value_name = "FILE")]
    pub hmac_secret_file: Option<PathBuf>,
    /// Guard `/dlq*`, `/stats` and `/metrics` with `Authorization: Bearer
    /// <token>`, the token in this file. Or set RELAY_OPERATOR_TOKEN to the
    /// token itself. Without one they answer loopback peers only.
    #[arg(long, env = "RELAY_OPERATOR_TOKEN_FILE", value_name = "FILE")]
    pub operator_token_file: Option<PathBuf>,
    /// Write payloads, escaped, into log lines (default: ids, keys and sizes only).
    #[arg(long, env = "RELAY_LOG_PAYLOADS")]
    pub log_payloads: bool,
    /// How long accepted work may run after SIGTERM or Ctrl-C.
    #[arg(long, env = "RELAY_DRAIN_DEADLINE_MS", value_parser = Typed::<f64>::new(NUMBER))]
    pub drain_deadline_ms: Option<f64>,
    /// Refuse `POST /relay` without an `Idempotency-Key`.
    #[arg(long, env = "RELAY_IDEMPOTENCY_REQUIRED")]
    pub idempotency_required: bool,
    /// Concurrent downstream calls.
    #[arg(long, env = "RELAY_WORKERS", value_parser = Typed::<usize>::new(WHOLE))]
    pub workers: Option<usize>,
    /// Jobs that may wait for a worker.
    #[arg(long, env = "RELAY_QUEUE_CAPACITY", value_parser = Typed::<usize>::new(WHOLE))]
    pub queue_capacity: Option<usize>,
    /// Any setting by its path, e.g. `relay.retry.backoff.kind=full-jitter`
    /// (repeatable; `RELAY_SET` takes several separated by `;`).
    #[arg(
        long = "set",
        env = "RELAY_SET",
        value_delimiter = ';',
        value_name = "PATH=VALUE"
    )]
    pub set: Vec<String>,
    /// Where accepted work is kept: `sqlite:PATH` (crash-safe, one file),
    /// `memory` (lost when the process ends) or `postgres://…` (shared by
    /// replicas) [default: sqlite:relay.db beside --config, else in the
    /// working directory, or the file's `server.store`].
    #[arg(long, env = "RELAY_STORE", value_name = "STORE")]
    pub store: Option<StoreSpec>,
    /// How hard each commit syncs: `full` loses nothing acknowledged even on
    /// power loss; `normal` and `off` lose nothing on a process crash, but
    /// may lose the last commits on power loss (`off` may damage the file).
    #[arg(long, value_enum, env = "RELAY_STORE_SYNC")]
    pub store_sync: Option<StoreSync>,
    /// How long the store waits for more records to join a commit (0 to 50).
    #[arg(long, env = "RELAY_COMMIT_WAIT_MS", value_parser = Typed::<u64>::new(WHOLE))]
    pub commit_wait_ms: Option<u64>,
    /// PostgreSQL: how long a replica's jobs stay its own without a renewal
    /// before another replica takes them over, in ms (300 to 600000).
    #[arg(long, env = "RELAY_STORE_LEASE_MS", value_parser = Typed::<u64>::new(WHOLE))]
    pub store_lease_ms: Option<u64>,
    /// Export a span per job over OTLP/HTTP to this collector, e.g.
    /// http://127.0.0.1:4318 [default: the file's `telemetry.otlp_endpoint`,
    /// else no export].
    #[arg(long, env = "RELAY_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Print the resolved settings as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DownstreamKind {
    /// The built-in in-process flaky downstream.
    Flaky,
}

impl ServeArgs {
    /// Layers defaults, the file, `--set` and the flags, then validates.
    /// An error names the file, line, column and field, or the flag or
    /// variable that set the value.
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let (origin, text) = match &self.config {
            Some(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            ),
            None => ("settings".to_owned(), String::new()),
        };
        refuse_secret_sets(&self.set)?;
        let mut doc = TomlDoc::parse(origin, &text)?;
        doc.set_all(&self.set)?;
        let mut settings = Settings::from_doc(&mut doc)?;
        settings.server.store = match (&self.store, doc.has("server.store")) {
            (Some(flag), _) => flag.clone(),
            (None, true) => settings.server.store.clone().beside(self.config.as_deref()),
            (None, false) => StoreSpec::serve_default(self.config.as_deref()),
        };
        self.apply_flags(&mut settings)?;
        for (path, flag) in self.given_flags() {
            doc.mark_override(path, source_of(flag));
        }
        settings.validate().map_err(|e| doc.config_error(&e))?;
        Ok(settings)
    }

    /// (setting path, flag) of every flag given.
    #[rustfmt::skip] // a table reads best one row per line
    fn given_flags(&self) -> Vec<(&'static str, &'static str)> {
        [
            (self.listen.is_some(), "server.listen", "listen"),
            (self.body_bytes_max.is_some(), "server.body_bytes_max", "body-bytes-max"),
            (self.hmac_secret.is_some(), "server.hmac_secret", "hmac-secret"),
            (self.hmac_secret_file.is_some(), "server.hmac_secret", "hmac-secret-file"),
            (self.operator_token_file.is_some(), "server.operator_token", "operator-token-file"),
            (self.drain_deadline_ms.is_some(), "server.drain_deadline_ms", "drain-deadline-ms"),
            (self.workers.is_some(), "relay.workers", "workers"),
            (self.queue_capacity.is_some(), "relay.queue.capacity", "queue-capacity"),
            (self.downstream_url.is_some(), "downstream", "downstream-url"),
            (self.failure_rate.is_some(), "downstream.failure_rate", "failure-rate"),
            (self.latency_ms.is_some(), "downstream.latency_ms", "latency-ms"),
            (self.seed.is_some(), "downstream.seed", "seed"),
            (self.store.is_some(), "server.store", "store"),
            (self.store_sync.is_some(), "server.store_sync", "store-sync"),
            (self.commit_wait_ms.is_some(), "server.commit_wait_ms", "commit-wait-ms"),
            (self.store_lease_ms.is_some(), "server.store_lease_ms", "store-lease-ms"),
            (self.otlp_endpoint.is_some(), "telemetry.otlp_endpoint", "otlp-endpoint"),
        ]
        .into_iter()
        .filter(|(given, ..)| *given)
        .map(|(_, path, flag)| (path, flag))
        .collect()
    }

    fn apply_flags(&self, s: &mut Settings) -> anyhow::Result<()> {
        set(&mut s.server.listen, self.listen);
        set(&mut s.server.body_bytes_max, self.body_bytes_max);
        set(&mut s.server.drain_deadline_ms, self.drain_deadline_ms);
        set(&mut s.server.store_sync, self.store_sync);
        set(&mut s.server.commit_wait_ms, self.commit_wait_ms);
        set(&mut s.server.store_lease_ms, self.store_lease_ms);
        if let Some(secret) = self.hmac_secret()? {
            s.server.hmac_secret = Some(secret);
        }
        if let Some(token) = self.operator_token()? {
            s.server.operator_token = Some(token);
        }
        if self.log_payloads {
            s.server.log_payloads = true;
        }
        if self.idempotency_required {
            s.relay.idempotency.required = true;
        }
        set(&mut s.relay.workers, self.workers);
        set(&mut s.relay.queue.capacity, self.queue_capacity);
        if let Some(url) = &self.otlp_endpoint {
            match &mut s.telemetry {
                Some(t) => t.otlp_endpoint = url.clone(),
                None => s.telemetry = Some(TelemetryConfig::to(url.clone())),
            }
        }
        self.apply_downstream_flags(&mut s.downstream)
    }

    /// The HMAC secret from `--hmac-secret-file`, `RELAY_HMAC_SECRET` or
    /// (deprecated, with a warning) `--hmac-secret`; at most one of them.
    fn hmac_secret(&self) -> anyhow::Result<Option<Secret>> {
        let on_line = on_command_line("--hmac-secret");
        match (&self.hmac_secret_file, &self.hmac_secret) {
            (Some(_), Some(_)) => anyhow::bail!(
                "give the HMAC secret once: --hmac-secret-file or RELAY_HMAC_SECRET, not both"
            ),
            (Some(path), None) => read_secret(path, "--hmac-secret-file").map(Some),
            (None, Some(value)) => {
                if on_line {
                    tracing::warn!(
                        "--hmac-secret is deprecated: the secret shows in the process list; \
                         use --hmac-secret-file or RELAY_HMAC_SECRET"
                    );
                }
                Ok(Some(Secret(value.clone())))
            }
            (None, None) => Ok(None),
        }
    }

    /// The operator token from `--operator-token-file` or `RELAY_OPERATOR_TOKEN`.
    fn operator_token(&self) -> anyhow::Result<Option<Secret>> {
        let from_env = std::env::var("RELAY_OPERATOR_TOKEN").ok();
        match (&self.operator_token_file, from_env) {
            (Some(_), Some(_)) => anyhow::bail!(
                "give the operator token once: --operator-token-file or RELAY_OPERATOR_TOKEN, not both"
            ),
            (Some(path), None) => read_secret(path, "--operator-token-file").map(Some),
            (None, Some(value)) => Ok(Some(Secret(value))),
            (None, None) => Ok(None),
        }
    }

    fn apply_downstream_flags(&self, d: &mut DownstreamConfig) -> anyhow::Result<()> {
        let fault_flags = self.failure_rate.is_some()
            || self.latency_ms.is_some()
            || self.latency_kind.is_some()
            || self.seed.is_some();
        match (&self.downstream_url, self.downstream) {
            (Some(_), Some(_)) => {
                anyhow::bail!("give --downstream flaky or --downstream-url, not both")
            }
            (Some(_), None) if fault_flags => {
                anyhow::bail!("--failure-rate, --latency-ms, --latency-kind and --seed apply to --downstream flaky only")
            }
            (Some(url), None) => *d = DownstreamConfig::Url { url: url.clone() },
            (None, Some(DownstreamKind::Flaky)) if !matches!(d, DownstreamConfig::Flaky(_)) => {
                *d = DownstreamConfig::Flaky(FaultConfig::default());
            }
            _ => {}
        }
        if let DownstreamConfig::Flaky(f) = d {
            set(&mut f.failure_rate, self.failure_rate);
            set(&mut f.latency_ms, self.latency_ms);
            set(&mut f.latency, self.latency_kind);
            set(&mut f.seed, self.seed);
        } else if fault_flags {
            anyhow::bail!("--failure-rate, --latency-ms, --latency-kind and --seed apply to the flaky downstream only");
        }
        Ok(())
    }
}

const WHOLE: &str = "a whole number ≥ 0";
const NUMBER: &str = "a number";
const ADDRESS: &str = "an address such as 127.0.0.1:3000";

/// Parses a flag's value; a bad one is reported in words (`a whole number
/// ≥ 0`), naming the `RELAY_*` variable when that is where it came from.
#[derive(Clone)]
struct Typed<T> {
    expected: &'static str,
    kind: PhantomData<fn() -> T>,
}

impl<T> Typed<T> {
    const fn new(expected: &'static str) -> Typed<T> {
        Typed {
            expected,
            kind: PhantomData,
        }
    }
}

impl<T: FromStr + Clone + Send + Sync + 'static> TypedValueParser for Typed<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        if let Some(parsed) = value.to_str().and_then(|v| v.parse().ok()) {
            return Ok(parsed);
        }
        let source = arg.map_or_else(|| "value".to_owned(), |a| source_of_arg(a, value));
        let message = format!(
            "{source}: `{}` is not {}\n",
            value.to_string_lossy(),
            self.expected
        );
        Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd))
    }
}

/// `--flag`, or `environment variable RELAY_X` when the value is the
/// variable's and the flag is not on the command line.
fn source_of_arg(arg: &clap::Arg, value: &OsStr) -> String {
    let flag = arg
        .get_long()
        .map_or_else(String::new, |l| format!("--{l}"));
    match arg.get_env().and_then(OsStr::to_str) {
        Some(env) if std::env::var_os(env).as_deref() == Some(value) && !on_command_line(&flag) => {
            format!("environment variable {env}")
        }
        _ => flag,
    }
}

/// What set the setting of flag `--long`: the flag, or its `RELAY_*`
/// variable if the flag is not on the command line.
fn source_of(long: &str) -> String {
    let command = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
    let env = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(clap::Arg::get_env)
        .and_then(OsStr::to_str)
        .map(str::to_owned);
    let flag = format!("--{long}");
    match env {
        Some(env) if std::env::var_os(&env).is_some() && !on_command_line(&flag) => {
            format!("environment variable {env}")
        }
        _ => flag,
    }
}

fn on_command_line(flag: &str) -> bool {
    let with_value = format!("{flag}=");
    std::env::args_os().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&with_value))
    })
}

/// Reads a secret file: its text less one trailing newline, not empty. A
/// file others may read is used, with a warning.
fn read_secret(path: &std::path::Path, flag: &str) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{flag}: cannot read {}: {e}", path.display()))?;
    let secret = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    anyhow::ensure!(!secret.is_empty(), "{flag}: {} is empty", path.display());
    warn_if_readable_by_others(path, flag);
    Ok(Secret(secret.to_owned()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &std::path::Path, flag: &str) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
    if mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "{flag}: the file is readable by other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &std::path::Path, _: &str) {}

/// `--set` puts its value on the command line: refuse it for secrets.
fn refuse_secret_sets(sets: &[String]) -> anyhow::Result<()> {
    for set in sets {
        let path = set.split_once('=').map_or(set.as_str(), |(p, _)| p).trim();
        if SECRET_PATHS.contains(&path) {
            anyhow::bail!(
                "--set {path}: secrets are not taken from --set (it shows in the process list); \
                 use --hmac-secret-file / RELAY_HMAC_SECRET, --operator-token-file / \
                 RELAY_OPERATOR_TOKEN, or the settings file"
            );
        }
    }
    Ok(())
}

fn set<T>(field: &mut T, flag: Option<T>) {
    if let Some(v) = flag {
        *field = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_remember_finished_jobs() {
        let s = Settings::from_toml("", &[]).expect("empty file is fine");
        s.validate().expect("defaults are valid");
        assert_eq!(s.relay.history_max, HISTORY_MAX_DEFAULT);
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn a_scenario_relay_section_reads_as_is() {
        let text = "[relay]\nworkers = 3\n[relay.queue]\ncapacity = 7\n";
        let s = Settings::from_toml(text, &[]).expect("parses");
        assert_eq!((s.relay.workers, s.relay.queue.capacity), (3, 7));
        assert_eq!(s.relay.history_max, HISTORY_MAX_DEFAULT);
    }

    #[test]
    fn overrides_reach_any_field_with_typed_values() {
        let sets = [
            "relay.retry.backoff.kind=full-jitter".to_owned(),
            "relay.workers=4".to_owned(),
            "server.hmac_secret=\"k\"".to_owned(),
            "downstream.kind=url".to_owned(),
            "downstream.url=http://127.0.0.1:9/work".to_owned(),
        ];
        let s = Settings::from_toml("", &sets).expect("parses");
        assert_eq!(s.relay.workers, 4);
        assert_eq!(s.server.hmac_secret, Some(Secret("k".into())));
        assert!(matches!(s.downstream, DownstreamConfig::Url { .. }));
        s.validate().expect("valid");
    }

    #[test]
    fn errors_name_the_field_with_its_section() {
        let err = Settings::from_toml("[server]\nbody_bytes_maxx = 3\n", &[]).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(
                "settings:2:1: server.body_bytes_maxx: unknown field `body_bytes_maxx`"
            ),
            "{shown}"
        );
        assert!(!shown.contains('\n'), "one line: {shown}");
        let s = Settings::from_toml("[server]\nbody_bytes_max = 0\n", &[]).expect("parses");
        assert_eq!(s.validate().unwrap_err().field, "server.body_bytes_max");
        let s = Settings::from_toml("[relay.queue]\ncapacity = 0\n", &[]).expect("parses");
        assert_eq!(s.validate().unwrap_err().field, "relay.queue.capacity");
        let s = Settings::from_toml("", &["downstream.failure_rate=2".into()]).expect("parses");
        assert_eq!(s.validate().unwrap_err().field, "downstream.failure_rate");
        let err = Settings::from_toml("", &["relay.workers=many".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--set relay.workers=many: relay.workers: invalid type: string \"many\", expected a whole number ≥ 0"
        );
    }

    #[test]
    fn a_scenario_file_is_refused_with_a_hint() {
        let text = include_str!("../../experiments/scenarios/outage.toml");
        let err = Settings::from_toml(text, &[]).unwrap_err().to_string();
        assert!(err.contains("this is a scenario file"), "{err}");
        assert!(err.contains("experiments/server/relay.toml"), "{err}");
    }

    #[test]
    fn a_bad_flag_value_is_blamed_on_the_flag() {
        let args = ServeArgs {
            workers: Some(0),
            ..ServeArgs::default()
        };
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.starts_with("--workers: relay.workers: "), "{err}");
    }

    #[test]
    fn the_example_settings_file_is_valid() {
        let text = include_str!("../../experiments/server/relay.toml");
        let s = Settings::from_toml(text, &[]).expect("parses");
        s.validate().expect("valid");
        assert!(s.relay.breaker.is_some() && s.relay.rate_limit.is_some());
    }

    #[test]
    fn secret_files_lose_one_trailing_newline_and_set_refuses_secrets() {
        let dir = std::env::temp_dir();
        let hmac = dir.join(format!("relay-unit-hmac-{}", std::process::id()));
        let token = dir.join(format!("relay-unit-token-{}", std::process::id()));
        std::fs::write(&hmac, "h-secret\r\n").expect("writes");
        std::fs::write(&token, "t-secret\n\n").expect("writes");
        let args = ServeArgs {
            hmac_secret_file: Some(hmac),
            operator_token_file: Some(token),
            ..ServeArgs::default()
        };
        let s = args.resolve().expect("valid");
        assert_eq!(s.server.hmac_secret, Some(Secret("h-secret".into())));
        assert_eq!(s.server.operator_token, Some(Secret("t-secret\n".into())));
        let shown = toml::to_string(&s).expect("serialises");
        assert!(!shown.contains("-secret"), "{shown}");
        let sets = ServeArgs {
            set: vec!["server.hmac_secret=\"x\"".into()],
            ..ServeArgs::default()
        };
        let err = sets.resolve().unwrap_err().to_string();
        assert!(err.contains("secrets are not taken from --set"), "{err}");
        let printed = Settings::from_toml(&shown, &[]).expect("printed settings read back");
        let err = printed.validate().unwrap_err();
        assert_eq!(err.field, "server.hmac_secret", "{err}");
    }

    #[test]
    fn telemetry_is_off_unless_a_section_or_flag_asks() {
        let s = Settings::from_toml("", &[]).expect("parses");
        assert_eq!(s.telemetry, None);
        assert!(!toml::to_string(&s)
            .expect("serialises")
            .contains("telemetry"));
        let text = "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n";
        let s = Settings::from_toml(text, &[]).expect("parses");
        let t = s.telemetry.as_ref().expect("a section");
        assert_eq!(
            (t.service_name.as_str(), t.queue_spans_max),
            ("resilient-relay", 4_096)
        );
        s.validate().expect("valid");
        let err = Settings::from_toml("[telemetry]\nservice_name = \"x\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("otlp_endpoint"), "{err}");
        let bad = "[telemetry]\notlp_endpoint = \"https://c:4318\"\n";
        let s = Settings::from_toml(bad, &[]).expect("parses");
        assert_eq!(s.validate().unwrap_err().field, "telemetry.otlp_endpoint");
        let args = ServeArgs {
            otlp_endpoint: Some("ftp://c".into()),
            ..ServeArgs::default()
        };
        let err = args.resolve().unwrap_err().to_string();
        assert!(
            err.starts_with("--otlp-endpoint: telemetry.otlp_endpoint: "),
            "{err}"
        );
        let args = ServeArgs {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            ..ServeArgs::default()
        };
        let s = args.resolve().expect("valid");
        assert_eq!(
            s.telemetry.map(|t| t.otlp_endpoint).as_deref(),
            Some("http://127.0.0.1:4318")
        );
    }

    #[test]
    fn flags_override_the_file() {
        let args = ServeArgs {
            workers: Some(2),
            downstream_url: Some("http://127.0.0.1:9000/work".into()),
            ..ServeArgs::default()
        };
        let s = args.resolve().expect("valid");
        assert_eq!(s.relay.workers, 2);
        assert!(matches!(s.downstream, DownstreamConfig::Url { .. }));
        let bad = ServeArgs {
            downstream_url: Some("ftp://x".into()),
            ..ServeArgs::default()
        };
        let err = bad.resolve().unwrap_err().to_string();
        assert!(err.contains("downstream.url"), "{err}");
    }
}
