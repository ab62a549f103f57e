//! The command line's subcommands, each a thin layer over the library.

pub mod bench;
pub mod compare;
pub mod loadgen;
pub mod log;
pub mod map;
pub mod merge;
pub mod simulate;
pub mod swarm;
pub mod tune;
