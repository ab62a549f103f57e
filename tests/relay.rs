//! The composed relay, driven by hand with a fake clock.

mod hand;

use hand::{ms, relay, small, TestRelay};
use resilient_relay::relay::{
    Answer, BreakerConfig, BreakerState, CallError, CallId, GiveUp, JobState, Outcome, Output,
    RedriveError, Refusal, RelayConfig, Request, TripConfig,
};
use resilient_relay::time::Time;

fn request(key: u64, payload: u32) -> Request<u64, u32> {
    Request {
        client: 1,
        key: Some(key),
        fingerprint: u64::from(payload),
        payload,
    }
}

/// Drains outputs, returning the calls started and the jobs finished.
fn drain(r: &mut TestRelay) -> (Vec<CallId>, Vec<Outcome<u32>>) {
    let (mut calls, mut done) = (vec![], vec![]);
    while let Some(o) = r.poll_output() {
        match o {
            Output::Call { call, .. } => calls.push(call),
            Output::Finished(f) => done.push(f.outcome),
            _ => {}
        }
    }
    (calls, done)
}

#[test]
fn success_is_stored_and_replayed_without_a_second_call() {
    let mut r = relay(small(2));
    let Answer::Accepted { job } = r.handle_request(ms(0), request(7, 1)) else {
        panic!("not accepted")
    };
    let (calls, _) = drain(&mut r);
    assert_eq!(calls, vec![CallId { job, attempt: 1 }]);
    assert!(matches!(
        r.handle_request(ms(1), request(7, 1)),
        Answer::Refused {
            why: Refusal::Conflict,
            ..
        }
    ));
    r.handle_call_result(ms(5), calls[0], Ok(99));
    let (_, done) = drain(&mut r);
    assert_eq!(done, vec![Outcome::Succeeded { response: 99 }]);
    assert_eq!(
        r.handle_request(ms(6), request(7, 1)),
        Answer::Replayed { job, response: 99 }
    );
    assert!(matches!(
        r.handle_request(ms(6), request(7, 2)),
        Answer::Refused {
            why: Refusal::Mismatch,
            ..
        }
    ));
    assert_eq!(drain(&mut r).0, vec![], "no second call for a replayed key");
}

#[test]
fn full_queue_sheds_with_a_retry_after_hint() {
    let mut r = relay(small(2));
    for k in 0..3 {
        assert!(matches!(
            r.handle_request(ms(0), request(k, 1)),
            Answer::Accepted { .. }
        ));
    }
    assert_eq!((r.in_flight(), r.queue_len()), (1, 2));
    let answer = r.handle_request(ms(0), request(9, 1));
    assert!(
        matches!(
            answer,
            Answer::Refused {
                why: Refusal::Shed,
                retry_after: Some(_),
                ..
            }
        ),
        "{answer:?}"
    );
    assert!(
        matches!(
            r.handle_request(ms(0), request(9, 1)),
            Answer::Refused {
                why: Refusal::Shed,
                ..
            }
        ),
        "key released"
    );
}

#[test]
fn timeout_retries_after_backoff_then_dead_letters_and_redrives() {
    let mut r = relay(small(2));
    let Answer::Accepted { job } = r.handle_request(ms(0), request(1, 1)) else {
        panic!()
    };
    drain(&mut r);
    assert_eq!(r.poll_timeout(), Some(ms(100)));
    r.handle_timeout(ms(100));
    assert_eq!(
        r.poll_timeout(),
        Some(ms(110)),
        "retry after the 10 ms backoff"
    );
    r.handle_call_result(
        ms(105),
        CallId { job, attempt: 1 },
        Err(CallError::ServerError),
    );
    assert_eq!(r.stats().late_results, 1, "the late failure is ignored");
    r.handle_timeout(ms(110));
    let (calls, _) = drain(&mut r);
    assert_eq!(calls, vec![CallId { job, attempt: 2 }]);
    r.handle_call_result(ms(120), calls[0], Err(CallError::ServerError));
    let (_, done) = drain(&mut r);
    assert_eq!(
        done,
        vec![Outcome::DeadLettered {
            reason: GiveUp::AttemptsExhausted,
            last_error: CallError::ServerError
        }]
    );
    let letter = r.dead_letters().get(job).expect("in the DLQ");
    assert_eq!((letter.attempts, letter.key), (2, Some(1)));
    let new_job = r.redrive(ms(200), job).expect("redriven");
    assert_eq!(r.redrive(ms(200), job), Err(RedriveError::NotFound));
    let (calls, _) = drain(&mut r);
    assert_eq!(
        calls,
        vec![CallId {
            job: new_job,
            attempt: 1
        }]
    );
    r.handle_call_result(ms(210), calls[0], Ok(8));
    assert_eq!(
        r.handle_request(ms(211), request(1, 1)),
        Answer::Replayed {
            job: new_job,
            response: 8
        }
    );
}

