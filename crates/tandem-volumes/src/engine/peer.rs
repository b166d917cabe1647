//! What the engine keeps per peer: the connection's state, the writes in
//! flight towards it, what it sent that is not acknowledged yet, and the
//! resync or verify under way.

use std::collections::{BTreeMap, BTreeSet};

use tandem_core::Timestamp;

use super::{PeerConfig, VolumeConfig};
use crate::gi::Decision;
use crate::message::Message;
use crate::output::IoId;
use crate::state::{ConnState, DiskState, ReplState, Role};

/// A write received from this peer (we are its secondary).
#[derive(Clone, Copy, Debug)]
pub(super) struct Received {
    pub(super) seq: u64,
    pub(super) epoch: u64,
    pub(super) ack_on_write: bool,
}

/// A resync run (of [`Inflight::blocks`] blocks) in flight on the source.
#[derive(Clone, Debug, Default)]
pub(super) struct Inflight {
    /// An application write overlapped it after it was read: the data
    /// read is stale and must not be sent.
    pub(super) stale: bool,
    /// Sent; waiting for the target's acknowledgement.
    pub(super) sent: bool,
    /// With checksums: the block read, kept while its digest travels (sent
    /// only if the target's copy differs).
    pub(super) data: Option<bytes::Bytes>,
    /// Blocks in the run.
    pub(super) blocks: u64,
}

/// Per-peer state.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) cfg: PeerConfig,
    pub(super) conn: ConnState,
    pub(super) repl: ReplState,
    pub(super) role: Role,
    pub(super) disk: DiskState,
    pub(super) discard_my_data: bool,
    /// The handshake refused this peer (split brain, unrelated data…): the
    /// connection closes at `close_at` and stays StandAlone.
    pub(super) refused: bool,
    /// This node was primary when the connection was last lost.
    pub(super) primary_at_loss: bool,
    /// The both-primary refusal was reported (once per episode).
    pub(super) both_primary_reported: bool,
    /// The refusal is transient (both primary): reconnect afterwards.
    pub(super) retry_after_refusal: bool,
    pub(super) close_at: Option<Timestamp>,
    pub(super) last_heard: Timestamp,
    pub(super) ping_sent: Option<Timestamp>,
    // Handshake.
    pub(super) hello: Option<Message>,
    pub(super) decision: Option<Decision>,
    pub(super) bitmap_received: bool,
    /// Two secondaries while a primary is connected: nothing decided
    /// about the data (see `three_nodes`).
    pub(super) deferred: bool,
    /// The hello sent said a primary is connected here.
    pub(super) sent_with_primary: bool,
    // Towards the peer (we are primary).
    pub(super) next_seq: u64,
    /// Writes sent and not yet acknowledged as the protocol requires:
    /// sequence number → our write id.
    pub(super) pending: BTreeMap<u64, u64>,
    /// The transfer log: writes sent whose epoch the peer has not
    /// acknowledged as durable, by epoch (offset, length).
    pub(super) transfer_log: BTreeMap<u64, Vec<(u64, u64)>>,
    /// Epoch of the last write sent.
    pub(super) last_epoch_sent: u64,
    /// Last barrier sent and acknowledged.
    pub(super) barrier_sent: u64,
    pub(super) barrier_acked: u64,
    // From the peer (we are secondary).
    pub(super) received: BTreeMap<IoId, Received>,
    /// Per epoch: writes not yet on disk.
    pub(super) epoch_outstanding: BTreeMap<u64, u32>,
    /// Barriers received, waiting for their epoch's writes.
    pub(super) barriers_waiting: BTreeSet<u64>,
    /// A flush for this barrier is in flight.
    pub(super) barrier_flushing: BTreeMap<IoId, u64>,
    // Resync.
    pub(super) resync_total: u64,
    pub(super) resync_cursor: u64,
    pub(super) resync_inflight: BTreeMap<u64, Inflight>,
    /// Blocks in those runs, all together.
    pub(super) resync_inflight_blocks: u64,
    pub(super) resync_moved: u64,
    /// Blocks found equal by checksum (nothing sent).
    pub(super) resync_equal: u64,
    /// With a rate limit: when the next resync block may be read.
    pub(super) resync_next: Timestamp,
    /// The resync waits for its pace (not for acknowledgements).
    pub(super) resync_paced: bool,
    /// The dynamic controller's state (when configured).
    pub(super) ctl: super::controller::Controller,
    /// When the resync started (for its rate and ETA).
    pub(super) resync_started: Timestamp,
    pub(super) resync_done_sent: bool,
    /// Disk reads (source) and writes (target) of resync blocks.
    pub(super) resync_reads: BTreeMap<IoId, u64>,
    pub(super) resync_writes: BTreeMap<IoId, (u64, u64)>,
    /// Target reads to compare with the source's digest: block, digest.
    pub(super) resync_compares: BTreeMap<IoId, (u64, u64, u64)>,
    // Verify.
    pub(super) verify_cursor: Option<u64>,
    pub(super) verify_inflight: u32,
    pub(super) verify_differing: u64,
    /// Verify reads: block, and the source's digest (on the target).
    pub(super) verify_reads: BTreeMap<IoId, (u64, Option<u64>)>,
    /// Blocks verified.
    pub(super) verify_total: u64,
}

