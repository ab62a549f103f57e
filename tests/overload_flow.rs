//! The relay's overload options: shedding by age, adaptive LIFO, the
//! adaptive concurrency limit and the downstream's `Retry-After`.

mod hand;

use hand::{ms, relay, small, TestRelay};
use proptest::prelude::*;
use resilient_relay::relay::{
    AimdConfig, CallError, CallId, ConcurrencyLimitConfig, Event, GiveUp, GradientConfig, JobState,
    Outcome, Output, RelayConfig, Request, ShedTo, RETRY_AFTER_MAX,
};
use resilient_relay::sim::{simulate, Scenario, SimOptions};
use resilient_relay::time::Time;
use std::collections::BTreeSet;
use std::time::Duration;

fn request(key: u64) -> Request<u64, u32> {
    Request {
        client: 1,
        key: Some(key),
        fingerprint: key,
        payload: key as u32,
    }
}

#[derive(Debug, Default)]
struct Drained {
    calls: Vec<CallId>,
    done: Vec<(resilient_relay::relay::JobId, Outcome<u32>)>,
    shed: Vec<resilient_relay::relay::JobId>,
    retries_at: Vec<Time>,
}

fn drain(r: &mut TestRelay) -> Drained {
    let mut d = Drained::default();
    while let Some(o) = r.poll_output() {
        match o {
            Output::Call { call, .. } => d.calls.push(call),
            Output::Finished(f) => d.done.push((f.job, f.outcome)),
            Output::Event(Event::Shed { job, .. }) => d.shed.push(job),
            Output::Event(Event::RetryScheduled { at, .. }) => d.retries_at.push(at),
            _ => {}
        }
    }
    d
}

/// One worker, a queue of five, jobs shed after 50 ms in the queue.
fn shedding(to: ShedTo) -> RelayConfig {
    let mut cfg = small(1);
    cfg.queue.capacity = 5;
    cfg.queue.shed_after_ms = 50.0;
    cfg.queue.shed_to = to;
    cfg
}

#[test]
fn a_job_too_old_is_dead_lettered_as_shed_without_a_call() {
    let mut r = relay(shedding(ShedTo::DeadLetter));
    for k in 1..=3 {
        r.handle_request(ms(0), request(k));
    }
    let first = drain(&mut r).calls;
    assert_eq!(first.len(), 1, "one worker");
    // The relay wakes itself just after the queued jobs' 50 ms.
    let wake = r.poll_timeout().expect("a shed deadline");
    assert_eq!(wake, Time::from_nanos(50_000_001));
    r.handle_timeout(wake);
    let d = drain(&mut r);
    assert!(d.calls.is_empty(), "shed jobs are not called");
    assert_eq!(d.shed.len(), 2);
    for (job, outcome) in &d.done {
        assert_eq!(
            *outcome,
            Outcome::DeadLettered {
                reason: GiveUp::Shed,
                last_error: CallError::Timeout
            }
        );
        let letter = r.dead_letters().get(*job).expect("kept as a letter");
        assert_eq!((letter.reason, letter.attempts), (GiveUp::Shed, 0));
    }
    assert_eq!(r.stats().shed, 2);
    assert_eq!(r.stats().dead_lettered[GiveUp::Shed], 2);
    assert_eq!(r.queue_len(), 0);
    // The job in flight is not shed: it is past the queue.
    r.handle_call_result(ms(60), first[0], Ok(1));
    assert!(matches!(
        drain(&mut r).done[..],
        [(_, Outcome::Succeeded { .. })]
    ));
}

#[test]
fn a_job_too_old_can_be_answered_as_failed_with_no_letter() {
    let mut cfg = shedding(ShedTo::Fail);
    cfg.history_max = 10;
    let mut r = relay(cfg);
    r.handle_request(ms(0), request(1));
    r.handle_request(ms(10), request(2));
    let call = drain(&mut r).calls[0];
    // Job 2 waited 60 ms > 50 ms when the worker frees up.
    r.handle_call_result(ms(70), call, Ok(1));
    let d = drain(&mut r);
    assert!(d.calls.is_empty());
    let (job, outcome) = d.done[1].clone();
    assert_eq!(
        outcome,
        Outcome::Failed {
            reason: GiveUp::Shed
        }
    );
    assert!(r.dead_letters().get(job).is_none(), "no letter");
    assert_eq!(r.job_status(job).map(|s| s.state), Some(JobState::Shed));
    assert_eq!(r.stats().dead_lettered_total(), 0);
    assert_eq!(r.stats().shed, 1);
}

