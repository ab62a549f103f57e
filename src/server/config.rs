//! The server's settings: one file, overridable by flags and environment.
//!
//! The `[relay]` section is the very [`RelayConfig`] the simulator's
//! scenarios use, so a scenario's relay can be served as it is. Around it,
//! `[server]` holds what only a real server has (address, body limit, HMAC
//! secret, drain deadline, channel bounds) and `[downstream]` says whom the
//! relay calls. Sources are layered: built-in defaults, then the file, then
//! `--set path=value` (or `RELAY_SET`), then the named flags (or their
//! `RELAY_*` variables). The result is validated once; an error names the
//! field as written in the file.

use super::flaky::{FaultConfig, LatencyKind};
use crate::relay::{ensure, ensure_ms, ConfigError, RelayConfig};
use crate::time::ms_to_nanos;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What only the real-time server has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted (413 beyond).
    pub body_bytes_max: usize,
    /// When set, every `POST /relay` must carry a valid `X-Signature`.
    pub hmac_secret: Option<Secret>,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            body_bytes_max: 64 * 1024,
            hmac_secret: None,
            drain_deadline_ms: 10_000.0,
            commands_max: 4_096,
            results_max: 4_096,
            call_timeout_ms_max: 60_000.0,
            response_bytes_max: 1024 * 1024,
            seed: 1,
        }
    }
}

/// Upper bound on body limits: the relay holds bodies in memory.
const BODY_BYTES_LIMIT: usize = 64 * 1024 * 1024;
const CHANNEL_LIMIT: usize = 1_000_000;

impl ServerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bytes = |v: usize, field: &str| {
            ensure(
                (1..=BODY_BYTES_LIMIT).contains(&v),
                field,
                format!("must be between 1 and {BODY_BYTES_LIMIT} bytes, got {v}"),
            )
        };
        bytes(self.body_bytes_max, "body_bytes_max")?;
        bytes(self.response_bytes_max, "response_bytes_max")?;
        if let Some(s) = &self.hmac_secret {
            ensure(!s.0.is_empty(), "hmac_secret", "must not be empty when set")?;
        }
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

/// A secret that never shows in logs or printed settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

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
        }
    }
}

impl Settings {
    /// Checks every section; the error names the field with its section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate().map_err(|e| e.within("server"))?;
        self.relay.validate().map_err(|e| e.within("relay"))?;
        self.downstream
            .validate()
            .map_err(|e| e.within("downstream"))
    }

    /// Reads settings from TOML text plus `path=value` overrides.
    pub fn from_toml(text: &str, sets: &[String]) -> Result<Settings, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new("<file>", e.to_string()))?;
        default_history(&mut table);
        for set in sets {
            apply_set(&mut table, set)?;
        }
        default_downstream_kind(&mut table);
        serde_path_to_error::deserialize(table)
            .map_err(|e| ConfigError::new(e.path().to_string(), e.into_inner().to_string()))
    }
}

/// The server remembers finished jobs unless the file says how many.
fn default_history(table: &mut toml::Table) {
    let relay = table
        .entry("relay")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(relay) = relay {
        relay
            .entry("history_max")
            .or_insert(toml::Value::Integer(HISTORY_MAX_DEFAULT as i64));
    }
}

/// A `[downstream]` section that does not say its kind is the built-in one.
fn default_downstream_kind(table: &mut toml::Table) {
    if let Some(toml::Value::Table(d)) = table.get_mut("downstream") {
        d.entry("kind")
            .or_insert_with(|| toml::Value::String("flaky".to_owned()));
    }
}

