//! Experiment definitions: the TOML files under `experiments/`.
//!
//! A definition is data a user can copy and edit, so it is validated once,
//! here and in each experiment's options, into typed values; every bad value
//! gets its own `file:line:col: field: message`. A file looks like:
//!
//! ```toml
//! experiment = "jitter-comparison"   # which model reads the rest
//!
//! [seeds]
//! first = 1
//! count = 100                        # `--seeds N` overrides
//!
//! [contention]                       # the experiment's own sections
//! clients = [10, 20, 30]
//!
//! [quick.seeds]                      # `--quick` overlays [quick] onto the file
//! count = 10
//! ```
//!
//! `experiment`, `seeds` and `quick` belong to the shared plumbing; the other
//! top-level sections belong to the experiment, which parses them with
//! [`Resolved::options`] into its own `#[serde(deny_unknown_fields)]` structs
//! (use `toml::Spanned<T>` for fields whose later checks should name a line).

pub use super::checks::{Checks, DefinitionErrors, FieldError};
use super::seeds::{SeedSet, SEEDS_PER_POINT_MAX};
use crate::toml_doc::{self, overlay};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where a definition came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Embedded in the binary, run by name.
    BuiltIn(&'static str),
    /// A user's file, run with `experiment run <path>`.
    File(PathBuf),
}

/// The text of one definition and where it came from.
#[derive(Clone, Debug)]
pub struct Definition {
    origin: Origin,
    source: Cow<'static, str>,
}

impl Definition {
    pub fn built_in(name: &'static str, source: &'static str) -> Definition {
        Definition {
            origin: Origin::BuiltIn(name),
            source: Cow::Borrowed(source),
        }
    }

    /// A definition read from `path` (or given as text, e.g. by tests).
    pub fn from_text(path: impl Into<PathBuf>, source: String) -> Definition {
        Definition {
            origin: Origin::File(path.into()),
            source: Cow::Owned(source),
        }
    }

    pub fn read(path: &Path) -> std::io::Result<Definition> {
        Ok(Definition::from_text(path, std::fs::read_to_string(path)?))
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Name of the output directory: the experiment's name when run by name,
    /// the file's stem otherwise, so a user's edited copy never overwrites
    /// the committed results of the original.
    pub fn output_name(&self) -> String {
        match &self.origin {
            Origin::BuiltIn(name) => (*name).to_string(),
            Origin::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "experiment".to_string()),
        }
    }

    /// How errors name this definition.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::BuiltIn(name) => format!("experiments/{name}.toml"),
            Origin::File(path) => path.display().to_string(),
        }
    }

    /// Parses the file, applies the `[quick]` overlay when asked, and takes
    /// the shared keys out; `seeds_override` replaces the seed count (the
    /// `--seeds` flag). Only a file that is not TOML at all fails here: bad
    /// shared values are kept and reported together with the experiment's
    /// own by [`Resolved::options`]. With `quick`, the file as written is
    /// checked first, so the overlay cannot hide a bad value in it.
    pub fn resolve(
        &self,
        quick: bool,
        seeds_override: Option<u32>,
    ) -> Result<Resolved<'_>, DefinitionErrors> {
        let mut written_checks = Checks::new(self, Vec::new());
        let mut root = match DeTable::parse(&self.source) {
            Ok(root) => root,
            Err(e) => {
                written_checks.toml_error(&e, None);
                return Err(written_checks.into_errors());
            }
        };
        let span_all = root.span();
        let patch = take_quick(root.get_mut(), &mut written_checks);
        let mut written = None;
        if let (true, Some(patch)) = (quick, patch) {
            let mut base = root.clone();
            take_shared(
                base.get_mut(),
                &mut written_checks,
                seeds_override,
                &span_all,
            );
            written = Some(base);
            overlay(root.get_mut(), patch);
        }
        let mut checks = Checks::new(self, Vec::new());
        let (experiment, seeds) =
            take_shared(root.get_mut(), &mut checks, seeds_override, &span_all);
        let written_errors = written_checks.into_errors().errors;
        let pending = if written_errors.is_empty() {
            checks.into_errors().errors
        } else {
            written_errors
        };
        let (experiment, experiment_span) = experiment.unwrap_or_default();
        Ok(Resolved {
            experiment,
            experiment_span,
            seeds: seeds.unwrap_or(SeedSet { first: 1, count: 1 }),
            quick,
            definition: self,
            written,
            body: root,
            pending,
        })
    }
}

