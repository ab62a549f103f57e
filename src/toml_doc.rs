//! A TOML document read with exact positions.
//!
//! Scenarios, experiment definitions and the server's settings file are all
//! read here: parsed with spans, layered with `--set path=value` overrides,
//! deserialized keeping the path of the field that failed, and every error,
//! from serde or from a later `validate()` that names a field, reported as
//! `file:line:col: field.path: message`. A value that came from outside the
//! file (`--set`, a flag) is blamed on what set it instead of a line.

use crate::relay::ConfigError;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A parsed document, its origin, and which fields were set from outside it.
#[derive(Clone, Debug)]
pub struct TomlDoc<'s> {
    origin: String,
    source: &'s str,
    root: Spanned<DeTable<'s>>,
    /// Fields replaced from outside the file: (dotted path, what set it).
    overrides: Vec<(String, String)>,
}

impl<'s> TomlDoc<'s> {
    /// Parses `source`; `origin` is how errors name it (usually the path).
    pub fn parse(origin: impl Into<String>, source: &'s str) -> Result<TomlDoc<'s>, LocatedError> {
        let origin = origin.into();
        match DeTable::parse(source) {
            Ok(root) => Ok(TomlDoc {
                origin,
                source,
                root,
                overrides: Vec::new(),
            }),
            Err(e) => Err(LocatedError::at(
                &origin,
                source,
                e.span(),
                "",
                e.message().trim_end(),
            )),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The top-level table.
    pub fn table(&self) -> &DeTable<'s> {
        self.root.get_ref()
    }

    pub fn table_mut(&mut self) -> &mut DeTable<'s> {
        self.root.get_mut()
    }

    /// Applies one `a.b.c=value` override; `value` is TOML (`3`, `true`,
    /// `"full-jitter"`), or else taken as a bare string. An array element
    /// is named by its index, as `clients[0].schedule[1].per_s` or
    /// `clients.0.schedule.1.per_s`; it must exist (an override changes a
    /// written element, it never appends one).
    pub fn set(&mut self, assignment: &'s str) -> Result<(), LocatedError> {
        let by = format!("--set {assignment}");
        let refuse = |field: &str, message: &str| LocatedError::outside(&by, field, message);
        let (path, raw) = assignment
            .split_once('=')
            .ok_or_else(|| refuse("", "an override is written `path=value`"))?;
        let (path, raw) = (path.trim(), raw.trim());
        let value = DeValue::parse(raw)
            .map(Spanned::into_inner)
            .unwrap_or(DeValue::String(Cow::Borrowed(raw)));
        let steps = set_segments(path).map_err(|m| refuse(path, &m))?;
        let field = canonical(&steps);
        place(self.root.get_mut(), &steps, value).map_err(|m| refuse(&field, &m))?;
        self.mark_override(&field, by);
        Ok(())
    }

    /// The value the document (file or overrides) writes at `field`
    /// (`clients[0].per_s`), if any.
    pub fn get(&self, field: &str) -> Option<&DeValue<'s>> {
        value_at(self.table(), field)
    }

    /// Applies every override in order.
    pub fn set_all(&mut self, assignments: &'s [String]) -> Result<(), LocatedError> {
        assignments.iter().try_for_each(|a| self.set(a))
    }

    /// Says that `path` (and everything under it) was set by `by`, e.g. a flag.
    pub fn mark_override(&mut self, path: &str, by: impl Into<String>) {
        self.overrides.push((path.to_string(), by.into()));
    }

