//! The comparison's timeline as a chart: downstream calls and goodput per
//! bucket, one panel each, the simulated run and the live run as two lines
//! on one scale.
//!
//! Summary figures can agree while the shapes do not (a wave of retries
//! that comes a second later live, a recovery that starts sooner); the
//! timeline shows it. What is drawn is data here; how is the experiments'
//! own chart code ([`crate::experiment::chart`]).

use super::compare::Comparison;
use crate::experiment::chart::{ChartPoint, Legend, LineChart, Scale, Series, Shade, Stacked};
use crate::experiment::over_time::bucket_start_s;
use crate::sim::Scenario;

/// The legend's names of the two worlds.
pub const SIMULATED: &str = "simulated";
pub const LIVE: &str = "live";

/// Both panels of `c`'s timeline; the scenario's outage, if it has one,
/// shaded behind the lines.
pub fn timeline(c: &Comparison, scenario: &Scenario) -> Stacked {
    let bucket = format!("{} ms", c.bucket_ms);
    let shade = outage(scenario);
    let panel = |what: &str, sim: &[u32], live: &[u32]| LineChart {
        name: format!("timeline-{what}"),
        description: format!("{what} per {bucket}, simulated and live"),
        title: format!("{}: {what} per {bucket} (seed {})", c.scenario, c.seed),
        x_label: "time (s)".to_owned(),
        y_label: format!("{what} per {bucket}"),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        markers: false,
        legend: Legend::UpperRight,
        series: vec![
            line(SIMULATED, sim, c.bucket_ms),
            line(LIVE, live, c.bucket_ms),
        ],
        shade: shade.clone(),
    };
    Stacked {
        name: "timeline".to_owned(),
        panels: vec![
            panel(
                "downstream calls",
                &c.simulated_series.calls,
                &c.live.series.calls,
            ),
            panel(
                "goodput",
                &c.simulated_series.successes,
                &c.live.series.successes,
            ),
        ],
    }
}

fn line(name: &str, counts: &[u32], bucket_ms: f64) -> Series {
    Series {
        name: name.to_owned(),
        dots: false,
        points: counts
            .iter()
            .enumerate()
            .map(|(i, &n)| ChartPoint {
                x: bucket_start_s(i, bucket_ms),
                y: f64::from(n),
                y_low: f64::NAN,
                y_high: f64::NAN,
            })
            .collect(),
    }
}

/// The downstream's one outage window (a chart shades one stretch: with
/// several, none is shaded rather than one of them).
fn outage(scenario: &Scenario) -> Option<Shade> {
    match scenario.downstream.outages.as_slice() {
        [o] => Some(Shade {
            from: o.start_s,
            to: o.end_s,
            label: "downstream outage".to_owned(),
        }),
        _ => None,
    }
}
