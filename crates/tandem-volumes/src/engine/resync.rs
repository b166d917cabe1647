//! Resync. The sync source walks its bitmap for the target, reads each
//! run of set blocks (up to [`RESYNC_RUN`], after any overlapping write),
//! sends it, and clears the bits when the target acknowledges — which it
//! does once the run is durable, one write and one flush for the run; at
//! most `resync_window` blocks are in flight. An application write into a
//! run whose read is under way makes that read stale: it is not sent, and
//! the run is read again. When the bitmap is empty the source sends
//! its generations, which the target adopts. An interrupted resync
//! resumes from the bits still set.

use bytes::Bytes;
use tandem_core::Timestamp;

use super::Volume;
use super::disk::Purpose;
use crate::bitmap::BLOCK;
use crate::event::VolumeEvent;
use crate::gi::{Generations, NEW_BM_OFFSET};
use crate::message::Message;
use crate::output::Output;
use crate::state::{DiskState, ReplState};

/// How far ahead of its pace a rate-limited resync may read: blocks go in
/// bursts of this much time's worth, not one wake-up per block.
pub(super) const RATE_BURST: std::time::Duration = std::time::Duration::from_millis(10);

/// Most blocks one resync request carries (256 KiB): one read, one
/// message, one durable write on the target and one acknowledgement for
/// all of them (a 4 KiB request each made a full resync of 1 GiB take
/// 14 s, most of it in the target's flushes).
pub const RESYNC_RUN: u64 = 64;

/// Blocks in flight at most under the dynamic controller (16 MiB).
const MAX_CONTROLLED_WINDOW: u32 = 4096;

/// An application write this recent slows the resync to its minimum rate.
const APP_ACTIVE: std::time::Duration = std::time::Duration::from_millis(100);

