//! What a three-node volume adds: each secondary keeps its bitmap for the
//! *other* secondary as the primary keeps its own, so that either
//! secondary can later bring the other up to date without the primary.
//!
//! - Every replicated write names the other nodes it was sent to
//!   (`Message::Write::others`). A secondary marks it out of sync for each
//!   other peer not named, and keeps it as *unsettled* for each named one
//!   until the primary reports that node durable up to its epoch
//!   (`Message::Durable`). When the primary is lost, what is unsettled is
//!   marked: those writes may have reached one secondary only.
//! - A primary's new data generation (a peer went away) travels to its
//!   secondaries (`Message::NewCurrent`), which adopt it and track the
//!   absent nodes against their old one, exactly as the primary does.
//! - Two secondaries connected while a primary is connected to either
//!   decide nothing about the data (*deferred*: no resync, no state taken
//!   from each other): the primary is the only source then. When the
//!   primary is lost, or one of them is promoted, the deferred connection
//!   is dropped and the handshake decides afresh.
//! - Marks made here are on disk before a barrier is acknowledged, so a
//!   crash forgets none that the primary counts as durable.

use super::Volume;
use crate::message::Message;
use crate::output::Output;
use crate::state::{ConnState, ReplState, Role};

impl Volume {
    /// A write from primary `from` (epoch, range) that it also sent to
    /// `others`: tracked for every other peer.
    pub(super) fn track_for_others(
        &mut self,
        from: u8,
        epoch: u64,
        offset: u64,
        len: u64,
        others: &[u8],
    ) {
        for n in self.peers_but(from) {
            if others.contains(&n) {
                self.unsettled
                    .entry(n)
                    .or_default()
                    .push((epoch, offset, len));
            } else {
                // The primary does not replicate to it (any more): what it
                // may have missed is out of sync for it.
                self.settle_as_missed(n);
                self.mark_for(n, offset, len);
            }
        }
    }

    /// Every peer's node index but `node`'s.
    fn peers_but(&self, node: u8) -> Vec<u8> {
        self.peers
            .iter()
            .map(|p| p.cfg.node)
            .filter(|n| *n != node)
            .collect()
    }

    /// Marks a range out of sync for peer `n` (kept until persisted).
    pub(super) fn mark_for(&mut self, n: u8, offset: u64, len: u64) {
        if let Some(m) = self.meta.peer_mut(n) {
            m.bitmap.set_range(offset, len);
            self.marks_dirty = true;
        }
    }

    /// Marks every write still unsettled for `n` out of sync for it.
    fn settle_as_missed(&mut self, n: u8) {
        for (_, offset, len) in self.unsettled.remove(&n).unwrap_or_default() {
            self.mark_for(n, offset, len);
        }
    }

    /// The primary reports `node` durable up to `epoch`.
    pub(super) fn on_durable(&mut self, node: u8, epoch: u64) {
        if let Some(list) = self.unsettled.get_mut(&node) {
            list.retain(|(e, _, _)| *e > epoch);
        }
    }

    /// The primary (peer `i`) started generation `current`; `absent` no
    /// longer get its writes.
    pub(super) fn on_new_current(&mut self, i: usize, current: u64, absent: &[u8]) {
        let node = self.peers[i].cfg.node;
        if self.role == Role::Primary {
            self.out.push_back(Output::Disconnect { peer: node });
            return self.lose(i);
        }
        let old = self.meta.current & !1;
        if old == current & !1 {
            return;
        }
        for &n in absent {
            if let Some(m) = self.meta.peer_mut(n)
                && n != self.cfg.node
                && m.bitmap_uuid == 0
            {
                m.bitmap_uuid = old;
            }
        }
        self.meta.current = current & !1;
        self.write_meta();
    }

    /// This node's copy changes by a resync from `source`: every other peer
    /// tracks it (the block is marked; the generation it was in sync at is
    /// kept).
    pub(super) fn track_resync_write(&mut self, source: u8, offset: u64, len: u64) {
        for n in self.peers_but(source) {
            self.mark_for(n, offset, len);
        }
    }

    /// The current generation is about to change by a resync from
    /// `source`: peers this copy was in sync with keep tracking against
    /// the old one.
    pub(super) fn keep_tracking_others(&mut self, source: u8) {
        let old = self.meta.current & !1;
        let me = self.cfg.node;
        for m in self.meta.peers.iter_mut() {
            if m.node != source && m.node != me && m.bitmap_uuid == 0 {
                m.bitmap_uuid = old;
            }
        }
    }

