//! A search split into shards that run anywhere, and merged back.
//!
//! A search is runs `0..n`, each independent and deterministic. Shard
//! `i/N` takes the runs whose index is `i - 1` modulo `N` (so every shard
//! gets its share of cheap and costly runs) and writes their rows beside
//! a manifest naming the search. [`merge`] checks that the manifests
//! describe one search and cover every shard once, and gives back the rows
//! in run order: exactly the rows of the unsharded run, so whatever is
//! computed from them after is byte-identical too.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub const MANIFEST: &str = "manifest.json";
pub const ROWS: &str = "rows.csv";

/// Most shards a search is split into.
pub const SHARDS_MAX: u32 = 100_000;

/// One shard of a search, `index` counted from 1 as in `--shard 2/3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole search, unsplit.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Whether run `run` belongs to this shard.
    pub fn owns(&self, run: u64) -> bool {
        run % u64::from(self.count) == u64::from(self.index - 1)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad =
            || format!("a shard is written i/N with 1 ≤ i ≤ N ≤ {SHARDS_MAX}, e.g. 2/3; got `{s}`");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count || count > SHARDS_MAX {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What a shard's directory says about the rows beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The search: `swarm`, …
    pub search: String,
    /// Everything that decides the rows (seed, runs, settings), as text.
    pub params: BTreeMap<String, String>,
    /// Runs in the whole search.
    pub runs: u64,
    pub shard: u32,
    pub shards: u32,
    /// Rows in this shard's file.
    pub rows: u64,
    /// The program that wrote it: shards of different versions do not mix.
    pub version: String,
}

impl Manifest {
    /// Whether `other` is a shard of the same search.
    fn same_search(&self, other: &Manifest) -> bool {
        (
            &self.search,
            &self.params,
            self.runs,
            self.shards,
            &self.version,
        ) == (
            &other.search,
            &other.params,
            other.runs,
            other.shards,
            &other.version,
        )
    }
}

/// A shard's rows: CSV records whose first field is the run index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rows {
    pub header: Vec<String>,
    pub records: Vec<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
    #[error("{0}")]
    Mismatch(String),
}

