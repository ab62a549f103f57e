//! What the connection limits did: a counter per limit, and a log line
//! per limit at most once an interval.
//!
//! A limit acts when someone is misbehaving or the server is overrun, which
//! is exactly when one log line per event would flood the logs; silence is
//! worse (an operator cannot tell a cap from an outage). So each limit logs
//! its first action at once, then at most once per [`LOG_INTERVAL`] with
//! the count since the last line and the total. The counters are shared
//! with whatever shows them (`RelayServer::listener_stats`).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// At most one line per limit per interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One limit: how often it acted, and when it may log next.
#[derive(Debug, Default)]
pub struct Acted {
    total: AtomicU64,
    /// `total` when the last line was written.
    logged: AtomicU64,
    /// Milliseconds since [`ListenerStats::started`] before which no line
    /// is written (0: not yet logged).
    quiet_until_ms: AtomicU64,
}

impl Acted {
    /// Counts one action; `Some((since_last_line, total))` when a line is due.
    /// Lock-free, so connections share one; the relay's task uses it too.
    pub fn note(&self, now_ms: u64, interval_ms: u64) -> Option<(u64, u64)> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let quiet = self.quiet_until_ms.load(Ordering::Relaxed);
        if now_ms < quiet {
            return None;
        }
        let next = now_ms.saturating_add(interval_ms).max(1);
        self.quiet_until_ms
            .compare_exchange(quiet, next, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let before = self.logged.swap(total, Ordering::Relaxed);
        Some((total.saturating_sub(before), total))
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The listener's counters, shared by its connections.
#[derive(Debug)]
pub struct ListenerStats {
    started: Instant,
    /// Connections being served now.
    pub open: AtomicU64,
    pub refused: Acted,
    /// Connections closed at once: their peer held its share already.
    pub peer_refused: Acted,
    pub accept_errors: Acted,
    pub header_timeouts: Acted,
    pub idle_timeouts: Acted,
    pub body_timeouts: Acted,
    pub head_too_large: Acted,
    pub uri_too_long: Acted,
    pub body_too_large: Acted,
}

/// Which limit acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Connection cap reached: a new connection was closed at once.
    Refused,
    /// Per-peer cap reached: that peer's new connection was closed at once.
    PeerRefused,
    /// `accept` failed (out of descriptors, most often).
    AcceptError,
    HeaderTimeout,
    IdleTimeout,
    BodyTimeout,
    HeadTooLarge,
    UriTooLong,
    BodyTooLarge,
}

impl Limit {
    fn what(self) -> &'static str {
        match self {
            Limit::Refused => "connection cap reached: new connections closed at once",
            Limit::PeerRefused => {
                "per-peer connection cap reached: that peer's new connections closed at once"
            }
            Limit::AcceptError => "cannot accept connections",
            Limit::HeaderTimeout => "connections closed: first request head not received in time",
            Limit::IdleTimeout => {
                "keep-alive connections closed: idle, or the next head not received in time"
            }
            Limit::BodyTimeout => "requests answered 408: body not received in time",
            Limit::HeadTooLarge => "requests answered 431: too many or too large header fields",
            Limit::UriTooLong => "requests answered 414: request target too long",
            Limit::BodyTooLarge => {
                "requests answered 413 before reading: Content-Length over the body limit"
            }
        }
    }
}

/// A copy of the counters, for `/stats` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListenerSnapshot {
    pub open: u64,
    pub refused: u64,
    pub peer_refused: u64,
    pub accept_errors: u64,
    pub header_timeouts: u64,
    pub idle_timeouts: u64,
    pub body_timeouts: u64,
    pub head_too_large: u64,
    pub uri_too_long: u64,
    pub body_too_large: u64,
}

impl Default for ListenerStats {
    fn default() -> Self {
        ListenerStats {
            started: Instant::now(),
            open: AtomicU64::new(0),
            refused: Acted::default(),
            peer_refused: Acted::default(),
            accept_errors: Acted::default(),
            header_timeouts: Acted::default(),
            idle_timeouts: Acted::default(),
            body_timeouts: Acted::default(),
            head_too_large: Acted::default(),
            uri_too_long: Acted::default(),
            body_too_large: Acted::default(),
        }
    }
}

impl ListenerStats {
    fn acted(&self, limit: Limit) -> &Acted {
        match limit {
            Limit::Refused => &self.refused,
            Limit::PeerRefused => &self.peer_refused,
            Limit::AcceptError => &self.accept_errors,
            Limit::HeaderTimeout => &self.header_timeouts,
            Limit::IdleTimeout => &self.idle_timeouts,
            Limit::BodyTimeout => &self.body_timeouts,
            Limit::HeadTooLarge => &self.head_too_large,
            Limit::UriTooLong => &self.uri_too_long,
            Limit::BodyTooLarge => &self.body_too_large,
        }
    }

    /// Counts that `limit` acted, and logs it if its interval has passed.
    pub fn note(&self, limit: Limit, detail: &dyn std::fmt::Display) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let interval_ms = LOG_INTERVAL.as_millis() as u64;
        if let Some((since, total)) = self.acted(limit).note(now_ms, interval_ms) {
            tracing::warn!(
                since_last_line = since,
                total,
                open = self.open.load(Ordering::Relaxed),
                last = %detail,
                "{}",
                limit.what()
            );
        }
    }

    pub fn snapshot(&self) -> ListenerSnapshot {
        ListenerSnapshot {
            open: self.open.load(Ordering::Relaxed),
            refused: self.refused.total(),
            peer_refused: self.peer_refused.total(),
            accept_errors: self.accept_errors.total(),
            header_timeouts: self.header_timeouts.total(),
            idle_timeouts: self.idle_timeouts.total(),
            body_timeouts: self.body_timeouts.total(),
            head_too_large: self.head_too_large.total(),
            uri_too_long: self.uri_too_long.total(),
            body_too_large: self.body_too_large.total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_since_the_last() {
        let a = Acted::default();
        assert_eq!(
            a.note(0, 10_000),
            Some((1, 1)),
            "the first is logged at once"
        );
        assert!((1..500).all(|t| a.note(t, 10_000).is_none()));
        assert_eq!(a.note(9_999, 10_000), None);
        assert_eq!(a.note(10_000, 10_000), Some((501, 502)));
        assert_eq!(a.note(10_001, 10_000), None);
        assert_eq!(a.note(25_000, 10_000), Some((2, 504)));
        assert_eq!(a.total(), 504);
    }

    #[test]
    fn each_limit_has_its_own_counter() {
        let s = ListenerStats::default();
        s.note(Limit::Refused, &"x");
        s.note(Limit::Refused, &"x");
        s.note(Limit::BodyTimeout, &"y");
        let snap = s.snapshot();
        assert_eq!(
            (snap.refused, snap.body_timeouts, snap.header_timeouts),
            (2, 1, 0)
        );
    }
}
