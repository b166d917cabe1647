//! Connecting to a peer: both sides send their generations, decide the
//! same resync from them (`gi::compare`), exchange bitmaps, and start
//! replicating. Split brain and unrelated data are refused, never merged:
//! the connection stays down until an operator chooses
//! (`connect --discard-my-data` on the victim).

use tandem_core::Timestamp;

use super::Volume;
use crate::event::VolumeEvent;
use crate::gi::{Decision, Strategy, compare};
use crate::message::Message;
use crate::output::Output;
use crate::state::{ConnState, DiskState, ReplState, Role};

impl Volume {
    /// The driver connected both channels to `peer`.
    pub fn connected(&mut self, now: Timestamp, peer: u8) {
        self.now = now;
        let Some(i) = self.peer_index(peer) else {
            return;
        };
        if self.peers[i].conn == ConnState::StandAlone {
            self.out.push_back(Output::Disconnect { peer });
            return;
        }
        if self.peers[i].conn == ConnState::Connected {
            self.lose(i);
        }
        let p = &mut self.peers[i];
        p.conn = ConnState::Connected;
        p.repl = ReplState::Handshake;
        p.last_heard = now;
        p.ping_sent = None;
        self.send_hello(i);
    }

    /// Sends this side's [`Message::Hello`] to peer `i` (again after
    /// growing to its size: `resize`).
    pub(super) fn send_hello(&mut self, i: usize) {
        let peer = self.peers[i].cfg.node;
        let dirty = self.meta.peer(peer).map_or(0, |m| m.bitmap.count());
        let with_primary = self.role != Role::Primary && self.with_primary(peer);
        self.peers[i].sent_with_primary = with_primary;
        let hello = Message::Hello {
            size: self.meta.size,
            gens: self.generations_for(peer),
            flags: self.side_flags_for(peer),
            role: self.role,
            disk: self.disk,
            dirty,
            discard_my_data: self.peers[i].discard_my_data,
            with_primary,
        };
        self.send(peer, hello);
    }

    /// Refuses the connection to peer `i`: it stays StandAlone. The
    /// connection is closed after a grace period (the ping timeout), so
    /// the peer's own comparison, already on its way, reaches the same
    /// verdict and reports it too.
    pub(super) fn refuse(&mut self, i: usize, event: VolumeEvent) {
        self.emit(event);
        let close_at = self.now + self.cfg.ping_timeout;
        let p = &mut self.peers[i];
        p.refused = true;
        p.close_at = Some(close_at);
    }

