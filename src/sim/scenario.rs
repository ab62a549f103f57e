//! A scenario: relay config + clients + downstream + faults + horizon + seed,
//! as one TOML file under `experiments/scenarios/`.

use super::clients::ClientsConfig;
use super::downstream::DownstreamConfig;
use crate::relay::{ensure, ConfigError, RelayConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
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
    pub clients: Vec<ClientsConfig>,
}

fn default_seed() -> u64 {
    1
}

/// Client populations per scenario.
const SOURCES_MAX: usize = 64;

impl Scenario {
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.name.trim().is_empty(), "name", "must not be empty")?;
        ensure(
            self.horizon_s.is_finite() && self.horizon_s >= 0.0,
            "horizon_s",
            "must be ≥ 0 (0 runs until no event is left)",
        )?;
        if let Some(d) = self.deadline_ms {
            ensure(d.is_finite() && d > 0.0, "deadline_ms", "must be > 0")?;
        }
        self.relay.validate().map_err(|e| e.within("relay"))?;
        self.downstream
            .validate()
            .map_err(|e| e.within("downstream"))?;
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

    /// Parses and validates a scenario; errors name the field and the line.
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = parse(text).map_err(|(path, e)| ScenarioError {
            origin: origin.to_string(),
            line: locate(text, &path).or_else(|| e.span().map(|s| line_of(text, s.start))),
            message: if path.is_empty() || path == "." {
                e.message().to_string()
            } else {
                format!("`{path}`: {}", e.message())
            },
        })?;
        scenario.validate().map_err(|e| ScenarioError {
            origin: origin.to_string(),
            line: locate(text, &e.field),
            message: e.to_string(),
        })?;
        Ok(scenario)
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: origin.clone(),
            line: None,
            message: format!("cannot read the scenario file: {e}"),
        })?;
        Scenario::from_toml(&text, &origin)
    }
}

/// A scenario file that does not parse or validate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.origin, line, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// Deserializes, keeping the path of the field that failed (serde loses
/// spans inside tagged enums such as `[[clients]]`).
fn parse(text: &str) -> Result<Scenario, (String, toml::de::Error)> {
    let de = toml::Deserializer::parse(text).map_err(|e| (String::new(), e))?;
    serde_path_to_error::deserialize(de).map_err(|e| (e.path().to_string(), e.into_inner()))
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// Best-effort line of a dotted field path such as `clients[1].retry.timeout_ms`:
/// inside the deepest section header that names a prefix of the path (the
/// i-th one for `[[array]]` tables), the line of the leaf key, or else of the
/// nearest parent key (for values inside inline tables).
fn locate(text: &str, field: &str) -> Option<usize> {
    let parts: Vec<(&str, usize)> = field
        .split('.')
        .map(|p| match p.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().unwrap_or(0)),
            None => (p, 0),
        })
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let (mut from, mut depth) = (0, 0);
    for d in (1..parts.len()).rev() {
        let header: Vec<&str> = parts[..d].iter().map(|(n, _)| *n).collect();
        let header = header.join(".");
        let nth = parts[d - 1].1;
        let found = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim();
                l == format!("[{header}]") || l == format!("[[{header}]]")
            })
            .nth(nth);
        if let Some((i, _)) = found {
            (from, depth) = (i + 1, d);
            break;
        }
    }
    let end = lines[from.min(lines.len())..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |i| from + i);
    let key_line = |name: &str| {
        (from..end).find(|&i| {
            let rest = lines[i].trim_start().strip_prefix(name);
            rest.is_some_and(|r| r.trim_start().starts_with('=') || r.starts_with('.'))
        })
    };
    (depth..parts.len())
        .rev()
        .find_map(|k| key_line(parts[k].0))
        .map(|i| i + 1)
}

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

    #[test]
    fn validation_error_names_field_and_line() {
        let err = Scenario::from_toml(MINIMAL, "t.toml").unwrap_err();
        assert_eq!(err.line, Some(7), "{err}");
        assert!(err.message.contains("relay.retry.backoff.cap_ms"), "{err}");
        assert!(err.to_string().starts_with("t.toml:7:"), "{err}");
    }

    #[test]
    fn parse_error_names_the_line() {
        let text = MINIMAL.replace("per_s = 10", "per_s = \"fast\"");
        let err = Scenario::from_toml(&text, "t.toml").unwrap_err();
        assert_eq!(err.line, Some(11), "{err}");
        assert!(err.message.contains("clients[0].per_s"), "{err}");
    }

    #[test]
    fn errors_in_later_array_tables_and_inline_tables_point_at_their_line() {
        let text = format!("{MINIMAL}\n[[clients]]\nkind = \"open-loop\"\nper_s = -5\n")
            .replace("cap_ms = 10", "cap_ms = 100");
        let err = Scenario::from_toml(&text, "t.toml").unwrap_err();
        assert!(err.message.contains("clients[1].per_s"), "{err}");
        assert_eq!(err.line, Some(15), "{err}");
        let text = MINIMAL.replace("cap_ms = 10", "cap_ms = 100")
            + "\n[relay.breaker]\ntrip = { kind = \"failure-ratio\", ratio = 2.0, window_ms = 10, calls_min = 1 }\n";
        let err = Scenario::from_toml(&text, "t.toml").unwrap_err();
        assert!(err.message.contains("relay.breaker.trip.ratio"), "{err}");
        assert_eq!(err.line, Some(14), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = MINIMAL.replace("cap_ms = 10", "cap_ms = 100\ncapp_ms = 3");
        let err = Scenario::from_toml(&text, "t.toml").unwrap_err();
        assert!(err.message.contains("capp_ms"), "{err}");
        assert_eq!(err.line, Some(8));
    }
}