    /// Deserializes the whole document; an error names the field and its position.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, LocatedError> {
        deserialize(self.root.clone()).map_err(|e| self.error_at(&e.field, e.span, &e.message))
    }

    /// Deserializes, then checks with `validate`; either error is located.
    pub fn read<T: DeserializeOwned>(
        &self,
        validate: impl FnOnce(&T) -> Result<(), ConfigError>,
    ) -> Result<T, LocatedError> {
        let value = self.deserialize()?;
        validate(&value).map_err(|e| self.config_error(&e))?;
        Ok(value)
    }

    /// Whether the document (file or overrides) writes `field`.
    pub fn has(&self, field: &str) -> bool {
        find(self.table(), field).len() == segments(field).len()
    }

    /// Locates a `validate()` error by the field it names.
    pub fn config_error(&self, e: &ConfigError) -> LocatedError {
        self.error_at(&e.field, None, &e.reason)
    }

    /// An error about `field`, at `span` if known, else where the document
    /// writes the field (or its nearest written parent).
    pub fn error_at(&self, field: &str, span: Option<Range<usize>>, message: &str) -> LocatedError {
        if let Some(by) = self.overridden_by(field) {
            return LocatedError::outside(by, field, message);
        }
        let span = span.or_else(|| span_of(self.table(), field));
        LocatedError::at(&self.origin, self.source, span, field, message)
    }

    fn overridden_by(&self, field: &str) -> Option<&str> {
        let under = |path: &str| {
            field == path
                || field
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        };
        self.overrides
            .iter()
            .rev()
            .find(|(path, _)| under(path))
            .map(|(_, by)| by.as_str())
    }
}

/// A config error with where it is: `file:line:col: field: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LocatedError {
    /// The file, or what set the value from outside it (`--set a=1`, `--workers`).
    pub origin: String,
    /// 1-based line and column (in characters) in the file, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the field, e.g. `clients[1].retry.timeout_ms`; empty
    /// for a syntax error.
    pub field: String,
    pub message: String,
}

impl LocatedError {
    /// An error at byte range `span` of `source` (none: no position).
    pub fn at(
        origin: &str,
        source: &str,
        span: Option<Range<usize>>,
        field: &str,
        message: &str,
    ) -> LocatedError {
        let position = span.map(|s| line_col(source, s.start));
        LocatedError {
            origin: origin.to_string(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    /// An error about a value set from outside the file, by `by`.
    pub fn outside(by: &str, field: &str, message: &str) -> LocatedError {
        LocatedError::at(by, "", None, field, message)
    }
}

impl fmt::Display for LocatedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A deserialization error with the dotted path of the field that failed.
#[derive(Debug)]
pub struct PathError {
    pub field: String,
    /// Where the TOML reader saw the bad value or key, if it knows.
    pub span: Option<Range<usize>>,
    /// What was wrong, in plain words ([`friendly`]).
    pub message: String,
}

/// Deserializes `table`, keeping the path of the field that failed. Serde
/// loses the path inside internally tagged enums; an unknown key there is
/// found by name in the table.
pub fn deserialize<T: DeserializeOwned>(table: Spanned<DeTable<'_>>) -> Result<T, PathError> {
    let root = table.clone();
    let deserializer = toml::de::Deserializer::from(table);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let mut field = clean_path(&e.path().to_string());
        let error = e.into_inner();
        let mut span = error.span();
        let found = match unknown_key(error.message()) {
            Some(key) if !ends_with_key(&field, key) => {
                key_in(root.get_ref(), &field, key).map(|span| (key.to_string(), span))
            }
            Some(_) => None,
            None if lost(root.get_ref(), &field, &span) => {
                quoted_child(root.get_ref(), &field, error.message())
            }
            None => None,
        };
        if let Some((key, found)) = found {
            field = join(&field, &key);
            span = Some(found);
        }
        PathError {
            field,
            span,
            message: friendly(error.message()),
        }
    })
}

/// Whether serde reported an error at the table `field` itself, as it does
/// for a bad value inside an internally tagged enum (at the table, or at
/// the array of tables that holds it).
fn lost(root: &DeTable<'_>, field: &str, span: &Option<Range<usize>>) -> bool {
    let is_table = value_at(root, field).is_some_and(DeValue::is_table);
    let at_a_parent = || {
        find(root, field)
            .iter()
            .any(|n| Some(&n.value) == span.as_ref())
    };
    is_table && (span.is_none() || at_a_parent())
}

/// The one key of the table at `field` whose value `message` quotes
/// (`invalid type: string "x", …`), with the value's span.
fn quoted_child(root: &DeTable<'_>, field: &str, message: &str) -> Option<(String, Range<usize>)> {
    let table = value_at(root, field)?.as_table()?;
    let mut quoted = table.iter().filter(|(_, v)| quotes(message, v.get_ref()));
    let (key, value) = quoted.next()?;
    match quoted.next() {
        Some(_) => None,
        None => Some((key.get_ref().to_string(), value.span())),
    }
}

/// Whether `message` quotes `value` the way serde shows an unexpected value.
fn quotes(message: &str, value: &DeValue<'_>) -> bool {
    let shown = match value {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) if i.radix() == 10 => format!("integer `{}`", i.as_str()),
        DeValue::Float(f) => format!("floating point `{}`", f.as_str()),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        _ => return false,
    };
    message.contains(&shown)
}

