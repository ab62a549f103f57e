//! Writing an experiment's [`Outputs`] to `<out>/<name>/`.
//!
//! Every file here is a pure function of the definition, the seeds and the
//! crate version, except the `timing` object of `meta.json` (thread count
//! and wall time): results committed to the repository then only change
//! when the model or its inputs change.

use super::definition::{Definition, Origin};
use super::registry::Outputs;
use super::seeds::SeedSet;
use crate::experiment::chart::Figure;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    // The cause is the error's source, printed once after it by the caller.
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error(transparent)]
    Chart(#[from] super::chart::ChartError),
}

/// What produced a set of outputs, for `summary.md` and `meta.json`.
#[derive(Debug)]
pub struct Provenance<'a> {
    /// The experiment's name (`experiment = "…"`).
    pub name: &'a str,
    /// One line: what it asks.
    pub description: &'a str,
    pub definition: &'a Definition,
    pub seeds: SeedSet,
    pub quick: bool,
    /// The `--seeds` flag, if given (it is part of the reproduce command).
    pub seeds_override: Option<u32>,
}

/// How the run went; the only part of the outputs that may differ between
/// runs of the same definition.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Timing {
    pub jobs: usize,
    pub wall_s: f64,
}

/// Writes tables, charts and `summary.md` into `dir`; returns the file
/// names written, in order. `meta.json` is written by [`write_meta`] once
/// the wall time is known.
pub fn write_outputs(
    dir: &Path,
    outputs: &Outputs,
    provenance: &Provenance<'_>,
) -> Result<Vec<String>, WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let mut files = Vec::new();
    for table in &outputs.tables {
        let path = dir.join(table.file_name());
        let file = std::fs::File::create(&path).map_err(|source| io_error(&path, source))?;
        table
            .write_csv(std::io::BufWriter::new(file))
            .map_err(|source| WriteError::Csv { path, source })?;
        files.push(table.file_name());
    }
    for chart in &outputs.charts {
        let png = format!("{}.png", chart.name);
        chart.write_png(&dir.join(&png))?;
        let svg = format!("{}.svg", chart.name);
        write_text(&dir.join(&svg), &chart.to_svg()?)?;
        files.extend([png, svg]);
    }
    write_text(
        &dir.join("summary.md"),
        &summary_markdown(outputs, provenance),
    )?;
    files.push("summary.md".to_string());
    files.push("meta.json".to_string());
    Ok(files)
}

/// Writes `meta.json`: what produced the outputs and how long it took.
pub fn write_meta(
    dir: &Path,
    outputs: &Outputs,
    provenance: &Provenance<'_>,
    files: &[String],
    timing: Timing,
) -> Result<(), WriteError> {
    let meta = Meta {
        experiment: provenance.name,
        crate_version: env!("CARGO_PKG_VERSION"),
        reproduce: reproduce_command(provenance),
        definition: DefinitionMeta::of(provenance.definition),
        quick: provenance.quick,
        seeds: SeedsMeta {
            first: provenance.seeds.first,
            count: provenance.seeds.count,
            list: provenance.seeds.iter().collect(),
        },
        options: &outputs.options,
        files,
        timing,
    };
    let mut text = serde_json::to_string_pretty(&meta).map_err(|e| WriteError::Io {
        path: dir.join("meta.json"),
        source: e.into(),
    })?;
    text.push('\n');
    write_text(&dir.join("meta.json"), &text)
}

#[derive(Serialize)]
struct Meta<'a> {
    experiment: &'a str,
    crate_version: &'static str,
    reproduce: String,
    definition: DefinitionMeta<'a>,
    quick: bool,
    seeds: SeedsMeta,
    options: &'a serde_json::Value,
    files: &'a [String],
    timing: Timing,
}

#[derive(Serialize)]
struct DefinitionMeta<'a> {
    /// `built-in` or the path the user gave.
    origin: String,
    toml: &'a str,
}

impl<'a> DefinitionMeta<'a> {
    fn of(definition: &'a Definition) -> DefinitionMeta<'a> {
        let origin = match definition.origin() {
            Origin::BuiltIn(_) => "built-in".to_string(),
            Origin::File(path) => path.display().to_string(),
        };
        DefinitionMeta {
            origin,
            toml: definition.source(),
        }
    }
}

#[derive(Serialize)]
struct SeedsMeta {
    first: u64,
    count: u32,
    list: Vec<u64>,
}

/// The one command that recreates these outputs.
pub fn reproduce_command(provenance: &Provenance<'_>) -> String {
    let mut command = String::from("cargo run --release -- experiment ");
    match provenance.definition.origin() {
        Origin::BuiltIn(name) => command.push_str(name),
        Origin::File(path) => {
            let _ = write!(command, "run {}", path.display());
        }
    }
    if provenance.quick {
        command.push_str(" --quick");
    }
    if let Some(seeds) = provenance.seeds_override {
        let _ = write!(command, " --seeds {seeds}");
    }
    command
}

fn summary_markdown(outputs: &Outputs, provenance: &Provenance<'_>) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "<!-- Generated by `resilient-relay experiment`; edits are overwritten. -->"
    );
    let _ = writeln!(md, "# {}\n", provenance.name);
    let _ = writeln!(md, "{}\n", provenance.description);
    let _ = writeln!(md, "- Reproduce: `{}`", reproduce_command(provenance));
    let _ = writeln!(md, "- Seeds: {}", provenance.seeds.describe());
    let _ = writeln!(md, "- Crate version: {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(md, "- Every resolved option: `meta.json`\n");
    md.push_str(outputs.summary_markdown.trim_end());
    md.push_str("\n\n## Files\n\n");
    for table in &outputs.tables {
        let _ = writeln!(md, "- `{}`: {}", table.file_name(), table.description);
    }
    for chart in &outputs.charts {
        let _ = writeln!(
            md,
            "- `{0}.png`, `{0}.svg`: {1}",
            chart.name, chart.description
        );
    }
    md.push_str("- `meta.json`: seeds, every resolved option, crate version, wall time.\n");
    md
}

fn write_text(path: &Path, text: &str) -> Result<(), WriteError> {
    std::fs::write(path, text).map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> WriteError {
    WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}