#[test]
fn without_a_bound_nothing_is_shed_and_nothing_wakes_the_relay() {
    let mut r = relay(small(1));
    r.handle_request(ms(0), request(1));
    r.handle_request(ms(0), request(2));
    drain(&mut r);
    // Only the attempt deadline of the job in flight (100 ms).
    assert_eq!(r.poll_timeout(), Some(ms(100)));
    assert_eq!(r.stats().shed, 0);
}

#[test]
fn past_the_watermark_the_newest_job_is_served_first() {
    let mut cfg = small(1);
    cfg.queue.capacity = 10;
    cfg.jobs_max = 20;
    cfg.queue.lifo_above = 2;
    let mut r = relay(cfg);
    for k in 1..=5 {
        r.handle_request(ms(0), request(k));
    }
    let mut order = vec![];
    let mut calls = drain(&mut r).calls;
    let mut t = 0;
    while let Some(call) = calls.pop() {
        order.push(call.job.serial());
        t += 1;
        r.handle_call_result(ms(t), call, Ok(0));
        calls = drain(&mut r).calls;
    }
    // Queue of 4 (> 2): newest (4), then 3 (> 2): newest (3); then FIFO.
    assert_eq!(order, vec![0, 4, 3, 1, 2]);
    assert_eq!(r.stats().served_out_of_order, 2);
}

fn limited(limit: ConcurrencyLimitConfig) -> TestRelay {
    let mut cfg = small(1);
    cfg.workers = 8;
    cfg.queue.capacity = 20;
    cfg.jobs_max = 100;
    cfg.concurrency_limit = Some(limit);
    relay(cfg)
}

#[test]
fn the_limit_holds_calls_back_and_backs_off_on_drops() {
    let mut r = limited(ConcurrencyLimitConfig::Aimd(AimdConfig {
        initial: 3,
        min: 1,
        max: 6,
        ..AimdConfig::default()
    }));
    for k in 1..=10 {
        r.handle_request(ms(0), request(k));
    }
    let calls = drain(&mut r).calls;
    assert_eq!(calls.len(), 3, "limit 3 < 8 workers");
    assert!(r.stats().calls_held_back > 0);
    r.handle_call_result(ms(5), calls[0], Err(CallError::ServerError));
    assert_eq!(r.concurrency_limit(), Some(2), "floor(3 × 0.9)");
    assert!(drain(&mut r).calls.is_empty(), "2 still in flight = limit");
    r.handle_call_result(ms(6), calls[1], Ok(0));
    assert_eq!(r.concurrency_limit(), Some(3), "2 in flight ≥ 2/2: +1");
    assert_eq!(drain(&mut r).calls.len(), 2, "1 in flight, limit 3");
    assert_eq!(r.concurrency_limit_seen(), Some((2, 3)));
}

#[test]
fn a_throttled_retry_waits_for_the_downstreams_retry_after_when_honoured() {
    let run = |honour: bool, wait: Duration| {
        let mut cfg = small(2);
        cfg.retry.honour_retry_after = honour;
        let mut r = relay(cfg);
        r.handle_request(ms(0), request(1));
        let call = drain(&mut r).calls[0];
        r.handle_call_result_with(ms(5), call, Err(CallError::Throttled), Some(wait));
        (drain(&mut r).retries_at, r.stats().retry_after_honoured)
    };
    let two_s = Duration::from_secs(2);
    assert_eq!(
        run(false, two_s),
        (vec![ms(15)], 0),
        "ignored: 10 ms backoff"
    );
    assert_eq!(run(true, two_s), (vec![ms(2005)], 1));
    assert_eq!(
        run(true, Duration::from_millis(3)),
        (vec![ms(15)], 0),
        "shorter than the backoff: the backoff wins"
    );
    assert_eq!(
        run(true, Duration::from_secs(86_400)),
        (vec![ms(5) + RETRY_AFTER_MAX], 1),
        "capped"
    );
}

#[test]
fn retry_after_is_read_only_on_a_throttled_answer() {
    let mut cfg = small(2);
    cfg.retry.honour_retry_after = true;
    let mut r = relay(cfg);
    r.handle_request(ms(0), request(1));
    let call = drain(&mut r).calls[0];
    let wait = Some(Duration::from_secs(2));
    r.handle_call_result_with(ms(5), call, Err(CallError::ServerError), wait);
    assert_eq!(drain(&mut r).retries_at, vec![ms(15)]);
}

