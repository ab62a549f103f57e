//! Shrinking a failing scenario to a small one that fails the same way.
//!
//! Greedy and deterministic, in the manner of QuickCheck's shrinking: the
//! reductions of the current scenario are tried in a fixed order, biggest
//! first (a whole population, a whole trigger, a pattern switched off,
//! then halved numbers); the first that still fails the same way becomes
//! the current scenario and the list starts again. It ends when no
//! reduction fails any more, or when the budget of judged runs is spent.

use super::verdict::Verdict;
use crate::fault::{DownstreamConfig, FailureMix};
use crate::sim::clients::{ClientRetryConfig, ClientsConfig};
use crate::sim::{NetworkConfig, Scenario, StoreKind};

/// What shrinking did.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub scenario: Scenario,
    pub verdict: Verdict,
    /// Reductions kept, and scenarios judged.
    pub steps: u32,
    pub tried: u32,
    /// Whether the budget ran out before a fixed point.
    pub cut: bool,
}

/// Shrinks `scenario`, which `judge` finds failing as `verdict`, judging
/// at most `budget` reductions.
pub fn shrink(
    scenario: &Scenario,
    verdict: &Verdict,
    budget: u32,
    judge: impl Fn(&Scenario) -> Verdict,
) -> Shrunk {
    let mut out = Shrunk {
        scenario: scenario.clone(),
        verdict: verdict.clone(),
        steps: 0,
        tried: 0,
        cut: false,
    };
    'outer: loop {
        for candidate in reductions(&out.scenario) {
            if candidate == out.scenario || candidate.validate().is_err() {
                continue;
            }
            if out.tried == budget {
                out.cut = true;
                break 'outer;
            }
            out.tried += 1;
            let v = judge(&candidate);
            if v.same_kind(verdict) {
                out.scenario = candidate;
                out.verdict = v;
                out.steps += 1;
                continue 'outer;
            }
        }
        break;
    }
    out
}

/// Every one-step reduction of `s`, biggest first.
fn reductions(s: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut with = |f: &dyn Fn(&mut Scenario)| {
        let mut c = s.clone();
        f(&mut c);
        out.push(c);
    };
    for i in 0..s.clients.len() {
        if s.clients.len() > 1 {
            with(&|c| {
                c.clients.remove(i);
            });
        }
    }
    for i in 0..s.downstream.outages.len() {
        with(&|c| {
            c.downstream.outages.remove(i);
        });
    }
    for i in 0..s.downstream.brownouts.len() {
        with(&|c| {
            c.downstream.brownouts.remove(i);
        });
    }
    for i in 0..s.faults.crash.len() {
        with(&|c| {
            c.faults.crash.remove(i);
        });
    }
    for i in 0..s.clients.len() {
        with(&|c| flatten(&mut c.clients[i]));
    }
    for off in PATTERNS_OFF {
        with(off);
    }
    for i in 0..s.clients.len() {
        for off in CLIENT_PATTERNS_OFF {
            with(&|c| off(retry_of(&mut c.clients[i])));
        }
    }
    with(&|c| c.horizon_s = (c.horizon_s / 2.0).ceil());
    with(&|c| c.horizon_s = (c.horizon_s * 0.8).ceil());
    for halve in HALVINGS {
        with(halve);
    }
    for i in 0..s.clients.len() {
        with(&|c| halve_population(&mut c.clients[i]));
        with(&|c| {
            let r = retry_of(&mut c.clients[i]);
            r.attempts_max = r.attempts_max.saturating_sub(1).max(1);
        });
    }
    for i in 0..s.downstream.outages.len() {
        with(&|c| {
            let o = &mut c.downstream.outages[i];
            o.end_s = o.start_s + (o.end_s - o.start_s) / 2.0;
        });
        with(&|c| {
            let o = &mut c.downstream.outages[i];
            let shift = o.start_s / 2.0;
            (o.start_s, o.end_s) = (o.start_s - shift, o.end_s - shift);
        });
    }
    for i in 0..s.downstream.brownouts.len() {
        with(&|c| {
            let b = &mut c.downstream.brownouts[i];
            b.end_s = b.start_s + (b.end_s - b.start_s) / 2.0;
        });
    }
    out
}

type Edit = fn(&mut Scenario);

