//! `cargo run --release --bin bench_http`: the relay server's accept-path
//! and overload benchmark (loopback only, bounded in time).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = resilient_relay::server::bench::BenchArgs::parse();
    resilient_relay::server::bench::run(&args)
}
