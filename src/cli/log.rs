//! `resilient-relay log`: refresh the decision log's generated numbers.

use crate::decision_log::refresh;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The decision log to refresh in place.
    #[arg(long, default_value = "LEARNING_PLAN.md")]
    pub file: PathBuf,
    /// Where the experiments wrote their results.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Do not write: fail if the log is not up to date.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: &LogArgs) -> anyhow::Result<()> {
    let doc = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let fresh = refresh(&doc, &args.results)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    if fresh == doc {
        eprintln!(
            "{} is up to date with {}",
            args.file.display(),
            args.results.display()
        );
        return Ok(());
    }
    anyhow::ensure!(
        !args.check,
        "{} quotes numbers that differ from {}; run `cargo run --release -- experiment all` (or `log`) and commit",
        args.file.display(),
        args.results.display()
    );
    std::fs::write(&args.file, fresh)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    eprintln!(
        "refreshed {} from {}",
        args.file.display(),
        args.results.display()
    );
    Ok(())
}
