//! `cargo run --release --example bench_json`: the cost of the JSON check
//! every `POST /relay` body goes through, on a typical 200-byte body and a
//! 64 KB one, beside serde_json's syntax-only check (what it replaced) and
//! a full parse into a `Value`. One JSON line per (body, check): the median
//! of 15 timed batches, in ns per body and ns per byte.

use resilient_relay::server::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A body check: true when the body is taken.
type Check = dyn Fn(&[u8]) -> bool;

/// One order as a client would post it (about 200 bytes).
fn order(i: usize) -> String {
    format!(
        r#"{{"order_id":"ord-{i:06}","amount":10.5,"currency":"EUR","customer":{{"id":42,"name":"Ada Lovelace","email":"ada@example.com"}},"items":[{{"sku":"A-1","qty":2}},{{"sku":"B-7","qty":1}}],"note":"leave at door"}}"#
    )
}

/// A batch of orders filling `bytes`.
fn batch(bytes: usize) -> String {
    let mut out = String::from(r#"{"batch":["#);
    let mut i = 0;
    while out.len() + 260 < bytes {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&order(i));
        i += 1;
    }
    out.push_str("]}");
    out
}

/// Median time of one call of `f`, over 15 batches of about 40 ms.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn median(mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < Duration::from_millis(40) {
        assert!(f());
        calls += 1;
    }
    let mut runs: Vec<Duration> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                black_box(f());
            }
            t.elapsed() / calls
        })
        .collect();
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let small = order(1);
    let large = batch(64 * 1024);
    for (name, body) in [("small", small.as_bytes()), ("64k", large.as_bytes())] {
        let checks: [(&str, &Check); 3] = [
            ("json::validate", &|b| json::validate(b).is_ok()),
            ("serde IgnoredAny", &|b| {
                serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
            }),
            ("serde Value", &|b| {
                serde_json::from_slice::<serde_json::Value>(b).is_ok()
            }),
        ];
        for (check, f) in checks {
            let t = median(|| f(black_box(body)));
            let ns = t.as_nanos() as f64;
            println!(
                r#"{{"body":"{name}","bytes":{},"check":"{check}","ns":{ns:.0},"ns_per_byte":{:.3}}}"#,
                body.len(),
                ns / body.len() as f64
            );
        }
    }
}
