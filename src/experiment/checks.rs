//! Bad values in an experiment definition, collected and reported together.
//!
//! A user editing a definition should see every mistake in one run, each
//! as `file:line:col: contention.cap_ms: why`, rather than fix one per run.
//! [`Checks`] collects them; [`DefinitionErrors`] reports them.

use super::definition::Definition;
use crate::relay::ConfigError;
use crate::toml_doc::{self, PathError};
use std::fmt;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One bad value: which field, on which line if known, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path as written in the file, e.g. `contention.cap_ms`.
    pub field: String,
    /// 1-based line in the definition file.
    pub line: Option<usize>,
    /// 1-based column (in characters) on that line.
    pub column: Option<usize>,
    pub reason: String,
}

impl fmt::Display for FieldError {
    /// `line:col: field: reason`; the file is named by [`DefinitionErrors`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "{line}:{column}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

/// Every bad value found in one definition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionErrors {
    /// The file path, or which built-in definition.
    pub origin: String,
    pub errors: Vec<FieldError>,
}

impl DefinitionErrors {
    /// The error for `field`, if any (tests and callers look errors up by field).
    pub fn for_field(&self, field: &str) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.field == field)
    }
}

impl fmt::Display for DefinitionErrors {
    /// One `file:line:col: field: reason` line per error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let separator = if error.line.is_some() { ":" } else { ": " };
            write!(f, "{}{separator}{error}", self.origin)?;
        }
        Ok(())
    }
}

/// Collects the bad values of one definition, so a user sees all of them
/// at once instead of fixing one per run.
#[derive(Debug)]
pub struct Checks<'a> {
    definition: &'a Definition,
    /// The document being checked, to find where a field is written.
    document: Option<Spanned<DeTable<'a>>>,
    errors: Vec<FieldError>,
}

impl<'a> Checks<'a> {
    /// A collector for `definition`, holding `errors` found so far.
    pub(super) fn new(definition: &'a Definition, errors: Vec<FieldError>) -> Checks<'a> {
        Checks {
            definition,
            document: None,
            errors,
        }
    }

    /// Locates fields in `document` (the definition as parsed).
    pub(super) fn with_document(mut self, document: Spanned<DeTable<'a>>) -> Checks<'a> {
        self.document = Some(document);
        self
    }

    /// Records an error for `field` at byte range `span` of the file (an
    /// empty `0..0` span means "no line"). When `span` is that of a table
    /// holding the field (or empty), the error points at where the file
    /// writes the field itself, e.g. at `capacity = 0` inside `[scenario]`.
    pub fn fail(&mut self, field: &str, span: Range<usize>, reason: impl Into<String>) {
        let span = self.refine(field, span);
        let position =
            (span != (0..0)).then(|| toml_doc::line_col(self.definition.source(), span.start));
        self.errors.push(FieldError {
            field: field.to_string(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            reason: reason.into(),
        });
    }

    /// Records a `validate()` error of a value written at `prefix` (e.g. an
    /// embedded scenario), at the line of the field it names.
    pub fn config_error(&mut self, prefix: &str, error: &ConfigError, span: Range<usize>) {
        let field = if prefix.is_empty() {
            error.field.clone()
        } else {
            format!("{prefix}.{}", error.field)
        };
        self.fail(&field, span, error.reason.clone());
    }

    /// Whether an error naming `field` as its last part with this reason was
    /// recorded already (a value checked twice is reported once).
    pub fn reported(&self, error: &ConfigError) -> bool {
        self.errors.iter().any(|e| {
            e.reason == error.reason
                && (e.field == error.field || e.field.ends_with(&format!(".{}", error.field)))
        })
    }

    fn refine(&self, field: &str, span: Range<usize>) -> Range<usize> {
        let Some(document) = &self.document else {
            return span;
        };
        let table = document.get_ref();
        let coarse = span == (0..0) || toml_doc::ancestry(table, field).contains(&span);
        match toml_doc::span_of(table, field) {
            Some(written) if coarse => written,
            _ => span,
        }
    }

    /// Records an error unless `ok`; returns `ok`.
    pub fn check(
        &mut self,
        ok: bool,
        field: &str,
        span: Range<usize>,
        reason: impl FnOnce() -> String,
    ) -> bool {
        if !ok {
            self.fail(field, span, reason());
        }
        ok
    }

    /// Ok if nothing was recorded.
    pub(super) fn finish(self) -> Result<(), DefinitionErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.into_errors())
        }
    }

    pub(super) fn into_errors(self) -> DefinitionErrors {
        DefinitionErrors {
            origin: self.definition.describe(),
            errors: self.errors,
        }
    }

    /// Records a parse or type error from the TOML reader, naming the field
    /// by finding which value of `table` the error's span falls in.
    pub(super) fn toml_error(&mut self, error: &toml::de::Error, table: Option<&DeTable<'_>>) {
        let span = error.span().unwrap_or(0..0);
        let field = table.map(|t| field_at(t, &span)).unwrap_or_default();
        self.fail(&field, span, toml_doc::friendly(error.message()));
    }

    /// Records a deserialization error that knows its field's path.
    pub(super) fn path_error(&mut self, error: &PathError, table: &DeTable<'_>) {
        let span = error.span.clone().unwrap_or(0..0);
        let field = if error.field.is_empty() {
            field_at(table, &span)
        } else {
            error.field.clone()
        };
        self.fail(&field, span, error.message.clone());
    }
}

/// The dotted path of the innermost key or value of `table` whose span
/// contains `span`; empty if none does. Tables opened by a `[header]` span
/// only their header, so every table is searched, not just the containing one.
fn field_at(table: &DeTable<'_>, span: &Range<usize>) -> String {
    let contains = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end;
    for (key, value) in table {
        let name = key.get_ref();
        if contains(key.span()) {
            return name.to_string();
        }
        if let DeValue::Table(inner) = value.get_ref() {
            let path = field_at(inner, span);
            if !path.is_empty() {
                return format!("{name}.{path}");
            }
        }
        if contains(value.span()) {
            return name.to_string();
        }
    }
    String::new()
}
