//! `resilient-relay merge`: the shards of one search, finished as the whole
//! run would have finished it.

use crate::cli::swarm::{finish_search, Finish};
use crate::search::shard;
use crate::search::swarm::ROW_HEADER;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' directories, each written by a `--shard I/N` run of the
    /// same search (in any order).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the whole search's outputs go [default: where the unsharded
    /// search writes: results/swarm, results/map-<scenario>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &MergeArgs) -> anyhow::Result<()> {
    let (manifest, rows) = shard::merge(&args.dirs)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| match manifest.search.as_str() {
            "map" => crate::cli::map::default_out(
                manifest
                    .params
                    .get("origin")
                    .map_or("scenario", String::as_str),
            ),
            other => PathBuf::from("results").join(other),
        });
    println!(
        "merged {} shards of a {} search: {} runs",
        args.dirs.len(),
        manifest.search,
        manifest.runs
    );
    match manifest.search.as_str() {
        "swarm" => {
            anyhow::ensure!(
                rows.header == ROW_HEADER,
                "the shards' rows have columns {:?}, a swarm's are {ROW_HEADER:?}",
                rows.header
            );
            let finish = Finish::from_params(&manifest.params)
                .context("the shards' manifest does not describe a swarm")?;
            finish_search(&finish, &rows.records, &out)
        }
        "map" => {
            anyhow::ensure!(
                rows.header == crate::search::map::rows::HEADER,
                "the shards' rows have columns {:?}, a map's are {:?}",
                rows.header,
                crate::search::map::rows::HEADER
            );
            crate::cli::map::merge(&manifest.params, &rows.records, &out)
        }
        "tune" => crate::cli::tune::merge(&args.dirs, &manifest, &rows, &out),
        other => anyhow::bail!("this version cannot finish a `{other}` search"),
    }
}
