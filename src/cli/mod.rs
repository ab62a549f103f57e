//! The command line's subcommands, each a thin layer over the library.

pub mod bench;
pub mod log;
pub mod simulate;
pub mod swarm;
pub mod tune;
