//! Application I/O. On the primary: a write is made durable in the
//! metadata's activity log if its extent is cold, written locally and sent
//! to every replicating peer, and completes when the local write is done
//! and each peer acknowledged as its protocol requires (A: sent, B:
//! received, C: written). Writes are grouped in epochs; an epoch closes
//! when one of its writes completes, and a barrier tells each peer to
//! flush it. A flush completes only after the local flush **and** every
//! peer's barrier acknowledgement for every write completed before it —
//! stronger than DRBD, whose empty flush does not wait for the peers.
//!
//! On a secondary: writes are written as they arrive, acknowledged per
//! protocol, and each barrier is answered once its epoch is on disk and
//! flushed.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tandem_core::Timestamp;

use super::Volume;
use super::disk::Purpose;
use super::peer::Received;
use crate::event::VolumeEvent;
use crate::message::{Message, Protocol};
use crate::output::{IoError, Output, ReqId};
use crate::state::{DiskState, ReplState, Role};

/// A write waiting for a metadata write (activity log, new generation).
#[derive(Debug)]
pub(super) struct Blocked {
    pub(super) req: ReqId,
    offset: u64,
    data: Bytes,
    fua: bool,
}

/// An application write in flight.
#[derive(Debug)]
pub(super) struct AppWrite {
    req: ReqId,
    epoch: u64,
    local_done: bool,
    local_error: Option<String>,
    waiting: BTreeSet<u8>,
}

/// An application flush in flight.
#[derive(Debug)]
pub(super) struct AppFlush {
    req: ReqId,
    local_done: bool,
    local_error: Option<String>,
    /// Per peer: the epoch whose barrier acknowledgement is needed.
    waiting: BTreeMap<u8, u64>,
}

