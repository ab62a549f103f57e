//! The `resilient-relay` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use resilient_relay::{cli, experiment};

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
    /// Run a named experiment: sweep parameters over many seeds, write CSVs and charts.
    Experiment(experiment::ExperimentArgs),
    /// Serve the relay over HTTP: the same state machines, on real time.
    Serve(resilient_relay::server::ServeArgs),
    /// Run a standalone flaky downstream service that counts side effects.
    Downstream(resilient_relay::server::DownstreamArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => cli::simulate::run(&args),
        Command::Experiment(args) => experiment::run(&args),
        Command::Serve(args) => resilient_relay::server::serve(&args),
        Command::Downstream(args) => resilient_relay::server::run_downstream(&args),
    }
}
