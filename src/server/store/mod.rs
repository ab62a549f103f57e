//! Where accepted work survives the process: one small trait, three backends.
//!
//! The relay says what must be made durable ([`Record`]s, drained every
//! turn); the actor hands a turn's records to a [`Store`] on a thread of its
//! own ([`committer`]) and performs the turn's outputs only once they are
//! committed. On start the store is loaded ([`Loaded`]) and the relay is
//! rebuilt from it with `Relay::recover`.
//!
//! - [`memory`]: nothing is kept (today's behaviour, and no wait);
//! - [`sqlite`]: one file, crash-safe, the default for `serve`;
//! - `postgres`: several replicas share one database.

pub mod committer;
pub mod memory;
pub mod postgres;
pub mod sqlite;

use super::actor::Key;
use super::routes::route_names;
use crate::relay::{Record, RelayConfig, RouteId, Stored};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One store backend, driven from a blocking thread (not the async runtime).
pub trait Store: Send + 'static {
    /// Opens or creates it; what the relay restarts from.
    fn load(&mut self, now_unix_ms: u64) -> Result<Loaded, StoreError>;
    /// Makes `records` durable, in order, as one commit (group commit).
    fn commit(&mut self, records: &[Record<Key, Bytes>]) -> Result<(), StoreError>;
    /// Whether a commit could succeed now, tried while commits fail with
    /// nothing left to retry, so that readiness comes back with the store.
    fn probe(&mut self) -> Result<(), StoreError> {
        self.commit(&[])
    }
}

/// What a store holds as the relay restarts from it.
pub struct Loaded {
    pub stored: Stored<Key, Bytes>,
    /// The store's epoch: relay Time 0 is this unix millisecond, so stored
    /// Times stay meaningful across restarts (the server's Clock starts at
    /// now_unix_ms - epoch_unix_ms).
    pub epoch_unix_ms: u64,
    /// The job-handle HMAC key, created with the store, so status URLs
    /// survive a restart.
    pub handle_key: [u8; 32],
}

/// Why a store cannot be opened or written; each names the file or URL and
/// says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {} is damaged ({detail}): restore it from a backup, or move it \
         away to start with an empty store (its jobs are then lost)",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the store {} has schema version {found}, newer than the {supported} this \
         build reads: run the newer build, or give another --store",
        path.display()
    )]
    NewerVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the store {} cannot be written (read-only file, directory or file system): \
         make it writable, or give another --store",
        path.display()
    )]
    ReadOnly { path: PathBuf },
    #[error(
        "the disk holding the store {} is full: free space there; until then new work \
         is refused with 503",
        path.display()
    )]
    DiskFull { path: PathBuf },
    #[error(
        "the store {url} is unavailable ({detail}): new work is refused with 503 until it is back"
    )]
    Unavailable { url: String, detail: String },
    #[error(
        "the store {store} holds {item} for route `{route}`, which these settings do not \
         have: add a route named `{route}` back to [[relay.routes]] (and its [[routes]]), or \
         start once with the settings it was written under to let its jobs finish and to \
         redrive or delete its dead letters"
    )]
    UnknownRoute {
        store: String,
        /// The job or letter, e.g. `job 12-3`.
        item: String,
        route: String,
    },
    #[error("the store {} cannot be used: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The routes as a store knows them: by name, since the order of
/// `[[relay.routes]]` (a [`RouteId`] is an index into it) may change
/// between two runs on one store. A stored name of `''` is the default
/// route: what rows written before stores kept routes hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteNames {
    /// By [`RouteId`]: the relay's order, the default route first.
    names: Vec<String>,
}

impl RouteNames {
    /// The routes of `relay`.
    pub fn of(relay: &RelayConfig) -> RouteNames {
        let names = route_names(relay);
        assert!(!names.is_empty(), "a relay has a default route");
        RouteNames { names }
    }

    /// What a store writes for `route`; `None` for a route the relay does
    /// not have (which it never reports).
    pub fn name(&self, route: RouteId) -> Option<&str> {
        self.names.get(route.index()).map(String::as_str)
    }

    /// The route a stored name means under these settings.
    pub fn resolve(&self, stored: &str) -> Option<RouteId> {
        if stored.is_empty() {
            return Some(RouteId::DEFAULT);
        }
        let i = self.names.iter().position(|n| n == stored)?;
        u16::try_from(i).ok().map(RouteId)
    }

