//! Whether a run recovered after its trigger, and how long that took.
//!
//! A metastable system is one that stays down after what pushed it over is
//! gone. Telling it from a slow recovery needs a rule that reads one run's
//! counts per bucket: the run has recovered at the first bucket, at or after
//! the trigger's end, from which every window of `window_s` seconds until
//! the end of the run delivers at least `share` of its reference (goodput
//! against the first tries the clients offered in the same window, taken
//! `lag_s` earlier: a healthy request succeeds about one latency after it
//! was sent, and comparing the same requests keeps the arrivals' own noise
//! out of the comparison). Windows
//! in which less than `offered_min` was offered prove nothing either way
//! and are skipped; a
//! run with no counted window left after the last bad one never recovered:
//! it is stuck.

/// The rule, in buckets of the series it reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// The trigger's end: recovery is looked for from here.
    pub after_s: f64,
    /// Each window must deliver at least this share of its reference.
    pub share: f64,
    /// Window length in seconds (a whole number of buckets).
    pub window_s: f64,
    /// How much earlier the reference window starts (whole buckets).
    pub lag_s: f64,
    /// A window whose reference counts fewer than this proves nothing
    /// either way (a handful of requests at the end of a ramp).
    pub offered_min: u64,
    /// Length of one bucket in milliseconds.
    pub bucket_ms: f64,
    /// The run's length: every window must lie inside it.
    pub horizon_s: f64,
}

/// Seconds from the trigger's end to recovery, or `None` for a stuck run.
/// `goodput` and `reference` are counts per bucket; buckets past their ends
/// count zero.
pub fn recovered_after(rule: &Rule, goodput: &[u32], reference: &[u32]) -> Option<f64> {
    let bucket_s = rule.bucket_ms / 1e3;
    let buckets = (rule.horizon_s / bucket_s).round() as usize;
    let window = ((rule.window_s / bucket_s).round() as usize).max(1);
    let first = (rule.after_s / bucket_s).ceil() as usize;
    let lag = (rule.lag_s / bucket_s).round() as usize;
    if buckets < window || first > buckets - window {
        return None;
    }
    let sum = |v: &[u32], from: usize, to: usize| -> u64 {
        (from..to)
            .map(|i| u64::from(v.get(i).copied().unwrap_or(0)))
            .sum()
    };
    // Windows start at first..=last_start; find the last one that falls short.
    let last_start = buckets - window;
    let mut from = first;
    let mut counted_since = false;
    for s in first..=last_start {
        let offered = sum(
            reference,
            s.saturating_sub(lag),
            (s + window).saturating_sub(lag),
        );
        if offered == 0 || offered < rule.offered_min {
            continue;
        }
        if (sum(goodput, s, s + window) as f64) < rule.share * offered as f64 {
            from = s + 1;
            counted_since = false;
        } else {
            counted_since = true;
        }
    }
    counted_since.then(|| (from as f64 * bucket_s - rule.after_s).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            after_s: 5.0,
            share: 0.9,
            window_s: 2.0,
            lag_s: 0.0,
            offered_min: 1,
            bucket_ms: 1000.0,
            horizon_s: 12.0,
        }
    }

    #[test]
    fn a_run_that_keeps_up_recovers_when_the_trigger_ends() {
        let offered = [10; 12];
        assert_eq!(recovered_after(&rule(), &offered, &offered), Some(0.0));
    }

    #[test]
    fn recovery_starts_after_the_last_window_that_falls_short() {
        let offered = [10; 12];
        let mut goodput = [10; 12];
        // Buckets 6 and 7 are short: windows starting at 5, 6 and 7 fail.
        goodput[6] = 2;
        goodput[7] = 2;
        assert_eq!(recovered_after(&rule(), &goodput, &offered), Some(3.0));
        // Short at the very end: no window is left to prove recovery.
        let mut late = [10; 12];
        late[11] = 0;
        assert_eq!(recovered_after(&rule(), &late, &offered), None);
    }

    #[test]
    fn a_run_that_never_catches_up_is_stuck() {
        let offered = [40; 12];
        let goodput = [30; 12];
        assert_eq!(recovered_after(&rule(), &goodput, &offered), None);
        // Missing buckets count zero.
        assert_eq!(recovered_after(&rule(), &[40; 8], &offered), None);
    }

    #[test]
    fn the_reference_is_read_lag_s_earlier() {
        // Goodput is the offered load two buckets later, bursty arrivals
        // included: with the lag it matches exactly, without it falls short.
        let offered = [10, 30, 0, 10, 40, 10, 0, 30, 10, 10, 10, 10];
        let mut goodput = [0; 12];
        goodput[2..].copy_from_slice(&offered[..10]);
        let lagged = Rule {
            lag_s: 2.0,
            ..rule()
        };
        assert_eq!(recovered_after(&lagged, &goodput, &offered), Some(0.0));
        assert_ne!(recovered_after(&rule(), &goodput, &offered), Some(0.0));
    }

    #[test]
    fn windows_with_nothing_offered_are_skipped_but_prove_nothing() {
        let mut offered = [10; 12];
        let mut goodput = [0; 12];
        offered[8..].fill(0);
        // Short until the traffic stops: nothing proves recovery.
        assert_eq!(recovered_after(&rule(), &goodput, &offered), None);
        goodput[6] = 10;
        goodput[7] = 10;
        assert_eq!(recovered_after(&rule(), &goodput, &offered), Some(1.0));
        // Windows offering fewer than `offered_min` are skipped too.
        offered[8] = 3;
        goodput[8] = 0;
        assert_eq!(recovered_after(&rule(), &goodput, &offered), None);
        // The thin bucket's windows offer 10 + 3 and 3: both under 14.
        let coarse = Rule {
            offered_min: 14,
            ..rule()
        };
        assert_eq!(recovered_after(&coarse, &goodput, &offered), Some(1.0));
    }
}
