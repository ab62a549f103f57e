//! `cargo run --bin compare_bench`: `compare` on the standard scenarios,
//! simulated against live, each figure judged (loopback only, bounded in time).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = resilient_relay::loadgen::bench::BenchArgs::parse();
    resilient_relay::loadgen::bench::run(&args)
}
