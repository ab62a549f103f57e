//! Routes and bulkheads on `experiments/scenarios/bulkheads.toml`: two
//! routes, `search` hangs from 10 s to 30 s. A shared pool lets search's
//! hung calls starve `orders`; partitioned slots keep orders served; a
//! breaker and a fallback on search answer its callers while it is down.

use resilient_relay::relay::{
    BreakerConfig, FallbackCacheConfig, FallbackConfig, RouteConfig, TripConfig,
};
use resilient_relay::sim::routes::RouteSummary;
use resilient_relay::sim::{simulate, Scenario, SimOptions, Summary};

const SEED: u64 = 7;

fn scenario() -> Scenario {
    Scenario::load(std::path::Path::new("experiments/scenarios/bulkheads.toml"))
        .expect("the scenario parses")
}

fn run(s: &Scenario) -> Summary {
    simulate(s, &SimOptions::seed(SEED))
        .unwrap_or_else(|f| {
            panic!(
                "{f}\nreproduce with: cargo run --release -- simulate \
                 experiments/scenarios/bulkheads.toml --seed {SEED}"
            )
        })
        .summary
}

fn route<'a>(s: &'a Summary, name: &str) -> &'a RouteSummary {
    s.routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name} in the summary"))
}

fn partitioned() -> Scenario {
    let mut s = scenario();
    for r in &mut s.relay.routes {
        r.slots = Some(10);
    }
    s
}

fn with_breaker_and_fallback(mut s: Scenario) -> Scenario {
    let search: &mut RouteConfig = s
        .relay
        .routes
        .iter_mut()
        .find(|r| r.name == "search")
        .expect("a search route");
    search.breaker = Some(BreakerConfig {
        trip: TripConfig::ConsecutiveFailures { failures: 10 },
        open_ms: 2_000.0,
        ..BreakerConfig::default()
    });
    search.fallback = Some(FallbackConfig {
        cache: Some(FallbackCacheConfig {
            entries_max: 1_000,
            max_age_ms: 60_000.0,
        }),
        ..FallbackConfig::default()
    });
    s
}

#[test]
fn partitioned_slots_keep_the_healthy_route_served_while_the_other_hangs() {
    let shared = run(&scenario());
    let split = run(&partitioned());
    let (a, b) = (route(&shared, "orders"), route(&split, "orders"));
    assert!(
        b.succeeded as f64 > 1.1 * a.succeeded as f64,
        "orders succeeded {} with partitioned slots, {} with a shared pool",
        b.succeeded,
        a.succeeded
    );
    assert!(
        b.refused < a.refused,
        "orders refused {} partitioned, {} shared",
        b.refused,
        a.refused
    );
    assert!(
        b.latency_p99_ms < a.latency_p99_ms,
        "orders p99 {} ms partitioned, {} ms shared",
        b.latency_p99_ms,
        a.latency_p99_ms
    );
    // The outage is search's: its calls go to its own downstream.
    assert!(route(&shared, "search").dead_lettered > 0);
}

#[test]
fn an_open_breaker_answers_from_the_fallback_cache() {
    let plain = run(&partitioned());
    let guarded = run(&with_breaker_and_fallback(partitioned()));
    let (p, g) = (route(&plain, "search"), route(&guarded, "search"));
    assert_eq!(p.fallbacks_at_door + p.fallbacks_after_failure, 0);
    assert!(
        g.fallbacks_at_door > 100,
        "search answered {} requests from its cache while open",
        g.fallbacks_at_door
    );
    assert!(
        g.downstream_calls < p.downstream_calls,
        "the open breaker spares the hung downstream: {} calls against {}",
        g.downstream_calls,
        p.downstream_calls
    );
    assert_eq!(
        guarded.fallbacks_total(),
        g.fallbacks_at_door + g.fallbacks_after_failure,
        "only search has a fallback"
    );
    // Orders is untouched by what search does.
    let (po, go) = (route(&plain, "orders"), route(&guarded, "orders"));
    assert_eq!(po.fallbacks_at_door, 0);
    assert!(go.succeeded as f64 >= 0.95 * po.succeeded as f64);
}

#[test]
fn a_run_with_routes_is_the_same_bytes_for_the_same_seed() {
    let s = with_breaker_and_fallback(partitioned());
    let a = serde_json::to_string(&run(&s)).expect("json");
    let b = serde_json::to_string(&run(&s)).expect("json");
    assert_eq!(a, b);
    assert!(a.contains("\"routes\""), "the summary has its routes");
}

#[test]
fn a_scenario_route_must_be_a_relay_route() {
    let text = std::fs::read_to_string("experiments/scenarios/bulkheads.toml").expect("read");
    let bad = text.replace(
        "[[routes]]\nname = \"orders\"",
        "[[routes]]\nname = \"ordres\"",
    );
    let err = Scenario::from_toml(&bad, "b.toml").expect_err("unknown route");
    assert!(
        err.to_string().contains("routes[0].name") && err.to_string().contains("[[relay.routes]]"),
        "{err}"
    );
}

#[path = "common/experiments.rs"]
mod experiments;

/// `experiment bulkheads --quick`: one summary row per strategy, outage end
/// and mode, and the cure shows where the disease is.
#[test]
fn the_bulkheads_experiment_shows_the_shared_pool_starving_the_healthy_route() {
    let report = experiments::quick_run("bulkheads", 2);
    let (header, rows) = experiments::csv(&report.dir, "bulkheads_summary.csv");
    assert_eq!(rows.len(), 4 * 4 * 2, "strategies × outage ends × modes");
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (strategy, until, mode) = (col("strategy"), col("outage_until_s"), col("outage_mode"));
    let goodput = col("first_route_goodput_per_s_mean");
    let fallback = col("other_routes_fallback_pct_mean");
    let at = |s: &str, m: &str, column: usize| -> f64 {
        let row = rows
            .iter()
            .find(|r| r[strategy] == s && r[until] == "30" && r[mode] == m)
            .unwrap_or_else(|| panic!("no row {s} 30 {m}"));
        row[column].parse().expect("a number")
    };
    assert!(
        at("partitioned", "hang", goodput) > 1.1 * at("shared-pool", "hang", goodput),
        "a hang: partitioned slots keep orders served"
    );
    // Failing fast holds no worker: the shared pool is not starved.
    let fast = at("shared-pool", "fail-fast", goodput);
    assert!(
        fast > 0.9 * at("partitioned", "fail-fast", goodput),
        "fail-fast: {fast} jobs/s with a shared pool"
    );
    assert!(at("partitioned-breaker-fallback", "hang", fallback) > 0.0);
    assert_eq!(
        at("partitioned", "hang", fallback),
        0.0,
        "no fallback configured"
    );
}
