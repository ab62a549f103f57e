//! The simulator's counters per time bucket, by name.
//!
//! A sweep that asks for `[series]` gets, for every run, one count per
//! bucket of each series it names (sends, successes, timeouts, calls in
//! progress, …), averaged over the seeds into one table and drawn over time
//! per strategy. Code refers to a series by its [`SeriesMetric`] variant;
//! definitions by its name, refused at its line with the list if unknown.

use crate::sim::SimResult;
use serde::de::{Deserialize, Deserializer, Error as _};

macro_rules! series_metrics {
    ($($variant:ident: $name:literal, $description:literal;)*) => {
        /// A per-bucket counter of a run.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum SeriesMetric { $($variant),* }

        /// Every series: variant, name, description.
        pub const SERIES: &[(SeriesMetric, &str, &str)] = &[
            $((SeriesMetric::$variant, $name, $description)),*
        ];
    };
}

series_metrics! {
    Starts: "starts", "client sends (first tries and retries) per bucket";
    FirstTries: "first_tries", "first sends of logical requests per bucket (the offered load)";
    Retries: "retries", "client re-sends per bucket";
    Successes: "successes", "logical requests that succeeded per bucket (goodput)";
    Timeouts: "timeouts", "client attempt timeouts per bucket";
    Calls: "calls", "downstream calls started per bucket";
    InProgress: "in_progress", "downstream calls in progress at the end of the bucket, abandoned ones included";
    Refusals: "refusals", "429 and 503 answers to clients per bucket";
    BudgetDenied: "budget_denied", "client retries a budget, breaker or throttle did not let out, per bucket";
}

impl SeriesMetric {
    pub fn name(self) -> &'static str {
        SERIES[self as usize].1
    }

    pub fn description(self) -> &'static str {
        SERIES[self as usize].2
    }

    pub fn by_name(name: &str) -> Option<SeriesMetric> {
        SERIES.iter().find(|s| s.1 == name).map(|s| s.0)
    }

    /// Every name, for messages.
    pub fn names() -> String {
        SERIES.iter().map(|s| s.1).collect::<Vec<_>>().join(", ")
    }

    /// This series of one run, counted per bucket of the run's
    /// `series_bucket_ms` (empty if the run kept no series).
    pub fn of(self, result: &SimResult) -> Vec<u32> {
        let Some(s) = &result.series else {
            return Vec::new();
        };
        match self {
            SeriesMetric::Starts => s.starts.clone(),
            SeriesMetric::FirstTries => s.first_tries.clone(),
            SeriesMetric::Retries => s.retries.clone(),
            SeriesMetric::Successes => s.successes.clone(),
            SeriesMetric::Timeouts => s.timeouts.clone(),
            SeriesMetric::Calls => s.calls.clone(),
            SeriesMetric::InProgress => s.in_progress.clone(),
            SeriesMetric::Refusals => s.refusals.clone(),
            SeriesMetric::BudgetDenied => s.budget_denied.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for SeriesMetric {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SeriesMetric::by_name(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "no series named `{name}`; known: {}",
                SeriesMetric::names()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for (i, &(metric, name, _)) in SERIES.iter().enumerate() {
            assert_eq!(metric as usize, i);
            assert_eq!(SeriesMetric::by_name(name), Some(metric));
        }
        assert_eq!(SeriesMetric::by_name("goodput"), None);
        assert!(SeriesMetric::names().starts_with("starts, first_tries,"));
    }
}