impl Peer {
    /// The resync run of `blocks` blocks from `b` goes in flight.
    pub(super) fn resync_launch(&mut self, b: u64, blocks: u64) {
        let f = Inflight {
            blocks,
            ..Inflight::default()
        };
        if let Some(old) = self.resync_inflight.insert(b, f) {
            self.resync_inflight_blocks -= old.blocks;
        }
        self.resync_inflight_blocks += blocks;
    }

    /// The resync run from `b` is no longer in flight.
    pub(super) fn resync_land(&mut self, b: u64) -> Option<Inflight> {
        let f = self.resync_inflight.remove(&b)?;
        self.resync_inflight_blocks -= f.blocks;
        Some(f)
    }

    /// The resync runs in flight that overlap blocks `first..=last`.
    pub(super) fn resync_runs_over(
        &mut self,
        first: u64,
        last: u64,
    ) -> impl Iterator<Item = &mut Inflight> {
        // No run is longer than RESYNC_RUN blocks.
        let from = first.saturating_sub(super::resync::RESYNC_RUN - 1);
        self.resync_inflight
            .range_mut(from..=last)
            .filter(move |(b, f)| **b + f.blocks > first)
            .map(|(_, f)| f)
    }

    pub(super) fn new(cfg: PeerConfig) -> Self {
        Self {
            cfg,
            conn: ConnState::Connecting,
            repl: ReplState::Off,
            role: Role::Unknown,
            disk: DiskState::DUnknown,
            discard_my_data: false,
            refused: false,
            retry_after_refusal: false,
            primary_at_loss: false,
            both_primary_reported: false,
            close_at: None,
            last_heard: Timestamp::ZERO,
            ping_sent: None,
            hello: None,
            decision: None,
            bitmap_received: false,
            deferred: false,
            sent_with_primary: false,
            next_seq: 1,
            pending: BTreeMap::new(),
            transfer_log: BTreeMap::new(),
            last_epoch_sent: 0,
            barrier_sent: 0,
            barrier_acked: 0,
            received: BTreeMap::new(),
            epoch_outstanding: BTreeMap::new(),
            barriers_waiting: BTreeSet::new(),
            barrier_flushing: BTreeMap::new(),
            resync_total: 0,
            resync_cursor: 0,
            resync_inflight: BTreeMap::new(),
            resync_inflight_blocks: 0,
            resync_moved: 0,
            resync_equal: 0,
            resync_next: Timestamp::ZERO,
            resync_paced: false,
            ctl: super::controller::Controller::default(),
            resync_started: Timestamp::ZERO,
            resync_done_sent: false,
            resync_reads: BTreeMap::new(),
            resync_writes: BTreeMap::new(),
            resync_compares: BTreeMap::new(),
            verify_cursor: None,
            verify_inflight: 0,
            verify_differing: 0,
            verify_reads: BTreeMap::new(),
            verify_total: 0,
        }
    }

    /// Whether application writes are sent to it.
    pub(super) fn replicating(&self) -> bool {
        self.conn == ConnState::Connected
            && matches!(
                self.repl,
                ReplState::Established
                    | ReplState::SyncSource
                    | ReplState::SyncTarget
                    | ReplState::VerifyS
                    | ReplState::VerifyT
            )
    }

