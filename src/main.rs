//! The `resilient-relay` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use resilient_relay::{cli, experiment, server};

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
    Serve(server::ServeArgs),
    /// Run a standalone flaky downstream service that counts side effects.
    Downstream(server::DownstreamArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => cli::simulate::run(&args),
        Command::Experiment(args) => experiment::run(&args),
        Command::Serve(args) => server::serve(&args),
        Command::Downstream(args) => server::run_downstream(&args),
    }
}
