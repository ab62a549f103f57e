//! Structured logs: `tracing` to stderr, filtered by `RUST_LOG`.
//!
//! Every line a request causes is written inside that request's span, so
//! it carries the request's correlation id; lines about a job the relay is
//! working on carry the id of the request that created it.

use std::io::IsTerminal;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the subscriber once; later calls (tests) do nothing.
/// `RUST_LOG` takes `level` or `target=level,…` directives (default
/// `info`); `LOG_FORMAT=json` writes one JSON object per line, for log
/// collectors, instead of `key=value` text.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry.with(fmt.json()).try_init()
    } else {
        registry
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .try_init()
    };
}
