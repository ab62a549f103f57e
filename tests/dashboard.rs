//! `dashboards/relay.json`, the Grafana dashboard for `GET /metrics`, kept
//! true to the server: its panels are well formed and laid out without
//! overlap, its per-relay queries group by `route`, and every metric it
//! queries is one a real server exports.

mod common;

use common::{job_of, settings, Harness};
use resilient_relay::relay::BreakerConfig;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/relay.json");

/// Metrics the server exports per route, under a `route` label: their
/// selectors must follow the `$route` variable.
const PER_ROUTE: [&str; 13] = [
    "relay_requests_total",
    "relay_accepted_total",
    "relay_refused_total",
    "relay_attempts_total",
    "relay_attempt_errors_total",
    "relay_succeeded_total",
    "relay_dead_lettered_total",
    "relay_job_latency_seconds",
    "relay_breaker_state",
    "relay_queue_depth",
    "relay_queue_capacity",
    "relay_in_flight",
    "relay_route_slots",
];

/// Grafana's grid is 24 columns wide.
const GRID_COLUMNS: u64 = 24;

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD).expect("dashboards/relay.json is readable");
    serde_json::from_str(&text).expect("dashboards/relay.json is JSON")
}

/// Every panel, those inside collapsed rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in d["panels"].as_array().expect("a panels array") {
        all.push(p);
        if let Some(inner) = p["panels"].as_array() {
            all.extend(inner);
        }
    }
    all
}

fn is_row(p: &Value) -> bool {
    p["type"] == "row"
}

fn title(p: &Value) -> &str {
    p["title"].as_str().unwrap_or("<untitled>")
}

/// `(panel title, expr)` of every query, panels and template variables.
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d).into_iter().filter(|p| !is_row(p)) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((title(p).to_owned(), e.to_owned()));
            }
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().or(v["query"].as_str());
            let name = format!("variable ${}", v["name"].as_str().unwrap_or("?"));
            out.push((name, q.unwrap_or_default().to_owned()));
        }
    }
    out
}

/// A metric named in an expression, and the matchers of its selector (the
/// text between `{` and `}` right after it, empty when there are none).
#[derive(Debug, PartialEq)]
struct Selector {
    metric: String,
    matchers: String,
}

/// The `relay_*` identifiers of a PromQL expression, skipping string
/// literals (label values) and Grafana's `$variables`.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if ident(c) && !c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let variable = start > 0 && chars[start - 1] == '$';
            if word.starts_with("relay_") && !variable {
                let matchers = matchers_after(&chars, i);
                out.push(Selector {
                    metric: word,
                    matchers,
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The index just past the string literal opening at `open`.
fn skip_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' && quote != '`' {
            2
        } else {
            1
        };
    }
    i + 1
}

/// The matchers of a `{…}` starting at `at` (after spaces), or "".
fn matchers_after(chars: &[char], at: usize) -> String {
    let mut i = at;
    while i < chars.len() && chars[i] == ' ' {
        i += 1;
    }
    if chars.get(i) != Some(&'{') {
        return String::new();
    }
    let start = i + 1;
    i = start;
    while i < chars.len() && chars[i] != '}' {
        i = if chars[i] == '"' {
            skip_string(chars, i)
        } else {
            i + 1
        };
    }
    chars[start..i.min(chars.len())].iter().collect()
}

/// `name -> kind` from the `# TYPE` lines of an exposition.
fn exported_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// The exported metric a sample name belongs to: itself, or the histogram
/// or summary it is the `_bucket` (histogram only), `_sum` or `_count` of.
fn family<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for (suffix, kinds) in [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|k| kinds.contains(&k.as_str())) {
                return Some(base);
            }
        }
    }
    None
}

#[test]
fn the_tokenizer_finds_metrics_and_their_matchers_but_not_label_values() {
    let expr = r#"sum by (route) (rate(relay_job_latency_seconds_sum{route=~"$route", x="relay_not}_a_metric"}[$__rate_interval])) / relay_workers"#;
    assert_eq!(
        selectors(expr),
        [
            Selector {
                metric: "relay_job_latency_seconds_sum".into(),
                matchers: r#"route=~"$route", x="relay_not}_a_metric""#.into(),
            },
            Selector {
                metric: "relay_workers".into(),
                matchers: String::new(),
            },
        ]
    );
    let types =
        exported_types("# TYPE relay_job_latency_seconds summary\n# TYPE relay_workers gauge\n");
    let job = Some("relay_job_latency_seconds");
    assert_eq!(family("relay_job_latency_seconds_count", &types), job);
    assert_eq!(family("relay_job_latency_seconds_bucket", &types), None);
    assert_eq!(family("relay_workers_sum", &types), None);
}

