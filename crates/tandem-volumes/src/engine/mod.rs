//! The replication engine of one volume on one node: a sans-IO state
//! machine. Inputs are application requests ([`Volume::write`],
//! [`Volume::flush`], [`Volume::read`]), disk completions
//! ([`Volume::disk_done`]), connection events and peer messages
//! ([`Volume::connected`], [`Volume::received`],
//! [`Volume::connection_lost`]), operator commands and the time; outputs
//! come one at a time from [`Volume::poll`].
//!
//! Modules: `write` (the primary's write, flush and read path and the
//! secondary's side of it: epochs, barriers, acknowledgements per
//! protocol), `handshake` (generations compared at connect, bitmaps
//! exchanged, split brain refused), `resync` (bitmap and full resync,
//! online verify), `disk` (the disk queue: overlapping writes never race),
//! `three_nodes` (what a secondary tracks for the other secondary),
//! `resize` (growing online).

mod commands;
mod controller;
mod disk;
mod handshake;
mod inputs;
mod peer;
mod resize;
mod resync;
mod suspend;
mod three_nodes;
mod verify;
mod write;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tandem_core::Timestamp;

use crate::event::VolumeEvent;
use crate::gi::{Generations, SideFlags, Uuid};
use crate::message::Protocol;
use crate::meta::Metadata;
use crate::output::{IoId, Output};
use crate::state::{ConnState, DiskState, ReplState, Role};
use crate::status::{Counters, PeerStatus, VolumeStatus};

use disk::{DiskQueue, Purpose};
use peer::Peer;
use write::{AppFlush, AppWrite};

pub use controller::ControllerConfig;
pub use resync::{RESYNC_RUN, digest};

/// A peer of this volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// Its node index (unique in the volume).
    pub node: u8,
    /// Its name, for logs and status.
    pub name: String,
    /// Replication protocol on this connection.
    pub protocol: Protocol,
}

/// What an engine is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeConfig {
    /// Volume name.
    pub name: String,
    /// This node's index.
    pub node: u8,
    /// The other nodes (one or two).
    pub peers: Vec<PeerConfig>,
    /// An epoch is closed after this many writes at the latest.
    pub max_epoch_writes: u32,
    /// Resync blocks in flight per peer.
    pub resync_window: u32,
    /// Ping interval on an idle connection.
    pub ping_interval: Duration,
    /// A ping unanswered for this long drops the connection.
    pub ping_timeout: Duration,
    /// A peer that owes acknowledgements and stays silent this long is
    /// pinged at once (DRBD drops a peer whose answer is its `timeout`,
    /// 6 s, late; tandem asks after 1 s and drops after `ping_timeout`).
    pub stall_ping_after: Duration,
    /// Seed of the generation identifiers (the driver draws it at random;
    /// the engine itself never does).
    pub uuid_seed: u64,
    /// Automatic split-brain recovery (default: disconnect, always).
    pub split_brain: crate::split_brain::Policies,
    /// What the primary does when it loses a peer (default:
    /// resource-only).
    pub fencing: crate::fencing::Fencing,
    /// As a sync target, wait for [`Volume::resync_target_ready`] before
    /// the resync starts (a `before-resync-target` handler is configured).
    pub hold_resync_target: bool,
    /// Resync compares checksums first (DRBD's `csums-alg`): the source
    /// sends each block's digest, and the block itself only if the
    /// target's copy differs.
    pub csums: bool,
    /// Resync at most this many KiB/s towards each peer (DRBD's
    /// `resync-rate`), leaving the rest of the link and disk to the
    /// application; `None`: as fast as the resync window allows.
    pub resync_rate_kib: Option<u64>,
    /// While the application writes here (within the last 100 ms), the
    /// resync slows to this many KiB/s (DRBD's `c-min-rate`, the part of
    /// its dynamic controller that yields to application IO); `None`: no
    /// such throttle.
    pub resync_min_rate_kib: Option<u64>,
    /// DRBD's dynamic resync controller (`c-plan-ahead` and friends);
    /// `None`: the resync keeps `resync_window` blocks in flight.
    pub controller: Option<ControllerConfig>,
}

impl VolumeConfig {
    /// A volume with DRBD's defaults: epochs of at most 2048 writes, 4 MiB
    /// of resync in flight (1024 blocks, in runs of up to 256 KiB; DRBD's
    /// `max-buffers` allows 8 MiB), a ping every 10 s answered within
    /// 0.5 s (after 1 s of silence from a peer that owes
    /// acknowledgements).
    pub fn new(name: &str, node: u8, peers: Vec<PeerConfig>, uuid_seed: u64) -> Self {
        Self {
            name: name.to_string(),
            node,
            peers,
            max_epoch_writes: 2048,
            resync_window: 1024,
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_millis(500),
            stall_ping_after: Duration::from_secs(1),
            uuid_seed,
            split_brain: crate::split_brain::Policies::default(),
            fencing: crate::fencing::Fencing::default(),
            hold_resync_target: false,
            csums: false,
            resync_rate_kib: None,
            resync_min_rate_kib: None,
            controller: None,
        }
    }
}

