//! `swarm` from the command line: the same tally for any thread count, and
//! `--check --shrink` on a scenario that stays down.

use std::path::PathBuf;
use std::process::{Command, Output};

fn swarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .arg("swarm")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("swarm_cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn the_tally_does_not_depend_on_the_thread_count() {
    let out = scratch("jobs");
    let out = out.to_str().expect("utf-8 path");
    let tally = |jobs: &str| {
        let o = swarm(&["--runs", "30", "--seed", "5", "--jobs", jobs, "--out", out]);
        assert!(
            o.status.success(),
            "{}{}",
            stdout(&o),
            String::from_utf8_lossy(&o.stderr)
        );
        // Everything but the first line (wall time and speed).
        stdout(&o).lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    let one = tally("1");
    assert!(one.contains("recovered"), "{one}");
    assert_eq!(one, tally("2"));
}

#[test]
fn a_stuck_scenario_fails_its_check_and_shrinks_to_one_that_is_still_stuck() {
    let dir = scratch("storm");
    let file = dir.join("storm.toml");
    std::fs::copy("experiments/scenarios/retry-storm.toml", &file).expect("copy");
    let path = file.to_str().expect("utf-8 path");
    let o = swarm(&["--check", path, "--shrink", "--shrink-budget", "15"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("stuck (metastable)"), "{text}");
    assert!(text.contains("shrunk in"), "{text}");
    let min = dir.join("storm.min.toml");
    let again = swarm(&["--check", min.to_str().expect("utf-8 path")]);
    assert_eq!(again.status.code(), Some(1), "{}", stdout(&again));
    assert!(stdout(&again).contains("stuck"), "{}", stdout(&again));
}

#[test]
fn a_scenario_without_triggers_passes_with_liveness_unchecked() {
    let o = swarm(&["--check", "experiments/scenarios/steady.toml"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("liveness unchecked: no trigger"),
        "{}",
        stdout(&o)
    );
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .arg(cmd)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("runs")
}

/// Every file under `dir`, by name, with its bytes.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read file"))
        })
        .collect();
    all.sort();
    all
}

#[test]
fn three_merged_shards_write_what_the_whole_swarm_writes_byte_for_byte() {
    let root = scratch("shards");
    let at = |name: &str| root.join(name).to_str().expect("utf-8 path").to_string();
    // Run 16 of seed 4 is stuck, so a failure's scenario and its shrinking
    // are compared too.
    #[rustfmt::skip]
    let common = [
        "--runs", "24", "--seed", "4", "--stuck", "report",
        "--shrink-max", "1", "--shrink-budget", "30",
    ];
    let whole = run("swarm", &[&common[..], &["--out", &at("whole")]].concat());
    assert!(whole.status.success(), "{}", stdout(&whole));
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let o = run(
            "swarm",
            &[
                &common[..],
                &[
                    "--shard",
                    &shard,
                    "--jobs",
                    "1",
                    "--out",
                    &at(&format!("s{i}")),
                ],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stdout(&o));
    }
    let merged = run(
        "merge",
        &[&at("s2"), &at("s3"), &at("s1"), "--out", &at("merged")],
    );
    assert!(
        merged.status.success(),
        "{}{}",
        stdout(&merged),
        String::from_utf8_lossy(&merged.stderr)
    );
    let (whole_files, merged_files) = (files(&root.join("whole")), files(&root.join("merged")));
    let names: Vec<&str> = whole_files.iter().map(|f| f.0.as_str()).collect();
    assert!(
        names.contains(&"runs.csv") && names.contains(&"summary.md"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with(".min.toml")),
        "no failure in {names:?}: pick another seed"
    );
    assert_eq!(
        whole_files.iter().map(|f| &f.0).collect::<Vec<_>>(),
        merged_files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (w, m) in whole_files.iter().zip(&merged_files) {
        assert!(
            w.1 == m.1,
            "{} differs between the whole run and the merged shards",
            w.0
        );
    }
    let short = run("merge", &[&at("s1"), &at("s3")]);
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("shards missing: 2/3"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
}
