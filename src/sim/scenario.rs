//! A scenario: relay config + clients + downstream + faults + horizon + seed,
//! as one TOML file under `experiments/scenarios/`.

use super::clients::ClientsConfig;
use super::downstream::DownstreamConfig;
use super::network::NetworkConfig;
use super::routes::{validate_routes, SimRouteConfig};
use super::store::{FaultsConfig, StoreConfig};
use crate::relay::{ensure, ConfigError, RelayConfig};
use crate::toml_doc::{LocatedError, TomlDoc};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Default seed; `--seed` overrides it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Stop at this virtual time; 0 runs until no event is left.
    #[serde(default)]
    pub horizon_s: f64,
    /// Latency above which an accepted job counts as late.
    #[serde(default)]
    pub deadline_ms: Option<f64>,
    #[serde(default)]
    pub relay: RelayConfig,
    #[serde(default)]
    pub downstream: DownstreamConfig,
    /// Delays on the wire; absent: none.
    #[serde(default, skip_serializing_if = "NetworkConfig::is_none")]
    pub network: NetworkConfig,
    /// What the relay keeps its promises in; absent: memory.
    #[serde(default, skip_serializing_if = "StoreConfig::is_default")]
    pub store: StoreConfig,
    /// Faults of the relay itself (crashes); absent: none.
    #[serde(default, skip_serializing_if = "FaultsConfig::is_empty")]
    pub faults: FaultsConfig,
    pub clients: Vec<ClientsConfig>,
    /// How requests spread over `[[relay.routes]]`, and each route's
    /// downstream; absent: every request goes to the default route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<SimRouteConfig>,
}

fn default_seed() -> u64 {
    1
}

/// Longest virtual time a scenario may ask for: a week is far beyond any
/// experiment here, and anything longer is a typo (`1e300`).
pub const HORIZON_S_MAX: f64 = 7.0 * 24.0 * 3600.0;

/// Sections a scenario file may carry for a search over it (`tune` reads
/// `[tune]`); the scenario itself ignores them.
pub const SECTIONS_OF_SEARCHES: [&str; 1] = ["tune"];

/// Client populations per scenario.
const SOURCES_MAX: usize = 64;

impl Scenario {
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.trim().is_empty(), "name", "must not be empty")?;
        ensure(
            (0.0..=HORIZON_S_MAX).contains(&self.horizon_s),
            "horizon_s",
            format!(
                "must be between 0 and {HORIZON_S_MAX} s (a week; 0 runs until no event is left), got {:?}",
                self.horizon_s
            ),
        )?;
        if let Some(d) = self.deadline_ms {
            ensure(d.is_finite() && d > 0.0, "deadline_ms", "must be > 0")?;
        }
        let relay = self.relay.check().map_err(|e| e.within("relay"))?;
        validate_routes(&self.routes, &relay)?;
        self.downstream
            .validate()
            .map_err(|e| e.within("downstream"))?;
        self.network.validate().map_err(|e| e.within("network"))?;
        self.store.validate().map_err(|e| e.within("store"))?;
        self.faults.validate().map_err(|e| e.within("faults"))?;
        if let Some(last) = self.faults.crash.last() {
            ensure(
                self.horizon_s > 0.0 && last.at_s <= self.horizon_s,
                "faults.crash",
                "crashes need a horizon_s, and must happen before it",
            )?;
        }
        ensure(
            !self.clients.is_empty(),
            "clients",
            "add at least one [[clients]] population",
        )?;
        ensure(
            self.clients.len() <= SOURCES_MAX,
            "clients",
            format!("at most {SOURCES_MAX} populations"),
        )?;
        for (i, c) in self.clients.iter().enumerate() {
            c.validate(self.horizon_s)
                .map_err(|e| e.within(&format!("clients[{i}]")))?;
        }
        Ok(())
    }

    /// Parses and validates a scenario; errors name the field, line and column.
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml_with(text, origin, &[])
    }

    /// [`Scenario::from_toml`] with `path=value` overrides (`simulate --set`).
    /// The file as written is validated first, so an override cannot hide
    /// a bad value in it.
    pub fn from_toml_with(
        text: &str,
        origin: &str,
        sets: &[String],
    ) -> Result<Scenario, ScenarioError> {
        let mut doc = TomlDoc::parse(origin, text)?;
        for section in SECTIONS_OF_SEARCHES {
            doc.table_mut().remove(section);
        }
        let scenario = doc.read(Scenario::validate)?;
        if sets.is_empty() {
            return Ok(scenario);
        }
        doc.set_all(sets)?;
        doc.read(Scenario::validate)
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::load_with(path, &[])
    }

    /// Reads a scenario file and applies `path=value` overrides.
    pub fn load_with(path: &Path, sets: &[String]) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            LocatedError::outside(&origin, "", &format!("cannot read the scenario file: {e}"))
        })?;
        Scenario::from_toml_with(&text, &origin, sets)
    }
}

