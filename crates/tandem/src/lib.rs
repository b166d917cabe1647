//! The `tandem` binary's library: the daemon's drivers around the brain,
//! the operator commands, and a loopback cluster of real daemons used by the
//! demo, the tests and the benchmarks.

pub mod arbiter;
pub mod cli;
pub mod daemon;
pub mod lab;
pub mod labcluster;
pub mod localcluster;
pub mod process;
pub mod state_file;
