//! Routes in the real server: `POST /relay/{route}` reaches the route's own
//! downstream; a route whose downstream fails trips its own breaker and is
//! answered from its fallback (cache, then static), while the other route
//! keeps working; jobs, dead letters, `/stats` and `/metrics` name routes.

mod common;

use common::{fault, job_of, problem, Harness};
use resilient_relay::server::{DownstreamService, DownstreamSettings, Settings};

/// Two routes: `orders` on the built-in downstream, `search` on the
/// standalone one at `search_url`, with a breaker, a cache keyed by the
/// query and a static answer.
fn two_routes(search_url: &str) -> Settings {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
drain_deadline_ms = 5000

[relay]
workers = 4
jobs_max = 1000

[relay.queue]
capacity = 50

[relay.retry]
attempts_max = 2
attempt_timeout_ms = 2000

[relay.retry.backoff]
base_ms = 5
cap_ms = 20

[[relay.routes]]
name = "orders"
slots = 2

[[relay.routes]]
name = "search"
slots = 2
side_effect_free = true

[relay.routes.breaker]
open_ms = 60000
trip = {{ kind = "consecutive-failures", failures = 4 }}

[relay.routes.fallback]
static_answer = '{{"results":[],"stale":true}}'

[relay.routes.fallback.cache]
entries_max = 100
max_age_ms = 60000

[downstream]
latency_ms = 1

[[routes]]
name = "search"
cache_key = "json:/q"
downstream = {{ kind = "url", url = "{search_url}" }}
"#
    );
    let mut s = Settings::from_toml(&text, &[]).expect("the settings parse");
    s.validate().expect("the settings are valid");
    s.server.store = Default::default();
    s
}

async fn start() -> Harness {
    let ds = DownstreamService::spawn(&DownstreamSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        fault: (&fault(0.0, 1.0)).into(),
        keys_max: 100_000,
        in_flight_max: 1_000,
        ledger: None,
    })
    .await
    .expect("downstream starts");
    let url = format!("{}/work", ds.base_url());
    let mut h = Harness::start(two_routes(&url)).await;
    h.downstream = Some(ds);
    h
}

async fn post(h: &Harness, path: &str, body: &str) -> resilient_relay::server::client::Reply {
    h.api().post_to(path, None, body, &[]).await
}

/// The standalone downstream's count of calls received.
async fn search_calls(h: &Harness) -> u64 {
    let admin = h.downstream_get("/admin").await;
    admin["calls"]
        .as_u64()
        .unwrap_or_else(|| panic!("calls in {admin}"))
}

