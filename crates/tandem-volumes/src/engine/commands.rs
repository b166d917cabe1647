//! Operator commands, in drbdadm's words: `primary [--force]`,
//! `secondary`, `connect [--discard-my-data]`, `disconnect`, `invalidate`.

use tandem_core::Timestamp;

use super::disk::Purpose;
use super::{Volume, VolumeError};
use crate::event::VolumeEvent;
use crate::output::Output;
use crate::state::{ConnState, DiskState, Role};

impl Volume {
    /// `primary [--force]`: makes this node primary. Without `force` the
    /// local copy must be up to date (or consistent with every peer
    /// connected and up to date); `force` makes it the newest copy.
    pub fn promote(&mut self, now: Timestamp, force: bool) -> Result<(), VolumeError> {
        self.now = now;
        if let Some(p) = self.peers.iter().find(|p| p.role == Role::Primary) {
            return Err(VolumeError::PeerIsPrimary {
                volume: self.cfg.name.clone(),
                peer: p.cfg.name.clone(),
            });
        }
        if self.role == Role::Primary {
            return Ok(());
        }
        let usable = self.disk == DiskState::UpToDate
            || (self.disk == DiskState::Consistent && self.peers.is_empty());
        if !usable && !force {
            return Err(VolumeError::NotUpToDate {
                volume: self.cfg.name.clone(),
                disk: self.disk,
            });
        }
        if force && self.disk != DiskState::UpToDate {
            // This copy becomes the newest: a new generation at once, and
            // every connected peer reconnects to compare against it (and
            // resync from here).
            self.meta.flags.consistent = true;
            self.meta.flags.up_to_date = true;
            self.meta.flags.outdated = false;
            self.meta.flags.crashed_primary = false;
            self.crashed_primary = false;
            let old = self.meta.current & !1;
            if old != crate::gi::JUST_CREATED && old != 0 {
                self.meta.push_history(old);
            }
            self.meta.current = self.fresh_uuid();
            self.write_meta();
            self.set_disk(DiskState::UpToDate);
            for i in 0..self.peers.len() {
                if self.peers[i].conn == ConnState::Connected {
                    let node = self.peers[i].cfg.node;
                    self.out.push_back(Output::Disconnect { peer: node });
                    self.lose(i);
                }
            }
        }
        // Deferred connections decide afresh, against this primary.
        self.primary_appeared(None);
        if self.peers.iter().any(|p| !p.replicating()) {
            self.new_generation_due = true;
        }
        self.role = Role::Primary;
        self.meta.current |= 1;
        self.emit(VolumeEvent::Role {
            role: Role::Primary,
        });
        self.suspend_for_absent();
        self.broadcast_state();
        for i in 0..self.peers.len() {
            self.announce_in_sync(i);
        }
        Ok(())
    }

    /// `secondary`: gives up the primary role (refused while writes are in
    /// flight).
    pub fn demote(&mut self, now: Timestamp) -> Result<(), VolumeError> {
        self.now = now;
        if self.role != Role::Primary {
            return Ok(());
        }
        let pending = self.writes.len() + self.blocked.len() + self.withheld.len();
        if pending > 0 {
            return Err(VolumeError::Busy {
                volume: self.cfg.name.clone(),
                pending,
            });
        }
        self.role = Role::Secondary;
        self.meta.current &= !1;
        // No writes any more: nothing to suspend.
        self.suspended.clear();
        // The metadata keeps saying "primary" (with its activity log) until
        // this node's own writes are durable: a power loss before that is
        // a crashed primary, whose hot extents resync at the next start.
        let io = self.io();
        self.disk_queue.note(io, Purpose::DemoteFlush);
        self.out.push_back(Output::DiskFlush { io });
        self.emit(VolumeEvent::Role {
            role: Role::Secondary,
        });
        self.broadcast_state();
        Ok(())
    }

    /// `connect --discard-my-data`: at the next connection to `peer`, a
    /// split brain resolves with this node as the sync target (its changes
    /// since the split are overwritten).
    pub fn discard_my_data(&mut self, peer: &str) -> Result<(), VolumeError> {
        let i = self.peer_index_by_name(peer)?;
        self.peers[i].discard_my_data = true;
        Ok(())
    }

    /// `disconnect`: drop the connection to `peer` and stay StandAlone.
    pub fn disconnect(&mut self, peer: &str) -> Result<(), VolumeError> {
        let i = self.peer_index_by_name(peer)?;
        let node = self.peers[i].cfg.node;
        if self.peers[i].conn == ConnState::Connected {
            self.out.push_back(Output::Disconnect { peer: node });
            self.lose(i);
        }
        self.peers[i].conn = ConnState::StandAlone;
        Ok(())
    }

    /// `connect`: leave StandAlone and accept a connection from `peer`.
    pub fn connect(&mut self, peer: &str) -> Result<(), VolumeError> {
        let i = self.peer_index_by_name(peer)?;
        if self.peers[i].conn == ConnState::StandAlone {
            self.peers[i].conn = ConnState::Connecting;
        }
        Ok(())
    }

    /// The cluster declared `peer` dead: drop its connection now (rather
    /// than at the ping timeout) and keep trying to reconnect.
    pub fn forget(&mut self, now: Timestamp, peer: &str) -> Result<(), VolumeError> {
        self.now = now;
        let i = self.peer_index_by_name(peer)?;
        let node = self.peers[i].cfg.node;
        if self.peers[i].conn == ConnState::Connected {
            self.out.push_back(Output::Disconnect { peer: node });
            self.lose(i);
        }
        if self.peers[i].conn != ConnState::StandAlone {
            self.peers[i].conn = ConnState::Connecting;
        }
        Ok(())
    }