    /// The peer's [`Message::Hello`]: decide the resync.
    pub(super) fn on_hello(&mut self, i: usize, hello: Message) {
        if let Message::Hello { size, .. } = hello
            && size != self.meta.size
        {
            // A resize one of the two missed (`resize`).
            return self.sizes_differ(i, hello, size);
        }
        let Message::Hello {
            size: _,
            gens,
            flags,
            role,
            disk,
            dirty,
            discard_my_data: their_discard,
            with_primary: their_with_primary,
        } = hello
        else {
            return;
        };
        let node = self.peers[i].cfg.node;
        let name = self.peers[i].cfg.name.clone();
        let mine = self.generations_for(node);
        let my_changes = self.meta.peer(node).map_or(0, |m| m.bitmap.count());
        let decision = compare(&mine, self.side_flags_for(node), &gens, flags);
        let mut strategy = decision.strategy;
        if role == Role::Primary && self.role == Role::Primary {
            // Before any split-brain policy: with the cluster driving the
            // roles two primaries are transient (the cluster stops the group
            // on one side; an old primary whose lease lapsed demotes
            // itself). Retried, not StandAlone; once one side is secondary
            // the after-sb-1pri policy decides.
            // Reported once per episode (it is retried every connection).
            if !self.peers[i].both_primary_reported {
                self.peers[i].both_primary_reported = true;
                if matches!(strategy, Strategy::SplitBrain { .. }) {
                    self.emit(VolumeEvent::SplitBrain {
                        peer: name.clone(),
                        rule: decision.rule,
                    });
                }
                let why = "both nodes are primary; retrying until one is demoted".to_string();
                self.emit(VolumeEvent::Refused {
                    peer: name.clone(),
                    why,
                });
            }
            let close_at = self.now + self.cfg.ping_timeout;
            let p = &mut self.peers[i];
            p.refused = true;
            p.close_at = Some(close_at);
            p.retry_after_refusal = true;
            return;
        }
        self.peers[i].both_primary_reported = false;
        if self.role != Role::Primary
            && role != Role::Primary
            && (self.peers[i].sent_with_primary || their_with_primary)
        {
            // Two secondaries of a connected primary: it is the only
            // source; they decide when it is gone (`three_nodes`).
            self.emit(VolumeEvent::Handshake {
                peer: name,
                rule: decision.rule,
                what: "no resync decided while a primary is connected".to_string(),
            });
            let p = &mut self.peers[i];
            p.deferred = true;
            p.decision = Some(Decision {
                strategy: Strategy::NoSync,
                rule: decision.rule,
            });
            p.role = role;
            p.disk = disk;
            p.discard_my_data = false;
            self.send(
                node,
                Message::Bitmap {
                    blocks: Vec::new(),
                    hold: false,
                },
            );
            return;
        }
        let my_discard = self.peers[i].discard_my_data;
        // A side whose copy is unusable is the target, whatever the
        // generations say; in full where they show no common history (a
        // resync cut short, its source gone: with three nodes it may have
        // followed another source than the peer's). Never a split brain.
        let full = !matches!(
            strategy,
            Strategy::NoSync | Strategy::Source { full: false } | Strategy::Target { full: false }
        );
        match (
            self.disk == DiskState::Inconsistent,
            disk == DiskState::Inconsistent,
        ) {
            (true, false) => strategy = Strategy::Target { full },
            (false, true) => strategy = Strategy::Source { full },
            _ => {}
        }
        match strategy {
            Strategy::SplitBrain { recoverable } => {
                use crate::split_brain::{Resolution, Side, resolve};
                let me = Side {
                    node: self.cfg.node,
                    primary: self.role == Role::Primary,
                    primary_at_split: mine.bitmap & 1 == 1,
                    changes: my_changes,
                };
                let them = Side {
                    node,
                    primary: role == Role::Primary,
                    primary_at_split: gens.bitmap & 1 == 1,
                    changes: dirty,
                };
                let auto = resolve(&self.cfg.split_brain, me, them);
                strategy = match (my_discard, their_discard, auto.0) {
                    (true, false, _) => Strategy::Target { full: !recoverable },
                    (false, true, _) => Strategy::Source { full: !recoverable },
                    (false, false, r @ (Resolution::Keep | Resolution::Discard)) => {
                        self.emit(VolumeEvent::SplitBrainResolved {
                            peer: name.clone(),
                            policy: auto.1.to_string(),
                            discarded_here: r == Resolution::Discard,
                        });
                        if r == Resolution::Keep {
                            Strategy::Source { full: !recoverable }
                        } else {
                            Strategy::Target { full: !recoverable }
                        }
                    }
                    _ => {
                        return self.refuse(
                            i,
                            VolumeEvent::SplitBrain {
                                peer: name,
                                rule: decision.rule,
                            },
                        );
                    }
                }
            }
            Strategy::Unrelated => {
                return self.refuse(i, VolumeEvent::UnrelatedData { peer: name });
            }
            _ => {}
        }
        if matches!(strategy, Strategy::Source { .. }) && self.disk <= DiskState::Inconsistent {
            let why =
                "this node should be the sync source but its copy is inconsistent".to_string();
            return self.refuse(i, VolumeEvent::Refused { peer: name, why });
        }
        if matches!(strategy, Strategy::Target { .. }) && self.role == Role::Primary {
            // Transient with the cluster driving the roles (an old primary
            // back from a freeze demotes itself): retried, not StandAlone,
            // so the resync starts as soon as it is secondary.
            let why = format!(
                "this primary would have to become a sync target (rule {:?}); retrying until it is demoted",
                decision.rule
            );
            self.refuse(i, VolumeEvent::Refused { peer: name, why });
            self.peers[i].retry_after_refusal = true;
            return;
        }
        let what = match strategy {
            Strategy::NoSync => "no resync".to_string(),
            Strategy::Source { full } => {
                format!("{} resync as source", if full { "full" } else { "bitmap" })
            }
            Strategy::Target { full } => {
                format!("{} resync as target", if full { "full" } else { "bitmap" })
            }
            _ => String::new(),
        };
        self.emit(VolumeEvent::Handshake {
            peer: name,
            rule: decision.rule,
            what,
        });
        let p = &mut self.peers[i];
        p.decision = Some(Decision {
            strategy,
            rule: decision.rule,
        });
        p.role = role;
        p.disk = disk;
        p.discard_my_data = false;
        self.peer_back(node);
        if role == Role::Primary {
            self.primary_appeared(Some(node));
        }
        let blocks: Vec<u64> = self
            .meta
            .peer(node)
            .map(|m| m.bitmap.iter().collect())
            .unwrap_or_default();
        // A target that runs `before-resync-target` first: the source
        // writes without it meanwhile, so its copy is Outdated from now.
        let hold = matches!(strategy, Strategy::Target { .. }) && self.cfg.hold_resync_target;
        if hold && matches!(self.disk, DiskState::UpToDate | DiskState::Consistent) {
            self.meta.flags.outdated = true;
            self.meta.flags.up_to_date = false;
            self.set_disk(DiskState::Outdated);
            self.write_meta();
        }
        self.send(node, Message::Bitmap { blocks, hold });
    }

