//! Per-bucket counters over time (downstream calls per 100 ms), averaged
//! over the seeds of each parameter set: a table and a line chart.
//!
//! A summary number says how much; the shape over time says how: whether
//! retries come back in waves, and whether the downstream sat idle while a
//! backlog waited. Runs end at different times, so every series is padded
//! with zeros (nothing counted) to the longest run of all.

use super::chart::{ChartPoint, Series};
use super::stats::Estimate;
use super::table::{Cell, Table};

/// One parameter set's counters per bucket: the mean and 95 % CI over its
/// seeds, with the key cells and legend name of that set.
#[derive(Clone, Debug)]
pub struct OverTime {
    pub name: String,
    pub keys: Vec<Cell>,
    pub buckets: Vec<Estimate>,
}

/// `runs[p]` holds the per-bucket counts of every seed of parameter set
/// `p`; `names` and `keys` name each set.
pub fn over_seeds(runs: &[Vec<&[u32]>], names: Vec<String>, keys: Vec<Vec<Cell>>) -> Vec<OverTime> {
    let len = runs.iter().flatten().map(|r| r.len()).max().unwrap_or(0);
    over_seeds_to(runs, names, keys, len)
}

/// [`over_seeds`] with every series padded (or cut) to `len` buckets, so
/// that several counters of the same runs line up.
pub fn over_seeds_to(
    runs: &[Vec<&[u32]>],
    names: Vec<String>,
    keys: Vec<Vec<Cell>>,
    len: usize,
) -> Vec<OverTime> {
    runs.iter()
        .zip(names.into_iter().zip(keys))
        .map(|(seeds, (name, keys))| OverTime {
            name,
            keys,
            buckets: (0..len)
                .map(|i| {
                    let counts: Vec<f64> = seeds
                        .iter()
                        .map(|r| f64::from(r.get(i).copied().unwrap_or(0)))
                        .collect();
                    Estimate::of(&counts)
                })
                .collect(),
        })
        .collect()
}

/// Start of bucket `i` in seconds.
pub fn bucket_start_s(i: usize, bucket_ms: f64) -> f64 {
    i as f64 * bucket_ms / 1e3
}

/// One row per parameter set and bucket: keys, `time_s`, the mean and CI.
pub fn table(
    name: &str,
    description: &str,
    key_columns: &[&str],
    series: &[OverTime],
    bucket_ms: f64,
) -> Table {
    table_of(
        name,
        description,
        key_columns,
        &[("calls", series)],
        bucket_ms,
    )
}

/// One row per parameter set and bucket: keys, `time_s`, then the mean and
/// CI of each named counter (`<name>_mean`, `<name>_ci95_low`,
/// `<name>_ci95_high`). Every counter's series list the same parameter sets
/// in the same order, padded to the same length.
pub fn table_of(
    name: &str,
    description: &str,
    key_columns: &[&str],
    counters: &[(&str, &[OverTime])],
    bucket_ms: f64,
) -> Table {
    let mut columns: Vec<String> = key_columns.iter().map(|c| (*c).to_string()).collect();
    columns.push("time_s".to_string());
    for (counter, _) in counters {
        for stat in ["mean", "ci95_low", "ci95_high"] {
            columns.push(format!("{counter}_{stat}"));
        }
    }
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut table = Table::new(name, description, &columns);
    let time_decimals = if bucket_ms % 100.0 == 0.0 { 1 } else { 3 };
    let Some((_, first)) = counters.first() else {
        return table;
    };
    for (p, s) in first.iter().enumerate() {
        for i in 0..s.buckets.len() {
            let mut row = s.keys.clone();
            row.push(Cell::fixed(bucket_start_s(i, bucket_ms), time_decimals));
            for (_, series) in counters {
                let e = series
                    .get(p)
                    .and_then(|s| s.buckets.get(i))
                    .copied()
                    .unwrap_or(Estimate::of(&[]));
                row.extend([
                    Cell::fixed(e.mean, 2),
                    Cell::fixed(e.ci95_low(), 2),
                    Cell::fixed(e.ci95_high(), 2),
                ]);
            }
            table.push(row);
        }
    }
    table
}

/// The mean per bucket from `from_s` on, one chart line per parameter set
/// (no band: at 100 ms the CIs would hide the lines).
pub fn lines(series: &[OverTime], bucket_ms: f64, from_s: f64) -> Vec<Series> {
    series
        .iter()
        .map(|s| Series {
            dots: false,
            name: s.name.clone(),
            points: s
                .buckets
                .iter()
                .enumerate()
                .filter(|(i, _)| bucket_start_s(*i, bucket_ms) >= from_s)
                .map(|(i, e)| ChartPoint {
                    x: bucket_start_s(i, bucket_ms),
                    y: e.mean,
                    y_low: f64::NAN,
                    y_high: f64::NAN,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_runs_count_zero_after_their_end() {
        let a: &[u32] = &[2, 4];
        let b: &[u32] = &[4];
        let c: &[u32] = &[1, 1, 1];
        let series = over_seeds(
            &[vec![a, b], vec![c]],
            vec!["a".into(), "c".into()],
            vec![vec![Cell::text("a")], vec![Cell::text("c")]],
        );
        let means: Vec<Vec<f64>> = series
            .iter()
            .map(|s| s.buckets.iter().map(|e| e.mean).collect())
            .collect();
        assert_eq!(means, vec![vec![3.0, 2.0, 0.0], vec![1.0, 1.0, 1.0]]);
        let csv = table("t", "d", &["k"], &series, 100.0).to_csv_string();
        assert!(csv.starts_with("k,time_s,calls_mean,calls_ci95_low,calls_ci95_high\na,0.0,3.00,"));
        let lines = lines(&series, 100.0, 0.1);
        assert_eq!(lines[0].points.len(), 2);
        assert_eq!(lines[0].points[0].x, 0.1);
    }
}
