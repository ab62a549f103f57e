//! The server's side of routes: `POST /relay/{name}` reaches the relay's
//! route of that name, each route calls a downstream of its own, and its
//! fallback cache knows a request by a part of it the settings name.
//!
//! The relay's `[[relay.routes]]` say how each route retries, breaks,
//! limits and falls back; `[[routes]]` (as in a scenario, where it names a
//! route's downstream model) says what only a server has: the route's
//! downstream (absent: `[downstream]`) and its cache key. Without
//! `[[relay.routes]]` there is one route, `default`, which `POST /relay`
//! reaches too.

use super::config::DownstreamConfig;
use super::http::fingerprint;
use crate::relay::{ensure, ConfigError, RelayConfig, RouteId};
use axum::http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The route a relay without `[[relay.routes]]` has.
pub const DEFAULT_ROUTE: &str = "default";

/// `[[routes]]`: what the server needs to know about one route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerRouteConfig {
    /// One of the relay's routes (`[[relay.routes]]`, or `default`).
    pub name: String,
    /// Whom this route calls; absent: `[downstream]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downstream: Option<DownstreamConfig>,
    /// What the route's fallback cache knows a request by.
    pub cache_key: CacheKey,
}

/// The part of a request that names it for the fallback cache: two
/// requests with the same key get each other's last good answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheKey {
    /// The whole body (`body`).
    #[default]
    Body,
    /// One value in the JSON body, by RFC 6901 pointer (`json:/user/id`);
    /// a body without it has no cached answer.
    Json(String),
    /// One request header (`header:x-user`); a request without it has no
    /// cached answer.
    Header(HeaderName),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a cache key: give `body`, `json:/pointer` (e.g. json:/query) \
     or `header:NAME` (e.g. header:x-user)"
)]
pub struct BadCacheKey(String);

impl FromStr for CacheKey {
    type Err = BadCacheKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCacheKey(s.to_owned());
        if s == "body" {
            Ok(CacheKey::Body)
        } else if let Some(pointer) = s.strip_prefix("json:") {
            // A pointer is empty (the whole document) or starts with '/'.
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(bad());
            }
            Ok(CacheKey::Json(pointer.to_owned()))
        } else if let Some(name) = s.strip_prefix("header:") {
            HeaderName::from_str(name)
                .map(CacheKey::Header)
                .map_err(|_| bad())
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheKey::Body => f.write_str("body"),
            CacheKey::Json(p) => write!(f, "json:{p}"),
            CacheKey::Header(h) => write!(f, "header:{h}"),
        }
    }
}

impl Serialize for CacheKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CacheKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl CacheKey {
    /// The request's cache key; `fingerprint` is the body's, already taken.
    pub fn of(&self, headers: &HeaderMap, body: &[u8], body_fingerprint: u64) -> Option<u64> {
        match self {
            CacheKey::Body => Some(body_fingerprint),
            CacheKey::Json(pointer) => {
                let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
                let value = doc.pointer(pointer)?;
                Some(fingerprint(value.to_string().as_bytes()))
            }
            CacheKey::Header(name) => {
                let mut values = headers.get_all(name).iter();
                let value = values.next()?;
                // Two of them name no one request: no cached answer.
                if values.next().is_some() {
                    return None;
                }
                Some(fingerprint(value.as_bytes()))
            }
        }
    }
}

/// The routes' names, in the relay's order (the first is the default).
pub fn route_names(relay: &RelayConfig) -> Vec<String> {
    if relay.routes.is_empty() {
        return vec![DEFAULT_ROUTE.to_owned()];
    }
    relay.routes.iter().map(|r| r.name.clone()).collect()
}

/// Checks that every `[[routes]]` names one of the relay's routes, once.
pub fn validate(routes: &[ServerRouteConfig], relay: &RelayConfig) -> Result<(), ConfigError> {
    let names = route_names(relay);
    for (i, route) in routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        let name = &route.name;
        ensure(
            names.contains(name),
            "name",
            format!(
                "`{name}` names no route: the relay's routes are {} (add it to \
                 [[relay.routes]], or fix the name)",
                names.join(", ")
            ),
        )
        .map_err(|e| e.within(&at))?;
        ensure(
            !routes[..i].iter().any(|r| r.name == *name),
            "name",
            format!("`{name}` is given twice: one [[routes]] per route"),
        )
        .map_err(|e| e.within(&at))?;
        if let Some(d) = &route.downstream {
            d.validate()
                .map_err(|e| e.within("downstream").within(&at))?;
        }
    }
    Ok(())
}

/// The routes as the HTTP layer and the actor see them: names for URLs,
/// metrics and views, and each route's cache key.
#[derive(Clone, Debug)]
pub struct RouteTable {
    names: Vec<Arc<str>>,
    cache_keys: Vec<CacheKey>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            names: vec![Arc::from(DEFAULT_ROUTE)],
            cache_keys: vec![CacheKey::Body],
        }
    }
}

