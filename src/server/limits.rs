//! Connection limits: how long a client may take, how much it may send
//! before a handler runs, and how many clients may be connected at once.
//!
//! Without them a client that connects and sends nothing, or a byte at a
//! time, holds a descriptor for as long as it likes; a few hundred such
//! clients exhaust the process's descriptors and the server stops
//! accepting anyone, `/health` included. Each limit here closes or refuses
//! what exceeds it, and every time one acts it is counted and logged
//! ([`super::limit_log`]). These are the `[server.limits]` settings.

use crate::relay::{ensure, ensure_ms, ConfigError};
use crate::time::ms_to_nanos;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[server.limits]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Time to receive a request's head (request line and headers),
    /// counted from when the connection starts waiting for one: it also
    /// bounds how long a new connection may send nothing and how long a
    /// keep-alive connection may sit idle between requests. The connection
    /// is closed without an answer.
    pub header_read_timeout_ms: f64,
    /// Time to receive a request's whole body, counted from when its head
    /// was read: 408 and the connection is closed.
    pub body_read_timeout_ms: f64,
    /// Keep connections open between requests.
    pub keep_alive: bool,
    /// Connections served at once; one more is accepted and closed at once.
    /// Unset: the descriptor limit (`RLIMIT_NOFILE`) less headroom for the
    /// server's own files and downstream calls, at most 10,000.
    pub connections_max: Option<usize>,
    /// Connections one peer address may hold open at once; one more from
    /// it is accepted and closed at once, while other peers are still
    /// served. Unset: no cap per peer (clients behind one proxy or NAT
    /// share an address, and the relay is the downstream's only peer).
    pub connections_per_peer_max: Option<usize>,
    /// Header fields in one request (431 beyond).
    pub headers_max: usize,
    /// Bytes of request line and header fields together (431 beyond).
    pub head_bytes_max: usize,
    /// Bytes of the request target, path and query (414 beyond).
    pub uri_bytes_max: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout_ms: 10_000.0,
            body_read_timeout_ms: 30_000.0,
            keep_alive: true,
            connections_max: None,
            connections_per_peer_max: None,
            headers_max: 64,
            head_bytes_max: 16 * 1024,
            uri_bytes_max: 8 * 1024,
        }
    }
}

/// The most connections derived from the descriptor limit.
pub const CONNECTIONS_DERIVED_MAX: usize = 10_000;
const CONNECTIONS_LIMIT: usize = 1_000_000;
const HEADERS_LIMIT: usize = 10_000;
/// hyper refuses longer targets itself (see [`HYPER_URI_BYTES_MAX`]).
const URI_BYTES_LIMIT: usize = 60 * 1024;
const HEAD_BYTES_LIMIT: usize = 1024 * 1024;
/// The longest request target hyper parses; beyond, it answers 414 itself.
pub const HYPER_URI_BYTES_MAX: usize = u16::MAX as usize - 1;

impl ConnectionLimits {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (ms, field) in [
            (self.header_read_timeout_ms, "header_read_timeout_ms"),
            (self.body_read_timeout_ms, "body_read_timeout_ms"),
        ] {
            ensure_ms(ms, field)?;
            ensure(
                (1.0..=3_600_000.0).contains(&ms),
                field,
                "must be between 1 ms and 1 hour",
            )?;
        }
        if let Some(n) = self.connections_max {
            within(n, 1, CONNECTIONS_LIMIT, "connections_max")?;
        }
        if let Some(n) = self.connections_per_peer_max {
            within(n, 1, CONNECTIONS_LIMIT, "connections_per_peer_max")?;
        }
        within(self.headers_max, 1, HEADERS_LIMIT, "headers_max")?;
        within(self.head_bytes_max, 256, HEAD_BYTES_LIMIT, "head_bytes_max")?;
        within(self.uri_bytes_max, 16, URI_BYTES_LIMIT, "uri_bytes_max")
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_nanos(ms_to_nanos(self.header_read_timeout_ms))
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_nanos(ms_to_nanos(self.body_read_timeout_ms))
    }

    /// `connections_max`, or derived from the process's descriptor limit.
    pub fn connections(&self) -> usize {
        self.connections_max
            .unwrap_or_else(|| connections_for(descriptor_limit()))
    }

    /// hyper's own ceiling on header fields, above ours so that our layer
    /// answers first (with a problem body); `None` keeps hyper's 100, which
    /// needs no allocation per request.
    pub fn hyper_headers_max(&self) -> Option<usize> {
        (self.headers_max >= 100).then_some(self.headers_max * 2)
    }

    /// hyper's own ceiling on a request head, four times ours.
    pub fn hyper_head_bytes_max(&self) -> usize {
        (self.head_bytes_max * 4).max(64 * 1024)
    }
}

