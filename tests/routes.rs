//! Routes through the composed relay, stepped by hand: the bulkhead's
//! slots, turns between routes, the fallback at the door and after a final
//! failure, and letters that go back to their route.

mod hand;

use hand::{ms, relay, small, TestRelay};
use resilient_relay::relay::{
    Answer, BreakerConfig, CallError, CallId, FallbackCacheConfig, FallbackConfig, FallbackFrom,
    Output, Refusal, RelayConfig, Request, RouteConfig, RouteId, Routing, TripConfig,
};
use std::time::Duration;

const A: RouteId = RouteId(0);
const B: RouteId = RouteId(1);

fn request(key: u64) -> Request<u64, u32> {
    Request {
        client: 1,
        key: Some(key),
        fingerprint: key,
        payload: 1,
    }
}

fn to(route: RouteId, cache_key: Option<u64>) -> Routing {
    Routing { route, cache_key }
}

/// Two workers, two routes `a` and `b`, one attempt per job, no timeout.
fn two_routes(slots: Option<usize>) -> RelayConfig {
    let mut cfg = small(1);
    cfg.workers = 2;
    cfg.jobs_max = 20;
    cfg.retry.attempt_timeout_ms = 0.0;
    let route = |name: &str| RouteConfig {
        name: name.into(),
        slots,
        ..RouteConfig::default()
    };
    cfg.routes = vec![route("a"), route("b")];
    cfg
}

/// Route `b` reads, with a breaker that opens at the first failure for 10 s
/// and a fallback cache.
fn with_fallback(mut cfg: RelayConfig) -> RelayConfig {
    let b = &mut cfg.routes[1];
    b.side_effect_free = true;
    b.breaker = Some(BreakerConfig {
        trip: TripConfig::ConsecutiveFailures { failures: 1 },
        open_ms: 10_000.0,
        ..BreakerConfig::default()
    });
    b.fallback = Some(FallbackConfig {
        cache: Some(FallbackCacheConfig {
            entries_max: 10,
            max_age_ms: 60_000.0,
        }),
        ..FallbackConfig::default()
    });
    cfg
}

