//! What a volume reports; `Display` is the log line.

use crate::gi::{Rule, Uuid};
use crate::state::{DiskState, Role};

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeEvent {
    /// The role changed.
    Role {
        /// The new role.
        role: Role,
    },
    /// The local disk state changed.
    Disk {
        /// The new state.
        disk: DiskState,
    },
    /// Connected to a peer; identifiers compared.
    Handshake {
        /// Peer name.
        peer: String,
        /// The rule that decided.
        rule: Rule,
        /// What happens: "no resync", "bitmap resync as source"…
        what: String,
    },
    /// The connection to a peer ended.
    Disconnected {
        /// Peer name.
        peer: String,
        /// Blocks now out of sync with it.
        out_of_sync: u64,
    },
    /// A resync started.
    ResyncStarted {
        /// Peer name.
        peer: String,
        /// Whether this node sends.
        source: bool,
        /// Blocks to move.
        blocks: u64,
    },
    /// A resync finished.
    ResyncFinished {
        /// Peer name.
        peer: String,
        /// Whether this node sent.
        source: bool,
        /// Blocks moved.
        blocks: u64,
        /// Blocks found equal by checksum (not moved).
        equal: u64,
    },
    /// Both sides changed the data since they last agreed: not connected.
    SplitBrain {
        /// Peer name.
        peer: String,
        /// The rule that found it.
        rule: Rule,
    },
    /// A split brain resolved by the configured `after-sb-*` policy.
    SplitBrainResolved {
        /// Peer name.
        peer: String,
        /// The policy that decided.
        policy: String,
        /// This node's changes since the split are discarded (it becomes
        /// the sync target); otherwise the peer's are.
        discarded_here: bool,
    },
    /// The peer's data has no common history with this one: not connected.
    UnrelatedData {
        /// Peer name.
        peer: String,
    },
    /// The connection was refused for another reason.
    Refused {
        /// Peer name.
        peer: String,
        /// Why.
        why: String,
    },
    /// A new data generation started (writes without a peer).
    NewGeneration {
        /// The new current generation.
        current: Uuid,
    },
    /// Online verify finished.
    VerifyFinished {
        /// Peer name.
        peer: String,
        /// Blocks that differed (now marked out of sync).
        differing: u64,
    },
    /// `invalidate-remote`: the peer's copy is to be fully resynced from
    /// here.
    RemoteInvalidated {
        /// The peer.
        peer: String,
    },
    /// The volume grew here (`resize`).
    Resized {
        /// The old size in bytes.
        from: u64,
        /// The new size in bytes.
        to: u64,
        /// Where the new area comes from: resynced from a peer, to the
        /// peers, or nothing to resync (`--assume-clean`).
        new_area: String,
    },
    /// A peer connected with a smaller volume: it missed a resize; this
    /// side waits for it to grow (the area it lacks is marked for it).
    PeerSmaller {
        /// The peer.
        peer: String,
        /// Its size.
        theirs: u64,
        /// This side's.
        ours: u64,
    },
    /// A resize changed nothing; why.
    ResizeFailed {
        /// The reason, with the fix.
        why: String,
    },
    /// This node is about to become a sync target: its
    /// `before-resync-target` handler runs, and the resync waits for it.
    BeforeResyncTarget {
        /// The sync source.
        peer: String,
    },
    /// IO suspended: the primary lost a peer whose copy could be
    /// promoted (`fencing = resource-and-stonith`).
    IoSuspended {
        /// Peer name.
        peer: String,
    },
    /// A peer IO waited for can no longer be promoted with data missing.
    PeerFenced {
        /// Peer name.
        peer: String,
        /// How that was confirmed.
        how: String,
    },
    /// Suspended IO goes on.
    IoResumed {
        /// Why.
        why: String,
    },
    /// Crashed while primary: the activity log was applied.
    ActivityLogApplied {
        /// Blocks marked out of sync.
        blocks: u64,
    },
}

