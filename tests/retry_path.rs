//! The retry path: a retry waits for a worker however full the queue is,
//! and a success that comes back after its attempt timed out is used or
//! recorded, never thrown away.

mod hand;

use hand::{ms, relay, small, TestRelay};
use resilient_relay::relay::{
    Answer, CallError, CallId, Event, GiveUp, JobId, JobState, LateFate, LateSuccess, Outcome,
    Output, Relay, Request,
};
use resilient_relay::sim::{simulate, Scenario, SimOptions};
use resilient_relay::time::Time;

fn request(key: u64) -> Request<u64, u32> {
    Request {
        client: 1,
        key: Some(key),
        fingerprint: key,
        payload: key as u32,
    }
}

/// Drains outputs: the calls started and the jobs finished.
fn drain(r: &mut TestRelay) -> (Vec<CallId>, Vec<Outcome<u32>>) {
    let (calls, done, _) = drain_all(r);
    (calls, done)
}

/// Drains outputs: calls, finished jobs and the fates of late successes.
fn drain_all(r: &mut TestRelay) -> (Vec<CallId>, Vec<Outcome<u32>>, Vec<LateFate>) {
    let (mut calls, mut done, mut late) = (vec![], vec![], vec![]);
    while let Some(o) = r.poll_output() {
        match o {
            Output::Call { call, .. } => calls.push(call),
            Output::Finished(f) => done.push(f.outcome),
            Output::Event(Event::LateSuccess { fate, .. }) => late.push(fate),
            _ => {}
        }
    }
    (calls, done, late)
}

fn accept(r: &mut TestRelay, at: Time, key: u64) -> JobId {
    match r.handle_request(at, request(key)) {
        Answer::Accepted { job } => job,
        other => panic!("not accepted: {other:?}"),
    }
}

#[test]
fn a_retry_that_finds_the_queue_full_waits_and_goes_first() {
    let mut r = relay(small(3));
    let job = accept(&mut r, ms(0), 1);
    drain(&mut r);
    r.handle_call_result(
        ms(1),
        CallId { job, attempt: 1 },
        Err(CallError::ServerError),
    );
    let queued = [accept(&mut r, ms(2), 2), accept(&mut r, ms(2), 3)];
    let (calls, _) = drain(&mut r);
    assert_eq!(
        calls,
        vec![CallId {
            job: queued[0],
            attempt: 1
        }]
    );
    assert_eq!(r.queue_len(), 1);
    accept(&mut r, ms(2), 4);
    assert_eq!(r.queue_len(), 2, "the queue is full of new work");
    r.handle_timeout(ms(11));
    assert!(r.dead_letters().is_empty(), "the retry is not thrown away");
    let (_, done) = drain(&mut r);
    assert!(done.is_empty(), "{done:?}");
    // The worker frees: the retry, older, goes before the queued new work.
    r.handle_call_result(ms(20), calls[0], Ok(0));
    let (calls, _) = drain(&mut r);
    assert_eq!(calls, vec![CallId { job, attempt: 2 }]);
}

#[test]
fn a_late_success_while_the_job_waits_to_retry_completes_it() {
    let mut r = relay(small(3));
    let job = accept(&mut r, ms(0), 1);
    drain(&mut r);
    r.handle_timeout(ms(100));
    assert_eq!(r.poll_timeout(), Some(ms(110)), "backing off");
    drain(&mut r);
    r.handle_call_result(ms(105), CallId { job, attempt: 1 }, Ok(5));
    let (calls, done) = drain(&mut r);
    assert!(calls.is_empty());
    assert_eq!(done, vec![Outcome::Succeeded { response: 5 }]);
    r.handle_timeout(ms(110));
    let (calls, _) = drain(&mut r);
    assert!(
        calls.is_empty(),
        "no retry after the job succeeded: {calls:?}"
    );
    assert_eq!(r.stats().attempts, 1);
}

