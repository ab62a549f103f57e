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
    /// Draw many scenarios, check every invariant and liveness, shrink the failures.
    Swarm(cli::swarm::SwarmArgs),
    /// Merge the shards of a search (`swarm --shard I/N`) into the whole run's outputs.
    Merge(cli::merge::MergeArgs),
    /// Map where a scenario recovers from its trigger and where it stays down, over a few axes.
    Map(cli::map::MapArgs),
    /// Search a scenario's relay settings: the Pareto front, and the recommendation with its margin to the cliff.
    Tune(cli::tune::TuneArgs),
    /// Refresh the numbers LEARNING_PLAN.md quotes from results/ (or check them with --check).
    Log(cli::log::LogArgs),
    /// Run a standard workload (relay-std, relay-ovl, relay-scale) and print one JSON line of timings.
    Bench(cli::bench::BenchArgs),
    /// Run a named experiment: sweep parameters over many seeds, write CSVs and charts.
    Experiment(experiment::ExperimentArgs),
    /// Serve the relay over HTTP: the same state machines, on real time.
    #[command(after_help = SERVE_EXIT_CODES)]
    Serve(Box<resilient_relay::server::ServeArgs>),
    /// Run a standalone flaky downstream service that counts side effects.
    Downstream(resilient_relay::server::DownstreamArgs),
    /// Play a scenario's clients in real time against a live relay.
    Loadgen(Box<cli::loadgen::LoadgenArgs>),
    /// Run one scenario both simulated and live, and print them side by side.
    Compare(cli::compare::CompareArgs),
}

/// `serve --help`'s last paragraph.
const SERVE_EXIT_CODES: &str = "\
Exit codes:
  0  stopped cleanly: every accepted job finished, no dead letter left
  1  error (bad settings, cannot listen, the relay's task failed)
  2  bad command line
  3  the drain deadline passed with accepted jobs unfinished (logged; kept by a durable store)
  4  every job finished, but dead letters were left (logged; lost with --store memory)
On SIGTERM or Ctrl-C the process exits within --drain-deadline-ms plus
about half a second, whatever its connections are doing.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = |r: anyhow::Result<()>| r.map(|()| 0);
    let result = match cli.command {
        Command::Simulate(args) => done(cli::simulate::run(&args)),
        Command::Swarm(args) => done(cli::swarm::run(&args)),
        Command::Merge(args) => done(cli::merge::run(&args)),
        Command::Map(args) => done(cli::map::run(&args)),
        Command::Tune(args) => done(cli::tune::run(&args)),
        Command::Bench(args) => done(cli::bench::run(&args)),
        Command::Log(args) => done(cli::log::run(&args)),
        Command::Experiment(args) => done(experiment::run(&args)),
        Command::Serve(args) => resilient_relay::server::serve(&args).map(|o| o.code()),
        Command::Downstream(args) => done(resilient_relay::server::run_downstream(&args)),
        Command::Loadgen(args) => done(cli::loadgen::run(&args)),
        Command::Compare(args) => done(cli::compare::run(&args)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