/// `unknown field `x`, expected …` → `x`.
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(key, _)| key)
}

/// The span of `key` inside the table at `field`, if both exist.
fn key_in(root: &DeTable<'_>, field: &str, key: &str) -> Option<Range<usize>> {
    let table = if field.is_empty() {
        Some(root)
    } else {
        value_at(root, field).and_then(|v| v.as_table())
    };
    table?.get_key_value(key).map(|(k, _)| k.span())
}

/// Whether serde's path already names the unknown key.
fn ends_with_key(field: &str, key: &str) -> bool {
    field == key || field.ends_with(&format!(".{key}"))
}

fn join(field: &str, key: &str) -> String {
    if field.is_empty() {
        key.to_string()
    } else {
        format!("{field}.{key}")
    }
}

/// Drops the markers `toml::Spanned` fields leave in serde's path, and the
/// `.` serde prints for the root.
fn clean_path(path: &str) -> String {
    let path = path
        .split('.')
        .map(|p| {
            p.strip_prefix("$__serde_spanned_private_value")
                .unwrap_or(p)
        })
        .filter(|p| !p.is_empty() && !p.starts_with("$__"))
        .collect::<Vec<_>>()
        .join(".")
        .replace(".[", "[");
    if path == "." {
        String::new()
    } else {
        path.trim_matches('.').to_string()
    }
}

/// The span where the document writes `field` (its value), or else its
/// nearest written parent; none if not even the first part is written.
pub fn span_of(table: &DeTable<'_>, field: &str) -> Option<Range<usize>> {
    find(table, field).last().map(|n| n.value.clone())
}

/// Spans of the key and value of every written proper prefix of `field`
/// (a table that holds it), outermost first.
pub fn ancestry(table: &DeTable<'_>, field: &str) -> Vec<Range<usize>> {
    let mut nodes = find(table, field);
    if nodes.len() == segments(field).len() {
        nodes.pop();
    }
    nodes.into_iter().flat_map(|n| [n.key, n.value]).collect()
}

/// One written step of a path: where its key and its value are.
struct Node {
    key: Range<usize>,
    value: Range<usize>,
}

#[derive(Debug, PartialEq)]
enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

/// `clients[1].retry.timeout_ms` → `clients`, 1, `retry`, `timeout_ms`.
fn segments(field: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
            out.push(Segment::Key(name));
        }
        for index in pieces {
            match index.trim_end_matches(']').parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => return out,
            }
        }
    }
    out
}

/// Longest path an override may name: far deeper than any setting.
const SET_SEGMENTS_MAX: usize = 32;

/// An override's path as segments, strictly: `a.b`, `a[0].b` and `a.0.b`;
/// anything else (an empty part, `a[x]`, a path starting with an index)
/// is refused with what to write instead.
fn set_segments(path: &str) -> Result<Vec<Segment<'_>>, String> {
    const HINT: &str = "name a setting, e.g. `relay.workers=4` or `clients[0].per_s=10`";
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, indices) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        if name.is_empty() && indices.is_empty() {
            return Err(HINT.to_string());
        }
        match name.parse::<usize>() {
            Ok(i) => out.push(Segment::Index(i)),
            Err(_) if !name.is_empty() => out.push(Segment::Key(name)),
            Err(_) => return Err(HINT.to_string()),
        }
        if indices.is_empty() {
            continue;
        }
        for index in format!("[{indices}").split_terminator(']') {
            let i = index
                .strip_prefix('[')
                .and_then(|i| i.parse::<usize>().ok())
                .ok_or_else(|| {
                    format!("`{part}`: an index is a whole number in brackets, e.g. `clients[0]`")
                })?;
            out.push(Segment::Index(i));
        }
        if !part.ends_with(']') {
            return Err(format!("`{part}`: nothing may follow `]` but `.`"));
        }
    }
    match out.first() {
        Some(Segment::Key(_)) if out.len() <= SET_SEGMENTS_MAX => Ok(out),
        Some(Segment::Key(_)) => Err(format!("at most {SET_SEGMENTS_MAX} parts")),
        _ => Err(HINT.to_string()),
    }
}