/// A throttling downstream, four attempts with a 10 ms backoff, and a
/// `Retry-After` of 500 ms: honoured, the relay makes far fewer calls.
fn throttled_scenario(honour: bool) -> Scenario {
    let text = format!(
        r#"
name = "throttled"
seed = 1
horizon_s = 10
[relay]
workers = 4
[relay.retry]
attempts_max = 4
attempt_timeout_ms = 1000
honour_retry_after = {honour}
backoff = {{ kind = "constant", base_ms = 10, cap_ms = 10 }}
[downstream]
failure_rate = 0.5
failure_mix = {{ throttled = 1.0 }}
throttle_retry_after_ms = 500
latency = {{ kind = "constant", ms = 5 }}
[[clients]]
kind = "open-loop"
per_s = 100
clients = 10
"#
    );
    Scenario::from_toml(&text, "throttled").expect("scenario parses")
}

#[test]
fn the_simulator_hands_the_throttled_answers_retry_after_to_the_relay() {
    let run = |honour| {
        let r = simulate(&throttled_scenario(honour), &SimOptions::seed(3)).expect("runs clean");
        r.summary
    };
    let (ignored, honoured) = (run(false), run(true));
    assert_eq!(ignored.arrivals, honoured.arrivals, "same arrivals");
    assert!(honoured.relay_retries > 0);
    // Retries 500 ms apart instead of 10 ms: a retry scheduled in the last
    // half second is still backing off at the horizon.
    assert!(
        honoured.still_in_flight > ignored.still_in_flight,
        "{} vs {}",
        honoured.still_in_flight,
        ignored.still_in_flight
    );
}

/// A scenario with every flow option on, over a seed; the outside checker
/// (src/sim/invariants.rs) runs on every step and fails the run on a shed
/// job that was also called, a job shed twice or not ended.
fn flow_scenario(shed_ms: u32, lifo: u32, to: &str, gradient: bool) -> Scenario {
    let limit = if gradient {
        "kind = \"gradient\"\ninitial = 10\nmin = 2\nmax = 20"
    } else {
        "kind = \"aimd\"\ninitial = 10\nmin = 2\nmax = 20"
    };
    let text = format!(
        r#"
name = "flow"
seed = 1
horizon_s = 5
[relay]
workers = 20
[relay.queue]
capacity = 200
shed_after_ms = {shed_ms}
shed_to = "{to}"
lifo_above = {lifo}
[relay.concurrency_limit]
{limit}
[relay.retry]
attempts_max = 3
attempt_timeout_ms = 100
[downstream]
failure_rate = 0.2
latency = {{ kind = "log-normal", median_ms = 30, sigma = 0.8 }}
[[clients]]
kind = "open-loop"
per_s = 600
clients = 20
"#
    );
    Scenario::from_toml(&text, "flow").expect("scenario parses")
}

#[test]
fn shedding_by_age_ends_jobs_in_the_simulator_under_the_checker() {
    let off = simulate(
        &flow_scenario(0, 0, "dead-letter", false),
        &SimOptions::seed(1),
    )
    .expect("runs clean");
    let on = simulate(
        &flow_scenario(20, 0, "dead-letter", false),
        &SimOptions::seed(1),
    )
    .expect("runs clean");
    assert!(
        on.summary.dead_lettered > off.summary.dead_lettered,
        "shed jobs are dead-lettered: {} vs {}",
        on.summary.dead_lettered,
        off.summary.dead_lettered
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With every flow option on, the outside checker holds over random
    /// seeds and settings: no shed job is ever called.
    #[test]
    fn the_checker_holds_with_every_flow_option_on(
        seed in 1u64..10_000,
        shed_ms in 1u32..80,
        lifo in 0u32..50,
        fail in any::<bool>(),
        gradient in any::<bool>(),
    ) {
        let to = if fail { "fail" } else { "dead-letter" };
        let result = simulate(&flow_scenario(shed_ms, lifo, to, gradient), &SimOptions::seed(seed));
        prop_assert!(result.is_ok(), "{}", result.err().map(|f| f.to_string()).unwrap_or_default());
    }
}

/// One step of a hand-driven run.
#[derive(Clone, Debug)]
enum Step {
    Arrive,
    /// Answer the oldest call in flight: ok, failed, or throttled.
    Answer(u8),
    /// Let this many milliseconds pass and fire the relay's timers.
    Wait(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Arrive),
        2 => (0u8..3).prop_map(Step::Answer),
        2 => (1u16..200).prop_map(Step::Wait),
    ]
}

