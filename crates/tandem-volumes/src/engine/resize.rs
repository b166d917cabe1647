//! `resize`: growing a volume online once the operator grew the backing
//! disks (lvextend, truncate -s) on every node.
//!
//! The node where the command runs asks every peer how many data bytes its
//! disk holds now (each driver measures: [`Output::MeasureRoom`]), takes
//! the smallest, and tells every node to grow to it. One node is the
//! *source* of the new area: the primary, else the node where the command
//! ran. Every other node grows at once and says so; the source grows last,
//! once every connected peer did, so no write and no resync ever reaches a
//! node beyond its end. Unless the operator vouched that the new area is
//! identical everywhere (`--assume-clean`), the source then marks the new
//! area out of sync for every peer and starts a resync of just that area
//! on each connection, without reconnecting. Shrinking is refused.
//!
//! Growing is the driver's [`Output::Grow`]: it moves internal metadata to
//! the new end of the backing disk and writes the new metadata there;
//! application writes wait behind it like behind any metadata write.

use std::collections::BTreeMap;

use tandem_core::Timestamp;

use super::disk::Purpose;
use super::{Volume, VolumeError};
use crate::event::VolumeEvent;
use crate::message::Message;
use crate::output::{IoId, Output};
use crate::state::{ConnState, DiskState, ReplState, Role};
use crate::status::bytes;

/// What a node knows of resizes.
#[derive(Debug, Default)]
pub(super) struct Resizing {
    /// The round this node takes part in.
    round: Option<Round>,
    /// Peers waiting for this node's measured room.
    askers: Vec<u8>,
    /// The size each peer last said it grew to.
    heard: BTreeMap<u8, u64>,
    /// A bigger peer's hello, held while this node measures its disk and
    /// grows to the peer's size (a resize it missed).
    catch_up: Option<(u8, Message)>,
}

#[derive(Debug)]
enum Round {
    /// The node that ran the command collects every node's room.
    Asking {
        rooms: BTreeMap<u8, u64>,
        clean: bool,
    },
    /// Growing to `size`; `io` once the grow is asked of the driver.
    Growing {
        size: u64,
        from: u64,
        source: u8,
        clean: bool,
        io: Option<IoId>,
    },
}

impl Volume {
    /// `resize [--assume-clean]`: grows the volume to what the smallest
    /// backing disk of its nodes holds; `room` is what this node's holds
    /// (the driver measured it). The outcome comes as
    /// [`VolumeEvent::Resized`] or [`VolumeEvent::ResizeFailed`]. Needs
    /// this copy UpToDate and every peer connected and in sync.
    pub fn resize(&mut self, now: Timestamp, room: u64, clean: bool) -> Result<(), VolumeError> {
        self.now = now;
        let wrong = |what: String| VolumeError::WrongState {
            volume: self.cfg.name.clone(),
            what,
        };
        if self.resizing.round.is_some() {
            return Err(wrong("a resize is already running".into()));
        }
        if self.disk != DiskState::UpToDate {
            return Err(wrong(format!(
                "this copy is {}: run resize on a node whose copy is UpToDate",
                self.disk
            )));
        }
        if let Some(p) = self
            .peers
            .iter()
            .find(|p| p.conn != ConnState::Connected || p.repl != ReplState::Established)
        {
            let state = if p.conn == ConnState::Connected {
                p.repl.to_string()
            } else {
                p.conn.to_string()
            };
            return Err(wrong(format!(
                "resize needs every peer connected and in sync, so that all agree on the new size; {} is {state}",
                p.cfg.name
            )));
        }
        let room = room / 4096 * 4096;
        if room <= self.meta.size {
            return Err(wrong(format!(
                "this node's backing disk holds {} for data, the volume is {} already: grow the backing disk on every node first (lvextend, truncate -s), then run resize",
                bytes(room),
                bytes(self.meta.size)
            )));
        }
        let rooms = BTreeMap::from([(self.cfg.node, room)]);
        self.resizing.round = Some(Round::Asking { rooms, clean });
        for node in self.peers.iter().map(|p| p.cfg.node).collect::<Vec<_>>() {
            self.send(node, Message::ResizeAsk);
        }
        Ok(())
    }