#[test]
fn a_late_success_in_the_retry_lane_completes_the_job_and_leaves_the_lane() {
    let mut r = relay(small(3));
    let job = accept(&mut r, ms(0), 1);
    drain(&mut r);
    r.handle_timeout(ms(100));
    let other = accept(&mut r, ms(101), 2);
    let (calls, _) = drain(&mut r);
    assert_eq!(
        calls,
        vec![CallId {
            job: other,
            attempt: 1
        }]
    );
    r.handle_timeout(ms(110));
    assert_eq!(
        r.job_status(job).map(|s| s.state),
        Some(JobState::RetryQueued)
    );
    assert_eq!(
        r.retry_lane_len(),
        1,
        "the worker is busy with the other job"
    );
    r.handle_call_result(ms(115), CallId { job, attempt: 1 }, Ok(7));
    let (calls, done, late) = drain_all(&mut r);
    assert_eq!((calls, late), (vec![], vec![LateFate::CompletedJob]));
    assert_eq!(done, vec![Outcome::Succeeded { response: 7 }]);
    assert_eq!(r.retry_lane_len(), 0, "no longer waits");
    assert_eq!(r.stats().late_successes_used, 1);
}

#[test]
fn a_late_success_after_the_retry_was_sent_is_recorded_and_reaches_the_dead_letter() {
    let mut r = relay(small(3));
    let job = accept(&mut r, ms(0), 1);
    drain(&mut r);
    r.handle_timeout(ms(100));
    r.handle_timeout(ms(110));
    let (calls, _) = drain(&mut r);
    assert_eq!(calls, vec![CallId { job, attempt: 2 }], "the retry is sent");
    r.handle_call_result(ms(120), CallId { job, attempt: 1 }, Ok(5));
    let (calls, done, late) = drain_all(&mut r);
    assert_eq!(
        (calls, done, late),
        (vec![], vec![], vec![LateFate::Recorded])
    );
    let noted = LateSuccess {
        attempt: 1,
        at: ms(120),
        response: 5,
        count: 1,
    };
    let status = r.job_status(job).expect("live");
    assert_eq!(
        (status.state, status.late_success),
        (JobState::InFlight, Some(noted.clone()))
    );
    // The job carries on: attempt 2 fails, attempt 3 fails, the policy gives up.
    r.handle_call_result(
        ms(130),
        CallId { job, attempt: 2 },
        Err(CallError::ServerError),
    );
    r.handle_timeout(ms(140));
    r.handle_call_result(
        ms(150),
        CallId { job, attempt: 3 },
        Err(CallError::ServerError),
    );
    let letter = r.dead_letters().get(job).expect("dead-lettered");
    assert_eq!(letter.reason, GiveUp::AttemptsExhausted);
    assert_eq!(letter.late_success, Some(noted.clone()));
    let json = serde_json::to_value(letter).expect("a letter serialises");
    assert_eq!(
        json["late_success"],
        serde_json::json!({"attempt": 1, "at": noted.at, "response": 5, "count": 1})
    );
    assert_eq!(r.job_status(job).and_then(|s| s.late_success), Some(noted));
    let s = r.stats();
    assert_eq!(
        (
            s.late_results,
            s.late_successes_used,
            s.late_successes_recorded
        ),
        (1, 0, 1)
    );
}

#[test]
fn a_late_success_after_the_job_ended_is_kept_where_the_job_is_kept() {
    // Every attempt times out: the job is dead-lettered at the last timeout,
    // then that attempt's answer arrives.
    let mut cfg = small(3);
    cfg.retry.attempts_max = 1;
    let mut r = relay(cfg.clone());
    let job = accept(&mut r, ms(0), 1);
    drain(&mut r);
    r.handle_timeout(ms(100));
    assert!(r.dead_letters().get(job).is_some());
    drain(&mut r);
    r.handle_call_result(ms(150), CallId { job, attempt: 1 }, Ok(9));
    let (_, done, late) = drain_all(&mut r);
    assert_eq!((done, late), (vec![], vec![LateFate::Recorded]));
    let kept = r
        .dead_letters()
        .get(job)
        .and_then(|l| l.late_success.clone());
    assert_eq!(kept.map(|l| (l.attempt, l.response)), Some((1, 9)));
    // A job that succeeded on its retry and is not remembered: only the
    // event and the count keep the late success.
    cfg.retry.attempts_max = 2;
    let mut r = relay(cfg.clone());
    let job = accept(&mut r, ms(0), 1);
    drain(&mut r);
    r.handle_timeout(ms(100));
    r.handle_timeout(ms(110));
    r.handle_call_result(ms(115), CallId { job, attempt: 2 }, Ok(2));
    drain(&mut r);
    r.handle_call_result(ms(150), CallId { job, attempt: 1 }, Ok(1));
    let (_, _, late) = drain_all(&mut r);
    assert_eq!(late, vec![LateFate::JobForgotten]);
    assert_eq!(r.stats().late_successes_recorded, 1);
    // The same, remembered: its status shows it.
    cfg.history_max = 10;
    let mut r = relay(cfg);
    let job = accept(&mut r, ms(0), 1);
    drain(&mut r);
    r.handle_timeout(ms(100));
    r.handle_timeout(ms(110));
    r.handle_call_result(ms(115), CallId { job, attempt: 2 }, Ok(2));
    r.handle_call_result(ms(150), CallId { job, attempt: 1 }, Ok(1));
    let status = r.job_status(job).expect("remembered");
    assert_eq!(
        (status.state, status.response),
        (JobState::Succeeded, Some(2))
    );
    assert_eq!(status.late_success.map(|l| l.response), Some(1));
}