/// `clients`, 0, `per_s` → `clients[0].per_s`, the form errors name fields in.
fn canonical(steps: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Segment::Key(k) if out.is_empty() => out.push_str(k),
            Segment::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Writes `value` at `steps` under `table`, creating absent tables on the
/// way (an optional section such as `relay.rate_limit`), never array elements.
fn place<'s>(
    table: &mut DeTable<'s>,
    steps: &[Segment<'s>],
    value: DeValue<'s>,
) -> Result<(), String> {
    let Some((Segment::Key(first), rest)) = steps.split_first() else {
        return Err("a path starts with a name".to_string());
    };
    let mut here = table
        .entry(Spanned::new(0..0, Cow::Borrowed(*first)))
        .or_insert_with(|| Spanned::new(0..0, DeValue::Table(DeTable::new())));
    for (n, step) in rest.iter().enumerate() {
        let walked = || canonical(&steps[..=n]);
        here = match (step, here.get_mut()) {
            (Segment::Key(k), DeValue::Table(t)) => t
                .entry(Spanned::new(0..0, Cow::Borrowed(*k)))
                .or_insert_with(|| Spanned::new(0..0, DeValue::Table(DeTable::new()))),
            (Segment::Index(i), DeValue::Array(a)) => {
                let len = a.len();
                a.get_mut(*i).ok_or_else(|| {
                    format!(
                        "`{}` has {len} element(s): index {i} is out of range (0..{len})",
                        walked()
                    )
                })?
            }
            (Segment::Key(_), _) => return Err(format!("`{}` is not a section", walked())),
            (Segment::Index(_), _) => return Err(format!("`{}` is not an array", walked())),
        };
    }
    *here = Spanned::new(0..0, value);
    Ok(())
}

fn find(table: &DeTable<'_>, field: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut here: Option<&DeValue<'_>> = None;
    for segment in segments(field) {
        let step = match (segment, here) {
            (Segment::Key(name), None) => table.get_key_value(name).map(|(k, v)| (k.span(), v)),
            (Segment::Key(name), Some(DeValue::Table(t))) => {
                t.get_key_value(name).map(|(k, v)| (k.span(), v))
            }
            (Segment::Index(i), Some(DeValue::Array(a))) => a.get(i).map(|v| (v.span(), v)),
            _ => None,
        };
        let Some((key, value)) = step else { break };
        nodes.push(Node {
            key,
            value: value.span(),
        });
        here = Some(value.get_ref());
    }
    nodes
}

fn value_at<'t, 'i>(table: &'t DeTable<'i>, field: &str) -> Option<&'t DeValue<'i>> {
    let mut here: Option<&DeValue<'_>> = None;
    for segment in segments(field) {
        here = Some(match (segment, here) {
            (Segment::Key(name), None) => table.get(name)?.get_ref(),
            (Segment::Key(name), Some(DeValue::Table(t))) => t.get(name)?.get_ref(),
            (Segment::Index(i), Some(DeValue::Array(a))) => a.get(i)?.get_ref(),
            _ => return None,
        });
    }
    here
}

/// Merges `patch` into `base`: tables merge key by key, anything else
/// replaces the value in `base`.
pub fn overlay<'i>(base: &mut DeTable<'i>, patch: DeTable<'i>) {
    for (key, value) in patch {
        let existing = base.get_mut(key.get_ref().as_ref());
        match (existing, value.into_inner()) {
            (Some(old), DeValue::Table(new)) if old.get_ref().is_table() => {
                if let DeValue::Table(old) = old.get_mut() {
                    overlay(old, new);
                }
            }
            (_, value) => {
                let span = key.span();
                base.insert(key, Spanned::new(span, value));
            }
        }
    }
}

