//! The swept knobs of a definition: lists of values, checked once.
//!
//! A sweep over `[10, 100, 100]` or `[]` is a typo, not an experiment; every
//! bad entry is reported at its own line, and the values come back sorted so
//! rows and chart lines follow the knob's order whatever the file's.

use super::definition::Checks;
use std::ops::RangeInclusive;
use toml::Spanned;

/// Whole numbers in `range`, ascending and distinct. Bad entries are
/// reported and left out.
pub fn whole_numbers(
    raw: &Spanned<Vec<Spanned<i64>>>,
    field: &str,
    range: RangeInclusive<i64>,
    checks: &mut Checks<'_>,
) -> Vec<u64> {
    checks.check(!raw.get_ref().is_empty(), field, raw.span(), || {
        "give at least one value".to_string()
    });
    let mut values: Vec<u64> = Vec::new();
    for entry in raw.get_ref() {
        let v = *entry.get_ref();
        let in_range = checks.check(range.contains(&v), field, entry.span(), || {
            format!(
                "must be between {} and {}, got {v}",
                range.start(),
                range.end()
            )
        });
        let Ok(v) = u64::try_from(v) else { continue };
        if !in_range {
            continue;
        }
        if values.contains(&v) {
            checks.fail(field, entry.span(), format!("{v} is listed twice"));
        } else {
            values.push(v);
        }
    }
    values.sort_unstable();
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::definition::Definition;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Raw {
        n: Spanned<Vec<Spanned<i64>>>,
    }

    type Parsed = Result<Vec<u64>, Vec<(String, Option<usize>)>>;

    fn parse(text: &str) -> Parsed {
        let definition = Definition::from_text(
            "t.toml",
            format!("experiment = \"x\"\n{text}[seeds]\ncount = 1\n"),
        );
        let resolved = definition.resolve(false, None).expect("toml");
        resolved
            .options(|raw: Raw, checks| whole_numbers(&raw.n, "n", 1..=1000, checks))
            .map_err(|e| {
                e.errors
                    .into_iter()
                    .map(|e| (e.field, e.line))
                    .collect::<Vec<_>>()
            })
    }

    #[test]
    fn values_come_back_sorted() {
        let result = parse("n = [100, 10, 1000]\n");
        assert_eq!(result, Ok(vec![10, 100, 1000]));
    }

    #[test]
    fn every_bad_entry_is_reported_at_its_line() {
        let result = parse("n = [\n  10,\n  0,\n  10,\n]\n");
        let errors = result.expect_err("two bad entries");
        assert_eq!(
            errors,
            vec![("n".to_string(), Some(4)), ("n".to_string(), Some(5))]
        );
    }

    #[test]
    fn empty_lists_are_refused() {
        let result = parse("n = []\n");
        assert_eq!(result.expect_err("empty").len(), 1);
    }
}
