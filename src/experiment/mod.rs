//! Parameter sweeps over many seeds: CSVs, charts and summaries.
