//! The membership snapshot served to operators (`tandem status`) and the
//! brain's counters.

use serde::{Deserialize, Serialize};

use crate::event::RejectReason;
use crate::membership::{LinkState, PeerState};
use crate::resources::ResourceState;

/// Counters kept by the brain; plain numbers, copied out by the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Heartbeat packets built for sending (one per link per keepalive).
    pub sent: u64,
    /// Datagrams accepted.
    pub accepted: u64,
    /// Bytes of the datagrams accepted.
    pub accepted_bytes: u64,
    /// Our own packets heard back (broadcast/multicast loopback); ignored.
    pub own: u64,
    /// Rejected: too short.
    pub truncated: u64,
    /// Rejected: too long.
    pub oversized: u64,
    /// Rejected: not a tandem packet.
    pub bad_magic: u64,
    /// Rejected: protocol version not spoken.
    pub unsupported_version: u64,
    /// Rejected: another cluster's packet.
    pub wrong_cluster: u64,
    /// Rejected: unknown key id.
    pub unknown_key: u64,
    /// Rejected: MAC mismatch (wrong key or tampering).
    pub bad_mac: u64,
    /// Rejected: authentic but malformed.
    pub malformed: u64,
    /// Rejected: sender not in the configuration.
    pub unknown_sender: u64,
    /// Rejected: received on a different link than it was sent on.
    pub wrong_link: u64,
    /// Rejected: duplicate or replayed sequence number.
    pub replayed: u64,
    /// Rejected: older incarnation or sequence behind the window.
    pub stale: u64,
    /// Rejected: an incarnation far ahead of this node's clock.
    #[serde(default)]
    pub future_incarnation: u64,
    /// Times the brain found it had not been run for over two keepalives.
    pub stalls: u64,
    /// Longest stall seen, in microseconds.
    pub longest_stall_us: u64,
    /// Worst lateness of a timer (how long after its deadline the brain was
    /// woken), in microseconds: the heartbeat path's scheduling delay.
    pub max_timer_lateness_us: u64,
    /// How late the peers' packets arrived (per link, against one
    /// keepalive after the previous one).
    #[serde(default)]
    pub heartbeat_lateness: LatenessHistogram,
}

/// Upper bounds of the [`LatenessHistogram`] buckets, in microseconds; a
/// last bucket holds everything later.
pub const LATENESS_BOUNDS_US: [u64; 10] = [
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
];

/// A fixed-bucket histogram of heartbeat lateness (bounds in
/// [`LATENESS_BOUNDS_US`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatenessHistogram {
    /// Packets per bucket (not cumulative); one more than the bounds.
    pub buckets: [u64; 11],
    /// Packets counted.
    pub count: u64,
    /// Sum of their lateness, microseconds.
    pub sum_us: u64,
}

impl LatenessHistogram {
    /// Counts one packet `late` after its expected time.
    pub fn observe(&mut self, late: std::time::Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let i = LATENESS_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENESS_BOUNDS_US.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

impl Stats {
    /// Increments the counter for `reason` and returns its new value.
    pub fn count(&mut self, reason: RejectReason) -> u64 {
        let c = match reason {
            RejectReason::Truncated => &mut self.truncated,
            RejectReason::Oversized => &mut self.oversized,
            RejectReason::BadMagic => &mut self.bad_magic,
            RejectReason::UnsupportedVersion => &mut self.unsupported_version,
            RejectReason::WrongCluster => &mut self.wrong_cluster,
            RejectReason::UnknownKey => &mut self.unknown_key,
            RejectReason::BadMac => &mut self.bad_mac,
            RejectReason::Malformed => &mut self.malformed,
            RejectReason::UnknownSender => &mut self.unknown_sender,
            RejectReason::WrongLink => &mut self.wrong_link,
            RejectReason::Replayed => &mut self.replayed,
            RejectReason::Stale => &mut self.stale,
            RejectReason::FutureIncarnation => &mut self.future_incarnation,
        };
        *c += 1;
        *c
    }

    /// Total datagrams rejected, all reasons.
    pub fn rejected(&self) -> u64 {
        self.truncated
            + self.oversized
            + self.bad_magic
            + self.unsupported_version
            + self.wrong_cluster
            + self.unknown_key
            + self.bad_mac
            + self.malformed
            + self.unknown_sender
            + self.wrong_link
            + self.replayed
            + self.stale
            + self.future_incarnation
    }
}

/// One (peer, link) path in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// Link label: the interface, or the link's name.
    pub name: String,
    /// Up, dead or unknown.
    pub state: LinkState,
    /// Milliseconds since a valid packet arrived on this link.
    pub last_heard_ms: Option<u64>,
}

/// One node in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// Node id on the wire.
    pub id: u16,
    /// True for the node answering.
    pub local: bool,
    /// Online, late, dead, left or pending (the local node is always online).
    pub state: PeerState,
    /// Boot incarnation, once heard.
    pub incarnation: Option<u64>,
    /// Milliseconds since last heard on any link.
    pub last_heard_ms: Option<u64>,
    /// Per-link paths to this node (empty for the local node).
    pub links: Vec<LinkStatus>,
    /// The node runs a different configuration.
    pub config_mismatch: bool,
    /// Names of the nodes this node reports as up in its heartbeats.
    pub sees: Vec<String>,
    /// Declared dead and powered off by a fence agent since.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,
}

