//! A map's outputs as data: `map.csv` (every point run), `boundary.csv`
//! (every line's crossing), the heatmap and `summary.md`. Nothing here
//! depends on the thread count or the wall clock, so the same command
//! writes the same bytes.

use super::axis::number;
use super::bisect::{Boundary, Tally};
use super::{Map, MapLine};
use crate::experiment::heatmap::{HeatCell, Heatmap, Panel};
use crate::experiment::stats::wilson95;
use crate::experiment::table::{Cell, Table};
use crate::search::triggers::RECOVER_WITHIN_S;
use crate::search::verdict::SHARE;
use std::fmt::Write;

/// Decimals of axis values in the tables: whole numbers for a count.
fn decimals(integral: bool) -> usize {
    if integral {
        0
    } else {
        3
    }
}

impl Map {
    fn bisected(&self) -> &super::Axis {
        &self.axes[self.plan.bisect]
    }

    fn variant(&self, line: &MapLine) -> &str {
        &self.plan.variants[line.variant].name
    }

    /// The axes on the grid (every one but the bisected), in order.
    fn grid_axes(&self) -> impl Iterator<Item = (usize, &super::Axis)> {
        let b = self.plan.bisect;
        self.axes.iter().enumerate().filter(move |(i, _)| *i != b)
    }

    /// Points run, over every line.
    pub fn points(&self) -> usize {
        self.lines.iter().map(|l| l.line.points.len()).sum()
    }

    /// Runs a full grid would take at the resolution the bisection reached.
    pub fn full_grid_runs(&self) -> u64 {
        let b = self.bisected();
        let width = self
            .step
            .tolerance
            .max(if self.step.integral { 1.0 } else { 0.0 });
        let finest = self
            .lines
            .iter()
            .filter_map(|l| match l.line.boundary() {
                Some(Boundary::Between { low, high, .. }) => Some(high - low),
                _ => None,
            })
            .fold(width, f64::min)
            .max(f64::MIN_POSITIVE);
        let per_line = ((b.hi - b.lo) / finest).ceil() as u64 + 1;
        per_line * self.lines.len() as u64 * self.plan.seeds.len() as u64
    }

    /// `map.csv`: one row per point run.
    pub fn points_table(&self) -> Table {
        let mut columns = vec!["variant".to_string()];
        columns.extend(self.axes.iter().map(|a| a.name.clone()));
        columns.extend(
            [
                "seeds",
                "recovered",
                "stuck",
                "unchecked",
                "violations",
                "share",
                "wilson_low",
                "wilson_high",
            ]
            .map(String::from),
        );
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let mut table = Table::new(
            "map",
            "one row per point run: its axis values, how its seeds came out, the share of judged seeds that recovered and its 95% Wilson interval",
            &names,
        );
        for l in &self.lines {
            for (value, tally) in &l.line.points {
                let mut row = vec![Cell::text(self.variant(l))];
                row.extend(self.axes.iter().enumerate().map(|(i, a)| {
                    let v = if i == self.plan.bisect {
                        *value
                    } else {
                        l.grid[i]
                    };
                    Cell::fixed(v, decimals(a.integral))
                }));
                row.extend(tally_cells(tally, self.plan.seeds.len()));
                table.push(row);
            }
        }
        table
    }

