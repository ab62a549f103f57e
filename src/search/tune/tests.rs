use super::*;
use crate::experiment::chart::Figure;
use crate::experiment::sweep::Sweep;
use crate::search::stress::Fared;

const STEADY: &str = include_str!("../../../experiments/scenarios/steady.toml");

/// The steady scenario with `tune` as its [tune] section.
fn tuning(tune: &str) -> Tuning {
    let base = STEADY.split("\n[tune]").next().expect("some text");
    Tuning::from_text(format!("{base}\n{tune}"), "steady.toml".into()).expect("valid")
}

const TINY: &str = r#"[tune]
candidates = 5
seeds = 2
[[tune.knobs]]
path = "relay.retry.attempts_max"
min = 1
max = 4
[[tune.knobs]]
path = "relay.retry.backoff.base_ms"
min = 10.0
max = 200.0
[tune.stress]
at_s = 5
spike_s = 3
outage_s = 3
spike_factor_max = 6
outage_s_max = 12
margin_steps = 2
margin_seeds = 1
"#;

fn sample(goodput_per_s: f64, p99_ms: f64, amplification: f64) -> Sample {
    Sample {
        objectives: Objectives {
            goodput_per_s,
            p99_ms,
            amplification,
        },
        duplicates: 0,
        stress: vec![Fared::Recovered, Fared::Recovered],
        broken: None,
        runs: 5,
    }
}

#[test]
fn constraints_filter_and_name_what_was_missed() {
    let t = tuning(&format!(
        "{TINY}[tune.constraints]\ngoodput_per_s_min = 99\np99_ms_max = 50\namplification_max = 1.05\n"
    ));
    let good = sample(99.5, 40.0, 1.01);
    assert!(score(&t, &[&good, &good], 1).feasible());
    let slow = sample(99.5, 60.0, 1.01);
    let scored = score(&t, &[&good, &slow], 1);
    assert_eq!(scored.objectives.p99_ms, 50.0, "the mean over seeds");
    assert!(
        scored.feasible(),
        "the mean, not the worst seed, is held to p99_ms_max"
    );
    let weak = score(&t, &[&sample(90.0, 60.0, 1.2)], 1);
    assert_eq!(
        weak.violations,
        vec![
            "goodput 90.0/s < 99".to_string(),
            "p99 60.0 ms > 50".into(),
            "amplification 1.200 > 1.05".into()
        ]
    );
    let mut stuck = sample(99.5, 40.0, 1.0);
    stuck.stress[1] = Fared::Failed("stuck".into());
    stuck.duplicates = 1;
    let s = score(&t, &[&good, &stuck], 7);
    assert_eq!(s.recovered, Some(false));
    assert_eq!(s.violations.len(), 2, "{:?}", s.violations);
    assert!(
        s.violations[1].contains("outage on seed 8: stuck"),
        "{:?}",
        s.violations
    );
    assert!(s.violations[0].contains("1 duplicate side effects > 0"));
}

#[test]
fn ranking_puts_the_feasible_front_first_then_the_nearly_feasible() {
    let t = tuning(&format!("{TINY}[tune.constraints]\np99_ms_max = 100\n"));
    let scored = |s: Sample| score(&t, &[&s], 1);
    let scores: BTreeMap<usize, Score> = [
        (0, scored(sample(90.0, 50.0, 1.0))),  // front
        (1, scored(sample(95.0, 80.0, 1.0))),  // front, more goodput
        (2, scored(sample(85.0, 60.0, 1.1))),  // dominated by 0
        (3, scored(sample(99.0, 500.0, 1.0))), // misses p99
        (4, scored(sample(99.0, 500.0, 9.0))), // misses p99 too, less goodput? same: index
    ]
    .into_iter()
    .collect();
    assert_eq!(rank(&scores, &[0, 1, 2, 3, 4]), vec![1, 0, 2, 3, 4]);
    assert_eq!(eligible(&[1, 0], &scores, 10.0), vec![1, 0]);
    assert_eq!(eligible(&[1, 0], &scores, 2.0), vec![1]);
}

#[test]
fn a_tiny_run_is_the_same_for_any_thread_count_and_its_toml_serves() {
    let t = tuning(TINY);
    let run = |jobs| {
        let sweep = Sweep::new(jobs, false).expect("pool");
        tune(&t, &mut Stages::whole(&sweep)).expect("an unsharded search ends")
    };
    let (one, two) = (run(1), run(2));
    let text = |r: &Report| {
        [
            report::candidates_table(&t, r).to_csv_string(),
            report::pareto_table(&t, r).to_csv_string(),
            report::summary(&t, r, "cmd"),
            report::recommended_toml(&t, r, "cmd").unwrap_or_default(),
            report::pareto_chart(&t, r).to_svg().expect("draws"),
        ]
    };
    assert_eq!(text(&one), text(&two));
    assert_eq!(one.runs, two.runs);
    let id = one.recommended.expect("something is feasible");
    assert!(one.front.contains(&id));
    assert!(one.margins.contains_key(&id) && one.margins.contains_key(&0));
    let sizes: Vec<u32> = one.rounds.iter().map(|r| r.seeds).collect();
    assert_eq!(sizes, vec![2]);
    // The recommended section, loaded the way `serve --config` loads it.
    let toml = report::recommended_toml(&t, &one, "cmd").expect("written");
    let path = std::env::temp_dir().join(format!("tune-unit-{}.toml", std::process::id()));
    std::fs::write(&path, &toml).expect("writes");
    let args = crate::server::ServeArgs {
        config: Some(path.clone()),
        ..Default::default()
    };
    let served = args.resolve();
    let _ = std::fs::remove_file(&path);
    let served = served.expect("serve --config accepts it");
    let want = one.candidates[id].scenario.as_ref().expect("valid");
    assert_eq!(served.relay.retry, want.relay.retry);
    assert_eq!(served.relay.queue, want.relay.queue);
    assert_eq!(served.relay.workers, want.relay.workers);
    assert_eq!(
        served.relay.history_max,
        crate::server::config::HISTORY_MAX_DEFAULT,
        "the simulator's history_max = 0 is not carried over"
    );
}
