//! The retry controls keep their promises, checked from outside over random
//! sequences of sends, outcomes and retry requests at random times, against
//! a plain reference count of the same events:
//!
//! - `finagle`: for every retry it allows, the retries in the `ttl_s` whole
//!   seconds ending with that retry's second are at most `percent` % of the
//!   first tries in those seconds plus `min_per_s × ttl_s`. The windows are
//!   aligned to whole seconds, as the budget's buckets are; a window of
//!   `ttl_s` seconds at any offset may therefore also see the deposits of one
//!   second before it (one bucket's rounding);
//! - `aws-standard`: the cost of the retries allowed never exceeds the
//!   initial tokens plus the refunds offered;
//! - `client-bucket`: retries ≤ size + per_first_try × first tries;
//! - adaptive throttling rejects nothing while requests ≤ k × accepts over
//!   its window, whatever the draws, and otherwise rejects exactly when the
//!   draw falls below the SRE book's probability;
//! - the retry breaker allows no retry while the failure ratio (cumulative,
//!   or over its window once it holds `calls_min` sends) is above its
//!   threshold, and allows every retry otherwise.

use proptest::prelude::*;
use resilient_relay::relay::{
    AwsStandardConfig, BudgetConfig, ClientBucketConfig, Denied, FinagleConfig, RetryBreakerConfig,
    RetryBreakerWindow, RetryCause, RetryGate, RetryGateConfig, SendOutcome, ThrottleConfig,
};
use resilient_relay::time::Time;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Time moves on by this many milliseconds.
    Wait(u64),
    FirstTry,
    /// A retry is asked for (and, if allowed, sent).
    Retry(RetryCause),
    Outcome(SendOutcome),
}

fn cause() -> impl Strategy<Value = RetryCause> {
    prop_oneof![Just(RetryCause::Error), Just(RetryCause::Timeout)]
}

fn outcome() -> impl Strategy<Value = SendOutcome> {
    prop_oneof![
        Just(SendOutcome::Success),
        cause().prop_map(|cause| SendOutcome::RetrySuccess { cause }),
        Just(SendOutcome::Failure),
        Just(SendOutcome::Timeout),
        Just(SendOutcome::Throttled),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        2 => (0u64..2_500).prop_map(Step::Wait),
        3 => Just(Step::FirstTry),
        3 => cause().prop_map(Step::Retry),
        2 => outcome().prop_map(Step::Outcome),
    ];
    proptest::collection::vec(step, 1..400)
}

fn gate_with_budget(budget: BudgetConfig) -> RetryGate {
    let cfg = RetryGateConfig {
        budget: Some(budget),
        ..RetryGateConfig::default()
    };
    cfg.check().expect("valid budget");
    RetryGate::new(&cfg)
}

fn second(now: Time) -> u64 {
    now.as_nanos() / 1_000_000_000
}

