//! Hedged requests through the composed relay: by hand on a fake clock,
//! then over random operation sequences (the cap and the budget) and over
//! random simulated scenarios (the outside checker's invariants).

mod hand;

use hand::{ms, relay, small, TestRelay};
use proptest::prelude::*;
use resilient_relay::relay::{
    CallError, CallId, Event, GiveUp, HedgeConfig, JobId, LateFate, Outcome, Output, RelayConfig,
    Request,
};
use resilient_relay::sim::{simulate, Scenario, SimOptions};

fn request(key: u64) -> Request<u64, u32> {
    Request {
        client: 1,
        key: Some(key),
        fingerprint: 1,
        payload: 1,
    }
}

/// `workers` workers, 100 ms attempts, hedged after 20 ms.
fn hedged(workers: usize, max_per_job: u32, budget_pct: f64) -> RelayConfig {
    let mut cfg = small(3);
    cfg.workers = workers;
    cfg.jobs_max = 20;
    cfg.hedge = Some(HedgeConfig {
        after_ms: Some(20.0),
        max_per_job,
        budget_pct,
        ..HedgeConfig::default()
    });
    cfg
}

#[derive(Debug, Default)]
struct Seen {
    calls: Vec<CallId>,
    done: Vec<Outcome<u32>>,
    hedges: Vec<CallId>,
    abandoned: Vec<CallId>,
    retries: usize,
    late: Vec<LateFate>,
}

fn drain(r: &mut TestRelay) -> Seen {
    let mut s = Seen::default();
    while let Some(o) = r.poll_output() {
        match o {
            Output::Call { call, .. } => s.calls.push(call),
            Output::Finished(f) => s.done.push(f.outcome),
            Output::Event(Event::HedgeSent { job, attempt }) => {
                s.hedges.push(CallId { job, attempt })
            }
            Output::Event(Event::HedgeAbandoned { job, attempt }) => {
                s.abandoned.push(CallId { job, attempt })
            }
            Output::Event(Event::RetryScheduled { .. }) => s.retries += 1,
            Output::Event(Event::LateSuccess { fate, .. }) => s.late.push(fate),
            _ => {}
        }
    }
    s
}

/// One job, its first call started at 0 and hedged at 20 ms.
fn one_hedged_job(r: &mut TestRelay) -> (CallId, CallId) {
    r.handle_request(ms(0), request(1));
    let first = drain(r).calls[0];
    assert_eq!(r.poll_timeout(), Some(ms(20)), "the hedge check is due");
    r.handle_timeout(ms(20));
    let s = drain(r);
    assert_eq!(s.hedges, s.calls, "the hedge is announced");
    assert_eq!(s.calls.len(), 1);
    let hedge = s.calls[0];
    assert_eq!(
        hedge,
        CallId {
            job: first.job,
            attempt: 2
        }
    );
    assert_eq!(r.attempts_in_flight(first.job), 2);
    assert_eq!(r.in_flight(), 2);
    (first, hedge)
}

#[test]
fn the_hedge_wins_and_the_first_answer_is_late() {
    let mut r = relay(hedged(2, 1, 100.0));
    let (first, hedge) = one_hedged_job(&mut r);
    r.handle_call_result(ms(30), hedge, Ok(7));
    let s = drain(&mut r);
    assert_eq!(s.done, vec![Outcome::Succeeded { response: 7 }]);
    assert_eq!(s.abandoned, vec![first], "the first attempt is abandoned");
    assert_eq!(r.in_flight(), 0, "both workers are free");
    r.handle_call_result(ms(40), first, Ok(8));
    let s = drain(&mut r);
    assert_eq!(
        s.late,
        vec![LateFate::JobForgotten],
        "a late answer, not a second outcome"
    );
    let c = r.hedge_counts().expect("hedging on");
    assert_eq!((c.sent, c.won, c.first_attempts), (1, 1, 1));
    assert_eq!(c.abandoned, 1, "the first attempt");
}

#[test]
fn the_first_attempt_wins_and_the_hedge_is_abandoned() {
    let mut r = relay(hedged(2, 1, 100.0));
    let (first, hedge) = one_hedged_job(&mut r);
    r.handle_call_result(ms(25), first, Ok(7));
    let s = drain(&mut r);
    assert_eq!(s.done, vec![Outcome::Succeeded { response: 7 }]);
    assert_eq!(s.abandoned, vec![hedge]);
    assert_eq!(r.hedge_counts().map(|c| c.won), Some(0));
    r.handle_call_result(ms(26), hedge, Err(CallError::ServerError));
    assert_eq!(r.stats().late_results, 1, "the loser's failure is ignored");
}