/// A scenario file that does not parse or validate.
pub type ScenarioError = LocatedError;

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
horizon_s = 1

[relay.retry.backoff]
base_ms = 50
cap_ms = 10

[[clients]]
kind = "open-loop"
per_s = 10
"#;

    fn error(text: &str) -> String {
        Scenario::from_toml(text, "t.toml")
            .expect_err("invalid")
            .to_string()
    }

    /// The error for `text` begins with `prefix` (messages may be reworded).
    fn refused(text: &str, prefix: &str) {
        let err = error(text);
        assert!(err.starts_with(prefix), "{err}");
    }

    #[test]
    fn validation_error_names_field_line_and_column() {
        refused(MINIMAL, "t.toml:7:10: relay.retry.backoff.cap_ms: ");
    }

    #[test]
    fn type_errors_name_the_line_in_plain_words() {
        let err = error(&MINIMAL.replace("per_s = 10", "per_s = \"fast\""));
        assert_eq!(
            err,
            "t.toml:11:9: clients[0].per_s: invalid type: string \"fast\", expected a number"
        );
    }

    #[test]
    fn errors_in_later_array_tables_and_inline_tables_point_at_their_value() {
        let text = format!("{MINIMAL}\n[[clients]]\nkind = \"open-loop\"\nper_s = -5\n")
            .replace("cap_ms = 10", "cap_ms = 100");
        refused(&text, "t.toml:15:9: clients[1].per_s: ");
        let text = MINIMAL.replace("cap_ms = 10", "cap_ms = 100")
            + "\n[relay.breaker]\ntrip = { kind = \"failure-ratio\", ratio = 2.0, window_ms = 10, calls_min = 1 }\n";
        refused(&text, "t.toml:14:42: relay.breaker.trip.ratio: ");
    }

    #[test]
    fn unknown_fields_are_refused_at_their_key() {
        refused(
            &MINIMAL.replace("cap_ms = 10", "cap_ms = 100\ncapp_ms = 3"),
            "t.toml:8:1: relay.retry.backoff.capp_ms: unknown field `capp_ms`",
        );
    }

    #[test]
    fn absurd_horizons_are_refused() {
        let text = MINIMAL
            .replace("cap_ms = 10", "cap_ms = 100")
            .replace("horizon_s = 1", "horizon_s = 1e300");
        refused(
            &text,
            "t.toml:3:13: horizon_s: must be between 0 and 604800 s",
        );
    }

    #[test]
    fn overrides_apply_after_the_file_is_validated_as_written() {
        let sets = ["relay.retry.backoff.cap_ms=100".to_string()];
        let err = Scenario::from_toml_with(MINIMAL, "t.toml", &sets).expect_err("file is bad");
        assert_eq!(err.line, Some(7), "{err}");
        let good = MINIMAL.replace("cap_ms = 10", "cap_ms = 100");
        let sets = ["relay.workers=0".to_string()];
        let err = Scenario::from_toml_with(&good, "t.toml", &sets).expect_err("override is bad");
        assert!(
            err.to_string()
                .starts_with("--set relay.workers=0: relay.workers: "),
            "{err}"
        );
        let sets = ["relay.workers=3".to_string()];
        let s = Scenario::from_toml_with(&good, "t.toml", &sets).expect("valid");
        assert_eq!(s.relay.workers, 3);
    }
}
