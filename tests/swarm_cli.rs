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