#[test]
fn a_late_failure_is_counted_and_ignored() {
    let mut r = relay(small(3));
    let job = accept(&mut r, ms(0), 1);
    drain(&mut r);
    r.handle_timeout(ms(100));
    drain(&mut r);
    r.handle_call_result(
        ms(105),
        CallId { job, attempt: 1 },
        Err(CallError::ServerError),
    );
    let (_, done, late) = drain_all(&mut r);
    assert!(done.is_empty() && late.is_empty());
    assert_eq!(
        r.job_status(job).map(|s| s.state),
        Some(JobState::BackingOff)
    );
    let s = r.stats();
    assert_eq!(
        (
            s.late_results,
            s.late_successes_used,
            s.late_successes_recorded
        ),
        (1, 0, 0)
    );
}

/// Ten times the attempts ten workers serve, 30 % of attempts failing,
/// four attempts per job, a queue of 100.
const OVERLOAD: &str = r#"
name = "overload"
horizon_s = 20
[relay]
workers = 10
jobs_max = 10000
[relay.queue]
capacity = 100
[relay.retry]
attempts_max = 4
attempt_timeout_ms = 100
[relay.retry.backoff]
kind = "full-jitter"
base_ms = 50
cap_ms = 2000
[downstream]
failure_rate = 0.3
latency = { kind = "log-normal", median_ms = 20, sigma = 0.5 }
[[clients]]
kind = "open-loop"
per_s = 4400
clients = 50
"#;

#[test]
fn under_overload_only_failed_attempts_fill_the_dlq() {
    let scenario = Scenario::from_toml(OVERLOAD, "inline").expect("valid scenario");
    let s = simulate(&scenario, &SimOptions::seed(1))
        .expect("no violation")
        .summary;
    assert!(s.shed_429 > 5 * s.accepted, "overloaded: {s}");
    let ended = s.succeeded + s.dead_lettered;
    assert!(ended > 5_000, "{s}");
    // Four independent attempts each failing with p = 0.3 (a timeout is
    // rarer than 1 in 1,000): 0.3^4 ≈ 0.81 % of jobs; about 70 letters
    // expected, so [0.4 %, 1.6 %] is more than five standard deviations.
    let share = s.dead_lettered as f64 / ended as f64;
    assert!((0.004..0.016).contains(&share), "DLQ share {share:.4}\n{s}");
}

/// Three jobs that each timed out on their only attempt: three dead letters.
fn three_dead_letters(r: &mut TestRelay) -> Vec<JobId> {
    (0..3u64)
        .map(|k| {
            let job = accept(r, ms(k * 200), 10 + k);
            drain_all(r);
            r.handle_timeout(ms(k * 200 + 100));
            drain_all(r);
            job
        })
        .collect()
}