/// Why an operator command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    /// Promotion needs up-to-date data.
    #[error(
        "volume {volume}: the local copy is {disk}; refusing to become primary (`primary --force` makes this copy the newest and throws away what any peer has that this one lacks)"
    )]
    NotUpToDate {
        /// Volume name.
        volume: String,
        /// Its disk state.
        disk: DiskState,
    },
    /// A peer is primary; dual-primary is out of scope.
    #[error(
        "volume {volume}: {peer} is primary; two primaries are refused (no cluster filesystem runs on a tandem volume): demote {peer} first"
    )]
    PeerIsPrimary {
        /// Volume name.
        volume: String,
        /// The primary peer.
        peer: String,
    },
    /// Demotion with application I/O outstanding.
    #[error(
        "volume {volume}: {pending} write(s) still in flight; retry when the application stopped"
    )]
    Busy {
        /// Volume name.
        volume: String,
        /// Writes in flight.
        pending: usize,
    },
    /// No such peer.
    #[error("volume {volume}: no peer `{peer}`")]
    UnknownPeer {
        /// Volume name.
        volume: String,
        /// The name given.
        peer: String,
    },
    /// The command needs a connection in another state.
    #[error("volume {volume}: {what}")]
    WrongState {
        /// Volume name.
        volume: String,
        /// What is wrong.
        what: String,
    },
}

/// The engine of one volume on one node. See the module docs.
#[derive(Debug)]
pub struct Volume {
    cfg: VolumeConfig,
    meta: Metadata,
    role: Role,
    disk: DiskState,
    peers: Vec<Peer>,
    now: Timestamp,
    out: VecDeque<Output>,
    next_io: IoId,
    uuid_counter: u64,
    disk_queue: DiskQueue,
    /// Metadata writes in flight (writes wait behind them).
    meta_inflight: BTreeMap<IoId, ()>,
    /// A new data generation starts at the next write.
    new_generation_due: bool,
    /// Application writes waiting for a metadata write.
    blocked: VecDeque<write::Blocked>,
    /// Application writes in flight.
    writes: BTreeMap<u64, AppWrite>,
    next_write: u64,
    /// Flushes in flight.
    flushes: BTreeMap<u64, AppFlush>,
    next_flush: u64,
    /// The primary's current epoch, and writes in it.
    epoch: u64,
    epoch_writes: u32,
    /// Crashed while primary (found at attach).
    crashed_primary: bool,
    /// The latest application write (the resync yields to it).
    last_app_write: Option<Timestamp>,
    counters: Counters,
    /// Peers IO is suspended for (`resource-and-stonith`).
    suspended: std::collections::BTreeSet<u8>,
    /// Completions held back while IO is suspended.
    withheld: Vec<(
        crate::output::ReqId,
        Result<Option<bytes::Bytes>, crate::output::IoError>,
    )>,
    /// Writes from the primary that another peer may still miss, per
    /// peer: (epoch, offset, length) (see `three_nodes`).
    unsettled: BTreeMap<u8, Vec<(u64, u64, u64)>>,
    /// Bitmap marks made since the metadata was last written, and the
    /// metadata writes in flight that carry marks.
    marks_dirty: bool,
    marks_saving: std::collections::BTreeSet<IoId>,
    /// Barrier acknowledgements waiting for a metadata write: (peer, epoch).
    acks_after_meta: Vec<(u8, u64)>,
    /// `resize` rounds (see `resize`).
    resizing: resize::Resizing,
}