    /// A stored name as these settings show it (`''`: the default route's).
    pub fn shown<'a>(&'a self, stored: &'a str) -> &'a str {
        match self.names.first() {
            Some(default) if stored.is_empty() => default,
            _ => stored,
        }
    }

    /// Every stored name [`RouteNames::resolve`] knows, `''` included: what
    /// a query for this relay's jobs matches.
    pub fn stored(&self) -> Vec<String> {
        let mut all = self.names.clone();
        all.push(String::new());
        all
    }
}

/// The relay without `[[relay.routes]]`: one route, `default`.
impl Default for RouteNames {
    fn default() -> Self {
        RouteNames::of(&RelayConfig::default())
    }
}

/// Which store `serve` keeps its work in (`--store`, `server.store`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StoreSpec {
    /// Nothing survives the process.
    #[default]
    Memory,
    /// An SQLite file; a relative path is resolved against the settings
    /// file's directory (or the working directory without one).
    Sqlite(PathBuf),
    /// A PostgreSQL URL shared by replicas.
    Postgres(String),
}

/// What `serve` uses when nothing says otherwise.
pub const DEFAULT_SQLITE_FILE: &str = "relay.db";

impl StoreSpec {
    /// The store `serve` uses by default: `relay.db` beside the settings
    /// file, or in the working directory.
    pub fn serve_default(config: Option<&Path>) -> StoreSpec {
        StoreSpec::Sqlite(PathBuf::from(DEFAULT_SQLITE_FILE)).beside(config)
    }

    /// A relative SQLite path made relative to the settings file's directory.
    pub fn beside(self, config: Option<&Path>) -> StoreSpec {
        match self {
            StoreSpec::Sqlite(p) if p.is_relative() => {
                let dir = config
                    .and_then(Path::parent)
                    .filter(|d| !d.as_os_str().is_empty());
                StoreSpec::Sqlite(dir.map_or(p.clone(), |d| d.join(&p)))
            }
            other => other,
        }
    }

    pub fn is_durable(&self) -> bool {
        !matches!(self, StoreSpec::Memory)
    }
}

/// `--store` that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a store: give `memory`, `sqlite:PATH` (e.g. sqlite:relay.db) or \
     `postgres://user@host/db`"
)]
pub struct BadStoreSpec(pub String);

impl FromStr for StoreSpec {
    type Err = BadStoreSpec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            Ok(StoreSpec::Memory)
        } else if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(BadStoreSpec(s.to_owned()));
            }
            Ok(StoreSpec::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreSpec::Postgres(s.to_owned()))
        } else {
            Err(BadStoreSpec(s.to_owned()))
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Memory => f.write_str("memory"),
            StoreSpec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreSpec::Postgres(url) => f.write_str(url),
        }
    }
}

impl Serialize for StoreSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StoreSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How hard a commit insists that its records reached the disk
/// (`--store-sync`, `server.store_sync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StoreSync {
    /// Every commit is synced to the disk before its 202: nothing
    /// acknowledged is lost on a process crash or a power loss.
    #[default]
    Full,
    /// Commits reach the OS at once and the disk at checkpoints: nothing
    /// is lost on a process crash; a power loss may lose the last commits.
    Normal,
    /// Never synced: nothing is lost on a process crash; a power loss may
    /// lose recent commits or damage the file.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::RouteConfig;

    #[test]
    fn a_stored_route_is_known_by_name_and_the_empty_name_is_the_default() {
        let relay = RelayConfig {
            routes: ["orders", "search"]
                .iter()
                .map(|n| RouteConfig {
                    name: (*n).to_owned(),
                    ..RouteConfig::default()
                })
                .collect(),
            ..RelayConfig::default()
        };
        let routes = RouteNames::of(&relay);
        assert_eq!(routes.resolve("search"), Some(RouteId(1)));
        assert_eq!(routes.resolve(""), Some(RouteId::DEFAULT));
        assert_eq!(
            routes.resolve("default"),
            None,
            "not a route of these settings"
        );
        assert_eq!(routes.name(RouteId(1)), Some("search"));
        assert_eq!(routes.name(RouteId(2)), None);
        assert_eq!((routes.shown(""), routes.shown("gone")), ("orders", "gone"));
        assert_eq!(routes.stored(), ["orders", "search", ""]);
        assert_eq!(
            RouteNames::default().name(RouteId::DEFAULT),
            Some("default")
        );
    }
}