/// 1-based line and column (in characters) of byte `byte` of `source`.
pub fn line_col(source: &str, byte: usize) -> (usize, usize) {
    let mut end = byte.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = &source[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// Says what serde expected in words a user knows: `expected usize` →
/// `expected a whole number ≥ 0`.
pub fn friendly(message: &str) -> String {
    const WORDS: [(&str, &str); 9] = [
        ("usize", "a whole number ≥ 0"),
        ("u64", "a whole number ≥ 0"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u16", "a whole number from 0 to 65535"),
        ("u8", "a whole number from 0 to 255"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
    ];
    let message = message.trim_end();
    for (rust, words) in WORDS {
        if let Some(head) = message.strip_suffix(&format!("expected {rust}")) {
            return format!("{head}expected {words}");
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        relay: Relay,
        #[serde(default)]
        clients: Vec<Client>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Relay {
        workers: usize,
        #[serde(default)]
        kind: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
    enum Client {
        Open {
            #[allow(dead_code)] // only its type matters here
            per_s: f64,
        },
    }

    fn read(text: &str) -> Result<Root, String> {
        let doc = TomlDoc::parse("t.toml", text).map_err(|e| e.to_string())?;
        doc.deserialize::<Root>().map_err(|e| e.to_string())
    }

    #[test]
    fn type_errors_name_file_line_column_and_field_in_plain_words() {
        let err = read("[relay]\nworkers = -1\n").expect_err("negative");
        assert_eq!(
            err,
            "t.toml:2:11: relay.workers: invalid value: integer `-1`, expected a whole number ≥ 0"
        );
    }

    #[test]
    fn unknown_keys_point_at_the_key_even_inside_tagged_enums() {
        let err = read("[relay]\nworkers = 1\nworkrs = 2\n").expect_err("typo");
        assert!(
            err.starts_with("t.toml:3:1: relay.workrs: unknown field `workrs`"),
            "{err}"
        );
        let text = "[relay]\nworkers = 1\n[[clients]]\nkind = \"open\"\nper_s = 1\n[[clients]]\nkind = \"open\"\nperr_s = 2\n";
        let err = read(text).expect_err("typo in the second client");
        assert!(
            err.starts_with("t.toml:8:1: clients[1].perr_s: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_inside_a_tagged_enum_is_found_by_what_serde_quotes() {
        let text = "[relay]\nworkers = 1\n[[clients]]\nkind = \"open\"\nper_s = \"x\"\n";
        let err = read(text).expect_err("not a number");
        assert_eq!(
            err,
            "t.toml:5:9: clients[0].per_s: invalid type: string \"x\", expected a number"
        );
    }

    #[test]
    fn syntax_errors_have_a_position_and_no_field() {
        let err = read("[relay\nworkers = 1\n").expect_err("syntax");
        assert!(err.starts_with("t.toml:1:7: "), "{err}");
    }

    #[test]
    fn validation_errors_are_located_by_their_field() {
        let text = "[relay]\nworkers = 0\n[[clients]]\nkind = \"open\"\nper_s = 1\n[[clients]]\nkind = \"open\"\nper_s = -2\n";
        let doc = TomlDoc::parse("t.toml", text).expect("parses");
        let e = doc.config_error(&ConfigError::new("clients[1].per_s", "must be ≥ 0"));
        assert_eq!(e.to_string(), "t.toml:8:9: clients[1].per_s: must be ≥ 0");
        let e = doc.config_error(&ConfigError::new("relay.retry.cap_ms", "bad default"));
        assert_eq!(
            (e.line, e.column),
            (Some(1), Some(1)),
            "nearest written parent"
        );
    }

    #[test]
    fn overrides_are_typed_and_blamed_on_themselves() {
        let sets = vec![
            "relay.workers=3".to_string(),
            "relay.kind=full-jitter".to_string(),
        ];
        let mut doc = TomlDoc::parse("t.toml", "[relay]\nworkers = 1\n").expect("parses");
        doc.set_all(&sets).expect("sets");
        let root: Root = doc.deserialize().expect("valid");
        assert_eq!(
            (root.relay.workers, root.relay.kind.as_str()),
            (3, "full-jitter")
        );
        assert!(root.clients.is_empty());
        let bad = vec!["relay.workers=many".to_string()];
        let mut doc = TomlDoc::parse("t.toml", "[relay]\nworkers = 1\n").expect("parses");
        doc.set_all(&bad).expect("sets");
        let err = doc
            .deserialize::<Root>()
            .expect_err("not a number")
            .to_string();
        assert_eq!(
            err,
            "--set relay.workers=many: relay.workers: invalid type: string \"many\", expected a whole number ≥ 0"
        );
        let nonsense = vec!["relay.workers.x=1".to_string()];
        let mut doc = TomlDoc::parse("t.toml", "[relay]\nworkers = 1\n").expect("parses");
        assert!(doc.set_all(&nonsense).is_err());
    }

    const TWO_PHASES: &str = "[relay]\nworkers = 1\n[[clients]]\nkind = \"open\"\nper_s = 1\n[[clients]]\nkind = \"open\"\nper_s = 2\n";

    fn per_s(doc: &TomlDoc<'_>, i: usize) -> Option<String> {
        match doc.get(&format!("clients[{i}].per_s"))? {
            DeValue::Integer(n) => Some(n.as_str().to_string()),
            DeValue::Float(f) => Some(f.as_str().to_string()),
            _ => None,
        }
    }

    #[test]
    fn array_elements_are_set_by_index_in_either_spelling() {
        let mut doc = TomlDoc::parse("t.toml", TWO_PHASES).expect("parses");
        doc.set("clients[1].per_s=7.5").expect("brackets");
        doc.set("clients.0.per_s=3").expect("dots");
        assert_eq!(per_s(&doc, 0).as_deref(), Some("3"));
        assert_eq!(per_s(&doc, 1).as_deref(), Some("7.5"));
        let bad = "clients[1].per_s=x";
        let mut doc = TomlDoc::parse("t.toml", TWO_PHASES).expect("parses");
        doc.set(bad).expect("sets");
        let err = doc.deserialize::<Root>().expect_err("not a number");
        assert_eq!(
            err.to_string(),
            "--set clients[1].per_s=x: clients[1].per_s: invalid type: string \"x\", expected a number"
        );
    }

    #[test]
    fn an_index_out_of_range_or_a_malformed_path_says_what_is_wrong() {
        let mut doc = TomlDoc::parse("t.toml", TWO_PHASES).expect("parses");
        let err = doc.set("clients[2].per_s=1").expect_err("out of range");
        assert_eq!(
            err.to_string(),
            "--set clients[2].per_s=1: clients[2].per_s: `clients` has 2 element(s): index 2 is out of range (0..2)"
        );
        let err = doc.set("relay.0=1").expect_err("not an array");
        assert!(
            err.to_string().ends_with("`relay` is not an array"),
            "{err}"
        );
        let err = doc.set("relay.workers.x=1").expect_err("not a section");
        assert!(
            err.to_string()
                .ends_with("`relay.workers` is not a section"),
            "{err}"
        );
        for bad in [
            "clients[x].per_s=1",
            "clients[0]x=1",
            ".a=1",
            "0.a=1",
            "a..b=1",
        ] {
            assert!(doc.set(bad).is_err(), "{bad}");
        }
        assert_eq!(
            per_s(&doc, 0).as_deref(),
            Some("1"),
            "refused overrides change nothing"
        );
    }

    #[test]
    fn paths_from_spanned_fields_are_cleaned() {
        assert_eq!(
            clean_path("n.$__serde_spanned_private_value[2].$__serde_spanned_private_value"),
            "n[2]"
        );
        assert_eq!(clean_path("."), "");
        assert_eq!(line_col("ab\ncé x", 7), (2, 4));
    }
}