impl Volume {
    /// Attaches the volume with the metadata read from disk. Metadata of a
    /// node that crashed while primary has its activity log applied.
    pub fn attach(cfg: VolumeConfig, mut meta: Metadata, now: Timestamp) -> Self {
        let mut out = VecDeque::new();
        let crashed_now = meta.flags.primary;
        if crashed_now {
            // The bitmaps now cover what may have reached one side only;
            // the crash stays recorded until a peer compared generations.
            let blocks = meta.apply_activity_log();
            meta.flags.primary = false;
            meta.flags.crashed_primary = true;
            meta.al.clear();
            out.push_back(Output::Event(VolumeEvent::ActivityLogApplied { blocks }));
        }
        let crashed_primary = meta.flags.crashed_primary;
        let disk = if !meta.flags.consistent {
            DiskState::Inconsistent
        } else if meta.flags.outdated {
            DiskState::Outdated
        } else {
            DiskState::Consistent
        };
        let peers = cfg
            .peers
            .iter()
            .map(|p| {
                if meta.peer(p.node).is_none() {
                    meta.peers.push(crate::meta::PeerMeta {
                        node: p.node,
                        bitmap_uuid: 0,
                        bitmap: crate::bitmap::Bitmap::new(meta.size),
                    });
                }
                Peer::new(p.clone())
            })
            .collect();
        let mut v = Self {
            cfg,
            meta,
            role: Role::Secondary,
            disk,
            peers,
            now,
            out,
            next_io: 1,
            uuid_counter: 0,
            disk_queue: DiskQueue::default(),
            meta_inflight: BTreeMap::new(),
            new_generation_due: false,
            blocked: VecDeque::new(),
            writes: BTreeMap::new(),
            next_write: 1,
            flushes: BTreeMap::new(),
            next_flush: 1,
            epoch: 1,
            epoch_writes: 0,
            crashed_primary,
            last_app_write: None,
            counters: Counters::default(),
            suspended: std::collections::BTreeSet::new(),
            withheld: Vec::new(),
            unsettled: BTreeMap::new(),
            marks_dirty: false,
            marks_saving: std::collections::BTreeSet::new(),
            acks_after_meta: Vec::new(),
            resizing: resize::Resizing::default(),
        };
        v.emit(VolumeEvent::Disk { disk });
        if crashed_now {
            v.write_meta();
        }
        v
    }

    /// The volume's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The metadata as the engine keeps it.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Whether every metadata write asked for so far is done (the state
    /// the metadata records is on disk).
    pub fn meta_settled(&self) -> bool {
        self.meta_inflight.is_empty()
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The local disk state.
    pub fn disk(&self) -> DiskState {
        self.disk
    }

    /// The peers' node indices.
    pub fn peer_nodes(&self) -> impl Iterator<Item = u8> + '_ {
        self.peers.iter().map(|p| p.cfg.node)
    }