impl VolumeEvent {
    /// The DRBD handlers this event calls on a node in `role` (see
    /// `docs/volumes.md`, "Handlers"), and the peer it concerns.
    pub fn handlers(&self, role: Role) -> (Vec<&'static str>, Option<&str>) {
        match self {
            Self::SplitBrain { peer, .. } => {
                (vec!["initial-split-brain", "split-brain"], Some(peer))
            }
            Self::SplitBrainResolved { peer, .. } => (vec!["initial-split-brain"], Some(peer)),
            Self::Disconnected { peer, .. } if role == Role::Primary => {
                (vec!["fence-peer"], Some(peer))
            }
            Self::BeforeResyncTarget { peer } => (vec!["before-resync-target"], Some(peer)),
            Self::ResyncFinished {
                peer,
                source: false,
                ..
            } => (vec!["after-resync-target"], Some(peer)),
            Self::VerifyFinished { peer, differing } if *differing > 0 => {
                (vec!["out-of-sync"], Some(peer))
            }
            Self::Disk {
                disk: DiskState::Diskless,
            } => (vec!["local-io-error"], None),
            Self::Disk {
                disk: DiskState::Inconsistent | DiskState::Outdated,
            } if role == Role::Primary => (vec!["pri-on-incon-degr"], None),
            _ => (Vec::new(), None),
        }
    }
}

impl std::fmt::Display for VolumeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Role { role } => write!(f, "role: {role}"),
            Self::Disk { disk } => write!(f, "disk: {disk}"),
            Self::Handshake { peer, rule, what } => {
                write!(f, "{peer}: connected, {what} (rule {rule:?})")
            }
            Self::Disconnected { peer, out_of_sync } => write!(
                f,
                "{peer}: disconnected; {} KiB out of sync with it",
                out_of_sync * 4
            ),
            Self::ResyncStarted {
                peer,
                source,
                blocks,
            } => write!(
                f,
                "{peer}: resync started, {} {} KiB",
                if *source { "sending" } else { "receiving" },
                blocks * 4
            ),
            Self::ResyncFinished {
                peer,
                source,
                blocks,
                equal,
            } => {
                write!(
                    f,
                    "{peer}: resync finished, {} KiB {}",
                    blocks * 4,
                    if *source { "sent" } else { "received" }
                )?;
                if *equal > 0 {
                    write!(f, ", {} KiB found equal by checksum", equal * 4)?;
                }
                Ok(())
            }
            Self::SplitBrain { peer, rule } => write!(
                f,
                "{peer}: split brain detected (rule {rule:?}): both sides changed the data; not connected. Pick the victim and run `tandem volume connect --discard-my-data` there"
            ),
            Self::SplitBrainResolved {
                peer,
                policy,
                discarded_here,
            } => write!(
                f,
                "{peer}: split brain resolved by {policy}: {} changes since the split are discarded",
                if *discarded_here {
                    "this node's"
                } else {
                    "the peer's"
                }
            ),
            Self::UnrelatedData { peer } => write!(
                f,
                "{peer}: unrelated data (no common generation); not connected. Check the volume's disk on both nodes"
            ),
            Self::Refused { peer, why } => write!(f, "{peer}: connection refused: {why}"),
            Self::NewGeneration { current } => {
                write!(
                    f,
                    "new data generation {current:016X} (writing without a peer)"
                )
            }
            Self::VerifyFinished { peer, differing } => write!(
                f,
                "{peer}: online verify finished; {differing} block(s) differed and are marked out of sync"
            ),
            Self::RemoteInvalidated { peer } => write!(
                f,
                "{peer}: its copy invalidated from here (invalidate-remote): every block is resynced to it from this copy"
            ),
            Self::Resized { from, to, new_area } => write!(
                f,
                "grown from {} to {}; the new area {new_area}",
                crate::status::bytes(*from),
                crate::status::bytes(*to)
            ),
            Self::ResizeFailed { why } => write!(f, "resize: {why}"),
            Self::PeerSmaller { peer, theirs, ours } => write!(
                f,
                "{peer}: its volume is {}: it missed a resize; waiting for it to grow to {}",
                crate::status::bytes(*theirs),
                crate::status::bytes(*ours)
            ),
            Self::BeforeResyncTarget { peer } => write!(
                f,
                "{peer}: this copy is about to be resynced from it: before-resync-target runs first, the resync waits"
            ),
            Self::IoSuspended { peer } => write!(
                f,
                "{peer}: not connected to this primary, and its copy could be promoted: IO suspended until the cluster outdates or fences it, or it connects (fencing resource-and-stonith; `tandem volume resume-io` forces)"
            ),
            Self::PeerFenced { peer, how } => write!(f, "{peer}: fenced ({how})"),
            Self::IoResumed { why } => write!(f, "IO resumed: {why}"),
            Self::ActivityLogApplied { blocks } => write!(
                f,
                "crashed while primary: {} KiB of recently written extents marked out of sync",
                blocks * 4
            ),
        }
    }
}