    /// `boundary.csv`: one row per line.
    pub fn boundary_table(&self) -> Table {
        let b = self.bisected();
        let mut columns = vec!["variant".to_string()];
        columns.extend(self.grid_axes().map(|(_, a)| a.name.clone()));
        columns.extend([
            "boundary".to_string(),
            format!("{}_low", b.name),
            format!("{}_high", b.name),
            format!("{}_estimate", b.name),
            "recovers".to_string(),
            "points".to_string(),
        ]);
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let mut table = Table::new(
            "boundary",
            "one row per line of the grid: where along the bisected axis the share of seeds that recover crosses 1/2",
            &names,
        );
        let d = decimals(b.integral);
        for l in &self.lines {
            let mut row = vec![Cell::text(self.variant(l))];
            row.extend(
                self.grid_axes()
                    .map(|(i, a)| Cell::fixed(l.grid[i], decimals(a.integral))),
            );
            let boundary = l.line.boundary();
            row.push(Cell::text(boundary.map_or("unfinished", Boundary::name)));
            match boundary {
                Some(Boundary::Between {
                    low,
                    high,
                    recovers_below,
                }) => row.extend([
                    Cell::fixed(*low, d),
                    Cell::fixed(*high, d),
                    Cell::fixed((low + high) / 2.0, d),
                    Cell::text(if *recovers_below { "below" } else { "above" }),
                ]),
                _ => row.extend([Cell::Empty, Cell::Empty, Cell::Empty, Cell::Empty]),
            }
            row.push(Cell::count(l.line.points.len() as u64));
            table.push(row);
        }
        table
    }

    /// The heatmap: one panel per variant (and per value of a third axis),
    /// x the last grid axis, y the bisected axis.
    pub fn heatmap(&self, title: &str) -> Heatmap {
        let b = self.bisected();
        let grid: Vec<(usize, &super::Axis)> = self.grid_axes().collect();
        let (x_axis, extra) = match grid.split_last() {
            Some((x, rest)) => (Some(*x), rest.to_vec()),
            None => (None, Vec::new()),
        };
        let mut panels: Vec<(String, Vec<&MapLine>)> = Vec::new();
        for l in &self.lines {
            let mut name = self.variant(l).to_string();
            for (i, a) in &extra {
                let _ = write!(name, ", {} = {}", a.name, number(l.grid[*i]));
            }
            match panels.iter_mut().find(|(n, _)| *n == name) {
                Some((_, ls)) => ls.push(l),
                None => panels.push((name, vec![l])),
            }
        }
        let x_of = |l: &MapLine| x_axis.map_or(0.0, |(i, _)| l.grid[i]);
        let xs: Vec<f64> = {
            let mut v: Vec<f64> = self.lines.iter().map(x_of).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        };
        let half = |i: usize| -> (f64, f64) { spans(&xs, i, 0.5) };
        let x_range = (half(0).0, half(xs.len() - 1).1);
        let panels = panels
            .into_iter()
            .map(|(title, ls)| {
                let mut cells = Vec::new();
                let mut points = Vec::new();
                let mut boundary: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
                for l in ls {
                    let x = x_of(l);
                    let column = xs
                        .iter()
                        .position(|v| *v == x)
                        .map_or((x - 0.5, x + 0.5), half);
                    let ys: Vec<f64> = l.line.points.iter().map(|(v, _)| *v).collect();
                    for (k, (y, tally)) in l.line.points.iter().enumerate() {
                        let (y0, y1) = spans(&ys, k, 0.0);
                        cells.push(HeatCell {
                            x: column,
                            y: (y0.max(b.lo), y1.min(b.hi)),
                            value: tally.share(),
                        });
                        points.push((x, *y));
                    }
                    match l.line.boundary().and_then(Boundary::estimate) {
                        Some(y) => boundary.last_mut().map_or((), |p| p.push((x, y))),
                        None => boundary.push(Vec::new()),
                    }
                }
                boundary.retain(|p| !p.is_empty());
                Panel {
                    title,
                    cells,
                    points,
                    boundary,
                }
            })
            .collect();
        Heatmap {
            name: "map".to_string(),
            title: title.to_string(),
            x_label: x_axis.map_or(String::new(), |(_, a)| axis_label(&a.name)),
            y_label: axis_label(&b.name),
            key_label: "share of seeds\nthat recover".to_string(),
            x_range,
            y_range: (b.lo, b.hi),
            panels,
        }
    }

