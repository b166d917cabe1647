//! A volume's metadata as kept on disk (internal at the end of the backing
//! file, or external): generations, flags, one bitmap per peer, and the
//! activity log. The engine asks its driver to write it durably
//! ([`crate::Output::MetaWrite`]) before anything that depends on it.

use serde::{Deserialize, Serialize};

use crate::activity_log::{ActivityLog, EXTENT};
use crate::bitmap::Bitmap;
use crate::gi::{HISTORY, JUST_CREATED, Uuid};

/// What is kept for one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMeta {
    /// The peer's node index.
    pub node: u8,
    /// The generation the bitmap tracks changes against (0: in sync).
    pub bitmap_uuid: Uuid,
    /// Blocks that may differ on the peer.
    pub bitmap: Bitmap,
}

/// Flags kept with the metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFlags {
    /// The data is consistent (not a resync target in progress).
    pub consistent: bool,
    /// It was up to date when last known.
    pub up_to_date: bool,
    /// Known to be older than a peer's.
    pub outdated: bool,
    /// Set (durably) before the first write as primary, cleared on a clean
    /// demotion: found set at attach, the node crashed while primary.
    pub primary: bool,
    /// Crashed while primary and not yet compared with a peer since (the
    /// resync rules use it).
    pub crashed_primary: bool,
}

/// Everything kept on disk for a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Usable size in bytes.
    pub size: u64,
    /// This node's index.
    pub node: u8,
    /// The current data generation.
    pub current: Uuid,
    /// Earlier generations, newest first.
    pub history: [Uuid; HISTORY],
    /// Per peer.
    pub peers: Vec<PeerMeta>,
    /// Flags.
    pub flags: MetaFlags,
    /// The hot extents.
    pub al: ActivityLog,
}

impl Metadata {
    /// Fresh metadata (`create-md`): generation "just created", nothing in
    /// sync, activity log of `al_extents` extents.
    pub fn create(size: u64, node: u8, peers: &[u8], al_extents: usize) -> Self {
        Self {
            size,
            node,
            current: JUST_CREATED,
            history: [0; HISTORY],
            peers: peers
                .iter()
                .map(|p| PeerMeta {
                    node: *p,
                    bitmap_uuid: 0,
                    bitmap: Bitmap::new(size),
                })
                .collect(),
            flags: MetaFlags::default(),
            al: ActivityLog::new(al_extents),
        }
    }

    /// The entry of peer `node`.
    pub fn peer(&self, node: u8) -> Option<&PeerMeta> {
        self.peers.iter().find(|p| p.node == node)
    }

    /// Mutable entry of peer `node`.
    pub fn peer_mut(&mut self, node: u8) -> Option<&mut PeerMeta> {
        self.peers.iter_mut().find(|p| p.node == node)
    }

    /// Pushes `u` onto the history (newest first).
    pub fn push_history(&mut self, u: Uuid) {
        if u == 0 {
            return;
        }
        self.history.rotate_right(1);
        self.history[0] = u;
    }

    /// After a crash as primary: every hot extent is out of sync towards
    /// every peer. Returns the blocks marked.
    pub fn apply_activity_log(&mut self) -> u64 {
        let extents: Vec<u64> = self.al.hot().collect();
        let mut marked = 0;
        for p in &mut self.peers {
            let before = p.bitmap.count();
            for e in &extents {
                p.bitmap.set_range(e * EXTENT, EXTENT);
            }
            marked += p.bitmap.count() - before;
        }
        marked
    }
}
