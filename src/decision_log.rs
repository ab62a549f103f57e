//! Keeps the numbers in the decision log generated, never typed.
//!
//! `LEARNING_PLAN.md` is prose written by hand around two kinds of markers
//! that [`refresh`] fills from the files under `results/`:
//!
//! ```text
//! <!-- include: jitter-comparison/summary.md#Contention (part a) -->
//! …the section under that heading, copied…
//! <!-- /include -->
//!
//! Full jitter made <!-- value: jitter-comparison/contention_summary.csv | strategy=full-jitter clients=100 | calls_mean -->796.2<!-- /value --> calls.
//! ```
//!
//! A marker that names a missing file, heading, row or column is an error, so
//! a log that cites something the code no longer produces fails loudly.

use std::fmt;
use std::path::PathBuf;

const INCLUDE_OPEN: &str = "<!-- include:";
const INCLUDE_CLOSE: &str = "<!-- /include -->";
const VALUE_OPEN: &str = "<!-- value:";
const VALUE_CLOSE: &str = "<!-- /value -->";

/// A marker that cannot be filled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LogError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Where marked content comes from: a results directory, or anything else
/// that can read a file by its path relative to it.
pub trait Source {
    fn read(&self, relative: &str) -> Option<String>;
}

impl Source for PathBuf {
    fn read(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.join(relative)).ok()
    }
}

/// Rewrites every marker's content in `doc` from `source`.
pub fn refresh(doc: &str, source: &dyn Source) -> Result<String, LogError> {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    loop {
        let next = [INCLUDE_OPEN, VALUE_OPEN]
            .iter()
            .filter_map(|m| rest.find(m).map(|i| (i, *m)))
            .min();
        let Some((start, marker)) = next else {
            out.push_str(rest);
            return Ok(out);
        };
        let line = doc[..doc.len() - rest.len() + start].matches('\n').count() + 1;
        let err = |message: String| LogError { line, message };
        let header_end = rest[start..]
            .find("-->")
            .ok_or_else(|| err("marker is not closed with -->".into()))?;
        let header = &rest[start + marker.len()..start + header_end];
        let body_start = start + header_end + 3;
        let close = if marker == INCLUDE_OPEN {
            INCLUDE_CLOSE
        } else {
            VALUE_CLOSE
        };
        let body_len = rest[body_start..]
            .find(close)
            .ok_or_else(|| err(format!("missing {close}")))?;
        let content = if marker == INCLUDE_OPEN {
            include(header, source)
        } else {
            value(header, source)
        };
        let content = content.map_err(err)?;
        out.push_str(&rest[..body_start]);
        if marker == INCLUDE_OPEN {
            out.push('\n');
            out.push_str(content.trim_matches('\n'));
            out.push('\n');
        } else {
            out.push_str(&content);
        }
        out.push_str(close);
        rest = &rest[body_start + body_len + close.len()..];
    }
}

/// `path#heading`: the lines under the heading, up to the next heading of
/// the same or a higher level.
fn include(header: &str, source: &dyn Source) -> Result<String, String> {
    let (path, heading) = header
        .trim()
        .split_once('#')
        .ok_or("include needs `path#heading`")?;
    let text = source
        .read(path.trim())
        .ok_or_else(|| format!("cannot read results file `{}`", path.trim()))?;
    let heading = heading.trim();
    let lines: Vec<&str> = text.lines().collect();
    let level = |l: &str| l.chars().take_while(|c| *c == '#').count();
    let start = lines
        .iter()
        .position(|l| level(l) > 0 && l.trim_start_matches('#').trim() == heading)
        .ok_or_else(|| format!("no heading `{heading}` in `{}`", path.trim()))?;
    let depth = level(lines[start]);
    let end = lines[start + 1..]
        .iter()
        .position(|l| (1..=depth).contains(&level(l)))
        .map_or(lines.len(), |i| start + 1 + i);
    Ok(lines[start + 1..end].join("\n"))
}

/// `file.csv | col=value col=value | column`: one cell of the one row that
/// matches every condition.
fn value(header: &str, source: &dyn Source) -> Result<String, String> {
    let parts: Vec<&str> = header.split('|').map(str::trim).collect();
    let [path, conditions, column] = parts[..] else {
        return Err("value needs `file.csv | col=value … | column`".into());
    };
    let text = source
        .read(path)
        .ok_or_else(|| format!("cannot read results file `{path}`"))?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("`{path}`: {e}"))?
        .clone();
    let index = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("`{path}` has no column `{name}`"))
    };
    let wanted: Vec<(usize, &str)> = conditions
        .split_whitespace()
        .map(|c| {
            let (k, v) = c
                .split_once('=')
                .ok_or_else(|| format!("condition `{c}` is not `col=value`"))?;
            Ok((index(k)?, v))
        })
        .collect::<Result<_, String>>()?;
    let target = index(column)?;
    let mut found = None;
    for record in reader.records() {
        let record = record.map_err(|e| format!("`{path}`: {e}"))?;
        if wanted.iter().all(|(i, v)| record.get(*i) == Some(*v)) {
            if found.is_some() {
                return Err(format!(
                    "more than one row of `{path}` matches `{conditions}`"
                ));
            }
            found = record.get(target).map(str::to_string);
        }
    }
    found.ok_or_else(|| format!("no row of `{path}` matches `{conditions}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Files(BTreeMap<&'static str, &'static str>);

    impl Source for Files {
        fn read(&self, relative: &str) -> Option<String> {
            self.0.get(relative).map(|s| s.to_string())
        }
    }

    fn files() -> Files {
        Files(BTreeMap::from([
            ("a/summary.md", "# a\n\n## Part one\n\n| x |\n|---|\n| 1 |\n\n### detail\nmore\n\n## Part two\nother\n"),
            ("a/t.csv", "strategy,clients,calls\nfull,10,5.5\nfull,20,9.25\nnone,10,7\n"),
        ]))
    }

    #[test]
    fn includes_a_section_and_values_replacing_old_content() {
        let doc = "intro\n<!-- include: a/summary.md#Part one -->\nstale\n<!-- /include -->\n\
                   full at 20: <!-- value: a/t.csv | strategy=full clients=20 | calls -->0<!-- /value -->.\n";
        let out = refresh(doc, &files()).expect("refreshes");
        assert_eq!(
            out,
            "intro\n<!-- include: a/summary.md#Part one -->\n| x |\n|---|\n| 1 |\n\n### detail\nmore\n<!-- /include -->\n\
             full at 20: <!-- value: a/t.csv | strategy=full clients=20 | calls -->9.25<!-- /value -->.\n"
        );
        assert_eq!(refresh(&out, &files()).expect("idempotent"), out);
    }

    #[test]
    fn missing_references_are_errors_with_their_line() {
        let doc = "x\n<!-- value: a/t.csv | strategy=fast | calls --><!-- /value -->\n";
        let err = refresh(doc, &files()).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("no row"), "{err}");
        let doc = "<!-- include: a/summary.md#Part three --><!-- /include -->";
        assert!(refresh(doc, &files())
            .unwrap_err()
            .message
            .contains("no heading"));
        let doc = "<!-- value: a/t.csv | strategy=full | calls --><!-- /value -->";
        assert!(refresh(doc, &files())
            .unwrap_err()
            .message
            .contains("more than one"));
    }
}
