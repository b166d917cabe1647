//! What a heartbeat packet carries, decoded: the sender's state, its
//! membership view, its group reports, operator settings and the echo
//! request. The byte layout and the checks live in `codec`.

/// What a packet announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// "I am alive": sent every keepalive on every link.
    Heartbeat,
    /// "I am shutting down cleanly": peers may stop waiting for deadtime.
    Leave,
}

/// The sender's own state, as it summarises it to its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NodeState {
    /// Still within its start-up window (`initdead`).
    #[default]
    Starting,
    /// Running normally.
    Online,
    /// Shutting down.
    Leaving,
}

impl NodeState {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            NodeState::Starting => 1,
            NodeState::Online => 2,
            NodeState::Leaving => 3,
        }
    }
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => NodeState::Starting,
            2 => NodeState::Online,
            3 => NodeState::Leaving,
            _ => return None,
        })
    }
}

/// Whether a heartbeat asks for, or is, an immediate answer. A node whose
/// lease rests on its peers' acknowledgements asks (`docs/safety.md`,
/// "Lease sizing"): its peers answer at once instead of at their next
/// keepalive, so what they acknowledge is microseconds old, not up to a
/// keepalive. An answer never asks, so two askers never ping-pong.
/// Carried in a field older decoders skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Echo {
    /// A periodic heartbeat that wants no answer.
    #[default]
    None,
    /// Answer this heartbeat at once.
    Wanted,
    /// This heartbeat answers one of the receiver's.
    Reply,
}

impl Echo {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Echo::None => 0,
            Echo::Wanted => 1,
            Echo::Reply => 2,
        }
    }
    pub(crate) fn from_byte(b: u8) -> Self {
        // Unknown values (a newer sender) are treated as wanting nothing.
        match b {
            1 => Echo::Wanted,
            2 => Echo::Reply,
            _ => Echo::None,
        }
    }
}

/// One member of the sender's membership view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewEntry {
    /// The member's node id.
    pub node: u16,
    /// The member's incarnation as the sender knows it.
    pub incarnation: u64,
    /// Whether the sender considers the member up.
    pub up: bool,
    /// The highest sequence number whose state the sender applied from
    /// this member (0: none): tells the member which of its reports (its
    /// grants, above all) the sender has seen.
    pub seen: u64,
}

/// Where a group stands on the sending node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GroupPhase {
    /// Nothing of the group runs there.
    #[default]
    Stopped,
    /// Resources are being started.
    Starting,
    /// Every resource runs.
    Started,
    /// Resources are being stopped.
    Stopping,
    /// A stop failed or timed out: the group may still run there, and must
    /// not start anywhere else until the node is fenced or an operator
    /// clears it.
    Blocked,
    /// The node has not yet checked whether the group's resources run there
    /// (it just started): treated as running.
    Probing,
}

impl GroupPhase {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            GroupPhase::Stopped => 0,
            GroupPhase::Starting => 1,
            GroupPhase::Started => 2,
            GroupPhase::Stopping => 3,
            GroupPhase::Blocked => 4,
            GroupPhase::Probing => 5,
        }
    }
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => GroupPhase::Stopped,
            1 => GroupPhase::Starting,
            2 => GroupPhase::Started,
            3 => GroupPhase::Stopping,
            4 => GroupPhase::Blocked,
            5 => GroupPhase::Probing,
            _ => return None,
        })
    }

    /// Whether anything of the group may be running there.
    pub fn is_active(self) -> bool {
        !matches!(self, GroupPhase::Stopped)
    }
}

/// One group's state on the sending node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupReport {
    /// Group index in the configuration.
    pub group: u16,
    /// Its phase there.
    pub phase: GroupPhase,
    /// The sender may not run it (fail count at the migration threshold).
    pub banned: bool,
    /// The sender's copy of the group's data is durably unfit (Outdated or
    /// Inconsistent): it cannot run the group until it resynced, whatever
    /// happens to the other nodes. Carried as bit 1 of the `banned` byte
    /// (a stale copy is also banned, so older decoders read it right).
    pub stale: bool,
    /// The node the sender's placement wants it on (0: none). A node starts
    /// a group only when every member's latest report names it here.
    pub target: u16,
}

/// An operator's move of a group to a node, as carried on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireMove {
    /// Group index.
    pub group: u16,
    /// Node id the group should run on.
    pub node: u16,
    /// Milliseconds the preference has left; 0 means until cleared.
    pub remaining_ms: u32,
}

/// The operator settings every node converges on: the record with the
/// highest (generation, origin) wins.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WireSettings {
    /// Grows with every operator change.
    pub generation: u64,
    /// Node that made the change (breaks ties).
    pub origin: u16,
    /// Nodes in standby.
    pub standby: Vec<u16>,
    /// Operator moves.
    pub moves: Vec<WireMove>,
    /// Per group, how many times an operator ran `cleanup`.
    pub cleanups: Vec<(u16, u32)>,
}

/// A decoded (or to-be-encoded) heartbeat packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// What the packet announces.
    pub kind: PacketKind,
    /// Index of the link the sender sent it on; authenticated, so a capture
    /// cannot be replayed onto another link.
    pub link: u8,
    /// Cluster id (see [`crate::cluster_id`]).
    pub cluster: u32,
    /// Sender node id.
    pub sender: u16,
    /// Sender's boot incarnation; grows at every daemon start.
    pub incarnation: u64,
    /// Sequence number, per sender, link and incarnation.
    pub seq: u64,
    /// Sender's own state.
    pub state: NodeState,
    /// Sender's membership view.
    pub view: Vec<ViewEntry>,
    /// Digest of the sender's configuration, to spot nodes with different files.
    pub config_digest: u64,
    /// The sender's resource groups.
    pub groups: Vec<GroupReport>,
    /// The sender's operator settings.
    pub settings: Option<WireSettings>,
    /// Whether the sender asks for an immediate answer, or gives one.
    pub echo: Echo,
}