/// The calls started since the last look, with their route.
fn calls(r: &mut TestRelay) -> Vec<(CallId, RouteId)> {
    std::iter::from_fn(|| r.poll_output())
        .filter_map(|o| match o {
            Output::Call { call, route, .. } => Some((call, route)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_shared_pool_lets_one_route_take_every_worker() {
    let mut r = relay(two_routes(None));
    r.handle_request_to(ms(0), to(A, None), request(1));
    r.handle_request_to(ms(0), to(A, None), request(2));
    assert_eq!(calls(&mut r).len(), 2, "route a holds both workers");
    r.handle_request_to(ms(1), to(B, None), request(3));
    assert!(calls(&mut r).is_empty(), "route b waits for a worker");
}

#[test]
fn slots_keep_a_worker_for_each_route() {
    let mut r = relay(two_routes(Some(1)));
    r.handle_request_to(ms(0), to(A, None), request(1));
    r.handle_request_to(ms(0), to(A, None), request(2));
    assert_eq!(calls(&mut r).len(), 1, "route a has one slot");
    r.handle_request_to(ms(1), to(B, None), request(3));
    let started = calls(&mut r);
    assert_eq!(started.len(), 1, "route b's slot is free");
    assert_eq!(started[0].1, B, "the call goes to b's downstream");
    assert_eq!(r.route_state(A).queued, 1);
    assert_eq!(r.route_state(B).in_flight, 1);
}

#[test]
fn an_open_breaker_answers_from_the_cache_even_with_a_full_queue() {
    let mut r = relay(with_fallback(two_routes(Some(1))));
    // A good answer for resource 7 fills the cache.
    r.handle_request_to(ms(0), to(B, Some(7)), request(1));
    let (call, _) = calls(&mut r)[0];
    r.handle_call_result(ms(10), call, Ok(70));
    // A failure opens b's breaker.
    r.handle_request_to(ms(20), to(B, Some(8)), request(2));
    let (call, _) = calls(&mut r)[0];
    r.handle_call_result(ms(30), call, Err(CallError::ServerError));
    assert_eq!(
        r.route_state(B).breaker,
        Some(resilient_relay::relay::BreakerState::Open)
    );
    // Fill b's queue: nothing is called while the breaker is open.
    let at = ms(40);
    for key in [3, 4] {
        let answer = r.handle_request_to(at, to(B, Some(99)), request(key));
        assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
    }
    let cached = r.handle_request_to(ms(50), to(B, Some(7)), request(5));
    assert_eq!(
        cached,
        Answer::Fallback {
            response: 70,
            from: FallbackFrom::Cache {
                age: Duration::from_millis(40)
            }
        }
    );
    let unknown = r.handle_request_to(ms(50), to(B, Some(6)), request(6));
    assert!(
        matches!(
            unknown,
            Answer::Refused {
                why: Refusal::Unavailable,
                ..
            }
        ),
        "nothing cached for 6 and the queue is full: {unknown:?}"
    );
    // Route a is not b: its requests are called as before.
    r.handle_request_to(ms(60), to(A, Some(7)), request(7));
    assert_eq!(calls(&mut r).len(), 1);
    let stats = &r.stats().routes[B.index()];
    assert_eq!(stats.fallbacks_at_door, 1);
    assert_eq!(r.stats().fallbacks, 1);
}

#[test]
fn a_final_failure_is_answered_by_the_fallback_and_still_dead_lettered() {
    let mut cfg = with_fallback(two_routes(Some(1)));
    cfg.routes[1].breaker = None;
    let mut r = relay(cfg);
    r.handle_request_to(ms(0), to(B, Some(7)), request(1));
    let (call, _) = calls(&mut r)[0];
    r.handle_call_result(ms(10), call, Ok(70));
    r.handle_request_to(ms(20), to(B, Some(7)), request(2));
    let (call, _) = calls(&mut r)[0];
    r.handle_call_result(ms(30), call, Err(CallError::ServerError));
    let finished: Vec<_> = std::iter::from_fn(|| r.poll_output())
        .filter_map(|o| match o {
            Output::Finished(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 1);
    let f = &finished[0];
    assert_eq!(f.route, B);
    assert!(!f.outcome.is_success());
    assert_eq!(
        f.fallback,
        Some((
            70,
            FallbackFrom::Cache {
                age: Duration::from_millis(20)
            }
        ))
    );
    let letter = r.dead_letters().get(f.job).expect("still dead-lettered");
    assert_eq!(letter.route, B);
    assert_eq!(r.stats().routes[B.index()].fallbacks_after_failure, 1);
}

#[test]
fn a_redriven_letter_goes_back_to_its_route() {
    let mut r = relay(two_routes(Some(1)));
    r.handle_request_to(ms(0), to(B, None), request(1));
    let (call, _) = calls(&mut r)[0];
    r.handle_call_result(ms(10), call, Err(CallError::ServerError));
    let job = call.job;
    let _ = std::iter::from_fn(|| r.poll_output()).count();
    r.redrive(ms(20), job).expect("redriven");
    let started = calls(&mut r);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].1, B, "called on b again");
}

#[test]
fn without_routes_the_relay_has_one_default_route() {
    let mut r = relay(small(1));
    assert_eq!(r.routes(), 1);
    r.handle_request(ms(0), request(1));
    assert_eq!(calls(&mut r)[0].1, RouteId::DEFAULT);
    assert!(r.route_state(RouteId::DEFAULT).breaker.is_none());
}

#[test]
fn a_breaker_answered_by_its_fallback_still_moves_on_to_half_open() {
    let mut cfg = with_fallback(two_routes(Some(1)));
    if let Some(f) = &mut cfg.routes[1].fallback {
        f.static_answer = Some("stale".into());
    }
    let mut r = relay(cfg);
    r.set_static_answer(B, 0);
    r.handle_request_to(ms(0), to(B, None), request(1));
    let (call, _) = calls(&mut r)[0];
    r.handle_call_result(ms(10), call, Err(CallError::ServerError));
    let during = r.handle_request_to(ms(1_000), to(B, None), request(2));
    assert_eq!(
        during,
        Answer::Fallback {
            response: 0,
            from: FallbackFrom::Static
        }
    );
    // No job waits on b, so no timer of the relay's would wake it: the
    // request itself must find the open period over.
    let after = r.handle_request_to(ms(10_011), to(B, None), request(3));
    assert!(matches!(after, Answer::Accepted { .. }), "{after:?}");
    assert_eq!(calls(&mut r).len(), 1, "the probe goes out");
}

#[test]
fn a_full_route_does_not_hold_back_the_redrives_of_another() {
    let mut r = relay(two_routes(Some(1)));
    let fail = |r: &mut TestRelay, route, key, at| {
        r.handle_request_to(ms(at), to(route, None), request(key));
        let (call, _) = calls(r)[0];
        r.handle_call_result(ms(at + 1), call, Err(CallError::ServerError));
        call.job
    };
    let letter_a = fail(&mut r, A, 1, 0);
    let _letter_b = fail(&mut r, B, 2, 10);
    // Route a: one call in flight, its queue of two full.
    for key in [3, 4, 5] {
        r.handle_request_to(ms(20), to(A, None), request(key));
    }
    assert_eq!(calls(&mut r).len(), 1);
    assert_eq!(r.route_state(A).queued, 2);
    r.redrive_all(ms(30));
    let started = calls(&mut r);
    assert_eq!(started.len(), 1, "b's letter is redriven and called");
    assert_eq!(started[0].1, B);
    assert_eq!(r.redrive_pending(), 1, "a's letter waits for room");
    assert!(r.dead_letters().get(letter_a).is_some());
}
