//! One scenario judged: every invariant of the outside checker, then
//! liveness (goodput back within [`RECOVER_WITHIN_S`] of the last trigger).
//!
//! Liveness is judged against the scenario's calm twin (see
//! [`super::triggers`]) on the same seed: in the window from the last
//! trigger's end plus the time allowed until the horizon, the run must
//! deliver at least [`SHARE`] of what the calm run delivers. Comparing
//! with the calm run rather than with the offered load keeps a steady
//! failure rate, a rate limit or a small retry allowance from looking like
//! a failure to recover. A calm run that does not keep up with its own
//! load is over capacity without any trigger: liveness says nothing there
//! and the run is reported as unchecked.

use super::triggers::{calm, last_end, RECOVER_WITHIN_S};
use crate::sim::{simulate, Scenario, Series, SimOptions, Stop};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The share of the calm run's goodput a recovered run delivers.
pub const SHARE: f64 = 0.7;

/// A calm run keeps up when at least this share of its first tries succeed.
const CALM_SHARE: f64 = 0.5;

/// Fewest calm successes in the window that make a comparison worth it.
const CALM_SUCCESSES_MIN: u64 = 50;

/// Shortest window liveness is judged on, in seconds.
const WINDOW_MIN_S: f64 = 10.0;

const BUCKET_MS: f64 = 1000.0;

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every invariant held, and the run recovered.
    Recovered,
    /// Every invariant held; liveness was not judged, for the reason given.
    Unchecked(Unjudged),
    /// An invariant broke, or the run exceeded its event bound.
    Violation(String),
    /// Every invariant held, but goodput did not come back.
    Stuck(Evidence),
}

impl Verdict {
    pub fn failed(&self) -> bool {
        matches!(self, Verdict::Violation(_) | Verdict::Stuck(_))
    }

    /// Two failures of one kind: what shrinking must preserve.
    pub fn same_kind(&self, other: &Verdict) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Recovered => write!(f, "recovered"),
            Verdict::Unchecked(why) => write!(f, "liveness unchecked: {why}"),
            Verdict::Violation(what) => write!(f, "violation: {what}"),
            Verdict::Stuck(e) => write!(f, "stuck (metastable):\n{e}"),
        }
    }
}

/// Why a run's liveness was not judged.
#[derive(Clone, Debug, PartialEq)]
pub enum Unjudged {
    /// Nothing pushed the run over.
    NoTrigger,
    /// The horizon ends too soon after the last trigger.
    ShortHorizon { end_s: f64 },
    /// The calm twin is over capacity by itself.
    CalmOverloaded { successes: u64, first_tries: u64 },
}

impl Unjudged {
    /// Every short name [`Unjudged::name`] gives.
    pub const NAMES: [&'static str; 3] = [
        "no trigger",
        "horizon too short",
        "over capacity without a trigger",
    ];

    /// A short name, for counts.
    pub fn name(&self) -> &'static str {
        match self {
            Unjudged::NoTrigger => "no trigger",
            Unjudged::ShortHorizon { .. } => "horizon too short",
            Unjudged::CalmOverloaded { .. } => "over capacity without a trigger",
        }
    }
}

impl fmt::Display for Unjudged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unjudged::NoTrigger => write!(f, "no trigger to recover from"),
            Unjudged::ShortHorizon { end_s } => write!(
                f,
                "the horizon leaves less than {WINDOW_MIN_S} s after the last trigger's end \
                 ({end_s:.1} s) plus {RECOVER_WITHIN_S} s"
            ),
            Unjudged::CalmOverloaded {
                successes,
                first_tries,
            } => write!(
                f,
                "the calm run does not keep up with its own load ({successes} of \
                 {first_tries} first tries succeed)"
            ),
        }
    }
}

/// What a stuck run did in the judged window, beside its calm twin.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    pub from_s: f64,
    pub to_s: f64,
    pub run: Rates,
    pub calm: Rates,
}

