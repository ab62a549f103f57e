//! Shared fixtures of the experiment tests: each built-in experiment's
//! quick run, made once per test binary and thread count, and readers of
//! the CSVs it writes. Included with
//! `#[path = "common/experiments.rs"] mod experiments;`, so the tests that
//! need only these do not build the HTTP harness of `common/mod.rs`.

#![allow(dead_code)]

use resilient_relay::experiment::{run_named, RunReport, RunSettings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// `experiment`'s quick run with `jobs` threads, made on first use and
/// shared by every test of the binary. Runs of different experiments may
/// go on at once; the lock is held only to find the run's cell.
pub fn quick_run(experiment: &'static str, jobs: usize) -> &'static RunReport {
    type Cells = BTreeMap<(&'static str, usize), &'static OnceLock<RunReport>>;
    static CELLS: Mutex<Cells> = Mutex::new(BTreeMap::new());
    let cell = *CELLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry((experiment, jobs))
        .or_insert_with(|| Box::leak(Box::new(OnceLock::new())));
    cell.get_or_init(|| {
        // Each test binary writes under its own name: two binaries running
        // the same experiment never share a directory.
        let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{}_{experiment}_jobs{jobs}",
            env!("CARGO_CRATE_NAME")
        ));
        let _ = std::fs::remove_dir_all(&out_dir);
        let settings = RunSettings {
            out_dir,
            jobs,
            quick: true,
            seeds: None,
            progress: false,
        };
        run_named(experiment, &settings).expect("quick run succeeds")
    })
}

pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A CSV as its header and rows of raw strings.
pub fn csv(dir: &Path, file: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = read(dir, file);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// Rows keyed by their first `keys` columns joined with `/`: column → value
/// (an empty or non-numeric cell reads as NaN).
pub fn rows(dir: &Path, file: &str, keys: usize) -> BTreeMap<String, BTreeMap<String, f64>> {
    let (header, rows) = csv(dir, file);
    rows.into_iter()
        .map(|row| {
            let key = row[..keys].join("/");
            let values = header
                .iter()
                .zip(&row)
                .skip(keys)
                .map(|(h, v)| (h.clone(), v.parse().unwrap_or(f64::NAN)))
                .collect();
            (key, values)
        })
        .collect()
}

/// Every output but `meta.json`'s timing is the same bytes for 1 and 2 jobs.
pub fn same_bytes(experiment: &'static str) {
    let one = quick_run(experiment, 1);
    let two = quick_run(experiment, 2);
    assert_eq!(one.files, two.files);
    for file in one.files.iter().filter(|f| *f != "meta.json") {
        let a = std::fs::read(one.dir.join(file)).expect("jobs 1 output");
        let b = std::fs::read(two.dir.join(file)).expect("jobs 2 output");
        assert!(
            a == b,
            "{experiment}: {file} differs between --jobs 1 and 2"
        );
    }
    let meta = |dir: &Path| {
        let mut v: serde_json::Value =
            serde_json::from_str(&read(dir, "meta.json")).expect("meta.json is JSON");
        v.as_object_mut().and_then(|m| m.remove("timing"));
        v
    };
    assert_eq!(meta(&one.dir), meta(&two.dir), "{experiment}: meta.json");
}

/// The trimmed contents of every `<text>` element of an SVG chart.
pub fn svg_texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|element| {
            let start = element.find('>')? + 1;
            let end = element.find("</text>")?;
            Some(element[start..end].trim())
        })
        .collect()
}
