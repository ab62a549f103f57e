//! A search in stages, each stage's runs independent, each stage chosen
//! from the results of the ones before (successive halving is one).
//!
//! Such a search cannot be cut into shards once and for all, but each of
//! its stages can. [`Stages::run`] stands where the search would call its
//! sweep: stages already recorded are answered from their rows without a
//! run, the first stage that is not is run (all of it, or one shard's
//! share) and recorded, and a sharded search then stops with
//! [`Halt::Paused`]. Merging the shards of that stage and running again
//! replays every recorded stage and goes one stage further, until the
//! search finishes.
//!
//! Every result goes through its row even in an unsharded run, so the
//! numbers a whole run and a merge of shards compute from are the same
//! bits: their outputs are the same bytes.

use super::shard::{self, Manifest, Rows, Shard, ShardError};
use crate::experiment::seeds::SeedSet;
use crate::experiment::sweep::{Sweep, Trial};
use crate::rng::Seed;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a search stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Halt {
    /// A shard ran its share of stage `stage` (counted from 0); the stage
    /// must be merged before the search goes on.
    #[error("stage {} is run by shards: merge them, then resume", .stage + 1)]
    Paused { stage: usize },
    /// The recorded rows do not fit the search that replays them.
    #[error("{0}")]
    Mismatch(String),
}

/// One stage's rows: one per task (point-major, then seed), as JSON.
pub type StageRows = Vec<(usize, String)>;

/// The stages of one search: recorded, then run.
pub struct Stages<'a> {
    sweep: &'a Sweep,
    shard: Shard,
    /// Whether a stage not recorded may run at all (a merge only replays).
    may_run: bool,
    /// Each recorded stage's rows, complete and in task order.
    recorded: Vec<Vec<String>>,
    /// Stages asked for so far.
    asked: usize,
    /// The stage this shard ran: its index, task count and rows.
    ran: Option<(usize, usize, StageRows)>,
}

