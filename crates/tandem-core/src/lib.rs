//! The cluster brain of tandem: a sans-IO, deterministic state machine.
//!
//! A [`Brain`] owns everything one node knows about its cluster. The IO
//! drivers around it feed it inputs and carry out its outputs:
//!
//! - inputs: [`Brain::handle_datagram`] (bytes received on a link) and
//!   [`Brain::handle_timeout`] (the deadline from [`Brain::poll_timeout`] has
//!   passed), each with the current [`Timestamp`];
//! - outputs: [`Brain::poll`] returns one [`Output`] at a time (the lease,
//!   agent operations, witness and fencing work, datagrams to send, events
//!   to log); drivers handle it with one exhaustive `match`.
//!
//! The brain never reads a clock, touches a socket, spawns a thread or draws
//! a random number, so the same inputs always give the same outputs; the
//! simulator in `tandem-sim` relies on that to test thousands of failure
//! schedules in seconds.
//!
//! Modules: [`time`] (timestamps), [`membership`] (peers, links, failure
//! detection), [`event`] (what the brain reports), [`status`] (the snapshot
//! served to operators).

pub mod arbiter;
pub mod brain;
pub mod config;
pub mod event;
pub mod membership;
pub mod placement;
pub mod resources;
pub mod settings;
pub mod status;
pub mod time;

pub use brain::{Brain, Command, CommandError, Output, Transmit, Vote};
pub use config::{BrainConfig, LinkInfo, NoQuorumPolicy, NodeInfo, Quorum, Timing};
pub use event::{Event, RejectReason, Subject};
pub use membership::{LinkState, PeerState};
pub use placement::{Candidate, PlacementRules, place};
pub use resources::{Action, GroupSpec, Op, OpResult, ResourceKey, ResourceSpec, ResourceState};
pub use status::{
    GroupStatus, LATENESS_BOUNDS_US, LatenessHistogram, LinkStatus, MembershipStatus, NodeStatus,
    QuorumStatus, ResourceStatus, Stats,
};
pub use time::Timestamp;

/// A node's id on the wire: its position in the configuration's node list,
/// starting at 1.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NodeId(pub u16);

/// A link's index in the configuration's link list, starting at 0.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct LinkId(pub u8);
