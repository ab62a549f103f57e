//! The `resilient-relay` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use resilient_relay::{cli, experiment};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "resilient-relay", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario on virtual time and print what happened.
    Simulate(cli::simulate::SimulateArgs),
    /// Refresh the numbers LEARNING_PLAN.md quotes from results/ (or check them with --check).
    Log(cli::log::LogArgs),
    /// Run a standard workload (relay-std, relay-ovl, relay-scale) and print one JSON line of timings.
    Bench(cli::bench::BenchArgs),
    /// Run a named experiment: sweep parameters over many seeds, write CSVs and charts.
    Experiment(experiment::ExperimentArgs),
    /// Serve the relay over HTTP: the same state machines, on real time.
    Serve(resilient_relay::server::ServeArgs),
    /// Run a standalone flaky downstream service that counts side effects.
    Downstream(resilient_relay::server::DownstreamArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => cli::simulate::run(&args),
        Command::Bench(args) => cli::bench::run(&args),
        Command::Log(args) => cli::log::run(&args),
        Command::Experiment(args) => experiment::run(&args),
        Command::Serve(args) => resilient_relay::server::serve(&args),
        Command::Downstream(args) => resilient_relay::server::run_downstream(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
