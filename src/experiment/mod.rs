//! Parameter sweeps over many seeds: CSVs, charts and summaries.

pub mod seeds;
pub mod stats;
pub mod table;

/// Arguments of `resilient-relay experiment …`.
#[derive(Debug, clap::Args)]
pub struct ExperimentArgs {
    /// Which experiment to run (`list` shows them).
    pub name: String,
}

/// Runs the `experiment` subcommand.
pub fn run(args: &ExperimentArgs) -> anyhow::Result<()> {
    anyhow::bail!("experiment `{}` is not available yet", args.name)
}