    /// The peers' names.
    pub fn peer_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.peers.iter().map(|p| p.cfg.name.as_str())
    }

    /// The next output, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Volume::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.peers
            .iter()
            .filter_map(|p| p.next_deadline(&self.cfg))
            .min()
    }

    /// Runs the timers due at `now`: pings and ping timeouts.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            if p.conn != ConnState::Connected {
                continue;
            }
            if p.close_at.is_some_and(|t| now >= t) {
                let node = p.cfg.node;
                self.out.push_back(Output::Disconnect { peer: node });
                self.lose(i);
                continue;
            }
            if p.refused {
                continue;
            }
            if let Some(sent) = p.ping_sent
                && now >= sent + self.cfg.ping_timeout
            {
                let node = p.cfg.node;
                self.out.push_back(Output::Disconnect { peer: node });
                self.lose(i);
                continue;
            }
            if p.repl == ReplState::SyncSource
                && p.resync_paced
                && p.resync_next <= now + resync::RATE_BURST
            {
                // A rate-limited resync may go on.
                self.pump_resync(i);
            }
            let p = &mut self.peers[i];
            if p.ping_sent.is_none() && now >= p.ping_due(&self.cfg) {
                p.ping_sent = Some(now);
                let node = p.cfg.node;
                self.send(node, crate::message::Message::Ping);
            }
        }
    }

    /// `status`: the volume as this node sees it.
    pub fn status(&self) -> VolumeStatus {
        VolumeStatus {
            name: self.cfg.name.clone(),
            role: self.role,
            disk: self.disk,
            peers: self
                .peers
                .iter()
                .map(|p| {
                    let oos = self.meta.peer(p.cfg.node).map_or(0, |m| m.bitmap.count());
                    let rate_eta = p.rate_and_eta(oos, self.now);
                    PeerStatus {
                        resync_kib_s: rate_eta.map(|r| r.0),
                        eta_seconds: rate_eta.map(|r| r.1),
                        node: p.cfg.name.clone(),
                        connection: p.conn,
                        replication: p.repl,
                        role: p.role,
                        peer_disk: p.disk,
                        done: p.done_percent(oos),
                        out_of_sync_kib: oos * 4,
                        pending: p.pending.len() as u64,
                        unacked: p.unacked(),
                        protocol: p.cfg.protocol,
                    }
                })
                .collect(),
            counters: crate::status::Counters {
                lo: self.disk_queue.open() as u64,
                ap: (self.writes.len() + self.blocked.len() + self.flushes.len()) as u64,
                ..self.counters.clone()
            },
            current: self.meta.current,
            size: self.meta.size,
            suspended_for: self.suspended_for(),
        }
    }

    // ---- shared helpers ----

    fn peer_index(&self, node: u8) -> Option<usize> {
        self.peers.iter().position(|p| p.cfg.node == node)
    }

    fn peer_index_by_name(&self, name: &str) -> Result<usize, VolumeError> {
        self.peers
            .iter()
            .position(|p| p.cfg.name == name)
            .ok_or_else(|| VolumeError::UnknownPeer {
                volume: self.cfg.name.clone(),
                peer: name.to_string(),
            })
    }

    fn io(&mut self) -> IoId {
        let id = self.next_io;
        self.next_io += 1;
        id
    }

    fn emit(&mut self, e: VolumeEvent) {
        self.out.push_back(Output::Event(e));
    }

    fn send(&mut self, peer: u8, msg: crate::message::Message) {
        self.counters.note_sent(&msg);
        self.out.push_back(Output::Send { peer, msg });
    }

    fn set_disk(&mut self, disk: DiskState) {
        if self.disk != disk {
            self.disk = disk;
            self.emit(VolumeEvent::Disk { disk });
            self.broadcast_state();
        }
    }

    fn broadcast_state(&mut self) {
        let (role, disk) = (self.role, self.disk);
        let nodes: Vec<u8> = self
            .peers
            .iter()
            .filter(|p| p.conn == ConnState::Connected && p.repl != ReplState::Handshake)
            .map(|p| p.cfg.node)
            .collect();
        for n in nodes {
            self.send(n, crate::message::Message::State { role, disk });
        }
    }

    /// Writes the metadata durably; writes submitted meanwhile wait.
    fn write_meta(&mut self) {
        let io = self.meta_io(Purpose::Meta);
        if std::mem::take(&mut self.marks_dirty) {
            self.marks_saving.insert(io);
        }
        self.out.push_back(Output::MetaWrite {
            io,
            meta: Box::new(self.meta.clone()),
        });
    }

    /// A metadata operation's id: application writes wait behind it.
    fn meta_io(&mut self, purpose: Purpose) -> IoId {
        let io = self.io();
        self.meta_inflight.insert(io, ());
        self.counters.meta_writes += 1;
        self.disk_queue.note(io, purpose);
        io
    }

    /// A fresh generation identifier (deterministic from the seed).
    fn fresh_uuid(&mut self) -> Uuid {
        self.uuid_counter += 1;
        let mut z = self
            .cfg
            .uuid_seed
            .wrapping_add(self.uuid_counter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Never a reserved value, never the role bit.
        (z & !1).max(0x100)
    }

    /// The generations as sent to `peer`.
    fn generations_for(&self, peer: u8) -> Generations {
        Generations {
            current: self.meta.current,
            bitmap: self.meta.peer(peer).map_or(0, |p| p.bitmap_uuid),
            history: self.meta.history,
            third: self
                .meta
                .peers
                .iter()
                .find(|p| p.node != peer && p.node != self.cfg.node)
                .map_or(0, |p| p.bitmap_uuid),
        }
    }

    fn side_flags_for(&self, peer: u8) -> SideFlags {
        SideFlags {
            crashed_primary: self.crashed_primary,
            primary: self.role == Role::Primary,
            resolve_conflicts: self.cfg.node < peer,
            protocol_c: self
                .cfg
                .peers
                .iter()
                .any(|p| p.node == peer && p.protocol == Protocol::C),
            outdated: self.disk == DiskState::Outdated,
            marked: self.meta.peer(peer).is_some_and(|m| m.bitmap.count() > 0),
        }
    }

    /// The connection to peer `i` is gone: pending writes to it complete
    /// locally with their blocks marked out of sync.
    fn lose(&mut self, i: usize) {
        let node = self.peers[i].cfg.node;
        let name = self.peers[i].cfg.name.clone();
        let was_replicating = self.peers[i].replicating();
        let was_primary = self.peers[i].role == Role::Primary
            && self.peers[i].conn == ConnState::Connected
            && self.peers[i].repl != ReplState::Handshake;
        self.acks_after_meta.retain(|(n, _)| *n != node);
        // Before the writes waiting for this peer complete: their
        // acknowledgements wait too if IO is suspended.
        if self.peers[i].conn == ConnState::Connected {
            self.suspend_for(node, self.peers[i].disk);
        }
        self.peers[i].primary_at_loss = self.role == Role::Primary;
        let unflushed = self.peers[i].reset_connection();
        if let Some(m) = self.meta.peer_mut(node) {
            for (offset, len) in unflushed {
                m.bitmap.set_range(offset, len);
            }
        }
        self.after_peer_gone(node);
        if self.role == Role::Primary && was_replicating {
            self.new_generation_due = true;
        }
        let oos = self.meta.peer(node).map_or(0, |m| m.bitmap.count());
        self.emit(VolumeEvent::Disconnected {
            peer: name,
            out_of_sync: oos,
        });
        if was_primary {
            self.primary_gone();
        }
        self.resize_peer_lost(node);
    }
}
