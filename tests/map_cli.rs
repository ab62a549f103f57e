//! `map` from the command line: what it writes, the same bytes for any
//! thread count, and errors that say what was wrong.

use std::path::PathBuf;
use std::process::{Command, Output};

fn map(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .arg("map")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("map_cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A quick map of the retry storm: its spike's length, 3 seeds.
fn small(out: &str, jobs: &str) -> Output {
    map(&[
        "retry-storm",
        "--axis",
        "duration=1..12",
        "--seeds",
        "3",
        "--tolerance",
        "3",
        "--jobs",
        jobs,
        "--out",
        out,
    ])
}

#[test]
fn a_map_writes_its_files_and_the_same_bytes_for_any_thread_count() {
    // One directory for both, so the reproduce command in summary.md is
    // the same; the first run's files are read before the second's.
    let one = scratch("jobs");
    let files = ["map.csv", "boundary.csv", "summary.md"];
    let mut first = Vec::new();
    for jobs in ["1", "2"] {
        let o = small(one.to_str().expect("utf-8"), jobs);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("duration crosses 1/2 between"),
            "{}",
            text(&o)
        );
        let read: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(one.join(f)).expect("written"))
            .collect();
        if first.is_empty() {
            first = read;
            continue;
        }
        for ((file, a), b) in files.iter().zip(&first).zip(&read) {
            assert_eq!(a, b, "{file} differs between --jobs 1 and 2");
            assert!(!a.contains("--jobs"), "{file} names no thread count");
        }
    }
    let csv = std::fs::read_to_string(one.join("map.csv")).expect("map.csv");
    assert!(csv.starts_with(
        "variant,duration,seeds,recovered,stuck,unchecked,violations,share,wilson_low,wilson_high\n"
    ));
    for file in ["map.png", "map.svg", "meta.json"] {
        assert!(one.join(file).is_file(), "{file}");
    }
}

#[test]
fn bad_axes_and_paths_say_what_is_wrong() {
    let out = scratch("bad");
    let out = out.to_str().expect("utf-8");
    let cases: [(&[&str], &str); 6] = [
        (&["--axis", "duration"], "NAME=LO..HI"),
        (&["--axis", "duration=5..1"], "LO must be below HI"),
        (&["--axis", "relay.wrkers=1..4"], "unknown field `wrkers`"),
        (
            &["--axis", "clients[4].per_s=1..4"],
            "index 4 is out of range",
        ),
        (
            &["--axis", "duration=1..5", "--bisect", "load"],
            "--bisect load: not one of the axes",
        ),
        (
            &["--axis", "duration=1..5", "--variant", "two words"],
            "a variant is NAME",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["retry-storm", "--out", out];
        all.extend_from_slice(args);
        let o = map(&all);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    let o = map(&["no-such-scenario", "--axis", "duration=1..5"]);
    assert!(
        text(&o).contains("no scenario `no-such-scenario`"),
        "{}",
        text(&o)
    );
}

fn merge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .arg("merge")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs")
}

/// Every file of a directory, by name, with its bytes.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("a directory")
        .map(|e| {
            let path = e.expect("an entry").path();
            let name = path.file_name().expect("a name").to_string_lossy().into();
            (name, std::fs::read(&path).expect("readable"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn three_merged_shards_write_what_the_whole_map_writes_byte_for_byte() {
    let root = scratch("shards");
    let at = |name: &str| root.join(name).to_str().expect("utf-8").to_string();
    // Two variants times two spike rates: four lines, so one shard takes two.
    #[rustfmt::skip]
    let common = [
        "retry-storm", "--axis", "spike=60..120", "--axis", "duration=1..12",
        "--steps", "2", "--seeds", "2", "--tolerance", "4",
        "--variant", "plain", "--variant", "slow:relay.workers=8",
    ];
    // The whole map and the merge write to the same place (the command in
    // summary.md names it), so the whole one is moved aside first.
    let whole = map(&[&common[..], &["--out", &at("map")]].concat());
    assert!(whole.status.success(), "{}", text(&whole));
    std::fs::rename(root.join("map"), root.join("whole")).expect("moved aside");
    for i in 1..=3 {
        let (shard, out) = (format!("{i}/3"), at(&format!("s{i}")));
        let o = map(&[
            &common[..],
            &["--shard", &shard, "--jobs", "1", "--out", &out],
        ]
        .concat());
        assert!(o.status.success(), "shard {shard}: {}", text(&o));
        assert!(
            !root.join(format!("s{i}/map.csv")).exists(),
            "a shard writes only rows"
        );
    }
    let rows = std::fs::read_to_string(root.join("s1/rows.csv")).expect("rows");
    assert_eq!(
        rows.lines().count(),
        3,
        "shard 1/3 holds lines 0 and 3: {rows}"
    );
    let missing = merge(&[&at("s1"), &at("s3"), "--out", &at("map")]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("shards missing: 2/3"),
        "{}",
        text(&missing)
    );
    let merged = merge(&[&at("s3"), &at("s1"), &at("s2"), "--out", &at("map")]);
    assert!(merged.status.success(), "{}", text(&merged));
    let strip = |fs: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        // meta.json records the wall time, which a merge does not have.
        fs.into_iter().filter(|(n, _)| n != "meta.json").collect()
    };
    let (w, m) = (
        strip(files(&root.join("whole"))),
        strip(files(&root.join("map"))),
    );
    let names: Vec<&String> = w.iter().map(|f| &f.0).collect();
    assert_eq!(names, m.iter().map(|f| &f.0).collect::<Vec<_>>());
    assert!(names.len() >= 5, "{names:?}");
    for (a, b) in w.iter().zip(&m) {
        assert!(
            a.1 == b.1,
            "{} differs between the whole map and the merge",
            a.0
        );
    }
}
