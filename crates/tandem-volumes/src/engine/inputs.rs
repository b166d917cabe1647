//! The driver's reports: disk completions, peer messages and lost
//! connections, each dispatched to the module that owns it.

use bytes::Bytes;
use tandem_core::Timestamp;

use super::Volume;
use super::disk::Purpose;
use crate::message::Message;
use crate::output::{IoError, IoId, Output};
use crate::state::Role;

impl Volume {
    /// Disk operation `io` finished: `Ok(Some(bytes))` for a read,
    /// `Ok(None)` for a write, flush or metadata write; `Err` with the OS
    /// error's text.
    pub fn disk_done(&mut self, now: Timestamp, io: IoId, result: Result<Option<Bytes>, String>) {
        self.now = now;
        let Some(purpose) = self.disk_queue.take(io) else {
            return;
        };
        self.disk_queue.written(io, &mut self.out);
        let unit = result.as_ref().map(|_| ()).map_err(Clone::clone);
        match purpose {
            Purpose::Meta => {
                self.meta_inflight.remove(&io);
                self.release_barrier_acks(io);
                self.pump_writes();
            }
            Purpose::DemoteFlush => {
                // Still secondary (not promoted again meanwhile) and flushed:
                // the metadata may stop saying "primary". A failed flush
                // leaves it so: the next start resyncs the hot extents.
                if self.role == Role::Secondary && unit.is_ok() {
                    self.meta.flags.primary = false;
                    self.meta.al.clear();
                    self.write_meta();
                }
            }
            Purpose::Grow => self.grow_done(io, unit),
            Purpose::AppWrite(id) => self.app_write_done(id, unit),
            Purpose::AppFlush(id) => self.app_flush_done(id, unit),
            Purpose::AppRead(req) => {
                let result = match result {
                    Ok(data) => Ok(Some(data.unwrap_or_default())),
                    Err(e) => Err(IoError::Disk(e)),
                };
                self.out.push_back(Output::Complete { req, result });
            }
            Purpose::Peer(node) => {
                let Some(i) = self.peer_index(node) else {
                    return;
                };
                let p = &mut self.peers[i];
                if let Some(r) = p.received.remove(&io) {
                    self.peer_write_done(i, r, unit);
                } else if let Some(e) = p.barrier_flushing.remove(&io) {
                    self.barrier_flushed(i, e, unit);
                } else if let Some(b) = p.resync_reads.remove(&io) {
                    let data = result.map(Option::unwrap_or_default);
                    self.resync_read_done(i, b, data);
                } else if let Some((b, n)) = p.resync_writes.remove(&io) {
                    self.resync_write_done(i, b, n, unit);
                } else if let Some((b, n, theirs)) = p.resync_compares.remove(&io) {
                    let data = result.map(Option::unwrap_or_default);
                    self.resync_compare_done(i, (b, n), theirs, data);
                } else if let Some((b, theirs)) = p.verify_reads.remove(&io) {
                    let data = result.map(Option::unwrap_or_default);
                    self.verify_read_done(i, b, theirs, data);
                }
            }
        }
    }

    /// A message from `peer` arrived (in order, per channel).
    pub fn received(&mut self, now: Timestamp, peer: u8, msg: Message) {
        self.now = now;
        let Some(i) = self.peer_index(peer) else {
            return;
        };
        if self.peers[i].conn != crate::state::ConnState::Connected || self.peers[i].refused {
            return;
        }
        self.peers[i].last_heard = now;
        self.counters.note_received(&msg);
        match msg {
            m @ Message::Hello { .. } => self.on_hello(i, m),
            Message::Bitmap { blocks, hold } => self.on_bitmap(i, blocks, hold),
            Message::ResyncReady => self.on_resync_ready(i),
            Message::SyncUuid(u) => self.on_sync_uuid(i, u),
            m @ Message::Write { .. } => self.on_write(i, m),
            Message::Barrier { epoch } => self.on_barrier(i, epoch),
            Message::BarrierAck { epoch } => self.on_barrier_ack(i, epoch),
            Message::RecvAck { seq } | Message::WriteAck { seq } => self.on_ack(i, seq),
            Message::ResyncData { block, data } => self.on_resync_data(i, block, data),
            Message::ResyncAck { block, blocks } => self.on_resync_ack(i, block, blocks),
            Message::ResyncDigest {
                block,
                blocks,
                digest,
            } => self.on_resync_digest(i, block, blocks, digest),
            Message::ResyncWant { block } => self.on_resync_want(i, block),
            Message::ResyncDone { gens } => self.on_resync_done(i, gens),
            Message::State { role, disk } => {
                let p = &mut self.peers[i];
                let promoted = role == Role::Primary && p.role != Role::Primary;
                let deferred = p.deferred;
                p.role = role;
                p.disk = disk;
                if promoted && deferred {
                    // A deferred peer was promoted: decide afresh.
                    self.out.push_back(Output::Disconnect { peer });
                    self.lose(i);
                } else if promoted {
                    self.primary_appeared(Some(peer));
                }
            }
            Message::NewCurrent { current, absent } => self.on_new_current(i, current, &absent),
            Message::Durable { node, epoch } => self.on_durable(node, epoch),
            Message::InSync { node } => self.on_in_sync(i, node),
            Message::VerifyDigest { block, digest } => self.on_verify_digest(i, block, digest),
            Message::VerifyReply { block, same } => self.on_verify_reply(i, block, same),
            Message::VerifyDone => self.on_verify_done(i),
            Message::ResizeAsk => self.on_resize_ask(i),
            Message::ResizeRoom { room } => self.on_resize_room(i, room),
            Message::Resize {
                size,
                source,
                clean,
            } => self.on_resize(i, size, source, clean),
            Message::Resized { size } => self.on_resized(i, size),
            Message::Ping => self.send(peer, Message::PingAck),
            Message::PingAck => self.peers[i].ping_sent = None,
        }
    }

    /// The connections to `peer` broke (or were closed on request).
    pub fn connection_lost(&mut self, now: Timestamp, peer: u8) {
        self.now = now;
        if let Some(i) = self.peer_index(peer)
            && self.peers[i].conn == crate::state::ConnState::Connected
        {
            self.lose(i);
        }
    }
}