/// The `[quick]` overlay, taken out of the document.
fn take_quick<'i>(table: &mut DeTable<'i>, checks: &mut Checks<'_>) -> Option<DeTable<'i>> {
    let patch = table.remove("quick")?;
    let span = patch.span();
    match patch.into_inner() {
        DeValue::Table(patch) => Some(patch),
        _ => {
            checks.fail("quick", span, "must be a table");
            None
        }
    }
}

/// Takes `experiment` and `seeds` out of `table`.
fn take_shared(
    table: &mut DeTable<'_>,
    checks: &mut Checks<'_>,
    seeds_override: Option<u32>,
    span_all: &Range<usize>,
) -> (Option<(String, Range<usize>)>, Option<SeedSet>) {
    let experiment = take_experiment(table, checks, span_all.clone());
    let seeds = take_seeds(table, checks, seeds_override, span_all.clone());
    (experiment, seeds)
}

/// A definition with the shared keys resolved; the rest is the experiment's.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// Which registered experiment reads this definition.
    pub experiment: String,
    experiment_span: Range<usize>,
    pub seeds: SeedSet,
    pub quick: bool,
    definition: &'a Definition,
    /// With `--quick`, the experiment's sections as the file writes them,
    /// checked before the overlaid ones.
    written: Option<Spanned<DeTable<'a>>>,
    body: Spanned<DeTable<'a>>,
    /// Bad shared values, reported with the experiment's own.
    pending: Vec<FieldError>,
}

impl<'a> Resolved<'a> {
    pub fn definition(&self) -> &'a Definition {
        self.definition
    }

    /// Deserializes the experiment's sections into `Raw` (use
    /// `#[serde(deny_unknown_fields)]`, and `toml::Spanned<T>` for fields
    /// whose checks should name a line), then lets `build` check them into
    /// typed options. Every bad value, shared or the experiment's, is
    /// reported at once; options come back only if there is none. With
    /// `--quick`, `build` first checks the file as written, then the overlay.
    pub fn options<Raw, O>(
        &self,
        mut build: impl FnMut(Raw, &mut Checks<'a>) -> O,
    ) -> Result<O, DefinitionErrors>
    where
        Raw: DeserializeOwned,
    {
        if let Some(written) = &self.written {
            self.options_of(written, &mut build)?;
        }
        self.options_of(&self.body, &mut build)
    }

    fn options_of<Raw, O>(
        &self,
        body: &Spanned<DeTable<'a>>,
        build: &mut impl FnMut(Raw, &mut Checks<'a>) -> O,
    ) -> Result<O, DefinitionErrors>
    where
        Raw: DeserializeOwned,
    {
        let mut checks = self.checks().with_document(body.clone());
        match toml_doc::deserialize::<Raw>(body.clone()) {
            Ok(raw) => {
                let options = build(raw, &mut checks);
                checks.finish().map(|()| options)
            }
            Err(e) => {
                checks.path_error(&e, body.get_ref());
                Err(checks.into_errors())
            }
        }
    }

    /// Reads part of the experiment's sections as `Raw`, whatever else is
    /// wrong with the definition: for deciding which model reads it, before
    /// its errors are reported.
    pub fn peek<Raw: DeserializeOwned>(&self) -> Option<Raw> {
        toml_doc::deserialize::<Raw>(self.body.clone()).ok()
    }

    /// Err with the bad shared values, if any. The runner checks this after
    /// an experiment returns, so one that never asked for its options
    /// cannot have run with placeholder seeds unnoticed.
    pub fn ensure_valid(&self) -> Result<(), DefinitionErrors> {
        self.checks().finish()
    }

    /// A collector holding the bad shared values found so far.
    fn checks(&self) -> Checks<'a> {
        Checks::new(self.definition, self.pending.clone()).with_document(self.body.clone())
    }

    /// The error for an `experiment = "…"` that names no registered model
    /// (with any other bad shared value).
    pub fn unknown_experiment(&self, known: &[&str]) -> DefinitionErrors {
        let mut checks = self.checks();
        if !self.experiment.is_empty() {
            checks.fail(
                "experiment",
                self.experiment_span.clone(),
                format!(
                    "no experiment named `{}`; known: {}",
                    self.experiment,
                    known.join(", ")
                ),
            );
        }
        checks.into_errors()
    }
}

