//! Every config error names the file, line, column and field, for each of
//! the three kinds of file: a scenario, an experiment definition (with the
//! scenario embedded in it) and the server's settings. Run as a user runs
//! them, through the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_resilient-relay"));
    command.env("RUST_BACKTRACE", "0");
    for var in ["RELAY_WORKERS", "RELAY_CONFIG", "RELAY_SET", "RELAY_LISTEN"] {
        command.env_remove(var);
    }
    command
}

/// Writes `text` to a fresh file named `name` and returns its path.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("config_errors");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn shipped(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

/// The lines of stderr after `error: `, for a run that must fail.
fn errors(out: Output) -> Vec<String> {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut lines: Vec<String> = stderr.lines().map(str::to_owned).collect();
    if let Some(first) = lines.first_mut() {
        *first = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    }
    lines
}

/// `text` with its only occurrence of `from` replaced by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} once");
    text.replacen(from, to, 1)
}

/// 1-based line and column of `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("present");
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

const SCENARIO: &str = "name = \"t\"\nhorizon_s = 10\n\n[relay]\nworkers = 4\n\n[[clients]]\nkind = \"open-loop\"\nper_s = 10\nclients = 5\n";

fn simulate(name: &str, text: &str) -> (String, Vec<String>) {
    let path = file(name, text);
    let out = binary().arg("simulate").arg(&path).output().expect("runs");
    (path.display().to_string(), errors(out))
}

#[test]
fn scenario_file_errors_name_file_line_column_and_field() {
    let (path, e) = simulate(
        "type.toml",
        &edit(SCENARIO, "workers = 4", "workers = \"four\""),
    );
    assert_eq!(
        e,
        [format!("{path}:5:11: relay.workers: invalid type: string \"four\", expected a whole number ≥ 0")]
    );
    let (path, e) = simulate(
        "unknown.toml",
        &edit(SCENARIO, "workers = 4", "workers = 4\nworkrs = 4"),
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{path}:6:1: relay.workrs: unknown field `workrs`, expected "
        )),
        "{e:?}"
    );
    let (path, e) = simulate("invalid.toml", &edit(SCENARIO, "per_s = 10", "per_s = -1"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!("{path}:9:9: clients[0].per_s: ")),
        "{e:?}"
    );
}

#[test]
fn an_absurd_horizon_is_refused() {
    let (path, e) = simulate(
        "horizon.toml",
        &edit(SCENARIO, "horizon_s = 10", "horizon_s = 1e300"),
    );
    assert_eq!(
        e,
        [format!("{path}:2:13: horizon_s: must be between 0 and 604800 s (a week; 0 runs until no event is left), got 1e300")]
    );
}

#[test]
fn simulate_set_is_blamed_on_itself() {
    let path = file("set.toml", SCENARIO);
    let out = binary()
        .arg("simulate")
        .arg(&path)
        .args(["--set", "relay.workers=-3"])
        .output()
        .expect("runs");
    assert_eq!(
        errors(out),
        ["--set relay.workers=-3: relay.workers: invalid value: integer `-3`, expected a whole number ≥ 0"]
    );
}

fn experiment(name: &str, text: &str) -> (String, Vec<String>) {
    let path = file(name, text);
    let out = binary()
        .args(["experiment", "run"])
        .arg(&path)
        .arg("--quick")
        .arg("--out")
        .arg(path.with_extension("out"))
        .output()
        .expect("runs");
    (path.display().to_string(), errors(out))
}

#[test]
fn definition_errors_name_file_line_column_and_field() {
    let good = shipped("experiments/queue-sizing.toml");
    let bad = edit(&good, "values = [10, 100, 1000]", "values = [10, -5]");
    let (path, e) = experiment("def_type.toml", &bad);
    let (line, column) = position(&bad, "\"relay.queue.capacity\"");
    assert_eq!(
        e,
        [format!("{path}:{line}:{column}: axes.capacity: with capacity = -5 the scenario is invalid: invalid value: integer `-5`, expected a whole number ≥ 0")]
    );
    let bad = edit(&good, "[[axes]]\n", "[[axes]]\nvalus = 3\n");
    let (path, e) = experiment("def_unknown.toml", &bad);
    let (line, _) = position(&bad, "valus");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{path}:{line}:1: axes[0].valus: unknown field `valus`, expected one of"
        )),
        "{e:?}"
    );
    let bad = edit(&good, "values = [10, 100, 1000]", "values = [10, 0]");
    let (path, e) = experiment("def_invalid.toml", &bad);
    let (line, column) = position(&bad, "\"relay.queue.capacity\"");
    assert_eq!(
        e,
        [format!(
            "{path}:{line}:{column}: axes.capacity: with capacity = 0 the scenario is invalid: `relay.queue.capacity`: queue capacity must be ≥ 1"
        )]
    );
}

#[test]
fn errors_in_an_embedded_scenario_point_inside_the_definition() {
    let good = shipped("experiments/queue-sizing.toml");
    let bad = edit(&good, "workers = 10\n", "workers = \"ten\"\n");
    let (path, e) = experiment("emb_type.toml", &bad);
    let (line, _) = position(&bad, "workers = \"ten\"");
    assert_eq!(
        e,
        [format!("{path}:{line}:11: scenario.relay.workers: invalid type: string \"ten\", expected a whole number ≥ 0")]
    );
    let bad = edit(&good, "workers = 10\n", "workers = 10\nworkrs = 10\n");
    let (path, e) = experiment("emb_unknown.toml", &bad);
    let (line, _) = position(&bad, "workrs");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{path}:{line}:1: scenario.relay.workrs: unknown field `workrs`"
        )),
        "{e:?}"
    );
    let bad = edit(&good, "workers = 10\n", "workers = 0\n");
    let (path, e) = experiment("emb_invalid.toml", &bad);
    let (line, _) = position(&bad, "workers = 0");
    assert_eq!(e.len(), 1, "one message for one bad value: {e:?}");
    assert!(
        e[0].starts_with(&format!("{path}:{line}:11: scenario.relay.workers: ")),
        "{e:?}"
    );
}

