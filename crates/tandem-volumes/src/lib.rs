//! tandem's replicated volumes: DRBD's guarantees in userspace, as a
//! sans-IO state machine.
//!
//! A [`Volume`] is one volume on one node. Its driver feeds it
//! application requests, disk completions, connection events and peer
//! messages, each with the current time, and carries out the
//! [`Output`]s it returns from [`Volume::poll`] (disk writes, reads and
//! flushes, metadata writes, messages, completions, events) with one
//! exhaustive `match`. The engine never touches a disk, a socket, a clock
//! or a random number generator, so the simulator in `tandem-sim` runs it
//! over thousands of seeded failure schedules.
//!
//! Modules: [`gi`] (generation identifiers and the resync rules),
//! [`bitmap`] (out-of-sync blocks per peer), [`activity_log`] (hot
//! extents), [`meta`] (what is kept on disk), [`split_brain`] (the
//! automatic recovery policies), [`message`] (what nodes tell
//! each other), [`state`] (roles and states in DRBD's words), [`status`],
//! [`event`], [`output`], and the engine itself.

pub mod activity_log;
pub mod bitmap;
pub mod cluster;
mod engine;
pub mod event;
pub mod fencing;
pub mod gi;
pub mod message;
pub mod meta;
pub mod output;
pub mod split_brain;
pub mod state;
pub mod status;

pub use engine::{ControllerConfig, PeerConfig, Volume, VolumeConfig, VolumeError};
pub use event::VolumeEvent;
pub use fencing::Fencing;
pub use message::{Channel, Message, Protocol};
pub use meta::Metadata;
pub use output::{IoError, IoId, Output, ReqId};
pub use state::{ConnState, DiskState, ReplState, Role};
pub use status::VolumeStatus;

/// The digest online verify compares (xxh3-64).
pub use engine::digest;

/// Most blocks one resync request carries (256 KiB).
pub use engine::RESYNC_RUN;