#[tokio::test]
async fn each_route_calls_its_own_downstream_and_is_reported_by_name() {
    let h = start().await;
    let orders = job_of(&post(&h, "/relay/orders", r#"{"item":1}"#).await);
    let default = job_of(&post(&h, "/relay", r#"{"item":2}"#).await);
    let search = job_of(&post(&h, "/relay/search", r#"{"q":"cats"}"#).await);
    for id in [&orders, &default] {
        let job = h.wait_state(id, "succeeded").await;
        assert_eq!(job["route"], "orders", "{job}");
    }
    let job = h.wait_state(&search, "succeeded").await;
    assert_eq!(job["route"], "search", "{job}");
    assert_eq!(
        search_calls(&h).await,
        1,
        "only search's job reached its downstream"
    );

    let stats = h.stats().await;
    let routes = stats["routes"].as_array().expect("routes in /stats");
    let names: Vec<_> = routes.iter().map(|r| r["name"].as_str()).collect();
    assert_eq!(names, [Some("orders"), Some("search")]);
    assert_eq!(routes[0]["succeeded"], 2, "{stats}");
    assert_eq!(routes[1]["succeeded"], 1, "{stats}");
    assert_eq!(routes[1]["slots"], 2, "{stats}");

    let metrics = String::from_utf8(h.get("/metrics").await.body.to_vec()).expect("text");
    assert!(
        metrics.contains("relay_succeeded_total{route=\"orders\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_succeeded_total{route=\"search\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("relay_breaker_state{route=\"search\",state=\"closed\"} 1\n"));
    assert!(
        !metrics.contains("relay_breaker_state{route=\"orders\""),
        "orders has none"
    );
}

#[tokio::test]
async fn an_unknown_route_is_a_404_that_names_the_routes() {
    let h = start().await;
    let reply = post(&h, "/relay/serch", r#"{"q":"cats"}"#).await;
    let p = problem(&reply, 404);
    let detail = p["detail"].as_str().expect("a detail");
    assert!(detail.contains("orders, search"), "{detail}");
    assert_eq!(h.stats().await["requests"], 0, "the relay never saw it");
}

#[tokio::test]
async fn a_failing_route_falls_back_and_the_other_route_is_untouched() {
    let h = start().await;
    // A good answer for "cats", cached under the query alone.
    let first = job_of(&post(&h, "/relay/search", r#"{"q":"cats","page":1}"#).await);
    h.wait_state(&first, "succeeded").await;

    h.downstream_admin(serde_json::json!({ "failure_rate": 1.0 }))
        .await;
    // Two jobs fail for good (two attempts each) and trip the breaker (four
    // failures in a row); each is dead-lettered and answered by the fallback.
    let dogs = job_of(&post(&h, "/relay/search", r#"{"q":"dogs"}"#).await);
    let cats = job_of(&post(&h, "/relay/search", r#"{"q":"cats","page":2}"#).await);
    let dogs = h.wait_state(&dogs, "dead-lettered").await;
    assert_eq!(dogs["fallback"]["from"], "static", "{dogs}");
    assert_eq!(dogs["fallback"]["response"]["stale"], true, "{dogs}");
    let cats = h.wait_state(&cats, "dead-lettered").await;
    assert_eq!(cats["fallback"]["from"], "cache", "{cats}");
    assert!(cats["fallback"]["response"]["ok"] == true, "{cats}");
    h.wait_for("/stats", "search's breaker to open", |r| {
        r.json()["routes"][1]["breaker"] == "open"
    })
    .await;

    // Open: answered at once, from the cache or the static answer.
    let calls = search_calls(&h).await;
    let cached = post(&h, "/relay/search", r#"{"q":"cats","page":3}"#).await;
    assert_eq!(cached.status, 200, "{:?}", cached.body);
    assert_eq!(cached.json()["state"], "fallback");
    assert_eq!(cached.json()["fallback"], "cache");
    let fresh = post(&h, "/relay/search", r#"{"q":"birds"}"#).await;
    assert_eq!(fresh.status, 200, "{:?}", fresh.body);
    assert_eq!(fresh.json()["fallback"], "static");
    assert_eq!(
        search_calls(&h).await,
        calls,
        "nothing reached the broken downstream"
    );

    // Orders has its own breaker, slots and downstream.
    let order = job_of(&post(&h, "/relay/orders", r#"{"item":3}"#).await);
    h.wait_state(&order, "succeeded").await;

    let letters = h.get("/dlq").await.json();
    let routes: Vec<_> = letters["letters"]
        .as_array()
        .expect("letters")
        .iter()
        .map(|l| l["route"].as_str())
        .collect();
    assert_eq!(routes, [Some("search"), Some("search")], "{letters}");
    let stats = h.stats().await;
    assert_eq!(stats["routes"][1]["fallbacks_at_door"], 2, "{stats}");
    assert_eq!(stats["routes"][1]["fallbacks_after_failure"], 2, "{stats}");
    assert_eq!(stats["routes"][0]["dead_letters"], 0, "{stats}");
    assert_eq!(stats["routes"][1]["dead_letters"], 2, "{stats}");
    let metrics = String::from_utf8(h.get("/metrics").await.body.to_vec()).expect("text");
    assert!(metrics.contains("relay_fallbacks_total{route=\"search\",when=\"door\"} 2\n"));
    assert!(metrics.contains("relay_breaker_state{route=\"search\",state=\"open\"} 1\n"));
}

#[test]
fn a_server_route_that_names_no_relay_route_is_refused_with_the_names() {
    let text = r#"
[[relay.routes]]
name = "orders"

[[routes]]
name = "ordres"
"#;
    let s = Settings::from_toml(text, &[]).expect("parses");
    let e = s.validate().expect_err("no such route");
    assert_eq!(e.field, "routes[0].name");
    assert!(e.to_string().contains("orders"), "{e}");
}

#[test]
fn a_route_downstream_without_a_kind_is_the_built_in_one() {
    let text = r#"
[[relay.routes]]
name = "orders"

[[routes]]
name = "orders"
downstream = { failure_rate = 0.5 }
"#;
    let s = Settings::from_toml(text, &[]).expect("parses");
    s.validate().expect("valid");
    let d = s.routes[0].downstream.as_ref().expect("a downstream");
    assert!(
        matches!(d, resilient_relay::server::config::DownstreamConfig::Flaky(f) if f.failure_rate == 0.5),
        "{d:?}"
    );
}