#[test]
fn a_late_success_on_a_dead_letter_shows_on_the_job_status_too() {
    let mut cfg = small(1);
    cfg.history_max = 100;
    let mut r = relay(cfg);
    let job = accept(&mut r, ms(0), 1);
    drain_all(&mut r);
    r.handle_timeout(ms(100));
    drain_all(&mut r);
    r.handle_call_result(ms(150), CallId { job, attempt: 1 }, Ok(9));
    drain_all(&mut r);
    let on_letter = r
        .dead_letters()
        .get(job)
        .and_then(|l| l.late_success.clone());
    let on_status = r.job_status(job).and_then(|s| s.late_success);
    assert_eq!(on_letter.map(|l| l.response), Some(9));
    assert_eq!(
        on_status.map(|l| l.response),
        Some(9),
        "the status hides it"
    );
}

#[test]
fn a_late_success_keeps_its_letter_in_a_pending_redrive_all() {
    let mut cfg = small(1);
    cfg.queue.capacity = 1;
    cfg.jobs_max = 2;
    let mut r = relay(cfg);
    let letters = three_dead_letters(&mut r);
    accept(&mut r, ms(700), 50);
    accept(&mut r, ms(700), 51);
    drain_all(&mut r);
    r.redrive_all(ms(700));
    assert_eq!(r.redrive_pending(), 3, "no room: every letter waits");
    r.handle_call_result(
        ms(710),
        CallId {
            job: letters[2],
            attempt: 1,
        },
        Ok(1),
    );
    drain_all(&mut r);
    assert_eq!(
        r.redrive_pending(),
        3,
        "the late success took its letter out of the set"
    );
}

#[test]
fn pending_redrives_take_freed_room_before_new_requests() {
    let mut cfg = small(1);
    cfg.queue.capacity = 1;
    cfg.jobs_max = 5;
    let mut r = relay(cfg);
    three_dead_letters(&mut r);
    let busy = accept(&mut r, ms(700), 50);
    accept(&mut r, ms(700), 51);
    drain_all(&mut r);
    r.redrive_all(ms(700));
    assert_eq!(r.redrive_pending(), 3);
    // The busy call ends: the queued job starts and the queue has room,
    // which the oldest pending letter must take.
    r.handle_call_result(
        ms(710),
        CallId {
            job: busy,
            attempt: 1,
        },
        Ok(0),
    );
    drain_all(&mut r);
    assert_eq!(
        r.redrive_pending(),
        2,
        "one letter moved into the freed room"
    );
    assert!(
        !matches!(
            r.handle_request(ms(711), request(99)),
            Answer::Accepted { .. }
        ),
        "a new request took the room ahead of a pending redrive"
    );
}

#[test]
fn late_answers_on_dead_letters_count_against_the_byte_bound() {
    let mut cfg = small(1);
    cfg.dlq.bytes_max = 4096;
    let mut r: Relay<u64, Vec<u8>> = Relay::new(
        &cfg.check().expect("valid"),
        resilient_relay::rng::Seed(1).stream(resilient_relay::rng::Domain::Relay, 0),
    );
    for k in 0..5u64 {
        let answer = r.handle_request(
            ms(k * 200),
            Request {
                client: 1,
                key: Some(k),
                fingerprint: k,
                payload: vec![0; 10],
            },
        );
        let Answer::Accepted { job } = answer else {
            panic!("not accepted: {answer:?}")
        };
        while r.poll_output().is_some() {}
        r.handle_timeout(ms(k * 200 + 100));
        while r.poll_output().is_some() {}
        // A 1 KiB late answer for each: four fit beside the letters, one does not.
        r.handle_call_result(
            ms(k * 200 + 150),
            CallId { job, attempt: 1 },
            Ok(vec![7; 1024]),
        );
        while r.poll_output().is_some() {}
    }
    let dlq = r.dead_letters();
    let held: usize = dlq
        .list()
        .map(|l| l.payload.len() + l.late_success.as_ref().map_or(0, |s| s.response.len()))
        .sum();
    assert_eq!(dlq.len(), 5);
    assert!(
        held <= dlq.bytes() && dlq.bytes() <= dlq.bytes_max(),
        "held {held}, counted {}",
        dlq.bytes()
    );
    let kept = dlq.list().filter(|l| l.late_success.is_some()).count() as u64;
    assert!((1..5).contains(&kept), "{kept} late answers kept");
    assert_eq!(kept + dlq.late_answers_dropped(), 5);
}
