//! The breaker's resilience4j-style options, through the composed relay:
//! slow calls, the count-based window, and the TOML spelling of both.

mod hand;

use hand::{ms, relay, small, TestRelay};
use resilient_relay::relay::{
    BreakerConfig, BreakerState, CallId, Output, RelayConfig, Request, TripConfig,
};

fn request(key: u64) -> Request<u64, u32> {
    Request {
        client: 1,
        key: Some(key),
        fingerprint: 1,
        payload: 1,
    }
}

fn calls(r: &mut TestRelay) -> Vec<CallId> {
    std::iter::from_fn(|| r.poll_output())
        .filter_map(|o| match o {
            Output::Call { call, .. } => Some(call),
            _ => None,
        })
        .collect()
}

/// One worker; each request answered with success after `took_ms`.
fn serve(r: &mut TestRelay, key: u64, start_ms: u64, took_ms: u64) {
    r.handle_request(ms(start_ms), request(key));
    let started = calls(r);
    assert_eq!(started.len(), 1, "one call per request");
    r.handle_call_result(ms(start_ms + took_ms), started[0], Ok(0));
}

fn slow_breaker(slow_call_ms: f64) -> RelayConfig {
    let mut cfg = small(1);
    cfg.retry.attempt_timeout_ms = 0.0;
    cfg.breaker = Some(BreakerConfig {
        trip: TripConfig::FailureRatioCount {
            ratio: 1.0,
            calls: 3,
        },
        slow_call_ms,
        slow_call_rate: 0.6,
        ..BreakerConfig::default()
    });
    cfg
}

#[test]
fn slow_successes_open_the_breaker_through_the_relay() {
    let mut r = relay(slow_breaker(50.0));
    serve(&mut r, 1, 0, 80);
    serve(&mut r, 2, 100, 10);
    assert_eq!(r.breaker_state(), Some(BreakerState::Closed));
    serve(&mut r, 3, 200, 80);
    assert_eq!(
        r.breaker_state(),
        Some(BreakerState::Open),
        "2 of the last 3 calls took over 50 ms"
    );
    assert_eq!(r.stats().succeeded, 3, "slow calls still succeed");
}

#[test]
fn the_same_calls_leave_a_breaker_without_slow_calls_closed() {
    let mut r = relay(slow_breaker(0.0));
    for (i, t) in [0, 100, 200, 300].into_iter().enumerate() {
        serve(&mut r, i as u64, t, 80);
    }
    assert_eq!(r.breaker_state(), Some(BreakerState::Closed));
}

#[test]
fn toml_spells_the_new_options_and_defaults_keep_the_old_ones() {
    let cfg: RelayConfig = toml::from_str(
        r#"
        [breaker]
        trip = { kind = "failure-ratio-count", ratio = 0.5, calls = 100 }
        slow_call_ms = 2000
        slow_call_rate = 0.8
        half_open_probes_max = 3
        "#,
    )
    .expect("parses");
    let b = cfg.breaker.expect("a breaker");
    assert_eq!(
        b.trip,
        TripConfig::FailureRatioCount {
            ratio: 0.5,
            calls: 100
        }
    );
    assert_eq!((b.slow_call_ms, b.slow_call_rate), (2000.0, 0.8));
    cfg.validate().expect("valid");
    let old: RelayConfig = toml::from_str(
        r#"
        [breaker]
        trip = { kind = "consecutive-failures", failures = 5 }
        "#,
    )
    .expect("parses");
    let b = old.breaker.expect("a breaker");
    assert_eq!((b.slow_call_ms, b.slow_call_rate), (0.0, 1.0));
}

#[test]
fn bad_new_options_name_their_field() {
    let field = |text: &str| {
        let cfg: RelayConfig = toml::from_str(text).expect("parses");
        cfg.validate().expect_err("refused").field
    };
    assert_eq!(
        field("[breaker]\ntrip = { kind = \"failure-ratio-count\", ratio = 0.5, calls = 0 }"),
        "breaker.trip.calls"
    );
    assert_eq!(
        field("[breaker]\nslow_call_ms = 100"),
        "breaker.slow_call_ms"
    );
    assert_eq!(
        field("[breaker]\ntrip = { kind = \"failure-ratio-count\", ratio = 0.5, calls = 5 }\nslow_call_ms = 100\nslow_call_rate = 1.5"),
        "breaker.slow_call_rate"
    );
}
