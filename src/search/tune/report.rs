//! What a `tune` run writes, as data: the candidates and the front as
//! tables, the front as a chart, the recommended `[relay]` section as
//! TOML, and `summary.md`. Nothing here reads a clock or a file, so the
//! bytes depend on the scenario, the budget and the seed alone.

use super::{Report, Score, Tuning, RULE};
use crate::experiment::chart::{ChartPoint, Legend, LineChart, Scale, Series};
use crate::experiment::table::{Cell, Table};
use std::fmt::Write;

/// One row per candidate: its settings and its score on its last round.
pub fn candidates_table(t: &Tuning, r: &Report) -> Table {
    let mut columns = vec!["candidate"];
    columns.extend(t.spec.knobs.iter().map(|k| k.path.as_str()));
    columns.extend([
        "round",
        "seeds",
        "goodput_per_s",
        "p99_ms",
        "amplification",
        "duplicates",
        "recovered",
        "feasible",
        "front",
        "why_not",
    ]);
    let mut table = Table::new(
        "candidates",
        "every candidate (0: the scenario as written): settings, then means over the seeds of the last round it ran in",
        &columns,
    );
    for (id, c) in r.candidates.iter().enumerate() {
        let mut row = vec![Cell::count(id as u64)];
        row.extend(c.values.iter().map(|v| Cell::text(unquote(v))));
        match (r.scores.get(&id), &c.scenario) {
            (Some(s), _) => {
                let round = r.last_round(id).map_or(0, |n| n + 1);
                row.push(Cell::count(round as u64));
                row.extend(score_cells(s));
                row.push(Cell::text(yes(r.front.contains(&id))));
                row.push(Cell::text(s.violations.join("; ")));
            }
            (None, scenario) => {
                row.extend([Cell::count(0), Cell::count(0)]);
                row.extend(std::iter::repeat_n(Cell::Empty, 5));
                row.extend([Cell::text("no"), Cell::text("no")]);
                let why = scenario.as_ref().err().cloned().unwrap_or_default();
                row.push(Cell::text(format!("refused: {why}")));
            }
        }
        table.push(row);
    }
    table
}