impl RouteTable {
    pub fn new(relay: &RelayConfig, routes: &[ServerRouteConfig]) -> RouteTable {
        let names = route_names(relay);
        let cache_keys = names
            .iter()
            .map(|n| {
                let own = routes.iter().find(|r| r.name == *n);
                own.map(|r| r.cache_key.clone()).unwrap_or_default()
            })
            .collect();
        RouteTable {
            names: names.into_iter().map(Arc::from).collect(),
            cache_keys,
        }
    }

    /// The route called `name`.
    pub fn resolve(&self, name: &str) -> Option<RouteId> {
        let i = self.names.iter().position(|n| &**n == name)?;
        u16::try_from(i).ok().map(RouteId)
    }

    /// A route's name; a route the table does not have (which the relay
    /// never reports) is shown by number.
    pub fn name(&self, route: RouteId) -> Arc<str> {
        match self.names.get(route.index()) {
            Some(n) => n.clone(),
            None => Arc::from(format!("route-{}", route.0)),
        }
    }

    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    pub fn cache_key(&self, route: RouteId) -> &CacheKey {
        self.cache_keys
            .get(route.index())
            .unwrap_or(&CacheKey::Body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::RouteConfig;

    fn relay_with(names: &[&str]) -> RelayConfig {
        RelayConfig {
            routes: names
                .iter()
                .map(|n| RouteConfig {
                    name: (*n).to_owned(),
                    ..RouteConfig::default()
                })
                .collect(),
            ..RelayConfig::default()
        }
    }

    #[test]
    fn cache_keys_parse_and_print_back() {
        for text in ["body", "json:/user/id", "json:", "header:x-user"] {
            let key: CacheKey = text.parse().expect(text);
            assert_eq!(key.to_string(), text);
        }
        for bad in ["", "json:user", "header:", "header:bad name", "query:q"] {
            let e = bad.parse::<CacheKey>().expect_err(bad);
            assert!(e.to_string().contains("json:/pointer"), "{e}");
        }
    }

    #[test]
    fn a_json_key_names_requests_by_one_value_and_not_the_rest() {
        let key: CacheKey = "json:/q".parse().expect("parses");
        let h = HeaderMap::new();
        let of = |body: &str| key.of(&h, body.as_bytes(), fingerprint(body.as_bytes()));
        assert_eq!(
            of(r#"{"q":"cats","page":1}"#),
            of(r#"{"page":2, "q":"cats"}"#)
        );
        assert_ne!(of(r#"{"q":"cats"}"#), of(r#"{"q":"dogs"}"#));
        assert_eq!(of(r#"{"page":1}"#), None, "no value, no cached answer");
        let body = CacheKey::Body;
        let b = |s: &str| body.of(&h, s.as_bytes(), fingerprint(s.as_bytes()));
        assert_ne!(b(r#"{"q":"cats","page":1}"#), b(r#"{"q":"cats","page":2}"#));
    }

    #[test]
    fn a_header_key_takes_one_header_and_refuses_two() {
        let key: CacheKey = "header:x-user".parse().expect("parses");
        let mut h = HeaderMap::new();
        assert_eq!(key.of(&h, b"{}", 0), None);
        h.insert("x-user", "ann".parse().expect("value"));
        let ann = key.of(&h, b"{}", 0);
        assert!(ann.is_some());
        assert_eq!(key.of(&h, b"[1]", 1), ann, "the body does not matter");
        h.append("x-user", "bob".parse().expect("value"));
        assert_eq!(key.of(&h, b"{}", 0), None);
    }

    #[test]
    fn the_table_resolves_names_in_the_relays_order() {
        let table = RouteTable::new(&relay_with(&[]), &[]);
        assert_eq!(table.resolve("default"), Some(RouteId::DEFAULT));
        let routes = [ServerRouteConfig {
            name: "search".to_owned(),
            cache_key: "json:/q".parse().expect("parses"),
            ..ServerRouteConfig::default()
        }];
        let table = RouteTable::new(&relay_with(&["orders", "search"]), &routes);
        assert_eq!(table.resolve("orders"), Some(RouteId(0)));
        assert_eq!(table.resolve("search"), Some(RouteId(1)));
        assert_eq!(table.resolve("default"), None);
        assert_eq!(&*table.name(RouteId(1)), "search");
        assert_eq!(table.cache_key(RouteId(1)).to_string(), "json:/q");
        assert_eq!(table.cache_key(RouteId(0)), &CacheKey::Body);
    }

    #[test]
    fn a_server_route_must_name_a_relay_route_once() {
        let route = |name: &str| ServerRouteConfig {
            name: name.to_owned(),
            ..ServerRouteConfig::default()
        };
        let routes = [route("search"), route("serch")];
        let relay = relay_with(&["orders", "search"]);
        let e = validate(&routes, &relay).expect_err("unknown");
        assert_eq!(e.field, "routes[1].name");
        assert!(e.to_string().contains("orders, search"), "{e}");
        let e = validate(&[route("search"), route("search")], &relay).expect_err("twice");
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(validate(&routes[..1], &relay).is_ok());
    }
}
