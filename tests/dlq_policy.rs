//! The dead-letter queue's stated policy, checked from outside the relay over
//! random sequences of requests, failures, successes, wake-ups and redrives:
//!
//! - under `drop-oldest` the dead-letter queue never refuses a request;
//! - under `refuse` it refuses only while it is full, and promises a
//!   `Retry-After` only while a redrive is freeing room;
//! - both bounds (letters and bytes) hold after every step;
//! - no letter vanishes: every dead-lettered job is held, redriven, or
//!   counted as overflowed or evicted;
//! - every job is accounted for: accepted + redriven = succeeded +
//!   dead-lettered + live.
//!
//! A failing case prints the policy, the bounds and the steps; proptest
//! shrinks them.

use proptest::prelude::*;
use resilient_relay::relay::{
    Answer, BackoffKind, CallId, Output, Refusal, Relay, RelayConfig, Request, WhenFull,
};
use resilient_relay::rng::{Domain, Seed};
use resilient_relay::time::Time;
use std::collections::VecDeque;

type TestRelay = Relay<u64, Vec<u8>>;

#[derive(Clone, Debug)]
enum Step {
    /// A request with a fresh key and a payload of this many bytes.
    Request(usize),
    /// The oldest outstanding call fails.
    Fail,
    /// The oldest outstanding call succeeds.
    Succeed,
    /// Time moves on by this many milliseconds and due timers fire.
    Wait(u64),
    RedriveAll,
    /// Redrive the oldest letter alone.
    RedriveOldest,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..3000).prop_map(Step::Request),
        4 => Just(Step::Fail),
        2 => Just(Step::Succeed),
        2 => (0u64..200).prop_map(Step::Wait),
        1 => Just(Step::RedriveAll),
        1 => Just(Step::RedriveOldest),
    ]
}

fn policy() -> impl Strategy<Value = WhenFull> {
    prop_oneof![Just(WhenFull::DropOldest), Just(WhenFull::Refuse)]
}

fn config(when_full: WhenFull, capacity: usize, bytes_max: usize) -> RelayConfig {
    let mut cfg = RelayConfig {
        workers: 2,
        jobs_max: 20,
        breaker: None,
        ..RelayConfig::default()
    };
    cfg.queue.capacity = 4;
    cfg.retry.attempts_max = 2;
    cfg.retry.attempt_timeout_ms = 100.0;
    cfg.retry.backoff.kind = BackoffKind::Constant;
    cfg.retry.backoff.base_ms = 10.0;
    cfg.dlq.capacity = capacity;
    cfg.dlq.bytes_max = bytes_max;
    cfg.dlq.when_full = when_full;
    cfg
}

/// Drives one relay through the steps, checking the policy at every one.
struct Run {
    relay: TestRelay,
    now: Time,
    calls: VecDeque<CallId>,
    key: u64,
}

impl Run {
    fn new(cfg: &RelayConfig) -> Run {
        let settings = cfg.check().expect("valid test config");
        Run {
            relay: Relay::new(&settings, Seed(3).stream(Domain::Relay, 0)),
            now: Time::ZERO,
            calls: VecDeque::new(),
            key: 0,
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.relay.poll_output() {
            if let Output::Call { call, .. } = out {
                self.calls.push_back(call);
            }
        }
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Request(bytes) => self.request(bytes)?,
            Step::Fail | Step::Succeed => {
                if let Some(call) = self.calls.pop_front() {
                    let result = match step {
                        Step::Succeed => Ok(vec![1]),
                        _ => Err(resilient_relay::relay::CallError::ServerError),
                    };
                    self.relay.handle_call_result(self.now, call, result);
                }
            }
            Step::Wait(ms) => {
                self.now += std::time::Duration::from_millis(ms);
                self.relay.handle_timeout(self.now);
            }
            Step::RedriveAll => drop(self.relay.redrive_all(self.now)),
            Step::RedriveOldest => {
                let oldest = self.relay.dead_letters().list().next().map(|l| l.job);
                if let Some(l) = oldest {
                    let _ = self.relay.redrive(self.now, l);
                }
            }
        }
        self.drain();
        self.check_bounds_and_books()
    }

    /// A request, and what the policy allows the answer to be.
    fn request(&mut self, bytes: usize) -> Result<(), TestCaseError> {
        self.key += 1;
        let dlq = self.relay.dead_letters();
        let (blocks, full, pending) =
            (dlq.blocks_admission(), dlq.is_full(), dlq.redrive_pending());
        let policy = dlq.when_full();
        let answer = self.relay.handle_request(
            self.now,
            Request {
                client: 1,
                key: Some(self.key),
                fingerprint: self.key,
                payload: vec![0; bytes],
            },
        );
        if let Answer::Refused {
            why: Refusal::Unavailable,
            retry_after,
            ..
        } = answer
        {
            prop_assert_eq!(policy, WhenFull::Refuse, "drop-oldest never refuses");
            prop_assert!(blocks && full, "refused by a queue that was not full");
            prop_assert_eq!(
                retry_after.is_some(),
                pending > 0,
                "a Retry-After only while a redrive frees room"
            );
        } else {
            prop_assert!(!blocks, "a full queue under refuse let a request in");
        }
        Ok(())
    }

    fn check_bounds_and_books(&self) -> Result<(), TestCaseError> {
        let r = &self.relay;
        let dlq = r.dead_letters();
        prop_assert!(dlq.len() <= dlq.capacity());
        prop_assert!(dlq.bytes() <= dlq.bytes_max());
        let s = r.stats();
        let letters = dlq.len() as u64 + s.dlq_overflowed + s.dlq_evicted + s.dlq_redriven;
        prop_assert_eq!(s.dead_lettered_total(), letters, "a letter vanished");
        prop_assert_eq!(
            s.accepted + s.dlq_redriven,
            s.succeeded + s.dead_lettered_total() + r.live_jobs() as u64
        );
        prop_assert!(dlq.redrive_pending() <= dlq.len());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_dlq_blocks_admission_only_as_its_policy_says(
        when_full in policy(),
        capacity in 1usize..6,
        bytes_max in 4096usize..12_000,
        steps in proptest::collection::vec(step(), 1..200),
    ) {
        let mut run = Run::new(&config(when_full, capacity, bytes_max));
        for s in &steps {
            run.step(s)?;
        }
    }
}

/// Under `refuse`, a full queue lets requests in again once a redrive of
/// all has made room, and the refusals in between carry an honest hint.
#[test]
fn under_refuse_a_redrive_reopens_admission() {
    let mut run = Run::new(&config(WhenFull::Refuse, 2, 1 << 20));
    for _ in 0..2 {
        run.step(&Step::Request(10)).expect("policy holds");
        for _ in 0..2 {
            run.step(&Step::Fail).expect("policy holds");
            run.step(&Step::Wait(20)).expect("policy holds");
        }
    }
    assert!(run.relay.dead_letters().blocks_admission());
    let refused = run.relay.handle_request(run.now, request(99));
    assert!(
        matches!(
            refused,
            Answer::Refused {
                why: Refusal::Unavailable,
                retry_after: None,
                ..
            }
        ),
        "no Retry-After that waiting would not honour: {refused:?}"
    );
    run.step(&Step::RedriveAll).expect("policy holds");
    assert!(!run.relay.dead_letters().blocks_admission());
    let answer = run.relay.handle_request(run.now, request(100));
    assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
}

fn request(key: u64) -> Request<u64, Vec<u8>> {
    Request {
        client: 1,
        key: Some(key),
        fingerprint: key,
        payload: vec![],
    }
}
