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