/// Runs `steps` through `gate` (sends go out as the gate allows) and
/// returns, per second, (first tries, retries allowed), plus the seconds in
/// which a retry was allowed.
fn run(gate: &mut RetryGate, steps: &[Step]) -> (BTreeMap<u64, (u64, u64)>, Vec<u64>) {
    let mut now = Time::ZERO;
    let mut per_second: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut retry_seconds = Vec::new();
    for step in steps {
        match *step {
            Step::Wait(ms) => now = Time::from_nanos(now.as_nanos() + ms * 1_000_000),
            Step::FirstTry => {
                gate.on_send(now, false);
                per_second.entry(second(now)).or_default().0 += 1;
            }
            Step::Retry(cause) => {
                if gate.allow_retry(now, cause).is_ok() {
                    gate.on_send(now, true);
                    per_second.entry(second(now)).or_default().1 += 1;
                    retry_seconds.push(second(now));
                }
            }
            Step::Outcome(o) => gate.on_outcome(now, o),
        }
    }
    (per_second, retry_seconds)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn finagle_never_exceeds_its_share_plus_reserve_in_any_ttl_window(
        percent in 0u32..=100,
        min_per_s in 0u32..=3,
        ttl_s in 1u32..=10,
        steps in steps(),
    ) {
        let mut gate = gate_with_budget(BudgetConfig::Finagle(FinagleConfig {
            percent: f64::from(percent),
            min_per_s: f64::from(min_per_s),
            ttl_s,
        }));
        let (per_second, retry_seconds) = run(&mut gate, &steps);
        for &s in &retry_seconds {
            let from = (s + 1).saturating_sub(u64::from(ttl_s));
            let (firsts, retries) = per_second
                .range(from..=s)
                .fold((0, 0), |(f, r), (_, (f1, r1))| (f + f1, r + r1));
            // In hundredths of a retry: exact for whole percents.
            let promise = u64::from(percent) * firsts + 100 * u64::from(min_per_s * ttl_s);
            prop_assert!(
                100 * retries <= promise,
                "seconds {from}..={s}: {retries} retries, {firsts} first tries"
            );
        }
        let denied = gate.denied()[Denied::Budget];
        let asked = steps.iter().filter(|s| matches!(s, Step::Retry(_))).count() as u64;
        prop_assert_eq!(denied + retry_seconds.len() as u64, asked);
    }

    #[test]
    fn aws_standard_spends_no_more_than_its_tokens_and_refunds(
        tokens in 1u32..=60,
        retry_cost in 1u32..=6,
        timeout_cost in 1u32..=12,
        success_refund in 0u32..=2,
        steps in steps(),
    ) {
        let cfg = AwsStandardConfig { tokens, retry_cost, timeout_cost, success_refund };
        let mut gate = gate_with_budget(BudgetConfig::AwsStandard(cfg));
        let cost = |c: RetryCause| u64::from(match c {
            RetryCause::Error => retry_cost,
            RetryCause::Timeout => timeout_cost,
        });
        let (mut spent, mut refunds) = (0u64, 0u64);
        for step in &steps {
            match *step {
                Step::Retry(c) => {
                    if gate.allow_retry(Time::ZERO, c).is_ok() {
                        spent += cost(c);
                    }
                }
                Step::Outcome(o) => {
                    refunds += match o {
                        SendOutcome::Success => u64::from(success_refund),
                        SendOutcome::RetrySuccess { cause } => cost(cause),
                        _ => 0,
                    };
                    gate.on_outcome(Time::ZERO, o);
                }
                Step::FirstTry => gate.on_send(Time::ZERO, false),
                Step::Wait(_) => {}
            }
            prop_assert!(spent <= u64::from(tokens) + refunds, "spent {spent}, refunds {refunds}");
        }
    }

    #[test]
    fn client_bucket_allows_at_most_its_size_plus_earnings(
        size in 1u32..=8,
        per_first_try_milli in 0u64..=500,
        steps in steps(),
    ) {
        let mut gate = gate_with_budget(BudgetConfig::ClientBucket(ClientBucketConfig {
            size: f64::from(size),
            per_first_try: per_first_try_milli as f64 / 1000.0,
            ..ClientBucketConfig::default()
        }));
        let (per_second, _) = run(&mut gate, &steps);
        let (firsts, retries) = per_second
            .values()
            .fold((0, 0), |(f, r), (f1, r1)| (f + f1, r + r1));
        prop_assert!(
            1000 * retries <= 1000 * u64::from(size) + per_first_try_milli * firsts,
            "{retries} retries, {firsts} first tries"
        );
    }
}

/// Per-second (requests, accepts) over the last `window_s` seconds at `now`.
fn in_window(counts: &BTreeMap<u64, (u64, u64)>, now: Time, window_s: u32) -> (u64, u64) {
    let s = second(now);
    counts
        .range((s + 1).saturating_sub(u64::from(window_s))..=s)
        .fold((0, 0), |(r, a), (_, (r1, a1))| (r + r1, a + a1))
}

#[derive(Clone, Copy, Debug)]
enum Traffic {
    Wait(u64),
    /// A send with this draw.
    Send(f64),
    /// The downstream accepts a send.
    Accept,
}