fn score_cells(s: &Score) -> Vec<Cell> {
    let o = &s.objectives;
    vec![
        Cell::count(u64::from(s.seeds)),
        Cell::fixed(o.goodput_per_s, 2),
        Cell::fixed(o.p99_ms, 1),
        Cell::fixed(o.amplification, 3),
        Cell::count(s.duplicates),
        Cell::text(match s.recovered {
            Some(true) => "yes",
            Some(false) => "no",
            None => "",
        }),
        Cell::text(yes(s.feasible())),
    ]
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A TOML string literal without its quotes, for tables.
fn unquote(v: &str) -> String {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

/// The front, most goodput first, with the margins where they were searched.
pub fn pareto_table(t: &Tuning, r: &Report) -> Table {
    let mut columns = vec!["candidate"];
    columns.extend(t.spec.knobs.iter().map(|k| k.path.as_str()));
    columns.extend([
        "goodput_per_s",
        "p99_ms",
        "amplification",
        "spike_factor_survived",
        "outage_s_survived",
        "margin",
        "recommended",
    ]);
    let mut table = Table::new(
        "pareto",
        "the feasible candidates of the last round that no other dominates, with their cliffs where searched",
        &columns,
    );
    for &id in &r.front {
        let mut row = vec![Cell::count(id as u64)];
        let c = &r.candidates[id];
        row.extend(c.values.iter().map(|v| Cell::text(unquote(v))));
        let o = &r.scores[&id].objectives;
        row.extend([
            Cell::fixed(o.goodput_per_s, 2),
            Cell::fixed(o.p99_ms, 1),
            Cell::fixed(o.amplification, 3),
        ]);
        row.extend(margin_cells(r, id));
        row.push(Cell::text(if r.recommended == Some(id) {
            "yes"
        } else {
            ""
        }));
        table.push(row);
    }
    table
}

fn margin_cells(r: &Report, id: usize) -> Vec<Cell> {
    use crate::search::stress::Axis;
    let Some(m) = r.margins.get(&id) else {
        return vec![Cell::Empty, Cell::Empty, Cell::Empty];
    };
    let on = |axis: Axis| {
        m.cliffs
            .iter()
            .find(|(s, _)| s.axis() == axis)
            .map_or(Cell::Empty, |(_, c)| Cell::fixed(c.survived, 2))
    };
    vec![
        on(Axis::SpikeFactor),
        on(Axis::OutageS),
        Cell::fixed(m.score, 3),
    ]
}

/// Goodput against p99 for the last round, the front and the choice.
pub fn pareto_chart(t: &Tuning, r: &Report) -> LineChart {
    let point = |id: &usize| {
        let o = &r.scores[id].objectives;
        ChartPoint {
            x: o.p99_ms,
            y: o.goodput_per_s,
            y_low: f64::NAN,
            y_high: f64::NAN,
        }
    };
    let last = r.rounds.last().map(|l| l.alive.clone()).unwrap_or_default();
    let behind: Vec<usize> = last
        .iter()
        .copied()
        .filter(|i| !r.front.contains(i))
        .collect();
    let (feasible, infeasible): (Vec<usize>, Vec<usize>) =
        behind.iter().partition(|i| r.scores[*i].feasible());
    let dots = |name: &str, ids: &[usize]| Series {
        name: name.to_string(),
        points: ids
            .iter()
            .filter(|i| r.scores[*i].objectives.p99_ms.is_finite())
            .map(point)
            .collect(),
        dots: true,
    };
    // The front is over three objectives: drawn as points, since a line
    // through its projection would zigzag.
    let mut series = vec![
        dots("last round, infeasible", &infeasible),
        dots("last round, dominated", &feasible),
        dots("Pareto front (goodput, p99, amplification)", &r.front),
        dots("as written", &[0]),
    ];
    if let Some(id) = r.recommended {
        series.push(dots("recommended", &[id]));
    }
    series.retain(|s| !s.points.is_empty());
    LineChart {
        name: "pareto".into(),
        description:
            "goodput against client p99 on the last round's seeds: the front and the recommendation"
                .into(),
        title: format!("tune {}: goodput against p99", t.base.name),
        x_label: "client p99 latency (ms)".into(),
        y_label: "goodput (successes/s)".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        markers: true,
        legend: Legend::LowerRight,
        series,
        shade: None,
    }
}

/// The recommended `[relay]` section, as `serve --config` reads it. The
/// simulator's `history_max` (0) is left out, so the server keeps its
/// default for status look-ups.
pub fn recommended_toml(t: &Tuning, r: &Report, command: &str) -> Option<String> {
    let id = r.recommended?;
    let scenario = r.candidates[id].scenario.as_ref().ok()?;
    let mut relay = toml::Table::try_from(&scenario.relay).ok()?;
    relay.remove("history_max");
    let mut root = toml::Table::new();
    root.insert("relay".into(), toml::Value::Table(relay));
    let body = toml::to_string(&root).ok()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The relay settings `tune` recommends for {}.",
        t.base.name
    );
    let _ = writeln!(out, "# Made by: {command}");
    let _ = writeln!(
        out,
        "# Serve them with: resilient-relay serve --config recommended.toml"
    );
    let _ = writeln!(
        out,
        "# (add [server] and [downstream] sections as needed; see experiments/server/relay.toml)"
    );
    out.push_str(&body);
    Some(out)
}

/// `summary.md`: what was searched, what won and by how much.
pub fn summary(t: &Tuning, r: &Report, command: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# tune {}\n", t.base.name);
    let _ = writeln!(md, "Made by `{command}`.\n");
    let valid = r.scores.len();
    let _ = writeln!(
        md,
        "{} candidates ({} sampled, {} refused by the scenario) over {} knobs, seeds {}–{}; \
         successive halving in {} rounds ({}); {} simulations in all.\n",
        r.candidates.len(),
        r.candidates.len() - 1,
        r.candidates.len() - valid,
        t.spec.knobs.len(),
        t.seed,
        t.seed + u64::from(t.spec.seeds) - 1,
        r.rounds.len(),
        r.rounds
            .iter()
            .map(|x| format!("{} on {}", x.alive.len(), x.seeds))
            .collect::<Vec<_>>()
            .join(", "),
        r.runs
    );
    let variants: Vec<String> = t.variants().iter().map(|v| v.to_string()).collect();
    let _ = writeln!(
        md,
        "Stress variants, from {} s of the calm scenario: {}.\n",
        t.spec.stress.at_s,
        if variants.is_empty() {
            "none".to_string()
        } else {
            variants.join("; ")
        }
    );
    let _ = writeln!(md, "Rule: {RULE}.\n");
    let _ = writeln!(md, "## Recommended\n");
    match r.recommended {
        Some(id) => recommended_section(&mut md, t, r, id),
        None => {
            let _ = writeln!(
                md,
                "No candidate met every constraint on the last round: loosen the constraints, \
                 widen the ranges or raise the budget (see candidates.csv, column why_not).\n"
            );
        }
    }
    let _ = writeln!(md, "## Pareto front\n");
    let _ = writeln!(
        md,
        "{} candidates on the front of the last round; pareto.csv lists them, pareto.png draws them.",
        r.front.len()
    );
    md
}

fn recommended_section(md: &mut String, t: &Tuning, r: &Report, id: usize) {
    let (mine, base) = (&r.candidates[id], &r.candidates[0]);
    let _ = writeln!(md, "Candidate {id}, beside the scenario as written:\n");
    let _ = writeln!(md, "| setting | as written | recommended |");
    let _ = writeln!(md, "|---|---|---|");
    for (k, (a, b)) in t
        .spec
        .knobs
        .iter()
        .zip(base.values.iter().zip(&mine.values))
    {
        let moved = if a == b { "" } else { " **moved**" };
        let _ = writeln!(
            md,
            "| {} | {} | {}{moved} |",
            k.path,
            unquote(a),
            unquote(b)
        );
    }
    let (sa, sb) = (&r.scores[&0], &r.scores[&id]);
    let rows: [(&str, f64, f64, usize); 3] = [
        (
            "goodput (successes/s)",
            sa.objectives.goodput_per_s,
            sb.objectives.goodput_per_s,
            2,
        ),
        (
            "client p99 (ms)",
            sa.objectives.p99_ms,
            sb.objectives.p99_ms,
            1,
        ),
        (
            "amplification (calls/job)",
            sa.objectives.amplification,
            sb.objectives.amplification,
            3,
        ),
    ];
    let _ = writeln!(
        md,
        "\n| on seeds {}–{} | as written | recommended |",
        t.seed,
        t.seed + u64::from(sb.seeds) - 1
    );
    let _ = writeln!(md, "|---|---|---|");
    for (name, a, b, d) in rows {
        let _ = writeln!(md, "| {name} | {a:.d$} | {b:.d$} |");
    }
    let _ = writeln!(
        md,
        "| duplicate side effects | {} | {} |",
        sa.duplicates, sb.duplicates
    );
    let ok = |s: &Score| match s.recovered {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not judged",
    };
    let _ = writeln!(
        md,
        "| recovers from every variant | {} | {} |",
        ok(sa),
        ok(sb)
    );
    if sa.seeds != sb.seeds {
        let _ = writeln!(
            md,
            "\n(The scenario as written is kept to the last round; it ran on {} seeds.)",
            sa.seeds
        );
    }
    let _ = writeln!(md, "\n### Margin to the cliff\n");
    let _ = writeln!(
        md,
        "The largest stress recovered from on seeds {}–{}, by bisection ({} steps):\n",
        t.seed,
        t.seed + u64::from(t.spec.stress.margin_seeds) - 1,
        t.spec.stress.margin_steps
    );
    let _ = writeln!(md, "| stress | searched up to | as written | recommended |");
    let _ = writeln!(md, "|---|---|---|---|");
    for stress in t.variants() {
        let hi = t.spec.stress.hi(&stress);
        let cell = |who: usize| {
            r.margins
                .get(&who)
                .and_then(|m| m.cliffs.iter().find(|(s, _)| *s == stress))
                .map_or("—".to_string(), |(_, c)| {
                    let at_least = if c.failed.is_none() { "≥ " } else { "" };
                    format!("{at_least}{:.2}", c.survived)
                })
        };
        let _ = writeln!(
            md,
            "| {} | {hi} | {} | {} |",
            stress.axis().name(),
            cell(0),
            cell(id)
        );
    }
    let _ = writeln!(md);
}
