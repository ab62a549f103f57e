//! The `experiment` subcommand as a user runs it: list, help, `all`, an
//! edited copy of a definition, and the errors a bad definition gets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_resilient-relay"));
    command.env("RUST_BACKTRACE", "0");
    command
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run(args: &[&str]) -> Output {
    binary().args(args).output().expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shipped_definition() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/jitter-comparison.toml");
    std::fs::read_to_string(path).expect("experiments/jitter-comparison.toml")
}

/// `text` with the line starting with `key =` replaced by `key = value`.
fn with_knob(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} =");
    assert!(text.lines().any(|l| l.starts_with(&prefix)), "no {key}");
    text.lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn line_of(text: &str, start: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(start))
        .map(|i| i + 1)
        .expect("line present")
}

#[test]
fn list_names_the_experiment_and_its_definition() {
    let out = run(&["experiment", "list"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for name in [
        "breaker-tuning",
        "dlq-sizing",
        "jitter-comparison",
        "queue-sizing",
        "rate-limit-sizing",
        "timeout-tuning",
        "worker-pool-sizing",
    ] {
        assert!(stdout.contains(name), "{stdout}");
        assert!(
            stdout.contains(&format!("experiments/{name}.toml")),
            "{stdout}"
        );
    }
    // A sweep's line is its `question`, read from the TOML file.
    assert!(
        stdout.contains("Per-client rate limit against one noisy client"),
        "{stdout}"
    );
}

#[test]
fn help_documents_every_flag() {
    let out = run(&["experiment", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for flag in [
        "--seeds", "--out", "--jobs", "--quick", "list", "all", "run",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[test]
fn an_edited_copy_runs_into_its_own_directory() {
    let dir = scratch("experiment_cli_copy");
    let edited = with_knob(&shipped_definition(), "clients", "[5, 15]");
    let edited = with_knob(&edited, "strategies", r#"["full-jitter", "no-backoff"]"#);
    let path = dir.join("my-copy.toml");
    std::fs::write(&path, edited).expect("write copy");
    let out_dir = dir.join("out");
    let out = binary()
        .args(["experiment", "run"])
        .arg(&path)
        .args(["--seeds", "3", "--jobs", "2", "--out"])
        .arg(&out_dir)
        .output()
        .expect("binary runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(out_dir.join("my-copy/contention.csv")).expect("csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2 * 2 * 3, "{csv}");
    assert!(rows[0].starts_with("full-jitter,5,1,"), "{csv}");
    assert!(rows[11].starts_with("no-backoff,15,3,"), "{csv}");
    let summary = std::fs::read_to_string(out_dir.join("my-copy/summary.md")).expect("md");
    assert!(summary.contains("experiment run "), "{summary}");
    assert!(summary.contains("--seeds 3"), "{summary}");
}

#[test]
fn a_bad_definition_names_every_bad_field_with_its_line() {
    let dir = scratch("experiment_cli_bad");
    let good = shipped_definition();
    let bad = with_knob(&good, "cap_ms", "1.0");
    let bad = with_knob(&bad, "latency_ms_sd", "-2.0");
    let bad = with_knob(&bad, "count", "0");
    let path = dir.join("bad.toml");
    std::fs::write(&path, &bad).expect("write");
    let out = binary()
        .args(["experiment", "run"])
        .arg(&path)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for (field, key) in [
        ("contention.cap_ms", "cap_ms ="),
        ("contention.latency_ms_sd", "latency_ms_sd ="),
        ("seeds.count", "count ="),
    ] {
        let expected = format!("bad.toml:{}:", line_of(&bad, key));
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&expected) && l.contains(&format!(": {field}: "))),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        !dir.join("out").exists(),
        "a bad definition must write nothing"
    );
}

#[test]
fn a_type_error_names_field_and_line() {
    let dir = scratch("experiment_cli_type");
    let bad = with_knob(&shipped_definition(), "base_ms", "\"five\"");
    let path = dir.join("bad.toml");
    std::fs::write(&path, &bad).expect("write");
    let out = binary()
        .args(["experiment", "run"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let expected = format!("bad.toml:{}:", line_of(&bad, "base_ms ="));
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&expected) && l.contains(": contention.base_ms: ")),
        "{stderr}"
    );
}

#[test]
fn unknown_names_and_misplaced_files_are_explained() {
    let out = run(&["experiment", "no-such-thing"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(
        "known: breaker-tuning, bulkheads, crash-recovery, dlq-sizing, jitter-comparison"
    ));
    let out = run(&["experiment", "run"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("needs a definition file"));
}

#[test]
fn all_runs_every_experiment() {
    let dir = scratch("experiment_cli_all");
    let out = binary()
        .args(["experiment", "all", "--quick", "--out"])
        .arg(&dir)
        .output()
        .expect("binary runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for file in [
        "jitter-comparison/contention.csv",
        "jitter-comparison/relay.csv",
        "jitter-comparison/meta.json",
        "queue-sizing/queue_sizing.csv",
        "timeout-tuning/timeout_tuning.csv",
        "worker-pool-sizing/worker_pool_sizing.csv",
        "rate-limit-sizing/rate_limit_sizing.csv",
        "dlq-sizing/dlq_sizing_summary.csv",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
}

#[test]
fn an_out_that_is_a_file_names_the_os_error_once() {
    let dir = scratch("experiment_cli_out_file");
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let out = binary()
        .args(["experiment", "dlq-sizing", "--quick", "--out"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot write"), "{stderr}");
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
}

#[test]
fn every_notebook_cell_has_an_id() {
    // Without ids, nbformat warns on every run and would invent new ones.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("notebooks/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("ipynb") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let nb: serde_json::Value = serde_json::from_str(&text).expect("json");
        let cells = nb["cells"].as_array().expect("cells");
        for cell in cells {
            assert!(
                cell["id"].is_string(),
                "{}: a cell without id",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 5, "{seen} notebooks");
}