fn io(path: &Path, e: impl fmt::Display) -> ShardError {
    ShardError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn bad(path: &Path, message: impl Into<String>) -> ShardError {
    ShardError::Bad {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes a shard's rows and manifest into `dir`.
pub fn write(dir: &Path, manifest: &Manifest, rows: &Rows) -> Result<(), ShardError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let path = dir.join(ROWS);
    let mut out = csv::Writer::from_path(&path).map_err(|e| io(&path, e))?;
    out.write_record(&rows.header).map_err(|e| io(&path, e))?;
    for r in &rows.records {
        out.write_record(r).map_err(|e| io(&path, e))?;
    }
    out.flush().map_err(|e| io(&path, e))?;
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(manifest).map_err(|e| io(&path, e))?;
    std::fs::write(&path, text + "\n").map_err(|e| io(&path, e))
}

/// One shard's directory, read and checked against its own manifest.
fn read(dir: &Path) -> Result<(Manifest, Rows), ShardError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| bad(&path, format!("not a shard manifest: {e}")))?;
    if manifest.shard == 0 || manifest.shard > manifest.shards {
        return Err(bad(
            &path,
            format!(
                "shard {}/{} does not exist",
                manifest.shard, manifest.shards
            ),
        ));
    }
    let shard = Shard {
        index: manifest.shard,
        count: manifest.shards,
    };
    let path = dir.join(ROWS);
    let mut input = csv::Reader::from_path(&path).map_err(|e| io(&path, e))?;
    let header = input
        .headers()
        .map_err(|e| bad(&path, e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut records = Vec::new();
    for record in input.records() {
        let record = record.map_err(|e| bad(&path, e.to_string()))?;
        let run = run_index(&record).ok_or_else(|| {
            bad(
                &path,
                format!(
                    "line {}: the first field is not a run index",
                    records.len() + 2
                ),
            )
        })?;
        if run >= manifest.runs || !shard.owns(run) {
            return Err(bad(
                &path,
                format!(
                    "run {run} is not in shard {shard} of {} runs",
                    manifest.runs
                ),
            ));
        }
        if records.len() as u64 >= manifest.rows {
            return Err(bad(
                &path,
                format!("more rows than the manifest's {}", manifest.rows),
            ));
        }
        records.push(record.iter().map(str::to_string).collect());
    }
    if records.len() as u64 != manifest.rows {
        return Err(bad(
            &path,
            format!(
                "{} rows, the manifest says {}: the shard did not finish",
                records.len(),
                manifest.rows
            ),
        ));
    }
    Ok((manifest, Rows { header, records }))
}

fn run_index(record: &csv::StringRecord) -> Option<u64> {
    record.get(0)?.parse().ok()
}

/// Reads the shards in `dirs` (in any order) and gives back one search's
/// manifest (as the unsharded run's, shard 1/1) and every row in run order.
pub fn merge(dirs: &[PathBuf]) -> Result<(Manifest, Rows), ShardError> {
    let mut shards: BTreeMap<u32, (PathBuf, Manifest, Rows)> = BTreeMap::new();
    for dir in dirs {
        let (manifest, rows) = read(dir)?;
        if let Some((_, first, first_rows)) = shards.values().next() {
            if !manifest.same_search(first) || rows.header != first_rows.header {
                return Err(ShardError::Mismatch(format!(
                    "{} is a shard of another search than {}: {:?} vs {:?}",
                    dir.display(),
                    shards
                        .values()
                        .next()
                        .map_or(Path::new(""), |s| s.0.as_path())
                        .display(),
                    (
                        &manifest.search,
                        &manifest.params,
                        manifest.runs,
                        manifest.shards
                    ),
                    (&first.search, &first.params, first.runs, first.shards),
                )));
            }
        }
        if let Some((other, ..)) = shards.get(&manifest.shard) {
            return Err(ShardError::Mismatch(format!(
                "shard {}/{} is given twice: {} and {}",
                manifest.shard,
                manifest.shards,
                other.display(),
                dir.display()
            )));
        }
        shards.insert(manifest.shard, (dir.clone(), manifest, rows));
    }
    let Some((_, first, first_rows)) = shards.values().next() else {
        return Err(ShardError::Mismatch(
            "give at least one shard directory".into(),
        ));
    };
    let (mut whole, header) = (first.clone(), first_rows.header.clone());
    let missing: Vec<String> = (1..=whole.shards)
        .filter(|i| !shards.contains_key(i))
        .take(10)
        .map(|i| format!("{i}/{}", whole.shards))
        .collect();
    if !missing.is_empty() {
        return Err(ShardError::Mismatch(format!(
            "shards missing: {}{}",
            missing.join(", "),
            if missing.len() == 10 { ", …" } else { "" }
        )));
    }
    let mut records: Vec<Vec<String>> =
        shards.into_values().flat_map(|(.., r)| r.records).collect();
    records.sort_by_key(|r| r.first().and_then(|f| f.parse::<u64>().ok()));
    if records.len() as u64 != whole.runs {
        return Err(ShardError::Mismatch(format!(
            "the shards hold {} rows for {} runs",
            records.len(),
            whole.runs
        )));
    }
    (whole.shard, whole.shards, whole.rows) = (1, 1, whole.runs);
    Ok((whole, Rows { header, records }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(shard: u32, shards: u32, rows: u64) -> Manifest {
        Manifest {
            search: "test".into(),
            params: BTreeMap::from([("seed".into(), "7".into())]),
            runs: 10,
            shard,
            shards,
            rows,
            version: "1".into(),
        }
    }

    fn rows_of(shard: Shard) -> Rows {
        Rows {
            header: vec!["run".into(), "value".into()],
            records: (0..10)
                .filter(|r| shard.owns(*r))
                .map(|r| vec![r.to_string(), format!("v{}", r * r)])
                .collect(),
        }
    }

    fn write_shards(root: &Path, count: u32) -> Vec<PathBuf> {
        (1..=count)
            .map(|index| {
                let shard = Shard { index, count };
                let rows = rows_of(shard);
                let dir = root.join(format!("s{index}"));
                write(
                    &dir,
                    &manifest(index, count, rows.records.len() as u64),
                    &rows,
                )
                .expect("write a shard");
                dir
            })
            .collect()
    }

    #[test]
    fn shards_partition_the_runs() {
        let shards: Vec<Shard> = (1..=3).map(|index| Shard { index, count: 3 }).collect();
        for run in 0..100 {
            assert_eq!(
                shards.iter().filter(|s| s.owns(run)).count(),
                1,
                "run {run}"
            );
        }
        assert!((0..100).all(|r| Shard::WHOLE.owns(r)));
    }

    #[test]
    fn a_shard_is_written_i_of_n() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "1/1000000"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn merged_shards_give_the_rows_of_the_whole_run_in_any_order() {
        let root = tempfile::tempdir().expect("temp dir");
        let mut dirs = write_shards(root.path(), 3);
        dirs.reverse();
        let (whole, rows) = merge(&dirs).expect("merge");
        assert_eq!(rows, rows_of(Shard::WHOLE));
        assert_eq!(whole, manifest(1, 1, 10));
    }

    #[test]
    fn a_missing_or_repeated_shard_is_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let dirs = write_shards(root.path(), 3);
        let err = merge(&dirs[..2])
            .expect_err("a shard is missing")
            .to_string();
        assert!(err.contains("shards missing: 3/3"), "{err}");
        let twice = [dirs[0].clone(), dirs[1].clone(), dirs[0].clone()];
        let err = merge(&twice).expect_err("a shard twice").to_string();
        assert!(err.contains("given twice"), "{err}");
    }

    #[test]
    fn shards_of_another_search_or_a_cut_file_are_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let dirs = write_shards(root.path(), 2);
        let mut other = manifest(2, 2, 5);
        other.params.insert("seed".into(), "8".into());
        write(&dirs[1], &other, &rows_of(Shard { index: 2, count: 2 })).expect("rewrite");
        let err = merge(&dirs).expect_err("another search").to_string();
        assert!(err.contains("another search"), "{err}");

        write(
            &dirs[1],
            &manifest(2, 2, 6),
            &rows_of(Shard { index: 2, count: 2 }),
        )
        .expect("rewrite");
        let err = merge(&dirs).expect_err("rows missing").to_string();
        assert!(err.contains("did not finish"), "{err}");
    }
}