#[test]
fn a_failure_while_another_attempt_flies_does_not_retry_yet() {
    let mut r = relay(hedged(2, 1, 100.0));
    let (first, hedge) = one_hedged_job(&mut r);
    r.handle_call_result(ms(25), first, Err(CallError::ServerError));
    let s = drain(&mut r);
    assert_eq!((s.retries, s.done.len()), (0, 0), "the hedge is still out");
    assert_eq!(r.in_flight(), 1);
    r.handle_call_result(ms(30), hedge, Ok(3));
    assert_eq!(drain(&mut r).done, vec![Outcome::Succeeded { response: 3 }]);
}

#[test]
fn when_every_attempt_fails_the_job_retries_once() {
    let mut r = relay(hedged(2, 1, 100.0));
    let (first, hedge) = one_hedged_job(&mut r);
    r.handle_call_result(ms(25), hedge, Err(CallError::ServerError));
    assert_eq!(drain(&mut r).retries, 0);
    r.handle_call_result(ms(26), first, Err(CallError::ServerError));
    let s = drain(&mut r);
    assert_eq!(s.retries, 1);
    assert_eq!(r.in_flight(), 0);
    r.handle_timeout(ms(36));
    let s = drain(&mut r);
    assert_eq!(
        s.calls,
        vec![CallId {
            job: first.job,
            attempt: 3
        }],
        "hedges count as attempts"
    );
}

/// The rule of `HedgeConfig`: a hedge spends an attempt of
/// `retry.attempts_max`. With 2 attempts, a hedged first attempt leaves no
/// retry: when both fail, the job is dead-lettered with its attempts
/// exhausted (were hedges free, attempt 3 would follow as a retry).
#[test]
fn a_hedge_spends_an_attempt_of_attempts_max() {
    let mut cfg = hedged(2, 1, 100.0);
    cfg.retry.attempts_max = 2;
    let mut r = relay(cfg);
    let (first, hedge) = one_hedged_job(&mut r);
    r.handle_call_result(ms(25), hedge, Err(CallError::ServerError));
    r.handle_call_result(ms(26), first, Err(CallError::ServerError));
    let s = drain(&mut r);
    assert_eq!(s.retries, 0, "no attempt left to retry with");
    assert_eq!(s.done.len(), 1, "{:?}", s.done);
    assert!(
        matches!(
            s.done[0],
            Outcome::DeadLettered {
                reason: GiveUp::AttemptsExhausted,
                ..
            }
        ),
        "{:?}",
        s.done
    );
    r.handle_timeout(ms(200));
    assert!(drain(&mut r).calls.is_empty(), "nothing more is sent");
}

/// The other half of the rule: `attempts_max` bounds every call of a job,
/// hedges included. With one attempt allowed (never retry) the attempt is
/// not hedged, and the refusal is counted.
#[test]
fn attempts_max_refuses_a_hedge_beyond_it() {
    let mut cfg = hedged(2, 1, 100.0);
    cfg.retry.attempts_max = 1;
    let mut r = relay(cfg);
    r.handle_request(ms(0), request(1));
    let first = drain(&mut r).calls[0];
    r.handle_timeout(ms(20));
    assert!(drain(&mut r).calls.is_empty(), "no second call of the job");
    let c = r.hedge_counts().expect("on");
    assert_eq!((c.sent, c.denied_attempts), (0, 1));
    r.handle_call_result(ms(25), first, Err(CallError::ServerError));
    let s = drain(&mut r);
    assert_eq!(s.retries, 0);
    assert_eq!(r.stats().attempts, 1, "attempts_max = 1, one call");
}