#[test]
fn an_infinite_value_is_reported_once() {
    let good = shipped("experiments/queue-sizing.toml");
    let bad = edit(&good, "cap_ms = 2000 }", "cap_ms = inf }");
    let (path, e) = experiment("inf.toml", &bad);
    let (line, column) = position(&bad, "inf }");
    assert_eq!(
        e,
        [format!("{path}:{line}:{column}: scenario.relay.retry.backoff.cap_ms: must be a finite number of milliseconds ≥ 0, got inf")]
    );
}

#[test]
fn the_quick_overlay_cannot_hide_a_bad_value_in_the_file() {
    let good = shipped("experiments/queue-sizing.toml");
    let bad = edit(&good, "count = 30", "count = 0");
    let (path, e) = experiment("quick.toml", &bad);
    let (line, column) = position(&bad, "0\n\n# Queue capacities");
    assert_eq!(
        e,
        [format!(
            "{path}:{line}:{column}: seeds.count: must be between 1 and 1000000, got 0"
        )]
    );
}

fn serve(args: &[&str], config: Option<(&str, &str)>) -> (String, Vec<String>) {
    let mut command = binary();
    command.arg("serve").args(args).arg("--print-config");
    let mut path = String::new();
    if let Some((name, text)) = config {
        let file = file(name, text);
        path = file.display().to_string();
        command.arg("--config").arg(file);
    }
    (path, errors(command.output().expect("runs")))
}

#[test]
fn settings_file_errors_name_file_line_column_and_field_on_one_line() {
    let good = shipped("experiments/server/relay.toml");
    let bad = edit(&good, "workers = 10\n", "workers = \"ten\"\n");
    let (path, e) = serve(&[], Some(("serve_type.toml", &bad)));
    let (line, _) = position(&bad, "workers = \"ten\"");
    assert_eq!(
        e,
        [format!("{path}:{line}:11: relay.workers: invalid type: string \"ten\", expected a whole number ≥ 0")]
    );
    let bad = edit(&good, "workers = 10\n", "workrs = 10\n");
    let (path, e) = serve(&[], Some(("serve_unknown.toml", &bad)));
    let (line, _) = position(&bad, "workrs");
    assert_eq!(e.len(), 1, "no stray `in` line: {e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{path}:{line}:1: relay.workrs: unknown field `workrs`"
        )),
        "{e:?}"
    );
    let bad = edit(&good, "body_bytes_max = 65536", "body_bytes_max = 0");
    let (path, e) = serve(&[], Some(("serve_invalid.toml", &bad)));
    let (line, _) = position(&bad, "body_bytes_max = 0");
    assert_eq!(
        e,
        [format!(
            "{path}:{line}:18: server.body_bytes_max: must be between 1 and 67108864 bytes, got 0"
        )]
    );
}

#[test]
fn a_scenario_file_given_to_serve_is_refused_with_a_hint() {
    let scenario = shipped("experiments/scenarios/steady.toml");
    let (path, e) = serve(&[], Some(("serve_scenario.toml", &scenario)));
    let (line, _) = position(&scenario, "[[clients]]");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{path}:{line}:1: clients: this is a scenario file;"
        )),
        "{e:?}"
    );
    assert!(e[0].contains("experiments/server/relay.toml"), "{e:?}");
}

#[test]
fn a_bad_environment_variable_is_named() {
    let out = binary()
        .args(["serve", "--print-config"])
        .env("RELAY_WORKERS", "abc")
        .output()
        .expect("runs");
    let e = errors(out);
    assert_eq!(
        e[0],
        "environment variable RELAY_WORKERS: `abc` is not a whole number ≥ 0"
    );
    let out = binary()
        .args(["serve", "--print-config", "--workers", "abc"])
        .output()
        .expect("runs");
    assert_eq!(errors(out)[0], "--workers: `abc` is not a whole number ≥ 0");
    let out = binary()
        .args(["serve", "--print-config"])
        .env("RELAY_WORKERS", "0")
        .output()
        .expect("runs");
    let e = errors(out);
    assert!(
        e[0].starts_with("environment variable RELAY_WORKERS: relay.workers: "),
        "{e:?}"
    );
}

#[test]
fn serve_help_shows_the_default_address_and_the_example_file() {
    let out = binary().args(["serve", "--help"]).output().expect("runs");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(help.contains("[default: 127.0.0.1:3000"), "{help}");
    assert!(help.contains("experiments/server/relay.toml"), "{help}");
}

#[test]
fn a_scenario_given_to_downstream_is_read_with_positions() {
    let base = format!("{SCENARIO}\n[downstream]\nfailure_rate = 0.1\n");
    for (bad, message) in [
        (
            "failure_rate = \"x\"",
            "downstream.failure_rate: invalid type: string \"x\", expected a number",
        ),
        ("failure_rate = 2.0", "downstream.failure_rate: "),
    ] {
        let text = edit(&base, "failure_rate = 0.1", bad);
        let path = file("downstream_scenario.toml", &text);
        let out = binary()
            .args(["downstream", "--listen", "127.0.0.1:0", "--scenario"])
            .arg(&path)
            .output()
            .expect("runs");
        let e = errors(out);
        let (line, col) = position(&text, &bad[15..]);
        let at = format!("{}:{line}:{col}: {message}", path.display());
        assert!(e[0].starts_with(&at), "{e:?} should start with {at}");
    }
}
