//! The side-effect ledger the `downstream` service keeps; it lives with the
//! shared fault model, which counts effects the same way in the simulator.

pub use crate::fault::{Ledger, LedgerReport, DUPLICATES_LISTED_MAX};