fn limit_config() -> impl Strategy<Value = ConcurrencyLimitConfig> {
    prop_oneof![
        (1u32..4, 0u32..4, 0u32..6).prop_map(|(min, up, spread)| {
            ConcurrencyLimitConfig::Aimd(AimdConfig {
                initial: min + up.min(spread),
                min,
                max: min + spread,
                ..AimdConfig::default()
            })
        }),
        (1u32..4, 0u32..4, 0u32..6).prop_map(|(min, up, spread)| {
            ConcurrencyLimitConfig::Gradient(GradientConfig {
                initial: min + up.min(spread),
                min,
                max: min + spread,
                long_window: 20,
                ..GradientConfig::default()
            })
        }),
    ]
}

fn bounds(cfg: &ConcurrencyLimitConfig) -> (usize, usize) {
    match cfg {
        ConcurrencyLimitConfig::Aimd(a) => (a.min as usize, a.max as usize),
        ConcurrencyLimitConfig::Gradient(g) => (g.min as usize, g.max as usize),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Over random arrivals, answers and waits: a job shed by age is never
    /// also sent to the downstream, calls in flight never exceed the limit
    /// when they start, and the limit stays within [min, max].
    #[test]
    fn shed_jobs_are_never_called_and_the_limit_holds(
        steps in prop::collection::vec(step(), 1..200),
        shed_ms in 1u32..150,
        lifo in 0usize..6,
        fail in any::<bool>(),
        limit in limit_config(),
    ) {
        let mut cfg = small(3);
        cfg.workers = 6;
        cfg.queue.capacity = 12;
        cfg.jobs_max = 60;
        cfg.queue.shed_after_ms = f64::from(shed_ms);
        cfg.queue.shed_to = if fail { ShedTo::Fail } else { ShedTo::DeadLetter };
        cfg.queue.lifo_above = lifo;
        cfg.retry.honour_retry_after = true;
        cfg.concurrency_limit = Some(limit);
        let (lo, hi) = bounds(&limit);
        let mut r = relay(cfg);
        let (mut called, mut shed) = (BTreeSet::new(), BTreeSet::new());
        let mut in_flight: Vec<CallId> = vec![];
        let (mut now, mut key) = (0u64, 0u64);
        for s in steps {
            match s {
                Step::Arrive => {
                    key += 1;
                    r.handle_request(ms(now), request(key));
                }
                Step::Answer(kind) => {
                    if in_flight.is_empty() { continue; }
                    let call = in_flight.remove(0);
                    let (result, wait) = match kind {
                        0 => (Ok(0), None),
                        1 => (Err(CallError::ServerError), None),
                        _ => (Err(CallError::Throttled), Some(Duration::from_millis(30))),
                    };
                    r.handle_call_result_with(ms(now), call, result, wait);
                }
                Step::Wait(dt) => {
                    now += u64::from(dt);
                    r.handle_timeout(ms(now));
                }
            }
            let d = drain(&mut r);
            let limit_now = r.concurrency_limit().expect("configured");
            prop_assert!((lo..=hi).contains(&limit_now), "limit {limit_now} outside [{lo}, {hi}]");
            if !d.calls.is_empty() {
                // The limit changes only when a call ends, before the pump:
                // the calls of this step all started under this limit.
                prop_assert!(r.in_flight() <= limit_now, "{} in flight, limit {limit_now}", r.in_flight());
            }
            for c in &d.calls {
                prop_assert!(!shed.contains(&c.job), "job {} called after it was shed", c.job);
                called.insert(c.job);
            }
            for j in &d.shed {
                prop_assert!(!called.contains(j), "job {j} shed after it was called");
                prop_assert!(shed.insert(*j), "job {j} shed twice");
            }
            for (job, outcome) in &d.done {
                if outcome.reason() == Some(GiveUp::Shed) {
                    prop_assert!(shed.contains(job), "job {job} ended as shed unannounced");
                }
            }
            in_flight.extend(d.calls);
            // Calls the relay already timed out never get an answer here.
            in_flight.retain(|c| {
                r.job_status(c.job).is_some_and(|s| s.state == JobState::InFlight && s.attempts == c.attempt)
            });
        }
        prop_assert_eq!(r.stats().shed as usize, shed.len());
    }
}