fn within(v: usize, low: usize, high: usize, field: &str) -> Result<(), ConfigError> {
    ensure(
        (low..=high).contains(&v),
        field,
        format!("must be between {low} and {high}, got {v}"),
    )
}

/// Connections that fit in `soft` descriptors, keeping an eighth (at least
/// 64) for the listener, logs, downstream calls and accepts in progress.
/// Unknown limit: [`CONNECTIONS_DERIVED_MAX`].
pub fn connections_for(soft: Option<u64>) -> usize {
    let Some(soft) = soft else {
        return CONNECTIONS_DERIVED_MAX;
    };
    let headroom = (soft / 8).max(64);
    let n = if soft > 2 * headroom {
        soft - headroom
    } else {
        soft / 2
    };
    usize::try_from(n)
        .unwrap_or(usize::MAX)
        .clamp(1, CONNECTIONS_DERIVED_MAX)
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (no unsafe
/// call needed); `None` where that file does not exist or says `unlimited`.
fn descriptor_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    soft_open_files(&text)
}

fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        ConnectionLimits::default().validate().expect("valid");
        let bad = ConnectionLimits {
            connections_max: Some(0),
            ..ConnectionLimits::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "connections_max");
        let bad = ConnectionLimits {
            connections_per_peer_max: Some(0),
            ..ConnectionLimits::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().field,
            "connections_per_peer_max"
        );
        let bad = ConnectionLimits {
            header_read_timeout_ms: 0.0,
            ..ConnectionLimits::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "header_read_timeout_ms");
        let bad = ConnectionLimits {
            uri_bytes_max: 70_000,
            ..ConnectionLimits::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "uri_bytes_max");
    }

    #[test]
    fn connections_leave_headroom_under_the_descriptor_limit() {
        assert_eq!(connections_for(Some(256)), 192);
        assert_eq!(connections_for(Some(1024)), 896);
        assert_eq!(connections_for(Some(1 << 20)), CONNECTIONS_DERIVED_MAX);
        assert_eq!(connections_for(Some(100)), 50);
        assert_eq!(connections_for(Some(1)), 1);
        assert_eq!(connections_for(None), CONNECTIONS_DERIVED_MAX);
    }

    #[test]
    fn the_soft_descriptor_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max processes             63408                63408                processes\n\
                    Max open files            256                  524288               files\n";
        assert_eq!(soft_open_files(text), Some(256));
        assert_eq!(
            soft_open_files("Max open files  unlimited  unlimited  files\n"),
            None
        );
        assert_eq!(soft_open_files(""), None);
    }

    #[test]
    fn hyper_ceilings_stay_above_ours() {
        let l = ConnectionLimits::default();
        assert_eq!(l.hyper_headers_max(), None, "hyper's 100 > 64");
        assert!(l.hyper_head_bytes_max() > l.head_bytes_max);
        let many = ConnectionLimits {
            headers_max: 150,
            ..l
        };
        assert_eq!(many.hyper_headers_max(), Some(300));
    }
}