#[test]
fn open_breaker_holds_the_queue_and_answers_503_when_full() {
    let mut cfg = small(2);
    cfg.retry.attempts_max = 1;
    cfg.breaker = Some(BreakerConfig {
        trip: TripConfig::ConsecutiveFailures { failures: 1 },
        success_threshold: 1,
        open_ms: 1000.0,
        half_open_probes_max: 1,
        ..BreakerConfig::default()
    });
    let mut r = relay(cfg);
    r.handle_request(ms(0), request(1, 1));
    let (calls, _) = drain(&mut r);
    r.handle_call_result(ms(1), calls[0], Err(CallError::ServerError));
    assert_eq!(r.breaker_state(), Some(BreakerState::Open));
    r.handle_request(ms(2), request(2, 1));
    r.handle_request(ms(2), request(3, 1));
    assert_eq!(
        (r.in_flight(), r.queue_len()),
        (0, 2),
        "no calls while open"
    );
    let answer = r.handle_request(ms(3), request(4, 1));
    assert!(
        matches!(
            answer,
            Answer::Refused {
                why: Refusal::Unavailable,
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(r.poll_timeout(), Some(ms(1001)));
    r.handle_timeout(ms(1001));
    assert_eq!(
        (r.in_flight(), r.breaker_state()),
        (1, Some(BreakerState::HalfOpen)),
        "one probe"
    );
}

#[test]
fn a_retry_that_finds_the_queue_full_waits_in_the_retry_lane() {
    let mut r = relay(small(2));
    let Answer::Accepted { job } = r.handle_request(ms(0), request(1, 1)) else {
        panic!()
    };
    drain(&mut r);
    r.handle_call_result(
        ms(1),
        CallId { job, attempt: 1 },
        Err(CallError::ServerError),
    );
    r.handle_request(ms(2), request(2, 1));
    r.handle_request(ms(2), request(3, 1));
    r.handle_request(ms(2), request(4, 1));
    assert_eq!(r.queue_len(), 2);
    r.handle_timeout(ms(11));
    assert!(r.dead_letters().get(job).is_none());
    assert_eq!(
        r.job_status(job).map(|s| s.state),
        Some(JobState::RetryQueued)
    );
}

#[test]
fn unfinished_lists_every_live_job_with_its_payload() {
    let mut r = relay(small(2));
    for k in 0..3 {
        r.handle_request(ms(0), request(k, 10 + k as u32));
    }
    let (calls, _) = drain(&mut r);
    r.handle_call_result(ms(1), calls[0], Ok(0));
    let left: Vec<_> = r
        .unfinished()
        .into_iter()
        .map(|(s, k, p)| (s.state, k.copied(), *p))
        .collect();
    assert_eq!(
        left,
        vec![
            (JobState::InFlight, Some(1), 11),
            (JobState::Queued, Some(2), 12)
        ]
    );
}

/// Fails every attempt of every job until the DLQ holds `letters` letters
/// (one attempt each, so each job dead-letters at once).
fn fill_dlq(r: &mut TestRelay, letters: u64, at: Time) {
    for k in 0..letters {
        let answer = r.handle_request(at, request(1000 + k, 1));
        assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
        let (calls, _) = drain(r);
        for c in calls {
            r.handle_call_result(at, c, Err(CallError::ServerError));
        }
        drain(r);
    }
}

fn one_attempt(dlq_capacity: usize) -> RelayConfig {
    let mut cfg = small(2);
    cfg.retry.attempts_max = 1;
    cfg.dlq.capacity = dlq_capacity;
    cfg
}

/// With the default policy a full dead-letter queue makes room by evicting
/// its oldest letter: an idle relay keeps taking work.
#[test]
fn a_full_dlq_does_not_refuse_new_work_by_default() {
    let mut r = relay(one_attempt(3));
    fill_dlq(&mut r, 3, ms(0));
    assert!(r.dead_letters().is_full());
    let answer = r.handle_request(ms(10_000), request(1, 1));
    assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
    fill_dlq(&mut r, 2, ms(10_001));
    assert_eq!(r.dead_letters().len(), 3, "still bounded");
}

/// Redrive-all moves what fits now and the rest as the queue makes room,
/// until the dead-letter queue is empty.
#[test]
fn redrive_all_finishes_the_whole_set_over_time() {
    let mut r = relay(one_attempt(20));
    fill_dlq(&mut r, 8, ms(0));
    assert_eq!(r.dead_letters().len(), 8);
    let _ = r.redrive_all(ms(100));
    let mut t = 100;
    for _ in 0..100 {
        let (calls, _) = drain(&mut r);
        if calls.is_empty() && r.live_jobs() == 0 {
            break;
        }
        t += 1;
        for c in calls {
            r.handle_call_result(ms(t), c, Ok(0));
        }
    }
    assert_eq!(r.dead_letters().len(), 0, "every letter was redriven");
    assert_eq!(r.stats().succeeded, 8);
}

/// `accepted + redriven = succeeded + dead-lettered + live`, in the view
/// `/stats` shows.
#[test]
fn stats_count_redrives_so_every_job_is_accounted_for() {
    let mut r = relay(one_attempt(20));
    fill_dlq(&mut r, 2, ms(0));
    let letter = r.dead_letters().list().next().expect("a letter").job;
    r.redrive(ms(1), letter).expect("room");
    r.handle_request(ms(1), request(77, 1));
    let snap = serde_json::to_value(r.stats().snapshot(ms(2))).expect("json");
    let n = |f: &str| {
        snap[f]
            .as_u64()
            .unwrap_or_else(|| panic!("no {f} in {snap}"))
    };
    assert_eq!(n("redriven"), 1);
    assert_eq!(
        n("accepted") + n("redriven"),
        n("succeeded") + n("dead_lettered") + r.live_jobs() as u64
    );
}

fn keys_config(extra: &str) -> RelayConfig {
    let mut cfg = small(2);
    cfg.idempotency = toml::from_str(&format!("keys_max = 2\nttl_ms = 60000\n{extra}"))
        .expect("idempotency settings parse");
    cfg
}

/// Completes `key` at `at`: one accepted job, answered at once.
fn complete(r: &mut TestRelay, key: u64, at: Time) {
    let answer = r.handle_request(at, request(key, 1));
    assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
    let (calls, _) = drain(r);
    for c in calls {
        r.handle_call_result(at, c, Ok(5));
    }
    drain(r);
}

/// Under `when_full = "refuse"` a full store keeps its promise: a new key is
/// refused (503 keys-full) until the oldest record expires, and an early
/// key re-sent is replayed, never run again.
#[test]
fn a_full_idempotency_store_can_refuse_rather_than_forget() {
    let mut r = relay(keys_config("when_full = \"refuse\""));
    complete(&mut r, 1, ms(0));
    complete(&mut r, 2, ms(1000));
    let answer = r.handle_request(ms(2000), request(3, 1));
    assert_eq!(
        answer,
        Answer::Refused {
            why: Refusal::KeysFull,
            retry_after: Some(std::time::Duration::from_secs(58)),
            job: None
        },
        "refused until key 1 expires at 60 s"
    );
    assert!(matches!(
        r.handle_request(ms(2001), request(1, 1)),
        Answer::Replayed { .. }
    ));
    assert_eq!(r.idempotency_evicted_early(), 0);
    complete(&mut r, 3, ms(60_000));
}