/// A row of the evidence: its name, and how to read it from the rates.
type Column = (&'static str, fn(&Rates) -> f64);

/// Per-second means over the judged window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub first_tries: f64,
    pub goodput: f64,
    pub retries: f64,
    pub timeouts: f64,
    pub refusals: f64,
    pub calls: f64,
    /// Downstream calls in progress at the window's end.
    pub in_progress: u32,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  per second over t = {:.0}..{:.0} s    this run   calm run",
            self.from_s, self.to_s
        )?;
        let rows: [Column; 6] = [
            ("first tries offered", |r| r.first_tries),
            ("goodput", |r| r.goodput),
            ("client retries", |r| r.retries),
            ("client timeouts", |r| r.timeouts),
            ("429/503 refusals", |r| r.refusals),
            ("downstream calls", |r| r.calls),
        ];
        for (name, get) in rows {
            writeln!(
                f,
                "  {name:<34} {:>9.1} {:>10.1}",
                get(&self.run),
                get(&self.calm)
            )?;
        }
        write!(
            f,
            "  {:<34} {:>9} {:>10}",
            "calls in progress at the end", self.run.in_progress, self.calm.in_progress
        )
    }
}

/// Most calm runs [`CalmTwins`] keeps (about 2 kB of key and 1 kB of
/// series each).
pub const CALM_TWINS_MAX: usize = 4096;

/// A calm run's series, or what stopped it.
type CalmRun = Arc<Result<Series, String>>;

/// Calm twins already run, by scenario and seed. A map judges one line's
/// triggers (longer or larger) against one calm scenario: its calm run is
/// the same run at every point, so it runs once per seed.
#[derive(Default)]
pub struct CalmTwins {
    runs: Mutex<BTreeMap<(String, u64), CalmRun>>,
    ran: AtomicU64,
    reused: AtomicU64,
}

impl CalmTwins {
    /// Calm runs run.
    pub fn ran(&self) -> u64 {
        self.ran.load(Ordering::Relaxed)
    }

    /// Calm runs answered from the ones kept.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    fn series(&self, calm: &Scenario, seed: u64) -> CalmRun {
        let Ok(text) = serde_json::to_string(calm) else {
            return Arc::new(series(calm, seed));
        };
        let key = (text, seed);
        if let Some(kept) = self.runs.lock().ok().and_then(|m| m.get(&key).cloned()) {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return kept;
        }
        // Run outside the lock: two threads may run the same twin at once,
        // and get the same series.
        let run = Arc::new(series(calm, seed));
        self.ran.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut kept) = self.runs.lock() {
            if kept.len() < CALM_TWINS_MAX {
                kept.insert(key, run.clone());
            }
        }
        run
    }
}

/// Runs `scenario` on `seed` (and its calm twin, when liveness applies).
pub fn judge(scenario: &Scenario, seed: u64) -> Verdict {
    judge_with(scenario, seed, None)
}

/// [`judge`], taking the calm twin from `twins` when it ran before.
pub fn judge_with(scenario: &Scenario, seed: u64, twins: Option<&CalmTwins>) -> Verdict {
    let run = match series(scenario, seed) {
        Ok(s) => s,
        Err(what) => return Verdict::Violation(what),
    };
    let Some(end) = last_end(scenario) else {
        return Verdict::Unchecked(Unjudged::NoTrigger);
    };
    let from_s = end + RECOVER_WITHIN_S;
    let to_s = scenario.horizon_s;
    if to_s - from_s < WINDOW_MIN_S {
        return Verdict::Unchecked(Unjudged::ShortHorizon { end_s: end });
    }
    let twin = calm(scenario);
    let calm_run = match twins {
        Some(t) => t.series(&twin, seed),
        None => Arc::new(series(&twin, seed)),
    };
    let calm_series = match calm_run.as_ref() {
        Ok(s) => s,
        Err(what) => return Verdict::Violation(format!("in the calm twin: {what}")),
    };
    let window = (from_s, to_s);
    let (mine, theirs) = (sum(&run, window), sum(calm_series, window));
    if theirs.successes < CALM_SUCCESSES_MIN
        || (theirs.successes as f64) < CALM_SHARE * theirs.first_tries as f64
    {
        return Verdict::Unchecked(Unjudged::CalmOverloaded {
            successes: theirs.successes,
            first_tries: theirs.first_tries,
        });
    }
    if mine.successes as f64 >= SHARE * theirs.successes as f64 {
        return Verdict::Recovered;
    }
    Verdict::Stuck(Evidence {
        from_s,
        to_s,
        run: mine.rates(to_s - from_s),
        calm: theirs.rates(to_s - from_s),
    })
}