    /// `summary.md`.
    pub fn summary(&self, title: &str, scenario_description: &str) -> String {
        let mut md = String::new();
        let b = self.bisected();
        let _ = writeln!(
            md,
            "<!-- Generated by `resilient-relay map`; edits are overwritten. -->"
        );
        let _ = writeln!(md, "# {title}\n");
        if !scenario_description.is_empty() {
            let _ = writeln!(md, "{scenario_description}\n");
        }
        let _ = writeln!(md, "- Reproduce: `{}`", self.plan.command);
        let _ = writeln!(
            md,
            "- Seeds: {}, the same at every point",
            self.plan.seeds.describe()
        );
        let _ = writeln!(
            md,
            "- Recovered: goodput over [last trigger's end + {RECOVER_WITHIN_S} s, horizon] at least {:.0}% of the same seed's calm twin (the scenario without its trigger); a run whose liveness cannot be judged is counted as unchecked, apart from the share",
            SHARE * 100.0
        );
        let _ = writeln!(
            md,
            "- Bisected: `{}` from {} to {}, to a bracket of {} or less; grid: {}\n",
            b.name,
            number(b.lo),
            number(b.hi),
            number(self.step.tolerance),
            self.grid_text()
        );
        md.push_str("## Variants\n\n");
        if !self.plan.sets.is_empty() {
            let _ = writeln!(md, "Every variant: {}.\n", code_list(&self.plan.sets));
        }
        md.push_str("| variant | its own overrides |\n|---|---|\n");
        for v in &self.plan.variants {
            let sets = if v.sets.is_empty() {
                "none".to_string()
            } else {
                code_list(&v.sets)
            };
            let _ = writeln!(md, "| {} | {sets} |", v.name);
        }
        md.push_str(&self.boundary_markdown());
        md.push_str(&self.cost_markdown());
        md.push_str(&self.unchecked_markdown());
        md
    }

    fn cost_markdown(&self) -> String {
        format!(
            "\n## Cost\n\n{} runs (each a run and its calm twin) at {} points in {} rounds; a full grid at the same resolution would take {} runs.\n",
            self.runs,
            self.points(),
            self.rounds,
            self.full_grid_runs()
        )
    }