    /// Whether a primary other than `except` is connected.
    pub(super) fn with_primary(&self, except: u8) -> bool {
        self.peers.iter().any(|p| {
            p.cfg.node != except
                && p.conn == ConnState::Connected
                && p.role == Role::Primary
                && p.repl != ReplState::Handshake
        })
    }

    /// A primary peer's connection is gone: its unsettled writes are
    /// marked, and connections to the other secondaries decide afresh
    /// (those writes may have reached one of them only).
    pub(super) fn primary_gone(&mut self) {
        let nodes: Vec<u8> = self.unsettled.keys().copied().collect();
        for n in nodes {
            self.settle_as_missed(n);
        }
        self.reconnect_where(|p| p.role != Role::Primary);
    }

    /// A primary appeared: peer `Some(node)`, whose other secondaries stop
    /// resyncing with this node (it is the only source now), or this node
    /// (`None`), whose deferred connections decide afresh against it.
    pub(super) fn primary_appeared(&mut self, primary: Option<u8>) {
        match primary {
            Some(node) => self.reconnect_where(|p| {
                p.cfg.node != node
                    && matches!(
                        p.repl,
                        ReplState::SyncSource
                            | ReplState::SyncTarget
                            | ReplState::PausedSyncS
                            | ReplState::PausedSyncT
                    )
            }),
            None => self.reconnect_where(|p| p.deferred),
        }
    }

    /// Drops (to reconnect) every connection to a peer matching `pred`.
    fn reconnect_where(&mut self, pred: impl Fn(&super::peer::Peer) -> bool) {
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            if p.conn == ConnState::Connected && pred(p) {
                let node = p.cfg.node;
                self.out.push_back(Output::Disconnect { peer: node });
                self.lose(i);
            }
        }
    }

    /// Peer `i` is in sync with this primary: it and every other peer in
    /// sync learn of each other (`Message::InSync`).
    pub(super) fn announce_in_sync(&mut self, i: usize) {
        if self.role != Role::Primary || !self.in_sync_with_me(i) {
            return;
        }
        let x = self.peers[i].cfg.node;
        let others: Vec<u8> = (0..self.peers.len())
            .filter(|j| *j != i && self.in_sync_with_me(*j))
            .map(|j| self.peers[j].cfg.node)
            .collect();
        for y in others {
            self.send(x, Message::InSync { node: y });
            self.send(y, Message::InSync { node: x });
        }
    }

    fn in_sync_with_me(&self, i: usize) -> bool {
        let p = &self.peers[i];
        p.conn == ConnState::Connected
            && p.repl == ReplState::Established
            && !p.deferred
            && p.disk == crate::state::DiskState::UpToDate
            && self
                .meta
                .peer(p.cfg.node)
                .is_some_and(|m| m.bitmap.count() == 0)
    }

    /// The primary (peer `i`) says `node` is in sync with it, as this copy
    /// is: nothing to track for `node` any more.
    pub(super) fn on_in_sync(&mut self, i: usize, node: u8) {
        let p = &self.peers[i];
        let usable = p.role == Role::Primary
            && p.repl == ReplState::Established
            && self.disk == crate::state::DiskState::UpToDate
            && node != self.cfg.node;
        if !usable {
            return;
        }
        if let Some(m) = self.meta.peer_mut(node)
            && (m.bitmap_uuid != 0 || m.bitmap.count() > 0)
        {
            m.bitmap_uuid = 0;
            m.bitmap.clear_all();
            self.write_meta();
        }
    }

    /// Acknowledges barrier `epoch` to `node` once the marks made so far
    /// are on disk.
    pub(super) fn ack_barrier_after_marks(&mut self, node: u8, epoch: u64) {
        if self.marks_dirty {
            self.write_meta();
        }
        if self.marks_saving.is_empty() {
            self.send(node, Message::BarrierAck { epoch });
        } else {
            self.acks_after_meta.push((node, epoch));
        }
    }

    /// Metadata write `io` is done: once no marks are on their way to
    /// disk, held barrier acknowledgements go out.
    pub(super) fn release_barrier_acks(&mut self, io: crate::output::IoId) {
        self.marks_saving.remove(&io);
        if !self.marks_saving.is_empty() {
            return;
        }
        for (node, epoch) in std::mem::take(&mut self.acks_after_meta) {
            self.send(node, Message::BarrierAck { epoch });
        }
    }
}
