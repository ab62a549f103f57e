//! The relay and the scheduler alone, without the simulated world: one
//! number per component, so a regression shows where it is.
//!
//! - `relay/request-to-finish`: one keyed request through admission, the
//!   downstream call, its result and the job's end (its outputs drained),
//!   with `relay-std`'s settings: idempotency (100,000 keys: once warm,
//!   every new key evicts the oldest record), retries and statistics on.
//! - `relay/request-to-finish-keyless`: the same without a key, so the
//!   difference is the idempotency store's cost.
//! - `scheduler/event`: one event scheduled and popped, with 100 or
//!   100,000 others pending (the cost must not grow with what is pending).
//! - `simulation/relay-std-20k`: 20,000 arrivals of `relay-std` through
//!   the whole simulator; criterion reports time per run, divided here by
//!   its model events.
//!
//! `cargo bench --bench relay`; `-- --quick` for a short run.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use resilient_relay::relay::{Answer, Output, Relay, RelayConfig, Request};
use resilient_relay::rng::{Domain, Seed};
use resilient_relay::sim::scheduler::Scheduler;
use resilient_relay::sim::workload::Workload;
use resilient_relay::sim::{simulate, SimOptions};
use resilient_relay::time::Time;
use std::hint::black_box;

/// `relay-std`'s relay.
fn relay() -> Relay<u64, ()> {
    let scenario = Workload::named("relay-std")
        .expect("a standard workload")
        .scenario("relay-std");
    let settings: RelayConfig = scenario.relay;
    let settings = settings.check().expect("the workload's settings are valid");
    Relay::new(&settings, Seed(1).stream(Domain::Relay, 0))
}

/// Request `n` at 1 µs per request: accepted, called, answered, finished.
fn one_request(relay: &mut Relay<u64, ()>, n: u64, keyed: bool) {
    let now = Time::from_nanos(n * 1_000);
    let req = Request {
        client: n & 7,
        key: keyed.then_some(n),
        fingerprint: n,
        payload: (),
    };
    let answer = relay.handle_request(now, req);
    assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
    let mut call = None;
    while let Some(out) = relay.poll_output() {
        if let Output::Call { call: c, .. } = out {
            call = Some(c);
        }
    }
    let call = call.expect("a free worker takes the job at once");
    relay.handle_call_result(now + std::time::Duration::from_nanos(500), call, Ok(()));
    while let Some(out) = black_box(relay.poll_output()) {
        drop(out);
    }
}

fn bench_relay(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(1));
    for (name, keyed) in [
        ("request-to-finish", true),
        ("request-to-finish-keyless", false),
    ] {
        let mut r = relay();
        let mut n = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                one_request(&mut r, n, keyed);
            })
        });
    }
    g.finish();
}

fn bench_scheduler(c: &mut Criterion) {
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(1));
    for pending in [100u64, 100_000] {
        let mut s: Scheduler<u64> = Scheduler::new();
        // Spread the pending events over one virtual second, as arrivals
        // and service completions are.
        let step = 1_000_000_000 / pending;
        for i in 0..pending {
            s.schedule(Time::from_nanos(i * step), i);
        }
        let mut i = pending;
        g.bench_function(format!("event-{pending}-pending"), |b| {
            b.iter(|| {
                let (now, e) = s.pop().expect("events pending");
                i += 1;
                // Rescheduled about one second ahead, jittered by the id.
                let ahead = 1_000_000_000 + (i.wrapping_mul(0x9E37_79B9) % step);
                s.schedule(Time::from_nanos(now.as_nanos() + ahead), black_box(e));
            })
        });
    }
    g.finish();
}

fn bench_simulation(c: &mut Criterion) {
    let mut g = c.benchmark_group("simulation");
    g.sample_size(10);
    let mut w = Workload::named("relay-std").expect("a standard workload");
    w.arrivals = 20_000;
    let scenario = w.scenario("relay-std");
    let events = simulate(&scenario, &SimOptions::seed(1))
        .expect("the workload runs")
        .summary
        .model_events;
    g.throughput(Throughput::Elements(events));
    g.bench_function("relay-std-20k", |b| {
        b.iter_batched(
            || scenario.clone(),
            |s| simulate(&s, &SimOptions::seed(1)).expect("the workload runs"),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_relay, bench_scheduler, bench_simulation);
criterion_main!(benches);