/// Takes the shared key `key` out of the file; when it is missing, says so
/// at the top of the file with `hint`.
fn take_required<'i>(
    table: &mut DeTable<'i>,
    checks: &mut Checks<'_>,
    key: &str,
    span_all: &Range<usize>,
    hint: &str,
) -> Option<Spanned<DeValue<'i>>> {
    let value = table.remove(key);
    if value.is_none() {
        checks.fail(
            key,
            span_all.start..span_all.start,
            format!("missing: {hint}"),
        );
    }
    value
}

fn take_experiment(
    table: &mut DeTable<'_>,
    checks: &mut Checks<'_>,
    span_all: Range<usize>,
) -> Option<(String, Range<usize>)> {
    let hint = "name the model that reads this file, e.g. `experiment = \"jitter-comparison\"`";
    let value = take_required(table, checks, "experiment", &span_all, hint)?;
    let span = value.span();
    match value.get_ref().as_str() {
        Some(name) => Some((name.to_string(), span)),
        None => {
            checks.fail("experiment", span, "must be a string naming an experiment");
            None
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedsRaw {
    first: Option<Spanned<i64>>,
    count: Spanned<i64>,
}

fn take_seeds(
    table: &mut DeTable<'_>,
    checks: &mut Checks<'_>,
    seeds_override: Option<u32>,
    span_all: Range<usize>,
) -> Option<SeedSet> {
    let hint = "add a [seeds] section with `count` (and optionally `first`)";
    let value = take_required(table, checks, "seeds", &span_all, hint)?;
    let whole = value.clone();
    let raw = match SeedsRaw::deserialize(toml::de::ValueDeserializer::from(value)) {
        Ok(raw) => raw,
        Err(e) => {
            let mut wrapper = DeTable::new();
            wrapper.insert(Spanned::new(0..0, Cow::Borrowed("seeds")), whole);
            checks.toml_error(&e, Some(&wrapper));
            return None;
        }
    };
    let first = raw.first.as_ref().map_or(1, |f| *f.get_ref());
    let count = *raw.count.get_ref();
    let first_ok = checks.check(first >= 0, "seeds.first", span_of(&raw.first), || {
        format!("must be ≥ 0, got {first}")
    });
    let count_ok = checks.check(
        (1..=i64::from(SEEDS_PER_POINT_MAX)).contains(&count),
        "seeds.count",
        raw.count.span(),
        || format!("must be between 1 and {SEEDS_PER_POINT_MAX}, got {count}"),
    );
    if !(first_ok && count_ok) {
        return None;
    }
    let count = seeds_override.unwrap_or(count as u32);
    let first = first as u64;
    checks
        .check(
            first.checked_add(u64::from(count)).is_some(),
            "seeds.first",
            span_of(&raw.first),
            || "first + count overflows a 64-bit seed".to_string(),
        )
        .then_some(SeedSet { first, count })
}

fn span_of<T>(value: &Option<Spanned<T>>) -> Range<usize> {
    value.as_ref().map_or(0..0, Spanned::span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(text: &str) -> Definition {
        Definition::from_text("test.toml", text.to_string())
    }

    const GOOD: &str = "experiment = \"demo\"\n[seeds]\ncount = 3\n[part]\nx = 1\n[quick.seeds]\ncount = 2\n[quick.part]\nx = 5\n";

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        part: Part,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Part {
        x: Spanned<i64>,
    }

    fn x_of(resolved: &Resolved<'_>) -> Result<i64, DefinitionErrors> {
        resolved.options(|raw: Raw, _| *raw.part.x.get_ref())
    }

    #[test]
    fn resolves_shared_keys_and_applies_the_quick_overlay() {
        let d = definition(GOOD);
        let full = d.resolve(false, None).expect("valid");
        assert_eq!(full.experiment, "demo");
        assert_eq!(full.seeds, SeedSet { first: 1, count: 3 });
        assert_eq!(x_of(&full), Ok(1));
        let quick = d.resolve(true, None).expect("valid");
        assert_eq!(quick.seeds.count, 2);
        assert_eq!(x_of(&quick), Ok(5));
        assert_eq!(d.resolve(true, Some(9)).expect("valid").seeds.count, 9);
    }

    #[test]
    fn type_errors_name_the_field_and_line() {
        let d = definition("experiment = \"demo\"\n[seeds]\ncount = 3\n[part]\nx = \"one\"\n");
        let resolved = d.resolve(false, None).expect("shared keys are fine");
        let errors = x_of(&resolved).expect_err("x is not an integer");
        let e = &errors.errors[0];
        assert_eq!((e.field.as_str(), e.line), ("part.x", Some(5)), "{errors}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let d = definition("experiment = \"demo\"\n[seeds]\ncount = 3\n[part]\nx = 1\ny = 2\n");
        let errors = x_of(&d.resolve(false, None).expect("ok"));
        let e = &errors.expect_err("y is unknown").errors[0];
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.reason.contains('y'), "{e}");
    }

    #[test]
    fn every_bad_shared_value_gets_its_own_error() {
        let d = definition("experiment = 3\n[seeds]\nfirst = -1\ncount = 0\n[part]\nx = 1\n");
        let resolved = d.resolve(false, None).expect("TOML is fine");
        let errors = resolved
            .options(|_: Raw, checks| checks.fail("part.x", 0..0, "also wrong"))
            .expect_err("four bad values");
        assert_eq!(errors.errors.len(), 4, "{errors}");
        assert!(errors.for_field("part.x").is_some());
        assert_eq!(errors.for_field("experiment").and_then(|e| e.line), Some(1));
        assert_eq!(
            errors.for_field("seeds.first").and_then(|e| e.line),
            Some(3)
        );
        assert_eq!(
            errors.for_field("seeds.count").and_then(|e| e.line),
            Some(4)
        );
    }

    #[test]
    fn errors_read_file_line_column_field_and_message() {
        let d = definition("experiment = \"demo\"\n[seeds]\ncount = 3\n[part]\nx = \"one\"\n");
        let resolved = d.resolve(false, None).expect("shared keys are fine");
        let errors = x_of(&resolved).expect_err("x is not an integer");
        assert_eq!(
            errors.to_string(),
            "test.toml:5:5: part.x: invalid type: string \"one\", expected a whole number"
        );
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WholeRaw {
        part: Spanned<Part>,
    }

    #[test]
    fn an_error_reported_at_a_table_points_at_the_field_inside_it() {
        let d = definition("experiment = \"demo\"\n[seeds]\ncount = 3\n[part]\n\nx = 0\n");
        let resolved = d.resolve(false, None).expect("ok");
        let errors = resolved
            .options(|raw: WholeRaw, checks| checks.fail("part.x", raw.part.span(), "must be > 0"))
            .expect_err("x is checked");
        assert_eq!(errors.to_string(), "test.toml:6:5: part.x: must be > 0");
    }

    #[test]
    fn the_quick_overlay_cannot_hide_a_bad_value_in_the_file() {
        let text = "experiment = \"demo\"\n[seeds]\ncount = 0\n[part]\nx = 0\n[quick.seeds]\ncount = 2\n[quick.part]\nx = 5\n";
        let d = definition(text);
        let resolved = d.resolve(true, None).expect("TOML is fine");
        let errors = resolved
            .options(|raw: Raw, checks| {
                let x = &raw.part.x;
                checks.check(*x.get_ref() > 0, "part.x", x.span(), || {
                    "must be > 0".into()
                });
            })
            .expect_err("the file as written is invalid");
        assert_eq!(
            errors
                .errors
                .iter()
                .map(|e| (e.field.as_str(), e.line))
                .collect::<Vec<_>>(),
            [("seeds.count", Some(3)), ("part.x", Some(5))],
            "{errors}"
        );
    }

    #[test]
    fn syntax_errors_report_a_line() {
        let d = definition("experiment = \"demo\"\n[seeds\ncount = 3\n");
        let errors = d.resolve(false, None).expect_err("bad syntax");
        assert_eq!(errors.errors[0].line, Some(2), "{errors}");
    }

    #[test]
    fn output_name_is_the_file_stem_for_user_files() {
        assert_eq!(
            Definition::from_text("a/b/my-copy.toml", String::new()).output_name(),
            "my-copy"
        );
        assert_eq!(Definition::built_in("x", "").output_name(), "x");
    }
}
