//! The one error type for invalid options, shared by every pattern's config.

use crate::time::ms_to_duration;
use std::fmt;
use std::time::Duration;

/// A bad option: which field (dotted path, as written in the TOML file or as
/// a flag) and why. Raw options are checked once, at the edge, into typed
/// settings, so the patterns themselves can assume sane values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field with the section it was found in.
    pub fn within(mut self, section: &str) -> ConfigError {
        self.field = format!("{section}.{}", self.field);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.reason)
    }
}

/// Checks `cond`, or names `field` and says `reason`.
pub fn ensure(cond: bool, field: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if cond {
        Ok(())
    } else {
        Err(ConfigError::new(field, reason))
    }
}

/// A finite, non-negative number of milliseconds.
pub fn ensure_ms(value: f64, field: &str) -> Result<(), ConfigError> {
    ensure(
        value.is_finite() && value >= 0.0,
        field,
        format!("must be a finite number of milliseconds ≥ 0, got {value}"),
    )
}

/// A probability in [0, 1].
pub fn ensure_probability(value: f64, field: &str) -> Result<(), ConfigError> {
    ensure(
        (0.0..=1.0).contains(&value),
        field,
        format!("must be a probability between 0 and 1, got {value}"),
    )
}

/// Parses a field of milliseconds: finite and ≥ 0, as whole nanoseconds.
pub fn parse_ms(value: f64, field: &str) -> Result<Duration, ConfigError> {
    ensure_ms(value, field)?;
    Ok(ms_to_duration(value))
}