/// One resource on the answering node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatus {
    /// Resource name.
    pub name: String,
    /// Its state here.
    pub state: ResourceState,
    /// Monitor or start failures counted here.
    pub fail_count: u32,
    /// The last failure's explanation.
    pub last_error: Option<String>,
}

/// One resource group, as the answering node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// Group name.
    pub name: String,
    /// Nodes where it is active (starting, started, stopping or blocked).
    pub active_on: Vec<String>,
    /// Where placement wants it now.
    pub target: Option<String>,
    /// Its phase on the answering node.
    pub phase_here: String,
    /// Node on which a failed stop blocked it, if any.
    pub blocked_on: Option<String>,
    /// Operator move in force, if any.
    pub moved_to: Option<String>,
    /// Nodes that may not run it: fail counts at the threshold, or (for
    /// peers) data not ready there.
    pub banned_on: Vec<String>,
    /// Why the answering node's copy of its data (its volumes) is not fit
    /// to start it, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hold_here: Option<String>,
    /// Nodes whose copy of its data is durably unfit (Outdated or
    /// Inconsistent, as their latest report says): they cannot run it
    /// until they resynced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_on: Vec<String>,
    /// Its resources on the answering node.
    pub resources: Vec<ResourceStatus>,
}

/// One fencing operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    /// The node fenced.
    pub node: String,
    /// Whether the agent succeeded.
    pub ok: bool,
    /// "fenced", or the agent's error.
    pub detail: String,
    /// When, in milliseconds of the answering daemon's uptime.
    pub uptime_ms: u64,
}

/// Quorum as the answering node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// Votes of this node and the peers heard within warntime.
    pub present: u32,
    /// Votes needed (a strict majority).
    pub needed: u32,
    /// Votes configured.
    pub total: u32,
    /// Whether `present >= needed`.
    pub quorate: bool,
    /// What happens without quorum.
    pub no_quorum: crate::config::NoQuorumPolicy,
}

/// The membership part of `tandem status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipStatus {
    /// Cluster name.
    pub cluster: String,
    /// Name of the node answering.
    pub local: String,
    /// Its boot incarnation.
    pub incarnation: u64,
    /// Milliseconds since its brain started.
    pub uptime_ms: u64,
    /// Whether it has joined: every peer heard (or initdead passed) and its
    /// resources probed. Before that it runs nothing and takes no command.
    pub joined: bool,
    /// Nodes currently members (online or late), local included.
    pub members: Vec<String>,
    /// Every configured node.
    pub nodes: Vec<NodeStatus>,
    /// Nodes in standby.
    pub standby: Vec<String>,
    /// Resource groups.
    pub groups: Vec<GroupStatus>,
    /// Quorum, when the cluster uses it.
    pub quorum: Option<QuorumStatus>,
    /// Why this node waits instead of running groups alone (witness,
    /// fencing), if so.
    pub waiting: Option<String>,
    /// Recent fencing operations, oldest first.
    pub fencing: Vec<FenceRecord>,
    /// Milliseconds left on this node's lease (it holds groups), if any.
    pub lease_ms: Option<u64>,
    /// Counters.
    pub stats: Stats,
}