#[test]
fn every_panel_has_a_title_a_type_a_datasource_and_queries() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64() >= Some(36), "a current schema");
    let mut queried = 0;
    for p in panels(&d) {
        let name = title(p);
        assert!(
            p["title"].as_str().is_some_and(|t| !t.is_empty()),
            "a panel without a title: {p}"
        );
        assert!(
            p["type"].as_str().is_some_and(|t| !t.is_empty()),
            "panel {name:?} has no type"
        );
        if is_row(p) {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {name:?} does not use the $datasource variable"
        );
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {name:?} has no targets");
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "panel {name:?} has a target without an expr: {t}"
            );
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "a target of panel {name:?} does not use the $datasource variable"
            );
            queried += 1;
        }
    }
    assert!(queried > 0, "the dashboard queries nothing");
}

#[test]
fn panel_ids_are_unique_and_panels_do_not_overlap() {
    let d = dashboard();
    let all = panels(&d);
    let mut ids = BTreeMap::new();
    for p in &all {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {:?} has no id", title(p)));
        if let Some(other) = ids.insert(id, title(p)) {
            panic!("panels {other:?} and {:?} share id {id}", title(p));
        }
    }
    let rect = |p: &Value| {
        let g = &p["gridPos"];
        let n = |k: &str| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("panel {:?} has no gridPos.{k}", title(p)))
        };
        (n("x"), n("y"), n("w"), n("h"))
    };
    for (i, a) in all.iter().enumerate() {
        let (ax, ay, aw, ah) = rect(a);
        assert!(aw > 0 && ah > 0, "panel {:?} has no area", title(a));
        assert!(
            ax + aw <= GRID_COLUMNS,
            "panel {:?} overflows the grid",
            title(a)
        );
        for b in &all[i + 1..] {
            let (bx, by, bw, bh) = rect(b);
            let apart = ax + aw <= bx || bx + bw <= ax || ay + ah <= by || by + bh <= ay;
            assert!(apart, "panels {:?} and {:?} overlap", title(a), title(b));
        }
    }
}

#[test]
fn per_relay_queries_group_by_route_and_follow_the_route_variable() {
    let d = dashboard();
    let vars = d["templating"]["list"]
        .as_array()
        .expect("template variables");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let route = var("route");
    assert_eq!(
        route["query"]["query"],
        "label_values(relay_requests_total, route)"
    );
    assert_eq!(route["includeAll"], true);
    // "All" must still match the relay-wide series, which have no route.
    assert_eq!(route["allValue"], ".*", "All must match an absent label");
    for p in panels(&d).into_iter().filter(|p| !is_row(p)) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            let at = format!("panel {:?}, expr {expr}", title(p));
            assert!(expr.contains("by (route"), "not grouped by route: {at}");
            let legend = t["legendFormat"].as_str().unwrap_or_default();
            assert!(
                legend.contains("{{route}}"),
                "legend without {{{{route}}}}: {at}"
            );
            for s in selectors(expr) {
                let base = PER_ROUTE.iter().any(|m| s.metric.starts_with(m));
                assert!(
                    !base || s.matchers.contains(r#"route=~"$route""#),
                    "{} does not follow $route: {at}",
                    s.metric
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported() {
    let mut s = settings();
    s.relay.breaker = Some(BreakerConfig::default());
    let h = Harness::start(s).await;
    let first = h.relay(Some("dashboard-1"), r#"{"n": 1}"#).await;
    let job = job_of(&first);
    h.wait_state(&job, "succeeded").await;
    let again = h.relay(Some("dashboard-1"), r#"{"n": 1}"#).await;
    assert_eq!(again.status, 200, "a replay");
    let other = job_of(&h.relay(None, r#"{"n": 2}"#).await);
    h.wait_state(&other, "succeeded").await;

    let reply = h.get("/metrics").await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let types = exported_types(&text);
    let mut used = BTreeSet::new();
    for (panel, expr) in queries(&dashboard()) {
        for s in selectors(&expr) {
            assert!(
                family(&s.metric, &types).is_some(),
                "panel {panel:?} queries {}, which /metrics does not export \
                 (no `# TYPE` line for it or its histogram/summary): {expr}",
                s.metric
            );
            used.insert(s.metric);
        }
    }
    assert!(
        used.len() >= 20,
        "the dashboard queries few metrics: {used:?}"
    );
    // What the dashboard takes as per route is per route, and only that.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let metric = line.split(['{', ' ']).next().unwrap_or_default();
        let labelled = line.contains("route=\"default\"");
        let per_route = PER_ROUTE.iter().any(|m| metric.starts_with(m))
            || metric.starts_with("relay_retry_lane")
            || metric.starts_with("relay_dlq_size")
            || metric.starts_with("relay_fallback");
        assert_eq!(labelled, per_route, "{line}");
    }
}