    /// The driver measured the backing disk ([`Output::MeasureRoom`]).
    pub fn room_measured(&mut self, now: Timestamp, room: u64) {
        self.now = now;
        for node in std::mem::take(&mut self.resizing.askers) {
            self.send(node, Message::ResizeRoom { room });
        }
        let Some((node, Message::Hello { size, .. })) = &self.resizing.catch_up else {
            return;
        };
        let (node, size) = (*node, *size);
        if self.resizing.round.is_some() {
            // A resize runs here: this connection is tried again after it.
            self.resizing.catch_up = None;
            if let Some(i) = self.peer_index(node) {
                self.out.push_back(Output::Disconnect { peer: node });
                self.lose(i);
            }
            return;
        }
        if room / 4096 * 4096 >= size {
            // Grown without marks: the bigger side marked the area for us.
            return self.resize_to(size, node, true);
        }
        self.resizing.catch_up = None;
        if let Some(i) = self.peer_index(node) {
            let why = format!(
                "its volume is {}, this node's backing disk holds {} for data: grow the disk (lvextend, truncate -s), then `tandem volume connect`",
                bytes(size),
                bytes(room)
            );
            let peer = self.peers[i].cfg.name.clone();
            self.refuse(i, VolumeEvent::Refused { peer, why });
        }
    }

    /// The peer's hello says another size: a resize one of the two missed
    /// (a crash in the middle). The smaller side grows to the bigger
    /// one's size if its disk holds it, then says hello again; the bigger
    /// side marks the area the other lacks and waits for that hello.
    pub(super) fn sizes_differ(&mut self, i: usize, hello: Message, size: u64) {
        let (node, name) = (self.peers[i].cfg.node, self.peers[i].cfg.name.clone());
        if size < self.meta.size {
            let (from, ours) = (size / 4096 * 4096, self.meta.size);
            if let Some(m) = self.meta.peer_mut(node) {
                m.bitmap.set_range(from, ours - from);
            }
            self.write_meta();
            return self.emit(VolumeEvent::PeerSmaller {
                peer: name,
                theirs: size,
                ours,
            });
        }
        if self.resizing.askers.is_empty() && self.resizing.catch_up.is_none() {
            self.out.push_back(Output::MeasureRoom);
        }
        self.resizing.catch_up = Some((node, hello));
    }

    pub(super) fn on_resize_ask(&mut self, i: usize) {
        let node = self.peers[i].cfg.node;
        if self.resizing.askers.is_empty() {
            self.out.push_back(Output::MeasureRoom);
        }
        if !self.resizing.askers.contains(&node) {
            self.resizing.askers.push(node);
        }
    }

    pub(super) fn on_resize_room(&mut self, i: usize, room: u64) {
        let node = self.peers[i].cfg.node;
        let Some(Round::Asking { rooms, clean }) = &mut self.resizing.round else {
            return;
        };
        rooms.insert(node, room / 4096 * 4096);
        if rooms.len() < self.peers.len() + 1 {
            return;
        }
        let clean = *clean;
        let Some((&smallest, &size)) = rooms.iter().min_by_key(|(_, r)| **r) else {
            return;
        };
        if size <= self.meta.size {
            let who = self.node_name(smallest);
            return self.resize_failed(format!(
                "{who}'s backing disk holds {} for data, no more than the volume's {}: grow it (lvextend, truncate -s) and run resize again",
                bytes(size),
                bytes(self.meta.size)
            ));
        }
        let source = self
            .peers
            .iter()
            .find(|p| p.role == Role::Primary)
            .map_or(self.cfg.node, |p| p.cfg.node);
        for node in self.peers.iter().map(|p| p.cfg.node).collect::<Vec<_>>() {
            self.send(
                node,
                Message::Resize {
                    size,
                    source,
                    clean,
                },
            );
        }
        self.resize_to(size, source, clean);
    }

    pub(super) fn on_resize(&mut self, i: usize, size: u64, source: u8, clean: bool) {
        if size <= self.meta.size || matches!(self.resizing.round, Some(Round::Growing { .. })) {
            // Grown already (a catch-up came first), or busy growing: the
            // source hears this node's size and goes on, or gives up.
            let node = self.peers[i].cfg.node;
            return self.send(
                node,
                Message::Resized {
                    size: self.meta.size,
                },
            );
        }
        if self.resizing.round.is_some() {
            let who = self.peers[i].cfg.name.clone();
            self.resize_failed(format!(
                "{who} started a resize at the same time; that one goes on"
            ));
        }
        self.resize_to(size, source, clean);
    }

    pub(super) fn on_resized(&mut self, i: usize, size: u64) {
        let node = self.peers[i].cfg.node;
        self.resizing.heard.insert(node, size);
        if let Some(Round::Growing {
            size: want,
            io: None,
            ..
        }) = self.resizing.round
            && size < want
        {
            let who = self.peers[i].cfg.name.clone();
            return self.resize_failed(format!(
                "{who} could not grow to {} (its log says why); this node stays at {}",
                bytes(want),
                bytes(self.meta.size)
            ));
        }
        self.grow_when_ready();
    }