    /// `outdate`: marks this copy Outdated (resource-level fencing: the
    /// cluster knows a primary went on writing without it). Persisted; the
    /// copy is current again only after it resynced, or found its
    /// generations equal to an up-to-date peer's. Refused on a primary and
    /// while a primary peer is connected (its writes still arrive).
    pub fn outdate(&mut self, now: Timestamp) -> Result<(), VolumeError> {
        self.now = now;
        if self.role == Role::Primary {
            return Err(VolumeError::WrongState {
                volume: self.cfg.name.clone(),
                what: "a primary cannot be outdated".into(),
            });
        }
        if let Some(p) = self
            .peers
            .iter()
            .find(|p| p.conn == ConnState::Connected && p.role == Role::Primary)
        {
            return Err(VolumeError::WrongState {
                volume: self.cfg.name.clone(),
                what: format!("connected to primary {}: this copy is current", p.cfg.name),
            });
        }
        if matches!(self.disk, DiskState::UpToDate | DiskState::Consistent) {
            self.meta.flags.outdated = true;
            self.meta.flags.up_to_date = false;
            self.write_meta();
            self.set_disk(DiskState::Outdated);
        }
        Ok(())
    }

    /// Changes the fencing policy (a configuration reload); it applies
    /// from the next connection loss.
    pub fn set_fencing(&mut self, f: crate::fencing::Fencing) {
        self.cfg.fencing = f;
    }

    /// Changes the automatic split-brain recovery (a configuration reload);
    /// it applies from the next handshake.
    pub fn set_split_brain(&mut self, p: crate::split_brain::Policies) {
        self.cfg.split_brain = p;
    }

    /// Whether the driver should (re)connect to `peer` (not StandAlone).
    pub fn wants_connection(&self, peer: u8) -> bool {
        self.peers
            .iter()
            .any(|p| p.cfg.node == peer && p.conn == ConnState::Connecting)
    }

    /// `invalidate`: throws the local copy away; it is fully resynced from
    /// a peer at the next connection.
    pub fn invalidate(&mut self) -> Result<(), VolumeError> {
        if self.role == Role::Primary {
            return Err(VolumeError::WrongState {
                volume: self.cfg.name.clone(),
                what: "invalidate needs the secondary role".into(),
            });
        }
        self.meta.current = crate::gi::JUST_CREATED;
        self.meta.flags.consistent = false;
        self.meta.flags.up_to_date = false;
        self.set_disk(DiskState::Inconsistent);
        self.write_meta();
        // Connected peers reconnect: the handshake then finds this copy
        // just created and starts the full resync at once.
        for i in 0..self.peers.len() {
            if self.peers[i].conn == ConnState::Connected {
                let node = self.peers[i].cfg.node;
                self.out.push_back(Output::Disconnect { peer: node });
                self.lose(i);
            }
        }
        Ok(())
    }

    /// `invalidate-remote`: `peer`'s copy is thrown away and fully resynced
    /// from this one (every block marked for it, then a reconnection: the
    /// handshake makes this side the source). Needs this copy UpToDate and
    /// the peer connected, up to date and not primary.
    pub fn invalidate_remote(&mut self, now: Timestamp, peer: &str) -> Result<(), VolumeError> {
        self.now = now;
        let i = self.peer_index_by_name(peer)?;
        let p = &self.peers[i];
        let wrong = |what: String| VolumeError::WrongState {
            volume: self.cfg.name.clone(),
            what,
        };
        if self.disk != DiskState::UpToDate {
            return Err(wrong(format!(
                "this copy is {}: only an UpToDate copy can be the source of {peer}'s full resync",
                self.disk
            )));
        }
        if p.conn != ConnState::Connected || p.repl != crate::state::ReplState::Established {
            return Err(wrong(format!(
                "invalidate-remote needs an established connection to {peer} (it is {})",
                p.repl
            )));
        }
        if p.role == Role::Primary {
            return Err(wrong(format!(
                "{peer} is primary: its copy cannot be overwritten (run invalidate there after demoting it, or here from a secondary)"
            )));
        }
        let node = p.cfg.node;
        if let Some(m) = self.meta.peer_mut(node) {
            m.bitmap.set_all();
        }
        self.write_meta();
        self.emit(VolumeEvent::RemoteInvalidated {
            peer: peer.to_string(),
        });
        self.out.push_back(Output::Disconnect { peer: node });
        self.lose(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Metadata, Output, PeerConfig, Protocol, Volume, VolumeConfig};
    use tandem_core::Timestamp;

    #[test]
    fn an_outdate_is_settled_only_once_its_metadata_is_on_disk() {
        let cfg = VolumeConfig::new(
            "r0",
            0,
            vec![PeerConfig {
                node: 1,
                name: "n2".into(),
                protocol: Protocol::C,
            }],
            7,
        );
        let mut meta = Metadata::create(1 << 20, 0, &[1], 8);
        meta.flags.consistent = true;
        meta.flags.up_to_date = true;
        let mut v = Volume::attach(cfg, meta, Timestamp::ZERO);
        // Whatever attaching wrote is done.
        while let Some(o) = v.poll() {
            if let Output::MetaWrite { io, .. } = o {
                v.disk_done(Timestamp::from_nanos(1), io, Ok(None));
            }
        }
        assert!(v.meta_settled());
        v.outdate(Timestamp::from_nanos(2)).expect("outdate");
        assert!(!v.meta_settled(), "settled before the write was done");
        let io = std::iter::from_fn(|| v.poll())
            .find_map(|o| match o {
                Output::MetaWrite { io, meta } => {
                    assert!(meta.flags.outdated);
                    Some(io)
                }
                _ => None,
            })
            .expect("a metadata write");
        v.disk_done(Timestamp::from_nanos(3), io, Ok(None));
        assert!(v.meta_settled());
    }
}
