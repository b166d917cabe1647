//! The `tandem` binary's library: the daemon's drivers around the brain,
//! the operator commands and the arbitrator. Test tooling (labs, clusters
//! of real daemons, the demo) lives in the `tandem-lab` crate.

pub mod cli;
pub mod daemon;
pub mod process;
pub mod state_file;
pub mod volume;
pub mod witness;
