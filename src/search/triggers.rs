//! A scenario's triggers (what pushes it over) and its calm twin (the same
//! scenario without them), for the liveness check.
//!
//! Triggers are the downstream's outages and brownouts, the relay's
//! crashes, and every phase of an open-loop schedule before its last: the
//! last phase is the load the run settles at, the earlier ones are spikes
//! (or ramps) on the way. The calm twin runs on the same seed, so the two
//! runs differ by the triggers and nothing else the seed decides.

use crate::fault::DownstreamConfig;
use crate::sim::clients::ClientsConfig;
use crate::sim::Scenario;

/// Seconds after the last trigger's end within which goodput must be back.
/// Generous on purpose: long backoffs, breaker open times and a full queue
/// draining all take time, and none of that is metastability.
pub const RECOVER_WITHIN_S: f64 = 30.0;

/// When the last trigger ends, in seconds; `None` if there is none.
pub fn last_end(s: &Scenario) -> Option<f64> {
    let downstream = std::iter::once(&s.downstream)
        .chain(s.routes.iter().filter_map(|r| r.downstream.as_ref()))
        .flat_map(|d| {
            let outages = d.outages.iter().map(|o| o.end_s);
            outages.chain(d.brownouts.iter().map(|b| b.end_s))
        });
    let crashes = s.faults.crash.iter().map(|c| c.at_s + c.restart_after_s);
    let phases = s.clients.iter().filter_map(|c| match c {
        ClientsConfig::OpenLoop { schedule, .. } if schedule.len() > 1 => {
            Some(schedule[schedule.len() - 2].until_s)
        }
        _ => None,
    });
    downstream.chain(crashes).chain(phases).reduce(f64::max)
}

/// The scenario without its triggers: no outage, brownout or crash, and
/// every schedule at its last phase's rate throughout.
pub fn calm(s: &Scenario) -> Scenario {
    let mut calm = s.clone();
    let still = |d: &mut DownstreamConfig| {
        d.outages.clear();
        d.brownouts.clear();
    };
    still(&mut calm.downstream);
    calm.routes
        .iter_mut()
        .filter_map(|r| r.downstream.as_mut())
        .for_each(still);
    calm.faults.crash.clear();
    for c in &mut calm.clients {
        if let ClientsConfig::OpenLoop {
            per_s, schedule, ..
        } = c
        {
            if let Some(last) = schedule.last() {
                if schedule.len() > 1 {
                    *per_s = Some(last.per_s);
                    schedule.clear();
                }
            }
        }
    }
    calm
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORM: &str = include_str!("../../experiments/scenarios/retry-storm.toml");

    #[test]
    fn a_spike_ends_where_the_last_phase_begins_and_calm_flattens_it() {
        let s = Scenario::from_toml(STORM, "retry-storm.toml").expect("valid");
        assert_eq!(last_end(&s), Some(25.0));
        let c = calm(&s);
        assert_eq!(last_end(&c), None);
        c.validate().expect("the calm twin is valid");
        let ClientsConfig::OpenLoop { per_s, .. } = &c.clients[0] else {
            panic!("open loop")
        };
        assert_eq!(*per_s, Some(40.0));
    }

    #[test]
    fn outages_and_crashes_are_triggers() {
        let s = Scenario::from_toml(
            include_str!("../../experiments/scenarios/outage.toml"),
            "outage.toml",
        )
        .expect("valid");
        let end = last_end(&s).expect("an outage");
        assert_eq!(
            Some(end),
            s.downstream
                .outages
                .iter()
                .map(|o| o.end_s)
                .reduce(f64::max)
        );
        let mut crashed = calm(&s);
        crashed.faults.crash.push(crate::sim::CrashConfig {
            at_s: 3.0,
            restart_after_s: 0.5,
        });
        assert_eq!(last_end(&crashed), Some(3.5));
    }
}
