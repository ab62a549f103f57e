//! Fidelity against queueing theory: with failures and retries off, Poisson
//! arrivals and exponential service, the relay in the simulator is an
//! M/M/c/K queue. Its blocking probability, time-average number in system
//! and mean sojourn time must fall inside the 99 % confidence interval of
//! the simulated estimate, at utilisation 0.5, 0.9 and 1.2.
//!
//! The confidence interval comes from independent replications (one seed
//! each): mean ± t(0.995, r-1) · s / √r.

use resilient_relay::sim::workload::Workload;
use resilient_relay::sim::{simulate, SimOptions};

/// Exact M/M/c/K values: c servers, `capacity` places in the system (c
/// serving + waiting), arrival rate `lambda`, service rate `mu` per server.
struct Exact {
    blocking: f64,
    mean_in_system: f64,
    mean_sojourn_s: f64,
}

fn mmck(lambda: f64, mu: f64, c: usize, capacity: usize) -> Exact {
    let a = lambda / mu;
    // Unnormalised p_n, computed iteratively to stay stable.
    let mut weights = Vec::with_capacity(capacity + 1);
    let mut w = 1.0;
    weights.push(w);
    for n in 1..=capacity {
        w *= a / (n.min(c) as f64);
        weights.push(w);
    }
    let total: f64 = weights.iter().sum();
    let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let blocking = p[capacity];
    let mean_in_system: f64 = p.iter().enumerate().map(|(n, pn)| n as f64 * pn).sum();
    let lambda_eff = lambda * (1.0 - blocking);
    Exact {
        blocking,
        mean_in_system,
        mean_sojourn_s: mean_in_system / lambda_eff,
    }
}

/// Two-sided 99 % Student t quantile for 19 degrees of freedom.
const T_99_DF19: f64 = 2.861;
const REPLICATIONS: u64 = 20;

struct Estimate {
    mean: f64,
    half_width: f64,
}

fn estimate(samples: &[f64]) -> Estimate {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Estimate {
        mean,
        half_width: T_99_DF19 * (var / n).sqrt(),
    }
}

fn check(rho: f64, c: usize, queue: usize, horizon_s: f64) {
    let mu = 100.0;
    let lambda = rho * c as f64 * mu;
    let exact = mmck(lambda, mu, c, c + queue);
    let mut scenario = Workload::mmck(u64::MAX / 2, lambda, 1000.0 / mu, c, queue).scenario("mmck");
    scenario.horizon_s = horizon_s;
    if let resilient_relay::sim::clients::ClientsConfig::OpenLoop { requests_max, .. } =
        &mut scenario.clients[0]
    {
        *requests_max = None;
    }
    scenario.validate().expect("valid M/M/c/K scenario");
    let (mut blocking, mut in_system, mut sojourn) = (vec![], vec![], vec![]);
    for seed in 1..=REPLICATIONS {
        let s = simulate(&scenario, &SimOptions::seed(seed))
            .unwrap_or_else(|f| {
                panic!("{f}; reproduce: cargo test --test fidelity_mmck (rho {rho}, seed {seed})")
            })
            .summary;
        blocking.push(s.shed_429 as f64 / s.sends as f64);
        in_system.push(s.live_jobs_mean);
        sojourn.push(s.latency.mean_ms / 1e3);
    }
    let cases = [
        ("blocking probability", exact.blocking, estimate(&blocking)),
        (
            "mean number in system",
            exact.mean_in_system,
            estimate(&in_system),
        ),
        ("mean sojourn (s)", exact.mean_sojourn_s, estimate(&sojourn)),
    ];
    for (what, exact, est) in cases {
        eprintln!(
            "rho {rho}: {what}: exact {exact:.6}, simulated {:.6} ± {:.6}",
            est.mean, est.half_width
        );
        assert!(
            (exact - est.mean).abs() <= est.half_width,
            "rho {rho}: {what}: exact {exact:.6} outside simulated {:.6} ± {:.6} (seeds 1..={REPLICATIONS})",
            est.mean,
            est.half_width
        );
    }
}

#[test]
fn exact_formulas_are_sane() {
    // M/M/1/1 (Erlang loss with one server): blocking = a / (1 + a).
    let e = mmck(1.0, 1.0, 1, 1);
    assert!((e.blocking - 0.5).abs() < 1e-12);
    assert!((e.mean_in_system - 0.5).abs() < 1e-12);
}

#[test]
fn matches_mmck_at_utilisation_0_5() {
    check(0.5, 5, 2, 200.0);
}

#[test]
fn matches_mmck_at_utilisation_0_9() {
    check(0.9, 5, 5, 200.0);
}

#[test]
fn matches_mmck_at_utilisation_1_2() {
    check(1.2, 5, 10, 200.0);
}