#[test]
fn hedged_attempts_keep_their_own_deadlines() {
    let mut r = relay(hedged(2, 1, 100.0));
    let (first, hedge) = one_hedged_job(&mut r);
    assert_eq!(r.poll_timeout(), Some(ms(40)), "the hedge's own check");
    r.handle_timeout(ms(40));
    assert_eq!(drain(&mut r).calls.len(), 0, "at most one hedge per job");
    assert_eq!(
        r.poll_timeout(),
        Some(ms(100)),
        "the first attempt's deadline"
    );
    r.handle_timeout(ms(100));
    assert_eq!((r.in_flight(), drain(&mut r).retries), (1, 0));
    r.handle_timeout(ms(120));
    assert_eq!((r.in_flight(), drain(&mut r).retries), (0, 1));
    r.handle_call_result(ms(121), first, Ok(1));
    r.handle_call_result(ms(122), hedge, Ok(1));
    let s = drain(&mut r);
    assert_eq!(
        s.late,
        vec![LateFate::CompletedJob, LateFate::JobForgotten],
        "the first late success completes the job, the second is late for it"
    );
    assert_eq!(s.done.len(), 1);
}

#[test]
fn no_hedge_without_a_free_worker_or_budget() {
    let mut r = relay(hedged(1, 1, 100.0));
    r.handle_request(ms(0), request(1));
    r.handle_timeout(ms(20));
    let c = r.hedge_counts().expect("on");
    assert_eq!((c.sent, c.skipped), (0, 1), "the only worker is busy");
    let mut r = relay(hedged(2, 1, 0.0));
    r.handle_request(ms(0), request(1));
    r.handle_timeout(ms(20));
    let c = r.hedge_counts().expect("on");
    assert_eq!((c.sent, c.denied_budget), (0, 1));
}

#[test]
fn without_a_hedge_section_nothing_is_hedged() {
    let mut r = relay(small(3));
    r.handle_request(ms(0), request(1));
    assert_eq!(r.poll_timeout(), Some(ms(100)), "only the attempt deadline");
    assert_eq!(r.hedge_counts(), None);
}

/// One step of a random drive: a request, a wait, or an answer to one of
/// the calls in flight.
#[derive(Clone, Debug)]
enum Op {
    Request,
    Wait(u64),
    Answer(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Request),
        (1u64..60).prop_map(Op::Wait),
        (0usize..16, any::<bool>()).prop_map(|(i, ok)| Op::Answer(i, ok)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// After every step: no job has more than `1 + max_per_job` attempts in
    /// flight, hedges sent ≤ budget × first attempts, and the hedge count
    /// is the announced hedges.
    #[test]
    fn hedges_never_exceed_their_cap_or_budget(
        workers in 1usize..6,
        max_per_job in 1u32..4,
        budget_pct in 0.0f64..100.0,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut cfg = hedged(workers, max_per_job, budget_pct);
        cfg.jobs_max = 40;
        cfg.queue.capacity = 8;
        let mut r = relay(cfg);
        let (mut now, mut key) = (0u64, 0u64);
        let mut flying: Vec<CallId> = Vec::new();
        let mut jobs: Vec<JobId> = Vec::new();
        let mut announced = 0u64;
        let mut abandoned = 0u64;
        for op in ops {
            match op {
                Op::Request => {
                    key += 1;
                    r.handle_request(ms(now), request(key));
                }
                Op::Wait(d) => {
                    now += d;
                    r.handle_timeout(ms(now));
                }
                Op::Answer(i, ok) if !flying.is_empty() => {
                    let call = flying.remove(i % flying.len());
                    let result = if ok { Ok(1) } else { Err(CallError::ServerError) };
                    r.handle_call_result(ms(now), call, result);
                }
                Op::Answer(..) => {}
            }
            let s = drain(&mut r);
            announced += s.hedges.len() as u64;
            abandoned += s.abandoned.len() as u64;
            jobs.extend(s.calls.iter().map(|c| c.job));
            flying.extend(s.calls);
            for &job in &jobs {
                prop_assert!(r.attempts_in_flight(job) <= 1 + max_per_job as usize, "job {} over the cap", job);
            }
            let c = r.hedge_counts().expect("on");
            prop_assert!(c.sent as f64 <= budget_pct / 100.0 * c.first_attempts as f64 + 1e-9, "{:?}", c);
            prop_assert_eq!(c.sent, announced);
            prop_assert_eq!(c.abandoned, abandoned);
            prop_assert!(r.in_flight() <= workers);
        }
    }
}

fn scenario_text(
    workers: usize,
    after: &str,
    max_per_job: u32,
    honours: bool,
    horizon: f64,
) -> String {
    format!(
        r#"
name = "hedged"
horizon_s = {horizon}
[relay]
workers = {workers}
jobs_max = 200
queue = {{ capacity = 50, retry_after_ms = 100 }}
[relay.retry]
attempts_max = 3
attempt_timeout_ms = 80
backoff = {{ kind = "full-jitter", base_ms = 5, cap_ms = 50 }}
[relay.hedge]
{after}
max_per_job = {max_per_job}
budget_pct = 50
[downstream]
latency = {{ kind = "log-normal", median_ms = 10, sigma = 1.0 }}
failure_rate = 0.1
honours_idempotency_key = {honours}
[[clients]]
kind = "open-loop"
per_s = 100
requests_max = 60
clients = 3
"#
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, failure_persistence: None, ..ProptestConfig::default() })]

    /// The simulator's outside checker watches every run with hedging on;
    /// jobs and successes are conserved as without it.
    #[test]
    fn the_outside_checker_holds_with_hedging_on(
        workers in 1usize..8,
        percentile in any::<bool>(),
        max_per_job in 1u32..3,
        honours in any::<bool>(),
        to_completion in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let after = if percentile { "percentile = 0.8\nwindow = 50" } else { "after_ms = 15" };
        let horizon = if to_completion { 0.0 } else { 0.4 };
        let text = scenario_text(workers, after, max_per_job, honours, horizon);
        let s: Scenario = toml::from_str(&text).expect("parses");
        s.validate().expect("valid");
        let summary = match simulate(&s, &SimOptions::seed(seed)) {
            Ok(r) => r.summary,
            Err(f) => return Err(TestCaseError::fail(format!("{f}\nseed {seed}\n{text}"))),
        };
        prop_assert_eq!(
            summary.accepted + summary.dlq_redrives(),
            summary.succeeded + summary.dead_lettered + summary.still_in_flight
        );
        if to_completion {
            prop_assert_eq!(summary.still_in_flight, 0);
            prop_assert_eq!(summary.downstream_successes, summary.succeeded + summary.late_successes_recorded);
        }
    }
}