    /// A peer's connection ended: a round that waited for it goes on
    /// without it (or fails, while sizes are being collected).
    pub(super) fn resize_peer_lost(&mut self, node: u8) {
        self.resizing.askers.retain(|n| *n != node);
        if self
            .resizing
            .catch_up
            .as_ref()
            .is_some_and(|(n, _)| *n == node)
        {
            self.resizing.catch_up = None;
        }
        self.resizing.heard.remove(&node);
        if matches!(self.resizing.round, Some(Round::Asking { .. })) {
            let who = self.node_name(node);
            return self.resize_failed(format!(
                "{who} disconnected while the sizes were collected; nothing changed"
            ));
        }
        self.grow_when_ready();
    }

    fn resize_to(&mut self, size: u64, source: u8, clean: bool) {
        self.resizing.round = Some(Round::Growing {
            size,
            from: self.meta.size,
            source,
            clean,
            io: None,
        });
        self.grow_when_ready();
    }

    /// Grows now unless this node is the source and a connected peer has
    /// not grown yet.
    fn grow_when_ready(&mut self) {
        let Some(Round::Growing {
            size,
            from,
            source,
            clean,
            io: None,
        }) = self.resizing.round
        else {
            return;
        };
        if source == self.cfg.node
            && self.peers.iter().any(|p| {
                p.conn == ConnState::Connected
                    && self
                        .resizing
                        .heard
                        .get(&p.cfg.node)
                        .is_none_or(|s| *s < size)
            })
        {
            return;
        }
        self.meta.size = size;
        let mark = source == self.cfg.node && !clean;
        for p in &mut self.meta.peers {
            p.bitmap.resize(size);
            if mark {
                p.bitmap.set_range(from, size - from);
            }
        }
        let io = self.meta_io(Purpose::Grow);
        self.out.push_back(Output::Grow {
            io,
            meta: Box::new(self.meta.clone()),
        });
        if let Some(Round::Growing { io: slot, .. }) = &mut self.resizing.round {
            *slot = Some(io);
        }
    }

    /// The driver grew the disk ([`Output::Grow`]).
    pub(super) fn grow_done(&mut self, io: IoId, result: Result<(), String>) {
        self.meta_inflight.remove(&io);
        let Some(Round::Growing {
            size,
            from,
            source,
            clean,
            io: Some(ours),
        }) = self.resizing.round
        else {
            return;
        };
        if ours != io {
            return;
        }
        self.resizing.round = None;
        if let Err(e) = result {
            self.meta.size = from;
            for p in &mut self.meta.peers {
                p.bitmap.resize(from);
            }
            self.emit(VolumeEvent::ResizeFailed {
                why: format!("growing the local disk failed: {e}"),
            });
        } else {
            let new_area = if clean {
                "is taken as identical on every node (--assume-clean)".to_string()
            } else if source == self.cfg.node {
                "is resynced from here to every peer".to_string()
            } else {
                format!("is resynced from {}", self.node_name(source))
            };
            self.emit(VolumeEvent::Resized {
                from,
                to: size,
                new_area,
            });
        }
        if let Some((node, hello)) = self.resizing.catch_up.take()
            && let Some(i) = self.peer_index(node)
            && self.peers[i].repl == ReplState::Handshake
        {
            self.send_hello(i);
            self.on_hello(i, hello);
        }
        let now_size = self.meta.size;
        let connected: Vec<(usize, u8)> = (0..self.peers.len())
            .filter(|i| self.peers[*i].conn == ConnState::Connected)
            .map(|i| (i, self.peers[i].cfg.node))
            .collect();
        for (_, node) in &connected {
            self.send(*node, Message::Resized { size: now_size });
        }
        if source == self.cfg.node && !clean && now_size == size {
            // The marked new area resyncs to every peer in sync now; one
            // already resyncing takes it in its stride, one in its
            // handshake gets it with the bitmap it is about to receive.
            for (i, _) in connected {
                if self.peers[i].repl == ReplState::Established {
                    self.start_resync_source(i);
                }
            }
        }
        self.pump_writes();
    }

    fn resize_failed(&mut self, why: String) {
        self.resizing.round = None;
        self.emit(VolumeEvent::ResizeFailed { why });
    }

    fn node_name(&self, node: u8) -> String {
        if node == self.cfg.node {
            return "this node".into();
        }
        self.peers
            .iter()
            .find(|p| p.cfg.node == node)
            .map_or_else(|| format!("node {node}"), |p| p.cfg.name.clone())
    }
}
