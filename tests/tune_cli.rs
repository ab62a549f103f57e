//! `tune` from the command line: the same bytes for any thread count, a
//! recommended section `serve --config` loads as it is, and a bad `[tune]`
//! section refused at its line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resilient-relay"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("tune_cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

const STEADY: &str = include_str!("../experiments/scenarios/steady.toml");

const TINY: &str = r#"[tune]
candidates = 6
seeds = 4
[[tune.knobs]]
path = "relay.retry.attempts_max"
min = 1
max = 5
[[tune.knobs]]
path = "relay.retry.backoff.kind"
values = ["full-jitter", "exponential"]
[[tune.knobs]]
path = "relay.queue.capacity"
min = 20
max = 400
[tune.stress]
at_s = 5
spike_s = 3
outage_s = 3
spike_factor_max = 6
outage_s_max = 12
margin_steps = 2
margin_seeds = 1
"#;

/// Writes the steady scenario with `tune` as its section into `dir`.
fn scenario(dir: &Path, tune: &str) -> PathBuf {
    let base = STEADY.split("\n[tune]").next().expect("some text");
    let path = dir.join("steady.toml");
    std::fs::write(&path, format!("{base}\n{tune}")).expect("writes");
    path
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("listed")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_tiny_tune_writes_the_same_bytes_on_one_or_two_threads_and_serves() {
    let dir = scratch("jobs");
    let file = scenario(&dir, TINY);
    let file = file.to_str().expect("utf-8");
    let mut outputs = Vec::new();
    for jobs in ["1", "2"] {
        let out = dir.join(format!("out-{jobs}"));
        let o = run(&[
            "tune",
            file,
            "--jobs",
            jobs,
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout.contains("recommended: candidate"), "{stdout}");
        outputs.push(files(&out));
    }
    let names: Vec<&str> = outputs[0].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "candidates.csv",
            "pareto.csv",
            "pareto.png",
            "pareto.svg",
            "recommended.toml",
            "summary.md"
        ]
    );
    assert!(outputs[0] == outputs[1], "--jobs 1 and --jobs 2 differ");

    let recommended = dir.join("out-1").join("recommended.toml");
    let o = run(&[
        "serve",
        "--config",
        recommended.to_str().expect("utf-8"),
        "--store",
        "memory",
        "--print-config",
    ]);
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = std::fs::read_to_string(&recommended).expect("read");
    let attempts = written
        .lines()
        .find(|l| l.starts_with("attempts_max = "))
        .expect("the retry section names its attempts");
    assert!(printed.contains(attempts), "{printed}");
}

#[test]
fn a_bad_tune_section_is_refused_at_its_line() {
    let dir = scratch("bad");
    let bad = TINY.replace("max = 400", "max = 400\nscale = \"logarithmic\"");
    let file = scenario(&dir, &bad);
    let o = run(&[
        "tune",
        file.to_str().expect("utf-8"),
        "--out",
        dir.join("out").to_str().expect("utf-8"),
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    let text = std::fs::read_to_string(&file).expect("read");
    let line = text
        .lines()
        .position(|l| l.starts_with("scale ="))
        .expect("written")
        + 1;
    let want = format!("steady.toml:{line}:9: tune.knobs[2].scale: unknown variant `logarithmic`");
    assert!(stderr.contains(&want), "{stderr}");
    assert!(!dir.join("out").exists(), "nothing written");
}