    pub(super) fn on_bitmap(&mut self, i: usize, blocks: Vec<u64>, hold: bool) {
        let node = self.peers[i].cfg.node;
        let Some(d) = self.peers[i].decision else {
            self.out.push_back(Output::Disconnect { peer: node });
            self.lose(i);
            return;
        };
        self.peers[i].bitmap_received = true;
        if self.meta.flags.crashed_primary || self.crashed_primary {
            self.crashed_primary = false;
            self.meta.flags.crashed_primary = false;
        }
        match d.strategy {
            Strategy::Source { full } | Strategy::Target { full } => {
                if let Some(m) = self.meta.peer_mut(node) {
                    for b in blocks {
                        m.bitmap.set(b);
                    }
                    if full {
                        m.bitmap.set_all();
                    }
                }
            }
            _ => {}
        }
        match d.strategy {
            // The target runs its snapshot handler first: wait for it.
            Strategy::Source { .. } if hold => {
                self.peers[i].repl = ReplState::PausedSyncS;
                self.broadcast_state();
                self.pump_writes();
            }
            Strategy::Source { .. } => self.start_resync_source(i),
            Strategy::Target { .. } if self.cfg.hold_resync_target => {
                self.peers[i].repl = ReplState::PausedSyncT;
                let peer = self.peers[i].cfg.name.clone();
                self.emit(VolumeEvent::BeforeResyncTarget { peer });
            }
            Strategy::Target { .. } => {
                // The source's sync generation follows.
                self.peers[i].repl = ReplState::SyncTarget;
            }
            _ if self.peers[i].deferred => {
                self.peers[i].repl = ReplState::Established;
                self.pump_writes();
            }
            _ => {
                self.peers[i].repl = ReplState::Established;
                // Same data as the peer: a copy that did not know (after a
                // restart) or was outdated by the cluster is current again.
                // With a single peer, identical generations also mean no
                // copy went on without the other, so a Consistent (crashed)
                // copy and an Outdated one (fenced by the cluster while the
                // peer might have written: it did not) are both current.
                let peer_disk = self.peers[i].disk;
                let settled =
                    |d: DiskState| matches!(d, DiskState::Consistent | DiskState::Outdated);
                if (self.disk == DiskState::Consistent
                    && matches!(peer_disk, DiskState::Consistent | DiskState::UpToDate))
                    || (self.disk == DiskState::Outdated && peer_disk == DiskState::UpToDate)
                    || (self.peers.len() == 1 && settled(self.disk) && settled(peer_disk))
                {
                    self.meta.flags.up_to_date = true;
                    self.meta.flags.outdated = false;
                    self.set_disk(DiskState::UpToDate);
                }
                self.write_meta();
                self.broadcast_state();
                self.announce_in_sync(i);
                self.pump_writes();
            }
        }
    }
}