/// The run's series, or what stopped it.
fn series(scenario: &Scenario, seed: u64) -> Result<Series, String> {
    let opts = SimOptions {
        seed,
        trace_records_max: 0,
        calls_bucket_ms: None,
        series_bucket_ms: Some(BUCKET_MS),
    };
    match simulate(scenario, &opts) {
        Ok(result) => Ok(result.series.unwrap_or_default()),
        Err(failure) => Err(match failure.reason {
            Stop::Violation(v) => v.to_string(),
            other => other.to_string(),
        }),
    }
}

/// Counts over the buckets of a window.
#[derive(Default)]
struct Sums {
    first_tries: u64,
    successes: u64,
    retries: u64,
    timeouts: u64,
    refusals: u64,
    calls: u64,
    in_progress: u32,
}

impl Sums {
    fn rates(&self, secs: f64) -> Rates {
        let per_s = |n: u64| n as f64 / secs;
        Rates {
            first_tries: per_s(self.first_tries),
            goodput: per_s(self.successes),
            retries: per_s(self.retries),
            timeouts: per_s(self.timeouts),
            refusals: per_s(self.refusals),
            calls: per_s(self.calls),
            in_progress: self.in_progress,
        }
    }
}

fn sum(s: &Series, (from_s, to_s): (f64, f64)) -> Sums {
    let bucket_s = BUCKET_MS / 1e3;
    let (from, to) = (
        (from_s / bucket_s).ceil() as usize,
        (to_s / bucket_s).floor() as usize,
    );
    let total = |v: &[u32]| -> u64 { v.iter().take(to).skip(from).map(|&n| u64::from(n)).sum() };
    Sums {
        first_tries: total(&s.first_tries),
        successes: total(&s.successes),
        retries: total(&s.retries),
        timeouts: total(&s.timeouts),
        refusals: total(&s.refusals),
        calls: total(&s.calls),
        in_progress: s
            .in_progress
            .get(to.saturating_sub(1))
            .copied()
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORM: &str = include_str!("../../experiments/scenarios/retry-storm.toml");

    fn storm(horizon_s: f64) -> Scenario {
        let mut s = Scenario::from_toml(STORM, "retry-storm.toml").expect("valid");
        s.horizon_s = horizon_s;
        if let crate::sim::clients::ClientsConfig::OpenLoop { schedule, .. } = &mut s.clients[0] {
            if let Some(last) = schedule.last_mut() {
                last.until_s = horizon_s;
            }
        }
        s
    }

    #[test]
    fn the_retry_storm_is_stuck_and_its_evidence_shows_why() {
        let Verdict::Stuck(e) = judge(&storm(80.0), 1) else {
            panic!("the retry storm should not recover")
        };
        assert!(e.run.goodput < SHARE * e.calm.goodput, "{e}");
        assert!(e.run.timeouts > e.calm.timeouts, "{e}");
        assert!(e.to_string().contains("client timeouts"));
    }

    #[test]
    fn the_storm_with_backoff_recovers() {
        let mut s = storm(80.0);
        if let crate::sim::clients::ClientsConfig::OpenLoop { retry, .. } = &mut s.clients[0] {
            retry.attempts_max = 1;
        }
        assert_eq!(judge(&s, 1), Verdict::Recovered);
    }

    #[test]
    fn too_short_a_horizon_leaves_liveness_unchecked() {
        assert!(matches!(judge(&storm(50.0), 1), Verdict::Unchecked(_)));
    }

    /// Two spike lengths share one calm twin per seed; a kept twin gives
    /// the verdicts the twin run afresh gives.
    #[test]
    fn a_kept_calm_twin_is_run_once_and_judges_the_same() {
        let twins = CalmTwins::default();
        let longer = |until_s: f64| {
            let mut s = storm(80.0);
            if let crate::sim::clients::ClientsConfig::OpenLoop { schedule, .. } = &mut s.clients[0]
            {
                schedule[1].until_s = until_s;
            }
            s
        };
        for seed in [1, 2] {
            for until_s in [21.0, 25.0] {
                let s = longer(until_s);
                assert_eq!(judge_with(&s, seed, Some(&twins)), judge(&s, seed));
            }
        }
        assert_eq!((twins.ran(), twins.reused()), (2, 2));
    }
}