impl Volume {
    fn check_range(&self, offset: u64, len: u64) -> Result<(), IoError> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.meta.size)
        {
            return Err(IoError::OutOfRange {
                offset,
                len,
                size: self.meta.size,
            });
        }
        Ok(())
    }

    fn complete(&mut self, req: ReqId, result: Result<Option<Bytes>, IoError>) {
        self.out.push_back(Output::Complete { req, result });
    }

    /// An application write of `data` at `offset`; `fua`: durable (on
    /// every protocol-C peer too) before it completes.
    pub fn write(&mut self, now: Timestamp, req: ReqId, offset: u64, data: Bytes, fua: bool) {
        self.now = now;
        self.last_app_write = Some(now);
        if self.role != Role::Primary {
            return self.complete(req, Err(IoError::ReadOnly));
        }
        if self.disk != DiskState::UpToDate {
            return self.complete(req, Err(IoError::NotUsable(self.disk)));
        }
        if let Err(e) = self.check_range(offset, data.len() as u64) {
            return self.complete(req, Err(e));
        }
        self.blocked.push_back(Blocked {
            req,
            offset,
            data,
            fua,
        });
        self.pump_writes();
    }

    /// Submits blocked writes, writing the metadata first when they need
    /// it. Writes also wait while a peer is in its handshake.
    pub(super) fn pump_writes(&mut self) {
        while self.meta_inflight.is_empty() {
            if self.peers.iter().any(|p| p.repl == ReplState::Handshake) {
                return;
            }
            // Suspended for fencing: nothing new reaches any disk.
            if !self.suspended.is_empty() {
                return;
            }
            let Some(b) = self.blocked.front() else {
                return;
            };
            let (offset, len) = (b.offset, b.data.len() as u64);
            if self.new_generation_due {
                self.new_generation();
                self.write_meta();
                return;
            }
            if !self.meta.flags.primary || !self.meta.al.covers(offset, len) {
                self.meta.flags.primary = true;
                self.meta.al.touch(offset, len);
                self.counters.al += 1;
                self.write_meta();
                return;
            }
            if let Some(b) = self.blocked.pop_front() {
                self.submit(b);
            }
        }
    }

    /// Starts a new data generation: every peer not replicating now keeps
    /// tracking changes against the old one.
    fn new_generation(&mut self) {
        self.new_generation_due = false;
        let old = self.meta.current & !1;
        let absent: Vec<u8> = self
            .peers
            .iter()
            .filter(|p| !p.replicating())
            .map(|p| p.cfg.node)
            .collect();
        if absent.is_empty() {
            return;
        }
        for &n in &absent {
            // The low bit records whether this node was primary when it
            // lost that peer: the older primary of a split brain
            // (`after-sb-0pri discard-younger/older-primary`).
            let was_primary = self
                .peers
                .iter()
                .any(|p| p.cfg.node == n && p.primary_at_loss);
            if let Some(m) = self.meta.peer_mut(n)
                && m.bitmap_uuid == 0
            {
                m.bitmap_uuid = old | u64::from(was_primary);
            }
        }
        let fresh = self.fresh_uuid() | 1;
        self.meta.current = fresh;
        self.counters.bm += 1;
        self.emit(VolumeEvent::NewGeneration { current: fresh });
        // Secondaries still replicating adopt it (ahead of the writes of
        // the new generation on the same connection).
        for n in self.replicating_nodes() {
            let absent = absent.clone();
            self.send(
                n,
                Message::NewCurrent {
                    current: fresh,
                    absent,
                },
            );
        }
        // Writes before and after the new generation never share an epoch.
        if self.epoch_writes > 0 {
            self.close_epoch();
        }
    }

    fn submit(&mut self, b: Blocked) {
        let len = b.data.len() as u64;
        let id = self.next_write;
        self.next_write += 1;
        let epoch = self.epoch;
        self.epoch_writes += 1;
        let mut waiting = BTreeSet::new();
        let replicas = self.replicating_nodes();
        for i in 0..self.peers.len() {
            let node = self.peers[i].cfg.node;
            if !self.peers[i].replicating() {
                if let Some(m) = self.meta.peer_mut(node) {
                    m.bitmap.set_range(b.offset, len);
                }
                continue;
            }
            let p = &mut self.peers[i];
            let seq = p.next_seq;
            p.next_seq += 1;
            p.last_epoch_sent = epoch;
            p.transfer_log
                .entry(epoch)
                .or_default()
                .push((b.offset, len));
            let blocks = crate::bitmap::blocks_of(b.offset, len);
            if !blocks.is_empty() {
                for f in p.resync_runs_over(blocks.start, blocks.end - 1) {
                    f.stale = true;
                }
            }
            let protocol = p.cfg.protocol;
            if protocol != Protocol::A {
                p.pending.insert(seq, id);
                waiting.insert(node);
            }
            self.send(
                node,
                Message::Write {
                    seq,
                    epoch,
                    offset: b.offset,
                    data: b.data.clone(),
                    fua: b.fua,
                    protocol,
                    others: replicas.iter().copied().filter(|n| *n != node).collect(),
                },
            );
        }
        // The local write after the peers' messages: the round trip to a
        // peer is the longer path, so it starts first.
        let io = self.io();
        self.disk_queue.note(io, Purpose::AppWrite(id));
        self.disk_queue
            .write(io, b.offset, b.data.clone(), b.fua, &mut self.out);
        self.counters.dw += len / 1024;
        self.writes.insert(
            id,
            AppWrite {
                req: b.req,
                epoch,
                local_done: false,
                local_error: None,
                waiting,
            },
        );
        if self.epoch_writes >= self.cfg.max_epoch_writes {
            self.close_epoch();
        }
    }

    /// The peers application writes go to now.
    fn replicating_nodes(&self) -> Vec<u8> {
        self.peers
            .iter()
            .filter(|p| p.replicating())
            .map(|p| p.cfg.node)
            .collect()
    }

    /// Closes the current epoch and sends its barrier to every peer that
    /// got writes of it.
    pub(super) fn close_epoch(&mut self) {
        let closed = self.epoch;
        self.epoch += 1;
        self.epoch_writes = 0;
        let nodes: Vec<u8> = self
            .peers
            .iter_mut()
            .filter(|p| p.replicating() && p.last_epoch_sent == closed && p.barrier_sent < closed)
            .map(|p| {
                p.barrier_sent = closed;
                p.cfg.node
            })
            .collect();
        for n in nodes {
            self.send(n, Message::Barrier { epoch: closed });
        }
    }

    /// Completes write `id` if its local half and every awaited peer are
    /// done.
    pub(super) fn write_progress(&mut self, id: u64) {
        let Some(w) = self.writes.get(&id) else {
            return;
        };
        if !w.local_done || !w.waiting.is_empty() {
            return;
        }
        let Some(w) = self.writes.remove(&id) else {
            return;
        };
        let result = match w.local_error {
            Some(e) => Err(IoError::Disk(e)),
            None => Ok(None),
        };
        // The barrier before the answer: an fsync that follows the write
        // finds the peers already flushing.
        if w.epoch == self.epoch && self.epoch_writes > 0 {
            self.close_epoch();
        }
        self.acknowledge(w.req, result);
    }

    pub(super) fn app_write_done(&mut self, id: u64, result: Result<(), String>) {
        if let Some(w) = self.writes.get_mut(&id) {
            w.local_done = true;
            w.local_error = result.err();
        }
        self.write_progress(id);
    }

    /// Peer `node` acknowledged write `seq` (protocol B or C).
    pub(super) fn on_ack(&mut self, i: usize, seq: u64) {
        let node = self.peers[i].cfg.node;
        if let Some(id) = self.peers[i].pending.remove(&seq) {
            if let Some(w) = self.writes.get_mut(&id) {
                w.waiting.remove(&node);
            }
            self.write_progress(id);
        }
    }

    /// A peer is gone: nothing waits for it any more.
    pub(super) fn after_peer_gone(&mut self, node: u8) {
        let ids: Vec<u64> = self
            .writes
            .iter_mut()
            .filter_map(|(id, w)| w.waiting.remove(&node).then_some(*id))
            .collect();
        for id in ids {
            self.write_progress(id);
        }
        let fl: Vec<u64> = self
            .flushes
            .iter_mut()
            .filter_map(|(id, f)| f.waiting.remove(&node).map(|_| *id))
            .collect();
        for id in fl {
            self.flush_progress(id);
        }
        self.pump_writes();
    }

    /// An application flush: completes once every write completed before
    /// it is durable here and on every replicating peer.
    pub fn flush(&mut self, now: Timestamp, req: ReqId) {
        self.now = now;
        if self.role == Role::Primary && self.epoch_writes > 0 {
            self.close_epoch();
        }
        let id = self.next_flush;
        self.next_flush += 1;
        let mut waiting = BTreeMap::new();
        let mut barriers = Vec::new();
        // A secondary writes nothing of its own: its flush is local.
        let primary = self.role == Role::Primary;
        for p in self.peers.iter_mut().filter(|p| primary && p.replicating()) {
            let need = p.last_epoch_sent;
            if need > p.barrier_acked {
                if p.barrier_sent < need {
                    p.barrier_sent = need;
                    barriers.push((p.cfg.node, need));
                }
                waiting.insert(p.cfg.node, need);
            }
        }
        for (n, e) in barriers {
            self.send(n, Message::Barrier { epoch: e });
        }
        let io = self.io();
        self.disk_queue.note(io, Purpose::AppFlush(id));
        self.out.push_back(Output::DiskFlush { io });
        self.flushes.insert(
            id,
            AppFlush {
                req,
                local_done: false,
                local_error: None,
                waiting,
            },
        );
    }

    pub(super) fn app_flush_done(&mut self, id: u64, result: Result<(), String>) {
        if let Some(f) = self.flushes.get_mut(&id) {
            f.local_done = true;
            f.local_error = result.err();
        }
        self.flush_progress(id);
    }

    fn flush_progress(&mut self, id: u64) {
        let done = self
            .flushes
            .get(&id)
            .is_some_and(|f| f.local_done && f.waiting.is_empty());
        if !done {
            return;
        }
        if let Some(f) = self.flushes.remove(&id) {
            let result = match f.local_error {
                Some(e) => Err(IoError::Disk(e)),
                None => Ok(None),
            };
            self.acknowledge(f.req, result);
        }
    }

    /// Peer `i` flushed every epoch up to `epoch`.
    pub(super) fn on_barrier_ack(&mut self, i: usize, epoch: u64) {
        let node = self.peers[i].cfg.node;
        let p = &mut self.peers[i];
        p.barrier_acked = p.barrier_acked.max(epoch);
        let keep = p.transfer_log.split_off(&epoch.saturating_add(1));
        p.transfer_log = keep;
        // The other secondaries stop tracking these writes for it.
        if self.role == Role::Primary {
            for n in self.replicating_nodes() {
                if n != node {
                    self.send(n, Message::Durable { node, epoch });
                }
            }
        }
        let ids: Vec<u64> = self
            .flushes
            .iter_mut()
            .filter_map(|(id, f)| match f.waiting.get(&node) {
                Some(need) if *need <= epoch => {
                    f.waiting.remove(&node);
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        for id in ids {
            self.flush_progress(id);
        }
    }

    /// An application read (the primary, or an up-to-date secondary's
    /// read-only export).
    pub fn read(&mut self, now: Timestamp, req: ReqId, offset: u64, len: u64) {
        self.now = now;
        if !matches!(self.disk, DiskState::UpToDate | DiskState::Consistent) {
            return self.complete(req, Err(IoError::NotUsable(self.disk)));
        }
        if let Err(e) = self.check_range(offset, len) {
            return self.complete(req, Err(e));
        }
        let io = self.io();
        self.disk_queue.note(io, Purpose::AppRead(req));
        self.counters.dr += len / 1024;
        self.disk_queue.read(io, offset, len, &mut self.out);
    }

    // ---- the secondary's side ----

    /// A replicated write from peer `i`.
    pub(super) fn on_write(&mut self, i: usize, write: Message) {
        let Message::Write {
            seq,
            epoch,
            offset,
            data,
            fua,
            protocol,
            others,
        } = write
        else {
            return;
        };
        let node = self.peers[i].cfg.node;
        if self.role == Role::Primary || self.check_range(offset, data.len() as u64).is_err() {
            // Two primaries, or a write past the end: the peer is confused.
            self.out.push_back(Output::Disconnect { peer: node });
            self.lose(i);
            return;
        }
        let io = self.io();
        self.disk_queue.note(io, Purpose::Peer(node));
        let p = &mut self.peers[i];
        p.received.insert(
            io,
            Received {
                seq,
                epoch,
                ack_on_write: protocol == Protocol::C,
            },
        );
        *p.epoch_outstanding.entry(epoch).or_default() += 1;
        self.counters.dw += data.len() as u64 / 1024;
        self.track_for_others(node, epoch, offset, data.len() as u64, &others);
        self.disk_queue.write(io, offset, data, fua, &mut self.out);
        if protocol == Protocol::B {
            self.send(node, Message::RecvAck { seq });
        }
    }

    /// A replicated write is on disk here.
    pub(super) fn peer_write_done(&mut self, i: usize, r: Received, result: Result<(), String>) {
        let node = self.peers[i].cfg.node;
        if result.is_err() {
            self.out.push_back(Output::Disconnect { peer: node });
            self.lose(i);
            return;
        }
        if r.ack_on_write {
            self.send(node, Message::WriteAck { seq: r.seq });
        }
        let p = &mut self.peers[i];
        if let Some(n) = p.epoch_outstanding.get_mut(&r.epoch) {
            *n -= 1;
            if *n == 0 {
                p.epoch_outstanding.remove(&r.epoch);
            }
        }
        self.check_barriers(i);
    }

    /// A barrier from peer `i`.
    pub(super) fn on_barrier(&mut self, i: usize, epoch: u64) {
        self.peers[i].barriers_waiting.insert(epoch);
        self.check_barriers(i);
    }

    /// Flushes for every barrier whose epochs are written.
    fn check_barriers(&mut self, i: usize) {
        let node = self.peers[i].cfg.node;
        loop {
            let p = &mut self.peers[i];
            let Some(&e) = p.barriers_waiting.first() else {
                return;
            };
            if p.epoch_outstanding.range(..=e).next().is_some() {
                return;
            }
            p.barriers_waiting.remove(&e);
            let io = self.next_io;
            self.next_io += 1;
            self.peers[i].barrier_flushing.insert(io, e);
            self.disk_queue.note(io, Purpose::Peer(node));
            self.out.push_back(Output::DiskFlush { io });
        }
    }

    /// A barrier's flush is done.
    pub(super) fn barrier_flushed(&mut self, i: usize, epoch: u64, result: Result<(), String>) {
        let node = self.peers[i].cfg.node;
        if result.is_err() {
            self.out.push_back(Output::Disconnect { peer: node });
            self.lose(i);
            return;
        }
        self.ack_barrier_after_marks(node, epoch);
    }
}
