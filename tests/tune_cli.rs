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

/// The tiny search run whole, then stage by stage in three shards, each
/// stage merged into the state the next resumes from: the last merge
/// writes the whole run's files byte for byte.
#[test]
fn a_tune_in_three_shards_stage_by_stage_writes_what_the_whole_run_writes() {
    let dir = scratch("shards");
    let file = scenario(&dir, TINY);
    let file = file.to_str().expect("utf-8");
    let at = |p: PathBuf| p.to_str().expect("utf-8").to_string();
    let ok = |o: &Output| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{text}");
        text
    };
    let whole = dir.join("whole");
    ok(&run(&["tune", file, "--out", &at(whole.clone())]));
    let mut state: Option<PathBuf> = None;
    let mut stages = 0;
    let merged = loop {
        stages += 1;
        assert!(
            stages <= 10,
            "the search should end within its rounds and margins"
        );
        let stage = dir.join(format!("stage-{stages}"));
        let mut shards = Vec::new();
        for i in 1..=3 {
            let (shard, out) = (format!("{i}/3"), at(stage.join(format!("s{i}"))));
            let mut args = vec![
                "tune", file, "--jobs", "1", "--shard", &shard, "--out", &out,
            ];
            let resume = state.as_ref().map(|s| at(s.clone()));
            if let Some(s) = &resume {
                args.extend(["--resume", s.as_str()]);
            }
            ok(&run(&args));
            shards.push(out);
        }
        let into = stage.join("merged");
        let mut args = vec!["merge".to_string()];
        args.extend(shards.iter().rev().cloned());
        args.extend(["--out".to_string(), at(into.clone())]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let said = ok(&run(&refs));
        if into.join("summary.md").exists() {
            break into;
        }
        assert!(
            said.contains("--resume"),
            "the merge names the next step: {said}"
        );
        state = Some(into);
    };
    assert_eq!(
        stages, 3,
        "two halving rounds (2 and 4 seeds), then the margins"
    );
    let (w, m) = (files(&whole), files(&merged));
    assert_eq!(
        w.iter().map(|f| &f.0).collect::<Vec<_>>(),
        m.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (a, b) in w.iter().zip(&m) {
        assert!(
            a.1 == b.1,
            "{} differs between the whole run and the shards",
            a.0
        );
    }
    // A state resumed by another search (another first seed) is refused.
    let first_state = at(dir.join("stage-1").join("merged"));
    let out = at(dir.join("other"));
    let o = run(&[
        "tune",
        file,
        "--seed",
        "99",
        "--shard",
        "1/3",
        "--resume",
        &first_state,
        "--out",
        &out,
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("not a state of this search"), "{stderr}");
}