impl<'a> Stages<'a> {
    /// A whole search, run from its first stage.
    pub fn whole(sweep: &'a Sweep) -> Stages<'a> {
        Stages::resume(sweep, Shard::WHOLE, Vec::new())
    }

    /// A search whose first `recorded.len()` stages are recorded; the next
    /// is run by `shard`.
    pub fn resume(sweep: &'a Sweep, shard: Shard, recorded: Vec<Vec<String>>) -> Stages<'a> {
        Stages {
            sweep,
            shard,
            may_run: true,
            recorded,
            asked: 0,
            ran: None,
        }
    }

    /// A search replayed from its recorded stages only: the first stage
    /// not recorded pauses it.
    pub fn replay(sweep: &'a Sweep, recorded: Vec<Vec<String>>) -> Stages<'a> {
        Stages {
            may_run: false,
            ..Stages::resume(sweep, Shard::WHOLE, recorded)
        }
    }

    /// The stage this shard ran (index, tasks in the stage, its rows).
    pub fn ran(&self) -> Option<&(usize, usize, StageRows)> {
        self.ran.as_ref()
    }

    /// Stages recorded or run so far, in order, complete (an unsharded
    /// run's own stages included).
    pub fn recorded(&self) -> &[Vec<String>] {
        &self.recorded
    }

    /// Runs `points` × `seeds` as [`Sweep::run`] does, or answers them
    /// from the record: trials in (point, seed) order.
    pub fn run<P, R, F>(
        &mut self,
        label: &str,
        points: &[P],
        seeds: &SeedSet,
        run: F,
    ) -> Result<Vec<Trial<R>>, Halt>
    where
        P: Sync,
        R: Serialize + DeserializeOwned + Send,
        F: Fn(&P, Seed) -> R + Sync,
    {
        let stage = self.asked;
        self.asked += 1;
        let per_point = seeds.count as usize;
        let tasks = points.len() * per_point;
        if stage >= self.recorded.len() {
            if !self.may_run {
                return Err(Halt::Paused { stage });
            }
            let owned: Vec<(usize, u64)> = (0..tasks)
                .filter(|&j| self.shard.owns(j as u64))
                .map(|j| {
                    (
                        j / per_point,
                        seeds.first.wrapping_add((j % per_point) as u64),
                    )
                })
                .collect();
            let once = SeedSet { first: 0, count: 1 };
            let trials = self.sweep.run(label, &owned, &once, |&(p, seed), _| {
                run(&points[p], Seed(seed))
            });
            let rows: StageRows = trials
                .into_iter()
                .map(|t| {
                    let (p, seed) = owned[t.point];
                    let j = p * per_point + seed.wrapping_sub(seeds.first) as usize;
                    (j, to_row(&t.result))
                })
                .collect();
            if self.shard != Shard::WHOLE {
                self.ran = Some((stage, tasks, rows));
                return Err(Halt::Paused { stage });
            }
            self.recorded
                .push(rows.into_iter().map(|(_, r)| r).collect());
        }
        let rows = &self.recorded[stage];
        if rows.len() != tasks {
            return Err(Halt::Mismatch(format!(
                "stage {} has {} recorded runs, the search asks for {tasks}: \
                 were the shards run with other settings or another version?",
                stage + 1,
                rows.len()
            )));
        }
        rows.iter()
            .enumerate()
            .map(|(j, row)| {
                let result = serde_json::from_str(row)
                    .map_err(|e| Halt::Mismatch(format!("stage {}, run {j}: {e}", stage + 1)))?;
                Ok(Trial {
                    point: j / per_point,
                    seed: seeds.first.wrapping_add((j % per_point) as u64),
                    result,
                })
            })
            .collect()
    }
}

/// Everything that decides a staged search, as text.
pub type Params = BTreeMap<String, String>;

/// Where a stage's shard keeps the state it resumed from.
pub const PRIOR: &str = "prior";

/// A stage shard's rows: the task, then its result.
const STAGE_HEADER: [&str; 2] = ["run", "result"];
/// A state's rows: an index, the stage, then the result.
const STATE_HEADER: [&str; 3] = ["run", "stage", "result"];

/// The name a search's state is written under: `tune-state` for `tune`.
pub fn state_name(search: &str) -> String {
    format!("{search}-state")
}

fn with(params: &Params, key: &str, value: usize) -> Params {
    let mut p = params.clone();
    p.insert(key.into(), value.to_string());
    p
}

/// Writes the stage this shard ran into `dir` (rows and manifest, as any
/// shard), with a copy of the state it resumed from in `dir/prior`.
pub fn write_shard(
    dir: &Path,
    search: &str,
    params: &Params,
    shard: Shard,
    stages: &Stages,
) -> Result<(), ShardError> {
    let Some((stage, tasks, rows)) = stages.ran() else {
        return Err(ShardError::Mismatch("this shard ran no stage".into()));
    };
    let manifest = Manifest {
        search: search.into(),
        params: with(params, "stage", *stage),
        runs: *tasks as u64,
        shard: shard.index,
        shards: shard.count,
        rows: rows.len() as u64,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let records = rows.iter().map(|(j, r)| vec![j.to_string(), r.clone()]);
    let rows = Rows {
        header: STAGE_HEADER.iter().map(|h| h.to_string()).collect(),
        records: records.collect(),
    };
    shard::write(dir, &manifest, &rows)?;
    let prior = dir.join(PRIOR);
    if prior.exists() {
        std::fs::remove_dir_all(&prior).map_err(|e| ShardError::Io {
            path: prior.clone(),
            message: e.to_string(),
        })?;
    }
    if *stage > 0 {
        write_state(&prior, search, params, &stages.recorded()[..*stage])?;
    }
    Ok(())
}

/// Writes every recorded stage into `dir` as one state, which
/// `read_state` reads back.
pub fn write_state(
    dir: &Path,
    search: &str,
    params: &Params,
    recorded: &[Vec<String>],
) -> Result<(), ShardError> {
    let records: Vec<Vec<String>> = recorded
        .iter()
        .enumerate()
        .flat_map(|(k, rows)| rows.iter().map(move |r| (k, r)))
        .enumerate()
        .map(|(i, (k, r))| vec![i.to_string(), k.to_string(), r.clone()])
        .collect();
    let manifest = Manifest {
        search: state_name(search),
        params: with(params, "stages", recorded.len()),
        runs: records.len() as u64,
        shard: 1,
        shards: 1,
        rows: records.len() as u64,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let header = STATE_HEADER.iter().map(|h| h.to_string()).collect();
    shard::write(dir, &manifest, &Rows { header, records })
}

/// The recorded stages of the state in `dir`, which must be of `search`
/// with `params`.
pub fn read_state(
    dir: &Path,
    search: &str,
    params: &Params,
) -> Result<Vec<Vec<String>>, ShardError> {
    let (manifest, rows) = shard::merge(&[dir.to_path_buf()])?;
    let mismatch = |what: &str| {
        ShardError::Mismatch(format!(
            "{} is not a state of this search: {what}",
            dir.display()
        ))
    };
    if manifest.search != state_name(search) || rows.header != STATE_HEADER {
        return Err(mismatch(&format!("it holds a `{}`", manifest.search)));
    }
    let mut theirs = manifest.params.clone();
    let stages: usize = theirs
        .remove("stages")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| mismatch("it does not say how many stages it holds"))?;
    if &theirs != params {
        let differ: Vec<&String> = params
            .keys()
            .chain(theirs.keys())
            .filter(|k| params.get(*k) != theirs.get(*k))
            .collect();
        return Err(mismatch(&format!("its settings differ in {differ:?}")));
    }
    let mut recorded = vec![Vec::new(); stages];
    for r in rows.records {
        let stage: usize = r[1].parse().map_err(|_| mismatch("a row has no stage"))?;
        let rows = recorded
            .get_mut(stage)
            .ok_or_else(|| mismatch("a row's stage is out of range"))?;
        rows.push(r[2].clone());
    }
    Ok(recorded)
}

/// The shards of one stage, merged onto the state they resumed from: the
/// search's params and every recorded stage, the merged one last.
pub fn merge_stage(
    search: &str,
    dirs: &[PathBuf],
    manifest: &Manifest,
    rows: &Rows,
) -> Result<(Params, Vec<Vec<String>>), ShardError> {
    if rows.header != STAGE_HEADER {
        return Err(ShardError::Mismatch(format!(
            "the shards' rows have columns {:?}, a stage's are {STAGE_HEADER:?}",
            rows.header
        )));
    }
    let mut params = manifest.params.clone();
    let stage: usize = params
        .remove("stage")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ShardError::Mismatch("the shards do not say their stage".into()))?;
    let mut recorded = match dirs.first() {
        Some(first) if stage > 0 => {
            let prior = first.join(PRIOR);
            let bytes = |d: &Path| {
                let p = d.join(PRIOR);
                (
                    std::fs::read(p.join(shard::MANIFEST)).ok(),
                    std::fs::read(p.join(shard::ROWS)).ok(),
                )
            };
            if let Some(other) = dirs.iter().find(|d| bytes(d) != bytes(first)) {
                return Err(ShardError::Mismatch(format!(
                    "{} and {} resumed from different states",
                    first.display(),
                    other.display()
                )));
            }
            read_state(&prior, search, &params)?
        }
        _ => Vec::new(),
    };
    if recorded.len() != stage {
        return Err(ShardError::Mismatch(format!(
            "the shards ran stage {} after a state of {} stages",
            stage + 1,
            recorded.len()
        )));
    }
    recorded.push(rows.records.iter().map(|r| r[1].clone()).collect());
    Ok((params, recorded))
}

fn to_row(result: &impl Serialize) -> String {
    // The results are plain data (numbers, strings, vectors): they always
    // serialize.
    serde_json::to_string(result).unwrap_or_default()
}

/// An `f64` written in Rust's shortest exact form (`NaN` and `inf`
/// included), so a row reads back as the very same bits; for
/// `#[serde(with = "exact")]`.
pub mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a number")))
    }
}

/// [`exact`] for an `Option<f64>`.
pub mod exact_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&format!("{v:?}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            t.parse()
                .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a number")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-stage search: every point on the seeds, then the best point
    /// again on more seeds.
    fn search(stages: &mut Stages) -> Result<(usize, u64), Halt> {
        let points = [3_u64, 1, 4, 1, 5];
        let seeds = SeedSet {
            first: 10,
            count: 3,
        };
        let first = stages.run("one", &points, &seeds, |p, s| p * s.0 % 7)?;
        let best = first
            .iter()
            .max_by_key(|t| (t.result, std::cmp::Reverse(t.point)))
            .map_or(0, |t| t.point);
        let more = SeedSet {
            first: 20,
            count: 4,
        };
        let second = stages.run("two", &points[best..=best], &more, |p, s| p + s.0)?;
        Ok((best, second.iter().map(|t| t.result).sum()))
    }

    fn merged(shards: Vec<StageRows>, tasks: usize) -> Vec<String> {
        let mut all: StageRows = shards.into_iter().flatten().collect();
        all.sort();
        assert_eq!(all.len(), tasks);
        all.into_iter().map(|(_, r)| r).collect()
    }

    #[test]
    fn stages_run_by_shards_and_merged_end_where_the_whole_search_ends() {
        let sweep = Sweep::new(2, false).expect("pool");
        let whole = search(&mut Stages::whole(&sweep)).expect("finishes");
        let mut recorded: Vec<Vec<String>> = Vec::new();
        let end = loop {
            let mut rows = Vec::new();
            let mut tasks = 0;
            for index in 1..=3 {
                let shard = Shard { index, count: 3 };
                let mut s = Stages::resume(&sweep, shard, recorded.clone());
                match search(&mut s) {
                    Err(Halt::Paused { stage }) => assert_eq!(stage, recorded.len()),
                    other => panic!("a shard pauses: {other:?}"),
                }
                let (_, n, mine) = s.ran().cloned().expect("ran its share");
                assert!(mine.iter().all(|(j, _)| shard.owns(*j as u64)));
                (tasks, rows) = (n, [rows, vec![mine]].concat());
            }
            recorded.push(merged(rows, tasks));
            match search(&mut Stages::replay(&sweep, recorded.clone())) {
                Ok(end) => break end,
                Err(Halt::Paused { stage }) => assert_eq!(stage, recorded.len()),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(recorded.len(), 2);
        assert_eq!(end, whole);
    }

    #[test]
    fn a_record_that_does_not_fit_is_refused() {
        let sweep = Sweep::new(1, false).expect("pool");
        let short = vec![vec!["1".to_string(); 14]];
        let err = search(&mut Stages::replay(&sweep, short)).expect_err("short");
        assert!(
            matches!(&err, Halt::Mismatch(m) if m.contains("15")),
            "{err}"
        );
        let odd = vec![vec!["\"x\"".to_string(); 15]];
        let err = search(&mut Stages::replay(&sweep, odd)).expect_err("not a number");
        assert!(matches!(err, Halt::Mismatch(_)), "{err}");
    }

    #[test]
    fn exact_numbers_read_back_as_the_same_bits() {
        #[derive(Serialize, serde::Deserialize)]
        struct T {
            #[serde(with = "exact")]
            a: f64,
            #[serde(with = "exact_option")]
            b: Option<f64>,
        }
        for v in [0.1 + 0.2, f64::NAN, f64::INFINITY, -0.0, 1e-300, 1.0 / 3.0] {
            let text = serde_json::to_string(&T { a: v, b: Some(v) }).expect("writes");
            let back: T = serde_json::from_str(&text).expect("reads");
            assert_eq!(back.a.to_bits(), v.to_bits(), "{text}");
            assert_eq!(back.b.map(f64::to_bits), Some(v.to_bits()));
        }
        let none: T = serde_json::from_str(r#"{"a":"1","b":null}"#).expect("reads");
        assert_eq!(none.b, None);
    }
}