    fn grid_text(&self) -> String {
        let parts: Vec<String> = self
            .grid_axes()
            .map(|(_, a)| {
                format!(
                    "`{}` {} to {} in {} steps",
                    a.name,
                    number(a.lo),
                    number(a.hi),
                    self.plan.steps
                )
            })
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    fn boundary_markdown(&self) -> String {
        let b = self.bisected();
        let mut md = format!(
            "\n## Boundary\n\nWhere along `{}` at least half the judged seeds stop recovering (the bracket the bisection ended on), and the recovered share with its 95% Wilson interval at the bracket's two ends.\n\n",
            b.name
        );
        let grid: Vec<(usize, &super::Axis)> = self.grid_axes().collect();
        md.push_str("| variant |");
        for (_, a) in &grid {
            let _ = write!(md, " {} |", a.name);
        }
        let _ = writeln!(
            md,
            " {} boundary | recovered on the near side | on the far side |",
            b.name
        );
        md.push_str("|---|");
        md.push_str(&"---:|".repeat(grid.len() + 3));
        md.push('\n');
        let d = decimals(b.integral);
        for l in &self.lines {
            let _ = write!(md, "| {} |", self.variant(l));
            for (i, _) in &grid {
                let _ = write!(md, " {} |", number(l.grid[*i]));
            }
            let at = |v: f64| l.line.points.iter().find(|(x, _)| *x == v).map(|(_, t)| t);
            match l.line.boundary() {
                Some(Boundary::Between {
                    low,
                    high,
                    recovers_below,
                }) => {
                    let (near, far) = if *recovers_below {
                        (*low, *high)
                    } else {
                        (*high, *low)
                    };
                    let _ = writeln!(
                        md,
                        " {low:.d$} – {high:.d$} | {} | {} |",
                        at(near).map_or(String::new(), share_text),
                        at(far).map_or(String::new(), share_text)
                    );
                }
                Some(Boundary::RecoversThroughout) => {
                    let _ = writeln!(
                        md,
                        " recovers from {} to {} | {} | |",
                        number(b.lo),
                        number(b.hi),
                        at(b.hi).map_or(String::new(), share_text)
                    );
                }
                Some(Boundary::DownThroughout) => {
                    let _ = writeln!(
                        md,
                        " stays down from {} to {} | | {} |",
                        number(b.lo),
                        number(b.hi),
                        at(b.lo).map_or(String::new(), share_text)
                    );
                }
                Some(Boundary::Unjudged { at: v }) => {
                    let _ = writeln!(md, " no seed judged at {} | | |", number(*v));
                }
                None => md.push_str(" unfinished | | |\n"),
            }
        }
        md
    }

    fn unchecked_markdown(&self) -> String {
        let mut reasons: Vec<(&'static str, u64)> = Vec::new();
        let mut violations = 0;
        for (_, t) in self.lines.iter().flat_map(|l| &l.line.points) {
            for &(r, n) in &t.unchecked {
                match reasons.iter_mut().find(|(x, _)| *x == r) {
                    Some((_, m)) => *m += u64::from(n),
                    None => reasons.push((r, u64::from(n))),
                }
            }
            violations += t.violations.len();
        }
        reasons.sort();
        let mut md = String::from("\n## Runs not in the share\n\n");
        if reasons.is_empty() {
            md.push_str("Every run's liveness was judged.\n");
        } else {
            md.push_str("Unchecked runs (liveness could not be judged), by reason:\n\n");
            for (r, n) in reasons {
                let _ = writeln!(md, "- {r}: {n}");
            }
        }
        let _ = writeln!(
            md,
            "\nInvariant violations: {violations}{}",
            if violations > 0 {
                " (bugs: see the command's output for each seed and how to reproduce it)"
            } else {
                ""
            }
        );
        md
    }
}

/// Overrides as Markdown code, one after another.
fn code_list(sets: &[String]) -> String {
    let quoted: Vec<String> = sets.iter().map(|s| format!("`{s}`")).collect();
    quoted.join(" ")
}

/// `k/n (low–high)` for a summary.
fn share_text(t: &Tally) -> String {
    let (low, high) = wilson95(u64::from(t.recovered), u64::from(t.judged()));
    format!("{}/{} ({:.2}–{:.2})", t.recovered, t.judged(), low, high)
}

fn tally_cells(t: &Tally, seeds: usize) -> Vec<Cell> {
    let (low, high) = wilson95(u64::from(t.recovered), u64::from(t.judged()));
    vec![
        Cell::count(seeds as u64),
        Cell::count(u64::from(t.recovered)),
        Cell::count(u64::from(t.stuck)),
        Cell::count(u64::from(t.unchecked_total())),
        Cell::count(t.violations.len() as u64),
        Cell::fixed(t.share(), 4),
        Cell::fixed(low, 4),
        Cell::fixed(high, 4),
    ]
}

/// Where value `i` of sorted `values` owns the axis: halfway to each
/// neighbour; the ends reach `pad` beyond (or half a neighbour's gap when
/// `pad` is 0, the ends then being the range's own).
fn spans(values: &[f64], i: usize, pad: f64) -> (f64, f64) {
    let v = values[i];
    let gap_before = i.checked_sub(1).map(|j| (v - values[j]) / 2.0);
    let gap_after = values.get(i + 1).map(|n| (n - v) / 2.0);
    let fallback = gap_before.or(gap_after).unwrap_or(pad);
    let (before, after) = if pad == 0.0 {
        (gap_before.unwrap_or(0.0), gap_after.unwrap_or(0.0))
    } else {
        (
            gap_before.unwrap_or(fallback),
            gap_after.unwrap_or(fallback),
        )
    };
    (v - before, v + after)
}

/// An axis's label with its unit, for the named ones.
fn axis_label(name: &str) -> String {
    match name {
        "spike" | "trigger" => format!("{name}: peak rate of the spike (req/s)"),
        "duration" => format!("{name}: length of the trigger (s)"),
        "load" => format!("{name}: rate after the trigger (req/s)"),
        path => path.to_string(),
    }
}
