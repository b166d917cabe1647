//! The states a volume and each of its connections go through, in DRBD's
//! words (`drbdadm status` readers know them).

use serde::{Deserialize, Serialize};

/// A node's role for a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Read-write: the application runs here.
    Primary,
    /// Keeps a copy; its export refuses writes.
    Secondary,
    /// A peer's role while disconnected.
    Unknown,
}

/// The state of a copy of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DiskState {
    /// No backing disk.
    Diskless,
    /// Being attached.
    Attaching,
    /// A resync target, or never synced: not usable on its own.
    Inconsistent,
    /// Consistent but known to be older than a peer's.
    Outdated,
    /// A peer's disk while disconnected.
    DUnknown,
    /// Consistent; not yet compared with a peer.
    Consistent,
    /// The latest data.
    UpToDate,
}

/// The state of the connection to one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnState {
    /// Not trying to connect (after `disconnect`, split brain or unrelated
    /// data) until `connect`.
    StandAlone,
    /// Trying to connect.
    Connecting,
    /// Connected.
    Connected,
}

/// What flows on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplState {
    /// Not connected.
    Off,
    /// Connected; identifiers being compared, bitmaps exchanged.
    Handshake,
    /// Replicating, in sync.
    Established,
    /// Replicating; this node sends the blocks that differ.
    SyncSource,
    /// Replicating; this node receives the blocks that differ.
    SyncTarget,
    /// The resync waits for the target's `before-resync-target` handler
    /// (a snapshot of its data before any block changes): nothing is sent
    /// to it meanwhile, writes are marked and follow in the resync.
    PausedSyncS,
    /// This node runs its `before-resync-target` handler; the resync
    /// starts when it is done.
    PausedSyncT,
    /// Online verify: this node sends digests.
    VerifyS,
    /// Online verify: this node compares digests.
    VerifyT,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
impl std::fmt::Display for DiskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
impl std::fmt::Display for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
impl std::fmt::Display for ReplState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