/// Applies one `a.b.c=value` override; `value` is TOML (`3`, `true`,
/// `"full-jitter"`), or else taken as a bare string.
fn apply_set(table: &mut toml::Table, set: &str) -> Result<(), ConfigError> {
    let (path, raw) = set
        .split_once('=')
        .ok_or_else(|| ConfigError::new(set, "an override is written `path=value`"))?;
    let path = path.trim();
    let value = parse_value(raw.trim());
    let mut parts: Vec<&str> = path.split('.').collect();
    let leaf = parts.pop().filter(|l| !l.is_empty());
    let Some(leaf) = leaf else {
        return Err(ConfigError::new(path, "empty setting name"));
    };
    let mut here = table;
    for part in parts {
        let next = here
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = match next {
            toml::Value::Table(t) => t,
            _ => return Err(ConfigError::new(path, format!("`{part}` is not a section"))),
        };
    }
    here.insert(leaf.to_owned(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// `serve`'s command line. Every flag also reads a `RELAY_*` variable.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Settings file (TOML) with `[server]`, `[relay]` and `[downstream]` sections.
    #[arg(long, env = "RELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:3000 (port 0 picks a free one).
    #[arg(long, env = "RELAY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Use the built-in in-process flaky downstream.
    #[arg(long, value_enum, env = "RELAY_DOWNSTREAM")]
    pub downstream: Option<DownstreamKind>,
    /// Call a real downstream: each attempt is a POST to this URL.
    #[arg(long, env = "RELAY_DOWNSTREAM_URL", value_name = "URL")]
    pub downstream_url: Option<String>,
    /// Built-in downstream: probability that a call fails.
    #[arg(long, env = "RELAY_FAILURE_RATE")]
    pub failure_rate: Option<f64>,
    /// Built-in downstream: constant or mean latency.
    #[arg(long, env = "RELAY_LATENCY_MS")]
    pub latency_ms: Option<f64>,
    /// Built-in downstream: latency distribution.
    #[arg(long, value_enum, env = "RELAY_LATENCY_KIND")]
    pub latency_kind: Option<LatencyKind>,
    /// Built-in downstream: seed of its draws.
    #[arg(long, env = "RELAY_SEED")]
    pub seed: Option<u64>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RELAY_BODY_BYTES_MAX")]
    pub body_bytes_max: Option<usize>,
    /// Require `X-Signature: sha256=<hex HMAC of the body>` with this secret.
    #[arg(long, env = "RELAY_HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,
    /// How long accepted work may run after SIGTERM or Ctrl-C.
    #[arg(long, env = "RELAY_DRAIN_DEADLINE_MS")]
    pub drain_deadline_ms: Option<f64>,
    /// Refuse `POST /relay` without an `Idempotency-Key`.
    #[arg(long, env = "RELAY_IDEMPOTENCY_REQUIRED")]
    pub idempotency_required: bool,
    /// Concurrent downstream calls.
    #[arg(long, env = "RELAY_WORKERS")]
    pub workers: Option<usize>,
    /// Jobs that may wait for a worker.
    #[arg(long, env = "RELAY_QUEUE_CAPACITY")]
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
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let text = match &self.config {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            None => String::new(),
        };
        let origin = self
            .config
            .as_ref()
            .map_or_else(|| "settings".to_owned(), |p| p.display().to_string());
        let mut settings =
            Settings::from_toml(&text, &self.set).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        self.apply_flags(&mut settings)?;
        settings
            .validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(settings)
    }

    fn apply_flags(&self, s: &mut Settings) -> anyhow::Result<()> {
        set(&mut s.server.listen, self.listen);
        set(&mut s.server.body_bytes_max, self.body_bytes_max);
        set(&mut s.server.drain_deadline_ms, self.drain_deadline_ms);
        if let Some(secret) = &self.hmac_secret {
            s.server.hmac_secret = Some(Secret(secret.clone()));
        }
        if self.idempotency_required {
            s.relay.idempotency.required = true;
        }
        set(&mut s.relay.workers, self.workers);
        set(&mut s.relay.queue.capacity, self.queue_capacity);
        self.apply_downstream_flags(&mut s.downstream)
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
        assert!(err.reason.contains("body_bytes_maxx"), "{err}");
        let s = Settings::from_toml("[server]\nbody_bytes_max = 0\n", &[]).expect("parses");
        assert_eq!(s.validate().unwrap_err().field, "server.body_bytes_max");
        let s = Settings::from_toml("[relay.queue]\ncapacity = 0\n", &[]).expect("parses");
        assert_eq!(s.validate().unwrap_err().field, "relay.queue.capacity");
        let s = Settings::from_toml("", &["downstream.failure_rate=2".into()]).expect("parses");
        assert_eq!(s.validate().unwrap_err().field, "downstream.failure_rate");
        let err = Settings::from_toml("", &["relay.workers=many".into()]).unwrap_err();
        assert_eq!(err.field, "relay.workers");
    }

    #[test]
    fn the_example_settings_file_is_valid() {
        let text = include_str!("../../experiments/server/relay.toml");
        let s = Settings::from_toml(text, &[]).expect("parses");
        s.validate().expect("valid");
        assert!(s.relay.breaker.is_some() && s.relay.rate_limit.is_some());
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