/// Hedging is visible in a run: with a heavy tail and free workers, the
/// same seed sends more downstream calls with hedging than without, and
/// a losing attempt that lands is a duplicate unless the key is honoured.
#[test]
fn hedging_costs_calls_and_duplicates_unless_the_key_is_honoured() {
    let run = |hedge: bool, honours: bool| {
        let mut s: Scenario =
            toml::from_str(&scenario_text(8, "after_ms = 15", 1, honours, 0.0)).expect("parses");
        if !hedge {
            s.relay.hedge = None;
        }
        simulate(&s, &SimOptions::seed(7))
            .expect("no violation")
            .summary
    };
    let (plain, hedged, keyed) = (run(false, false), run(true, false), run(true, true));
    assert!(
        hedged.downstream_calls > plain.downstream_calls,
        "{} vs {}",
        hedged.downstream_calls,
        plain.downstream_calls
    );
    assert!(hedged.duplicate_side_effects > 0);
    assert_eq!(keyed.duplicate_side_effects, 0);
    let counts = hedged.hedges.expect("the summary carries the hedge counts");
    assert!(
        counts.sent > 0 && counts.sent <= counts.first_attempts / 2,
        "{counts:?}"
    );
    assert_eq!(plain.hedges, None, "no [relay.hedge], no hedge counts");
    let json = serde_json::to_value(&hedged).expect("json");
    assert_eq!(json["hedges"]["sent"], counts.sent, "in `simulate --json`");
}

#[test]
fn a_hedge_waits_for_room_under_the_concurrency_limit() {
    use resilient_relay::relay::{AimdConfig, ConcurrencyLimitConfig};
    let mut cfg = hedged(2, 1, 100.0);
    cfg.concurrency_limit = Some(ConcurrencyLimitConfig::Aimd(AimdConfig {
        initial: 1,
        min: 1,
        max: 1,
        ..AimdConfig::default()
    }));
    let mut r = relay(cfg);
    r.handle_request(ms(0), request(1));
    assert_eq!(drain(&mut r).calls.len(), 1);
    r.handle_timeout(ms(20));
    let s = drain(&mut r);
    assert!(s.hedges.is_empty(), "a free worker but no room: {s:?}");
    assert_eq!(r.in_flight(), 1, "the limit of one call holds");
}