/// The digest online verify compares.
pub fn digest(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

impl Volume {
    /// Bytes in block `b` (the last one may be short).
    pub(super) fn block_len(&self, b: u64) -> u64 {
        self.run_len(b, 1)
    }

    /// Bytes in the run of `n` blocks from `b` (the last block may be
    /// short at the end of the volume).
    fn run_len(&self, b: u64, n: u64) -> u64 {
        (n * BLOCK).min(self.meta.size.saturating_sub(b * BLOCK))
    }

    /// The resync's rate now (KiB/s): its minimum while the application
    /// writes, its limit otherwise (none under the dynamic controller);
    /// `None`: unpaced.
    pub(super) fn resync_pace(&self) -> Option<u64> {
        let busy = self
            .last_app_write
            .is_some_and(|t| self.now.since(t) < APP_ACTIVE);
        let min = self.cfg.resync_min_rate_kib.filter(|_| busy);
        // The dynamic controller replaces the fixed rate (as in DRBD).
        let fixed = self
            .cfg
            .resync_rate_kib
            .filter(|_| self.cfg.controller.is_none());
        match (min, fixed) {
            (Some(m), Some(r)) => Some(m.min(r)),
            (m, r) => m.or(r),
        }
        .filter(|r| *r > 0)
    }

    pub(super) fn start_resync_source(&mut self, i: usize) {
        let node = self.peers[i].cfg.node;
        let old = self.meta.peer(node).map_or(0, |m| m.bitmap_uuid);
        let sync = if old != 0 {
            (old & !1).wrapping_add(NEW_BM_OFFSET)
        } else {
            self.fresh_uuid()
        };
        if old != 0 {
            self.meta.push_history(old);
        }
        if let Some(m) = self.meta.peer_mut(node) {
            m.bitmap_uuid = sync;
        }
        if self.disk == DiskState::Consistent {
            self.meta.flags.up_to_date = true;
            self.set_disk(DiskState::UpToDate);
        }
        self.write_meta();
        self.send(node, Message::SyncUuid(sync));
        let total = self.meta.peer(node).map_or(0, |m| m.bitmap.count());
        let p = &mut self.peers[i];
        p.repl = ReplState::SyncSource;
        p.resync_total = total;
        p.resync_started = self.now;
        p.ctl = super::controller::Controller::default();
        p.resync_cursor = 0;
        // A second resync on one connection (`resize`'s new area).
        (p.resync_done_sent, p.resync_moved, p.resync_equal) = (false, 0, 0);
        let name = p.cfg.name.clone();
        self.emit(VolumeEvent::ResyncStarted {
            peer: name,
            source: true,
            blocks: total,
        });
        self.broadcast_state();
        self.pump_resync(i);
        self.pump_writes();
    }

    /// Keeps the resync window full; finishes when nothing is left.
    pub(super) fn pump_resync(&mut self, i: usize) {
        let node = self.peers[i].cfg.node;
        if self.peers[i].repl != ReplState::SyncSource || self.peers[i].resync_done_sent {
            return;
        }
        self.peers[i].resync_paced = false;
        // With the controller, its budget bounds what is in flight.
        let window = match self.cfg.controller {
            Some(_) => self.cfg.resync_window.max(MAX_CONTROLLED_WINDOW),
            None => self.cfg.resync_window.max(1),
        };
        loop {
            let in_flight = self.peers[i].resync_inflight_blocks;
            if in_flight >= u64::from(window) {
                break;
            }
            let pace = self.resync_pace();
            let paced = pace.is_some() || self.cfg.controller.is_some();
            let mut spacing = std::time::Duration::ZERO;
            if paced && self.peers[i].resync_next > self.now + RATE_BURST {
                self.peers[i].resync_paced = true;
                break;
            }
            let Some((b, mut n)) = self.next_resync_run(i, u64::from(window) - in_flight) else {
                break;
            };
            if let Some(rate) = pace {
                // A run no longer than the pace's burst.
                let burst = rate * RATE_BURST.as_millis() as u64 / 1000 / (BLOCK / 1024);
                n = n.min(burst.max(1));
            }
            if let Some(cc) = self.cfg.controller {
                let now = self.now;
                let p = &mut self.peers[i];
                match p
                    .ctl
                    .take(&cc, now, in_flight * (BLOCK / 1024), n * (BLOCK / 1024))
                {
                    // Spread over the step like a rate (below, with a
                    // minimum rate's pace if slower).
                    Some((kib, share)) => {
                        n = (kib / (BLOCK / 1024)).clamp(1, n);
                        spacing = share;
                    }
                    None => {
                        // Wait for the next step (the pacing timer wakes it).
                        p.resync_paced = true;
                        p.resync_next = p.ctl.next_step().unwrap_or(now) + RATE_BURST;
                        break;
                    }
                }
            }
            let len = self.run_len(b, n);
            let io = self.io();
            let now = self.now;
            let p = &mut self.peers[i];
            if let Some(rate) = pace {
                // This run's share of a second at `rate` KiB/s.
                let ns = len.saturating_mul(1_000_000_000) / rate.saturating_mul(1024);
                spacing = spacing.max(std::time::Duration::from_nanos(ns));
            }
            if paced {
                p.resync_next = p.resync_next.max(now) + spacing;
            }
            p.resync_cursor = b + n;
            p.resync_launch(b, n);
            p.resync_reads.insert(io, b);
            self.disk_queue.note(io, Purpose::Peer(node));
            self.counters.dr += len / 1024;
            self.disk_queue.read(io, b * BLOCK, len, &mut self.out);
        }
        let empty = self.meta.peer(node).is_none_or(|m| m.bitmap.count() == 0);
        if empty && self.peers[i].resync_inflight.is_empty() {
            self.finish_resync_source(i);
        } else if self.peers[i].resync_inflight.is_empty() && !self.peers[i].resync_paced {
            // Bits left behind the cursor (stale reads): start over.
            self.peers[i].resync_cursor = 0;
            if self.meta.peer(node).is_some_and(|m| m.bitmap.count() > 0) {
                self.pump_resync(i);
            }
        }
    }

    /// The next run to resync from the cursor: its first block and length
    /// (at most `most` and [`RESYNC_RUN`] blocks, one with checksums), all
    /// set in the bitmap and none in flight.
    fn next_resync_run(&self, i: usize, most: u64) -> Option<(u64, u64)> {
        let p = &self.peers[i];
        let m = self.meta.peer(p.cfg.node)?;
        // The end of the run in flight that covers `b`, if any.
        let covered = |b: u64| {
            p.resync_inflight
                .range(..=b)
                .next_back()
                .map(|(s, f)| s + f.blocks.max(1))
                .filter(|end| *end > b)
        };
        let mut from = p.resync_cursor;
        let b = loop {
            let b = m.bitmap.next_set(from)?;
            match covered(b) {
                Some(end) => from = end,
                None => break b,
            }
        };
        let next_in_flight = p
            .resync_inflight
            .range(b..)
            .next()
            .map_or(u64::MAX, |(s, _)| *s);
        // With checksums a block each: a digest is compared per block, so
        // one differing block moves 4 KiB, not its run.
        let run = if self.cfg.csums { 1 } else { RESYNC_RUN };
        let limit = most.min(run).min(m.bitmap.blocks() - b).max(1);
        let mut n = 1;
        while n < limit && b + n < next_in_flight && m.bitmap.get(b + n) {
            n += 1;
        }
        Some((b, n))
    }

    pub(super) fn resync_read_done(&mut self, i: usize, b: u64, data: Result<Bytes, String>) {
        let node = self.peers[i].cfg.node;
        let Some(stale) = self.peers[i].resync_inflight.get(&b).map(|f| f.stale) else {
            return;
        };
        match data {
            Ok(data) if !stale && self.cfg.csums => {
                let d = digest(&data);
                if let Some(x) = self.peers[i].resync_inflight.get_mut(&b) {
                    x.sent = true;
                    x.data = Some(data);
                }
                let blocks = self.peers[i]
                    .resync_inflight
                    .get(&b)
                    .map_or(1, |f| f.blocks);
                self.send(
                    node,
                    Message::ResyncDigest {
                        block: b,
                        blocks,
                        digest: d,
                    },
                );
            }
            Ok(data) if !stale => {
                if let Some(x) = self.peers[i].resync_inflight.get_mut(&b) {
                    x.sent = true;
                }
                self.send(node, Message::ResyncData { block: b, data });
            }
            _ => {
                // Stale or unreadable: read it again later.
                let p = &mut self.peers[i];
                p.resync_land(b);
                p.resync_cursor = p.resync_cursor.min(b);
                self.pump_resync(i);
            }
        }
    }

    pub(super) fn on_resync_ack(&mut self, i: usize, b: u64, blocks: u64) {
        let node = self.peers[i].cfg.node;
        // Only the run sent, as sent: anything else is not ours to clear.
        if self.peers[i]
            .resync_inflight
            .get(&b)
            .is_none_or(|f| f.blocks != blocks)
        {
            return;
        }
        let Some(f) = self.peers[i].resync_land(b) else {
            return;
        };
        self.peers[i].ctl.acked(f.blocks * (BLOCK / 1024));
        if !f.stale
            && let Some(m) = self.meta.peer_mut(node)
        {
            m.bitmap.clear_run(b, f.blocks);
        }
        if f.stale {
            let p = &mut self.peers[i];
            p.resync_cursor = p.resync_cursor.min(b);
        } else if f.data.is_some() {
            // Acknowledged on its digest alone: the copies were equal.
            self.peers[i].resync_equal += f.blocks;
        } else {
            self.peers[i].resync_moved += f.blocks;
        }
        self.pump_resync(i);
    }

    /// Checksums: the target's copy of `b` differs; send the block kept
    /// since its read (or read it again if a write made it stale).
    pub(super) fn on_resync_want(&mut self, i: usize, b: u64) {
        let node = self.peers[i].cfg.node;
        let Some(f) = self.peers[i].resync_inflight.get_mut(&b) else {
            return;
        };
        match f.data.take() {
            Some(data) if !f.stale => self.send(node, Message::ResyncData { block: b, data }),
            _ => {
                let p = &mut self.peers[i];
                p.resync_land(b);
                p.resync_cursor = p.resync_cursor.min(b);
                self.pump_resync(i);
            }
        }
    }

    fn finish_resync_source(&mut self, i: usize) {
        let node = self.peers[i].cfg.node;
        let sync = self.meta.peer(node).map_or(0, |m| m.bitmap_uuid);
        if let Some(m) = self.meta.peer_mut(node) {
            m.bitmap_uuid = 0;
        }
        self.meta.push_history(sync);
        self.write_meta();
        let gens = self.generations_for(node);
        self.send(node, Message::ResyncDone { gens });
        let p = &mut self.peers[i];
        p.resync_done_sent = true;
        p.repl = ReplState::Established;
        p.disk = DiskState::UpToDate;
        let (name, blocks, equal) = (p.cfg.name.clone(), p.resync_moved, p.resync_equal);
        self.emit(VolumeEvent::ResyncFinished {
            peer: name,
            source: true,
            blocks,
            equal,
        });
        self.announce_in_sync(i);
    }

    /// The target is ready: the resync starts.
    pub(super) fn on_resync_ready(&mut self, i: usize) {
        if self.peers[i].repl == ReplState::PausedSyncS {
            self.start_resync_source(i);
        }
    }

    // ---- the target ----

    /// Tells the source this node is ready to receive the resync.
    pub(super) fn target_ready(&mut self, i: usize) {
        let node = self.peers[i].cfg.node;
        // The source's sync generation follows.
        self.peers[i].repl = ReplState::SyncTarget;
        self.send(node, Message::ResyncReady);
    }

    /// The `before-resync-target` handler finished: `ok`, the resync from
    /// `peer` starts; otherwise the connection is dropped and stays down
    /// until `connect` (DRBD drops it too). Returns whether a resync was
    /// waiting for it.
    pub fn resync_target_ready(
        &mut self,
        now: Timestamp,
        peer: &str,
        ok: bool,
    ) -> Result<bool, super::VolumeError> {
        self.now = now;
        let i = self.peer_index_by_name(peer)?;
        if self.peers[i].repl != ReplState::PausedSyncT {
            return Ok(false);
        }
        if ok {
            self.target_ready(i);
        } else {
            let why = "the before-resync-target handler failed: not connected until `tandem volume connect`".to_string();
            self.emit(VolumeEvent::Refused {
                peer: peer.to_string(),
                why,
            });
            let node = self.peers[i].cfg.node;
            self.out.push_back(Output::Disconnect { peer: node });
            self.lose(i);
            self.peers[i].conn = crate::state::ConnState::StandAlone;
        }
        Ok(true)
    }

    pub(super) fn on_sync_uuid(&mut self, i: usize, u: u64) {
        let node = self.peers[i].cfg.node;
        self.keep_tracking_others(node);
        self.meta.current = u;
        self.meta.flags.consistent = false;
        self.meta.flags.up_to_date = false;
        if let Some(m) = self.meta.peer_mut(node) {
            m.bitmap_uuid = 0;
        }
        self.set_disk(DiskState::Inconsistent);
        self.write_meta();
        let total = self.meta.peer(node).map_or(0, |m| m.bitmap.count());
        let p = &mut self.peers[i];
        p.repl = ReplState::SyncTarget;
        p.resync_total = total;
        p.resync_started = self.now;
        (p.resync_moved, p.resync_equal) = (0, 0);
        let name = p.cfg.name.clone();
        self.emit(VolumeEvent::ResyncStarted {
            peer: name,
            source: false,
            blocks: total,
        });
    }

    pub(super) fn on_resync_data(&mut self, i: usize, b: u64, data: Bytes) {
        let node = self.peers[i].cfg.node;
        let blocks = self.meta.peer(node).map_or(0, |m| m.bitmap.blocks());
        let n = (data.len() as u64).div_ceil(BLOCK);
        // A run of at most RESYNC_RUN blocks inside this copy (its last
        // block may be short where the source's copy ends).
        if n == 0
            || n > RESYNC_RUN
            || b.saturating_add(n) > blocks
            || (b * BLOCK).saturating_add(data.len() as u64) > self.meta.size
        {
            self.out.push_back(Output::Disconnect { peer: node });
            return self.lose(i);
        }
        let io = self.io();
        self.peers[i].resync_writes.insert(io, (b, n));
        self.disk_queue.note(io, Purpose::Peer(node));
        self.counters.dw += data.len() as u64 / 1024;
        self.track_resync_write(node, b * BLOCK, data.len() as u64);
        // Durable before it is acknowledged: the source clears its bits on
        // the acknowledgement, so a crash here must not lose the run.
        self.disk_queue
            .write(io, b * BLOCK, data, true, &mut self.out);
    }

    pub(super) fn resync_write_done(
        &mut self,
        i: usize,
        b: u64,
        n: u64,
        result: Result<(), String>,
    ) {
        let node = self.peers[i].cfg.node;
        if result.is_err() {
            self.out.push_back(Output::Disconnect { peer: node });
            return self.lose(i);
        }
        self.peers[i].resync_moved += n;
        self.run_in_sync(i, b, n);
    }

    /// The target's copy of the run of `n` blocks from `b` is in sync:
    /// its bits are cleared and the source is told.
    fn run_in_sync(&mut self, i: usize, b: u64, n: u64) {
        let node = self.peers[i].cfg.node;
        if let Some(m) = self.meta.peer_mut(node) {
            m.bitmap.clear_run(b, n);
        }
        self.send(
            node,
            Message::ResyncAck {
                block: b,
                blocks: n,
            },
        );
    }

    /// Checksums: the source's digest of the run of `n` blocks from `b`;
    /// this copy's is compared once read.
    pub(super) fn on_resync_digest(&mut self, i: usize, b: u64, n: u64, theirs: u64) {
        let node = self.peers[i].cfg.node;
        let blocks = self.meta.peer(node).map_or(0, |m| m.bitmap.blocks());
        if n == 0 || n > RESYNC_RUN || b.saturating_add(n) > blocks {
            self.out.push_back(Output::Disconnect { peer: node });
            return self.lose(i);
        }
        let (io, len) = (self.io(), self.run_len(b, n));
        self.peers[i].resync_compares.insert(io, (b, n, theirs));
        self.disk_queue.note(io, Purpose::Peer(node));
        self.disk_queue.read(io, b * BLOCK, len, &mut self.out);
    }

    /// Checksums: this copy of the run is read; equal to the source's, it
    /// is in sync (nothing more travels), otherwise the run is asked for.
    pub(super) fn resync_compare_done(
        &mut self,
        i: usize,
        (b, n): (u64, u64),
        theirs: u64,
        data: Result<Bytes, String>,
    ) {
        let node = self.peers[i].cfg.node;
        if data.is_ok_and(|d| digest(&d) == theirs) {
            self.peers[i].resync_equal += n;
            self.run_in_sync(i, b, n);
        } else {
            self.send(node, Message::ResyncWant { block: b });
        }
    }

    pub(super) fn on_resync_done(&mut self, i: usize, gens: Generations) {
        let node = self.peers[i].cfg.node;
        self.keep_tracking_others(node);
        self.meta.current = gens.current & !1;
        self.meta.history = gens.history;
        self.meta.flags.consistent = true;
        self.meta.flags.up_to_date = true;
        self.meta.flags.outdated = false;
        if let Some(m) = self.meta.peer_mut(node) {
            m.bitmap_uuid = 0;
            m.bitmap.clear_all();
        }
        self.write_meta();
        let p = &mut self.peers[i];
        p.repl = ReplState::Established;
        let (name, blocks, equal) = (p.cfg.name.clone(), p.resync_moved, p.resync_equal);
        self.set_disk(DiskState::UpToDate);
        self.emit(VolumeEvent::ResyncFinished {
            peer: name,
            source: false,
            blocks,
            equal,
        });
    }
}
