//! Setting one field of a scenario by its path, e.g. `relay.queue.capacity`.
//!
//! A sweep changes fields of a scenario that the sweep code knows nothing
//! about, so it edits the scenario's TOML form and reads it back through the
//! scenario's own serde rules: any field a scenario file can set can be
//! swept, and a path that names no field is refused by the same
//! `deny_unknown_fields` that refuses a typo in a scenario file, with the
//! names that are valid there.

use crate::sim::Scenario;
use toml::{Table, Value};

/// Most segments a path may have (the deepest scenario field is far less).
const SEGMENTS_MAX: usize = 16;

/// The scenario as a TOML value, to edit.
pub fn to_value(scenario: &Scenario) -> Result<Value, String> {
    Value::try_from(scenario).map_err(|e| format!("cannot write the scenario as TOML: {e}"))
}

/// The scenario a TOML value describes, checked as a scenario file is.
pub fn from_value(value: Value) -> Result<Scenario, String> {
    let scenario: Scenario = value
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim_end().to_string())?;
    scenario.validate().map_err(|e| e.to_string())?;
    Ok(scenario)
}

/// Sets `path` (dot-separated keys; a number indexes an array, as in
/// `clients.0.per_s`) to `new`, creating tables that are absent (an
/// optional section such as `relay.rate_limit`).
pub fn set(root: &mut Value, path: &str, new: Value) -> Result<(), String> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.len() > SEGMENTS_MAX || segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "`{path}` is not a path of dot-separated field names"
        ));
    }
    let (last, parents) = segments.split_last().ok_or("empty path")?;
    let mut here = root;
    for segment in parents {
        here = step(here, segment, path)?;
    }
    match here {
        Value::Table(table) => {
            table.insert((*last).to_string(), new);
            Ok(())
        }
        Value::Array(items) => {
            let slot = index(items, last, path)?;
            *slot = new;
            Ok(())
        }
        _ => Err(format!("`{path}`: `{last}` is inside a value, not a table")),
    }
}

fn step<'v>(here: &'v mut Value, segment: &str, path: &str) -> Result<&'v mut Value, String> {
    match here {
        Value::Table(table) => Ok(table
            .entry(segment.to_string())
            .or_insert_with(|| Value::Table(Table::new()))),
        Value::Array(items) => index(items, segment, path),
        _ => Err(format!(
            "`{path}`: `{segment}` is inside a value, not a table"
        )),
    }
}

fn index<'v>(items: &'v mut [Value], segment: &str, path: &str) -> Result<&'v mut Value, String> {
    let len = items.len();
    segment
        .parse::<usize>()
        .ok()
        .and_then(|i| items.get_mut(i))
        .ok_or_else(|| format!("`{path}`: `{segment}` is not an index below {len}"))
}

/// The value at `path`, if the scenario sets it.
pub fn get<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(root, |here, segment| match here {
        Value::Table(table) => table.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A scalar as text, as a summary quotes it (`1000`, `0.5`, `fail-fast`).
pub fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Scenario {
        Scenario::from_toml(
            "name = \"b\"\n[[clients]]\nkind = \"open-loop\"\nper_s = 1\nrequests_max = 1\n",
            "inline",
        )
        .expect("valid")
    }

    #[test]
    fn a_set_path_changes_only_that_field() {
        let base = base();
        let mut value = to_value(&base).expect("value");
        assert_eq!(from_value(value.clone()).expect("round trip"), base);
        set(&mut value, "relay.queue.capacity", Value::Integer(7)).expect("set");
        set(&mut value, "clients.0.per_s", Value::Integer(3)).expect("set");
        set(
            &mut value,
            "relay.rate_limit.requests_max",
            Value::Integer(2),
        )
        .expect("set");
        let s = from_value(value).expect("valid");
        assert_eq!(s.relay.queue.capacity, 7);
        assert_eq!(s.relay.rate_limit.map(|r| r.requests_max), Some(2));
        let mut back = s.clone();
        back.relay.queue.capacity = base.relay.queue.capacity;
        back.relay.rate_limit = None;
        back.clients = base.clients.clone();
        assert_eq!(back, base);
    }

    #[test]
    fn an_unknown_field_is_refused_with_the_valid_names() {
        let mut value = to_value(&base()).expect("value");
        set(&mut value, "relay.queue.capcity", Value::Integer(7)).expect("set");
        let err = from_value(value).expect_err("unknown field");
        assert!(err.contains("capcity") && err.contains("capacity"), "{err}");
        let mut value = to_value(&base()).expect("value");
        let err = set(&mut value, "clients.3.per_s", Value::Integer(1)).expect_err("index");
        assert!(err.contains("below 1"), "{err}");
    }
}