/// Patterns and world features, switched off one at a time.
const PATTERNS_OFF: &[Edit] = &[
    |c| c.relay.breaker = None,
    |c| c.relay.rate_limit = None,
    |c| c.relay.retry.budget = None,
    |c| c.relay.retry.retry_breaker = None,
    |c| c.relay.retry.throttle = None,
    |c| c.relay.hedge = None,
    |c| c.relay.concurrency_limit = None,
    |c| c.relay.retry.attempt_timeout_ms = 0.0,
    |c| c.relay.retry.honour_retry_after = false,
    |c| c.relay.queue.shed_after_ms = 0.0,
    |c| c.relay.queue.lifo_above = 0,
    |c| c.network = NetworkConfig::default(),
    |c| c.store.kind = StoreKind::Memory,
    |c| c.downstream.capacity = None,
    |c| c.downstream.load_slope_ms = 0.0,
    |c| c.downstream.failure_rate = 0.0,
    |c| c.downstream.failure_mix = FailureMix::SERVER_ERRORS,
    |c| c.downstream.honours_idempotency_key = DownstreamConfig::default().honours_idempotency_key,
];

/// A population's retry features, switched off one at a time.
const CLIENT_PATTERNS_OFF: &[fn(&mut ClientRetryConfig)] = &[
    |r| r.budget = None,
    |r| r.retry_breaker = None,
    |r| r.throttle = None,
    |r| r.deadline_ms = 0.0,
    |r| r.timeout_ms = 0.0,
    |r| r.honour_retry_after = false,
    |r| r.keyed = true,
];

/// Smaller relay numbers, one at a time.
const HALVINGS: &[Edit] = &[
    |c| c.relay.workers = (c.relay.workers / 2).max(1),
    |c| c.relay.queue.capacity = (c.relay.queue.capacity / 2).max(1),
    |c| {
        let floor = c.relay.queue.capacity + c.relay.workers;
        c.relay.jobs_max = (c.relay.jobs_max / 2).max(floor);
    },
    |c| c.relay.retry.attempts_max = c.relay.retry.attempts_max.saturating_sub(1).max(1),
    |c| c.relay.dlq.capacity = (c.relay.dlq.capacity / 2).max(1),
    |c| c.relay.idempotency.keys_max = (c.relay.idempotency.keys_max / 2).max(1),
];

fn retry_of(c: &mut ClientsConfig) -> &mut ClientRetryConfig {
    match c {
        ClientsConfig::OpenLoop { retry, .. } | ClientsConfig::ClosedLoop { retry, .. } => retry,
    }
}

/// A schedule at its last phase's rate throughout (no spike).
fn flatten(c: &mut ClientsConfig) {
    if let ClientsConfig::OpenLoop {
        per_s, schedule, ..
    } = c
    {
        if let Some(last) = schedule.last().copied() {
            *per_s = Some(last.per_s);
            schedule.clear();
        }
    }
}

/// Half the clients, or half the rate.
fn halve_population(c: &mut ClientsConfig) {
    match c {
        ClientsConfig::OpenLoop {
            per_s, schedule, ..
        } => {
            if let Some(r) = per_s {
                *r /= 2.0;
            }
            schedule.iter_mut().for_each(|p| p.per_s /= 2.0);
        }
        ClientsConfig::ClosedLoop {
            population,
            requests_per_client,
            ..
        } => {
            *population = (*population / 2).max(1);
            *requests_per_client = (*requests_per_client).max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::draw::draw;

    /// A stand-in judge: "fails" while the scenario has a breaker and at
    /// least two workers, so the fixed point is known.
    fn judge(s: &Scenario) -> Verdict {
        if s.relay.breaker.is_some() && s.relay.workers >= 2 {
            Verdict::Violation("planted".into())
        } else {
            Verdict::Recovered
        }
    }

    #[test]
    fn shrinking_reaches_the_smallest_failing_scenario_and_is_deterministic() {
        let mut s = draw(3);
        s.relay.breaker = Some(Default::default());
        s.relay.workers = 40;
        s.relay.jobs_max = s.relay.queue.capacity + 40 + 100;
        let v = judge(&s);
        let a = shrink(&s, &v, 10_000, judge);
        assert!(!a.cut);
        assert_eq!(a.scenario.relay.workers, 2);
        assert!(a.scenario.relay.breaker.is_some());
        assert_eq!(a.scenario.clients.len(), 1);
        assert!(a.scenario.downstream.outages.is_empty());
        assert!(a.scenario.relay.rate_limit.is_none());
        let b = shrink(&s, &v, 10_000, judge);
        assert_eq!(a.scenario, b.scenario);
        assert_eq!((a.steps, a.tried), (b.steps, b.tried));
    }

    #[test]
    fn the_budget_bounds_the_work() {
        let mut s = draw(3);
        s.relay.breaker = Some(Default::default());
        s.relay.workers = 40;
        s.relay.jobs_max = s.relay.queue.capacity + 40 + 100;
        let shrunk = shrink(&s, &judge(&s), 3, judge);
        assert_eq!(shrunk.tried, 3);
        assert!(shrunk.cut);
    }
}
