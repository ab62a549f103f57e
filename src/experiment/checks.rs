//! Bad values in an experiment definition, collected and reported together.
//!
//! A user editing a definition should see every mistake in one run, each
//! naming the field as written (`contention.cap_ms`) and its line, rather
//! than fix one per run. [`Checks`] collects them; [`DefinitionErrors`]
//! reports them.

use super::definition::Definition;
use std::fmt;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// One bad value: which field, on which line if known, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path as written in the file, e.g. `contention.cap_ms`.
    pub field: String,
    /// 1-based line in the definition file.
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "`{}`: ", self.field)?;
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid experiment definition {}:", self.origin)?;
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// Collects the bad values of one definition, so a user sees all of them
/// at once instead of fixing one per run.
#[derive(Debug)]
pub struct Checks<'a> {
    definition: &'a Definition,
    errors: Vec<FieldError>,
}

impl<'a> Checks<'a> {
    /// A collector for `definition`, holding `errors` found so far.
    pub(super) fn new(definition: &'a Definition, errors: Vec<FieldError>) -> Checks<'a> {
        Checks { definition, errors }
    }

    /// Records an error for `field` at byte range `span` of the file (an
    /// empty `0..0` span means "no line").
    pub fn fail(&mut self, field: &str, span: Range<usize>, reason: impl Into<String>) {
        let line = (span != (0..0)).then(|| self.line_of(span.start));
        self.errors.push(FieldError {
            field: field.to_string(),
            line,
            reason: reason.into(),
        });
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
        self.fail(&field, span, error.message().trim_end());
    }

    fn line_of(&self, byte: usize) -> usize {
        let source = self.definition.source();
        let end = byte.min(source.len());
        source.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
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