    /// The next ping or ping timeout.
    pub(super) fn next_deadline(&self, cfg: &VolumeConfig) -> Option<Timestamp> {
        if self.conn != ConnState::Connected {
            return None;
        }
        if let Some(t) = self.close_at {
            return Some(t);
        }
        let ping = match self.ping_sent {
            Some(sent) => sent + cfg.ping_timeout,
            None => self.ping_due(cfg),
        };
        // A rate-limited resync waiting for its pace.
        let paced = (self.repl == ReplState::SyncSource && self.resync_paced)
            .then(|| self.resync_next - super::resync::RATE_BURST);
        Some(paced.map_or(ping, |t| ping.min(t)))
    }

    /// It owes acknowledgements: writes or barriers sent and not answered.
    pub(super) fn owes_acks(&self) -> bool {
        !self.pending.is_empty() || self.barrier_sent > self.barrier_acked
    }

    /// When it is pinged if it stays silent: after the idle interval, or
    /// sooner while it owes acknowledgements or is primary (a dead link is
    /// then found in about `stall_ping_after` + `ping_timeout`, not at the
    /// next idle ping — on the primary's side, and on the secondary's,
    /// whose copy must be outdated quickly when the primary goes on alone).
    pub(super) fn ping_due(&self, cfg: &VolumeConfig) -> Timestamp {
        let idle = self.last_heard + cfg.ping_interval;
        if self.owes_acks() || self.role == Role::Primary {
            idle.min(self.last_heard + cfg.stall_ping_after)
        } else {
            idle
        }
    }

    /// Resync progress in percent (100 when none runs).
    pub(super) fn done_percent(&self, out_of_sync: u64) -> f64 {
        if !matches!(self.repl, ReplState::SyncSource | ReplState::SyncTarget)
            || self.resync_total == 0
        {
            return 100.0;
        }
        let left = out_of_sync.min(self.resync_total);
        100.0 * (self.resync_total - left) as f64 / self.resync_total as f64
    }

    /// Resync rate (KiB/s) and time left (s), once some blocks moved.
    pub(super) fn rate_and_eta(&self, out_of_sync: u64, now: Timestamp) -> Option<(f64, f64)> {
        if !matches!(self.repl, ReplState::SyncSource | ReplState::SyncTarget) {
            return None;
        }
        let done = self
            .resync_total
            .saturating_sub(out_of_sync.min(self.resync_total));
        let secs = now.since(self.resync_started).as_secs_f64();
        if done == 0 || secs <= 0.0 {
            return None;
        }
        let rate = done as f64 * 4.0 / secs;
        Some((rate, out_of_sync as f64 * 4.0 / rate))
    }

    /// Requests received from it and not answered yet.
    pub(super) fn unacked(&self) -> u64 {
        self.received.len() as u64
    }

    /// Forgets the connection. Returns the ranges written towards it that
    /// it never acknowledged as durable (to mark out of sync).
    pub(super) fn reset_connection(&mut self) -> Vec<(u64, u64)> {
        let unflushed: Vec<(u64, u64)> = std::mem::take(&mut self.transfer_log)
            .into_values()
            .flatten()
            .collect();
        if self.refused && !self.retry_after_refusal {
            self.conn = ConnState::StandAlone;
        } else if self.conn == ConnState::Connected {
            self.conn = ConnState::Connecting;
        }
        self.refused = false;
        self.retry_after_refusal = false;
        self.close_at = None;
        self.repl = ReplState::Off;
        self.role = Role::Unknown;
        self.disk = DiskState::DUnknown;
        self.ping_sent = None;
        self.hello = None;
        self.decision = None;
        self.bitmap_received = false;
        self.deferred = false;
        self.sent_with_primary = false;
        self.pending.clear();
        self.last_epoch_sent = 0;
        self.barrier_sent = 0;
        self.barrier_acked = 0;
        self.received.clear();
        self.epoch_outstanding.clear();
        self.barriers_waiting.clear();
        self.barrier_flushing.clear();
        self.resync_total = 0;
        self.resync_cursor = 0;
        self.resync_inflight.clear();
        self.resync_inflight_blocks = 0;
        self.resync_moved = 0;
        self.resync_equal = 0;
        self.resync_paced = false;
        self.ctl = super::controller::Controller::default();
        self.resync_done_sent = false;
        self.resync_reads.clear();
        self.resync_writes.clear();
        self.resync_compares.clear();
        self.verify_cursor = None;
        self.verify_inflight = 0;
        self.verify_differing = 0;
        self.verify_reads.clear();
        self.verify_total = 0;
        unflushed
    }
}
