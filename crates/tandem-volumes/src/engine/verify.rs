//! Online verify: the verify source sends a digest ([`digest`]) of every
//! block; the target compares with its own and both mark differing blocks
//! out of sync (no repair; a later resync or `invalidate` does that).

use bytes::Bytes;
use tandem_core::Timestamp;

use super::Volume;
use super::disk::Purpose;
use super::resync::digest;
use crate::bitmap::BLOCK;
use crate::event::VolumeEvent;
use crate::message::Message;
use crate::state::ReplState;

impl Volume {
    /// `verify`: compares every block with `peer`'s copy.
    pub fn verify(&mut self, now: Timestamp, peer: &str) -> Result<(), super::VolumeError> {
        self.now = now;
        let i = self.peer_index_by_name(peer)?;
        if self.peers[i].repl != ReplState::Established {
            return Err(super::VolumeError::WrongState {
                volume: self.cfg.name.clone(),
                what: format!(
                    "verify needs an established connection to {peer} (it is {})",
                    self.peers[i].repl
                ),
            });
        }
        let p = &mut self.peers[i];
        p.repl = ReplState::VerifyS;
        p.verify_cursor = Some(0);
        p.verify_differing = 0;
        p.verify_total = 0;
        self.pump_verify(i);
        Ok(())
    }

    fn pump_verify(&mut self, i: usize) {
        let node = self.peers[i].cfg.node;
        let blocks = self.meta.peer(node).map_or(0, |m| m.bitmap.blocks());
        while self.peers[i].verify_inflight < self.cfg.resync_window.max(1) {
            let Some(b) = self.peers[i].verify_cursor.filter(|b| *b < blocks) else {
                break;
            };
            self.peers[i].verify_cursor = Some(b + 1);
            self.peers[i].verify_inflight += 1;
            let (io, len) = (self.io(), self.block_len(b));
            self.peers[i].verify_reads.insert(io, (b, None));
            self.disk_queue.note(io, Purpose::Peer(node));
            self.disk_queue.read(io, b * BLOCK, len, &mut self.out);
        }
        let p = &self.peers[i];
        if p.verify_inflight == 0 && p.verify_cursor.is_some_and(|b| b >= blocks) {
            let p = &mut self.peers[i];
            p.verify_cursor = None;
            p.repl = ReplState::Established;
            let (name, differing) = (p.cfg.name.clone(), p.verify_differing);
            self.send(node, Message::VerifyDone);
            self.emit(VolumeEvent::VerifyFinished {
                peer: name,
                differing,
            });
        }
    }

    pub(super) fn verify_read_done(
        &mut self,
        i: usize,
        b: u64,
        theirs: Option<u64>,
        data: Result<Bytes, String>,
    ) {
        let node = self.peers[i].cfg.node;
        let mine = data.map(|d| digest(&d)).unwrap_or(0);
        match theirs {
            None => self.send(
                node,
                Message::VerifyDigest {
                    block: b,
                    digest: mine,
                },
            ),
            Some(d) => {
                let same = d == mine;
                if !same {
                    self.peers[i].verify_differing += 1;
                    if let Some(m) = self.meta.peer_mut(node) {
                        m.bitmap.set(b);
                    }
                }
                self.send(node, Message::VerifyReply { block: b, same });
            }
        }
    }

    pub(super) fn on_verify_digest(&mut self, i: usize, b: u64, digest: u64) {
        let node = self.peers[i].cfg.node;
        if b >= self.meta.peer(node).map_or(0, |m| m.bitmap.blocks()) {
            return;
        }
        if self.peers[i].repl == ReplState::Established {
            self.peers[i].repl = ReplState::VerifyT;
            self.peers[i].verify_differing = 0;
        }
        let (io, len) = (self.io(), self.block_len(b));
        self.peers[i].verify_reads.insert(io, (b, Some(digest)));
        self.disk_queue.note(io, Purpose::Peer(node));
        self.disk_queue.read(io, b * BLOCK, len, &mut self.out);
    }

    pub(super) fn on_verify_reply(&mut self, i: usize, b: u64, same: bool) {
        let node = self.peers[i].cfg.node;
        let p = &mut self.peers[i];
        p.verify_inflight = p.verify_inflight.saturating_sub(1);
        p.verify_total += 1;
        if !same {
            p.verify_differing += 1;
            if let Some(m) = self.meta.peer_mut(node) {
                m.bitmap.set(b);
            }
        }
        self.pump_verify(i);
    }

    pub(super) fn on_verify_done(&mut self, i: usize) {
        let p = &mut self.peers[i];
        if p.repl == ReplState::VerifyT {
            p.repl = ReplState::Established;
        }
        let (name, differing) = (p.cfg.name.clone(), p.verify_differing);
        self.emit(VolumeEvent::VerifyFinished {
            peer: name,
            differing,
        });
    }
}
