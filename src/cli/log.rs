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
    if args.check {
        let (line, marker) = first_stale(&doc, &fresh);
        anyhow::bail!(
            "{}:{line}: {marker} quotes numbers that differ from {}; run `cargo run --release -- experiment all` (or `log`) and commit",
            args.file.display(),
            args.results.display()
        );
    }
    std::fs::write(&args.file, fresh)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    eprintln!(
        "refreshed {} from {}",
        args.file.display(),
        args.results.display()
    );
    Ok(())
}

/// The first line where `doc` and `fresh` differ, and the marker that
/// generates it: the value marker on that line, or the include block it
/// sits in.
fn first_stale(doc: &str, fresh: &str) -> (usize, String) {
    let old: Vec<&str> = doc.lines().collect();
    let new: Vec<&str> = fresh.lines().collect();
    let at = (0..old.len().max(new.len()))
        .find(|&i| old.get(i) != new.get(i))
        .unwrap_or(0);
    let marker = |line: &str, open: &str| {
        line.find(open).map(|start| {
            let rest = &line[start..];
            rest.find("-->")
                .map_or(rest, |end| &rest[..end + 3])
                .to_string()
        })
    };
    if let Some(m) = old.get(at).and_then(|l| marker(l, "<!-- value:")) {
        return (at + 1, m);
    }
    let block = old[..at.min(old.len())]
        .iter()
        .enumerate()
        .rev()
        .take_while(|(_, l)| !l.contains("<!-- /include -->"))
        .find_map(|(i, l)| marker(l, "<!-- include:").map(|m| (i + 1, m)));
    block.unwrap_or((at + 1, "this line".to_string()))
}

#[cfg(test)]
mod tests {
    use super::first_stale;

    #[test]
    fn the_stale_marker_is_named_with_its_line() {
        let doc = "a\nsaw <!-- value: x.csv | k=1 | c -->1<!-- /value --> calls\nb\n";
        let fresh = "a\nsaw <!-- value: x.csv | k=1 | c -->2<!-- /value --> calls\nb\n";
        assert_eq!(
            first_stale(doc, fresh),
            (2, "<!-- value: x.csv | k=1 | c -->".to_string())
        );
        let doc = "a\n<!-- include: q/summary.md#T -->\nold\nold\n<!-- /include -->\n";
        let fresh = "a\n<!-- include: q/summary.md#T -->\nold\nnew\n<!-- /include -->\n";
        assert_eq!(
            first_stale(doc, fresh),
            (2, "<!-- include: q/summary.md#T -->".to_string())
        );
    }
}