fn traffic() -> impl Strategy<Value = Vec<Traffic>> {
    let step = prop_oneof![
        1 => (0u64..3_000).prop_map(Traffic::Wait),
        4 => (0.0f64..1.0).prop_map(Traffic::Send),
        3 => Just(Traffic::Accept),
    ];
    proptest::collection::vec(step, 1..400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn throttling_rejects_nothing_while_accepts_keep_up(
        k in prop_oneof![Just(1.0), Just(1.5), Just(2.0), Just(3.0)],
        window_s in 1u32..=10,
        steps in traffic(),
    ) {
        let cfg = RetryGateConfig {
            throttle: Some(ThrottleConfig { k, window_s }),
            ..RetryGateConfig::default()
        };
        cfg.check().expect("valid");
        let mut gate = RetryGate::new(&cfg);
        let mut counts: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut now = Time::ZERO;
        let mut rejected = 0;
        for step in &steps {
            match *step {
                Traffic::Wait(ms) => now = Time::from_nanos(now.as_nanos() + ms * 1_000_000),
                Traffic::Send(draw) => {
                    let (requests, accepts) = in_window(&counts, now, window_s);
                    let admitted = gate.admit(now, draw).is_ok();
                    counts.entry(second(now)).or_default().0 += 1;
                    let (r, a) = (requests as f64, accepts as f64);
                    if r <= k * a {
                        prop_assert!(admitted, "{requests} requests ≤ {k} × {accepts} accepts");
                    }
                    let p = ((r - k * a) / (r + 1.0)).max(0.0);
                    prop_assert_eq!(admitted, draw >= p, "p = {}, draw = {}", p, draw);
                    if admitted {
                        gate.on_send(now, false);
                    } else {
                        rejected += 1;
                        gate.on_outcome(now, SendOutcome::Throttled);
                    }
                }
                Traffic::Accept => {
                    gate.on_outcome(now, SendOutcome::Success);
                    counts.entry(second(now)).or_default().1 += 1;
                }
            }
        }
        prop_assert_eq!(gate.denied()[Denied::Throttled], rejected);
    }

    #[test]
    fn the_retry_breaker_allows_no_retry_above_its_threshold(
        threshold in prop_oneof![Just(0.0), Just(0.1), Just(0.25), Just(0.5)],
        sliding in proptest::option::of((1u32..=10, 0u32..=5)),
        steps in steps(),
    ) {
        let window = match sliding {
            None => RetryBreakerWindow::Cumulative {},
            Some((window_s, calls_min)) => RetryBreakerWindow::Sliding { window_s, calls_min },
        };
        let cfg = RetryGateConfig {
            retry_breaker: Some(RetryBreakerConfig { threshold, window }),
            ..RetryGateConfig::default()
        };
        cfg.check().expect("valid");
        let mut gate = RetryGate::new(&cfg);
        // Per second: (sends ended, failures).
        let mut counts: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut now = Time::ZERO;
        for step in &steps {
            match *step {
                Step::Wait(ms) => now = Time::from_nanos(now.as_nanos() + ms * 1_000_000),
                Step::FirstTry => gate.on_send(now, false),
                Step::Outcome(o) => {
                    gate.on_outcome(now, o);
                    let c = counts.entry(second(now)).or_default();
                    c.0 += 1;
                    c.1 += u64::from(!o.is_success());
                }
                Step::Retry(cause) => {
                    let (calls, failures) = match sliding {
                        None => counts.values().fold((0, 0), |(c, f), (c1, f1)| (c + c1, f + f1)),
                        Some((window_s, _)) => in_window(&counts, now, window_s),
                    };
                    let judged = sliding.is_none_or(|(_, min)| calls >= u64::from(min));
                    let is_above = calls > 0 && failures as f64 > threshold * calls as f64;
                    let allowed = gate.allow_retry(now, cause).is_ok();
                    prop_assert_eq!(
                        allowed,
                        !(judged && is_above),
                        "{} failures of {} calls, threshold {}", failures, calls, threshold
                    );
                }
            }
        }
    }
}
