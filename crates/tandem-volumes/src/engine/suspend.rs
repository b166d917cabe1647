//! IO suspended for fencing (`fencing = resource-and-stonith`): when the
//! primary loses a peer whose copy could be promoted, new writes wait and
//! finished writes and flushes are not acknowledged, until every such peer
//! is confirmed unable to take over with this data missing —
//! [`Volume::peer_fenced`] (the cluster outdated or barred its copy, a fence
//! agent powered it off, or a `fence-peer` handler said so) — or it
//! reconnects, or the operator runs [`Volume::resume_io`]. Reads go on.

use bytes::Bytes;
use tandem_core::Timestamp;

use super::{Volume, VolumeError};
use crate::event::VolumeEvent;
use crate::fencing::Fencing;
use crate::output::{IoError, Output, ReqId};
use crate::state::{DiskState, Role};

impl Volume {
    /// The primary is without peer `node`, whose copy was last seen
    /// `peer_disk` (DUnknown: not seen since this process started). Freezes
    /// IO if the policy asks for it and that copy could be promoted.
    pub(super) fn suspend_for(&mut self, node: u8, peer_disk: DiskState) {
        if self.cfg.fencing != Fencing::ResourceAndStonith || self.role != Role::Primary {
            return;
        }
        if !matches!(
            peer_disk,
            DiskState::UpToDate | DiskState::Consistent | DiskState::DUnknown
        ) {
            return;
        }
        if self.suspended.insert(node) {
            let peer = self.peer_name(node);
            self.emit(VolumeEvent::IoSuspended { peer });
        }
    }

    /// Just promoted: every peer not connected may hold a copy the cluster
    /// could promote later without what this node writes now (a full
    /// partition, or a peer that was down), so IO waits for it as for a
    /// peer lost (DRBD calls fence-peer at promotion too).
    pub(super) fn suspend_for_absent(&mut self) {
        let absent: Vec<(u8, DiskState)> = self
            .peers
            .iter()
            .filter(|p| p.conn != crate::state::ConnState::Connected)
            .map(|p| (p.cfg.node, p.disk))
            .collect();
        for (node, disk) in absent {
            self.suspend_for(node, disk);
        }
    }

    /// Completes a write or flush, or holds its completion back while IO
    /// is suspended.
    pub(super) fn acknowledge(&mut self, req: ReqId, result: Result<Option<Bytes>, IoError>) {
        if self.suspended.is_empty() {
            self.out.push_back(Output::Complete { req, result });
        } else {
            self.withheld.push((req, result));
        }
    }

    /// Whether IO is suspended for fencing.
    pub fn io_suspended(&self) -> bool {
        !self.suspended.is_empty()
    }

    /// The peers IO waits for.
    pub fn suspended_for(&self) -> Vec<String> {
        self.suspended.iter().map(|n| self.peer_name(*n)).collect()
    }

    /// The cluster confirmed that `peer` cannot be promoted with data this
    /// node wrote without it (`how`: its copy outdated or barred, or it was
    /// powered off). Returns whether IO was waiting for it.
    pub fn peer_fenced(
        &mut self,
        now: Timestamp,
        peer: &str,
        how: &str,
    ) -> Result<bool, VolumeError> {
        self.now = now;
        let i = self.peer_index_by_name(peer)?;
        let node = self.peers[i].cfg.node;
        if !self.suspended.remove(&node) {
            return Ok(false);
        }
        self.emit(VolumeEvent::PeerFenced {
            peer: peer.to_string(),
            how: how.to_string(),
        });
        self.resume_if_clear();
        Ok(true)
    }

    /// Peer `node` connected again: IO no longer waits for it.
    pub(super) fn peer_back(&mut self, node: u8) {
        if self.suspended.remove(&node) {
            let peer = self.peer_name(node);
            self.emit(VolumeEvent::PeerFenced {
                peer,
                how: "connected again".into(),
            });
            self.resume_if_clear();
        }
    }

    /// `resume-io`: the operator resumes IO without the confirmation
    /// (DRBD's `drbdadm resume-io`). Returns whether IO was suspended.
    pub fn resume_io(&mut self, now: Timestamp) -> bool {
        self.now = now;
        if self.suspended.is_empty() {
            return false;
        }
        self.suspended.clear();
        self.emit(VolumeEvent::IoResumed {
            why: "resumed by the operator (resume-io)".into(),
        });
        self.release_withheld();
        true
    }

    /// The node lost the cluster's lease while IO was suspended: every
    /// write and flush waiting fails with `error` (the application hears
    /// of it instead of hanging), so the volume can demote.
    pub fn fail_suspended(&mut self, now: Timestamp, error: &IoError) {
        self.now = now;
        if self.suspended.is_empty() {
            return;
        }
        for (req, _) in std::mem::take(&mut self.withheld) {
            self.out.push_back(Output::Complete {
                req,
                result: Err(error.clone()),
            });
        }
        for b in std::mem::take(&mut self.blocked) {
            self.out.push_back(Output::Complete {
                req: b.req,
                result: Err(error.clone()),
            });
        }
    }

    fn resume_if_clear(&mut self) {
        if self.suspended.is_empty() {
            self.emit(VolumeEvent::IoResumed {
                why: "every peer lost is fenced or back".into(),
            });
            self.release_withheld();
        }
    }

    fn release_withheld(&mut self) {
        for (req, result) in std::mem::take(&mut self.withheld) {
            self.out.push_back(Output::Complete { req, result });
        }
        self.pump_writes();
    }

    fn peer_name(&self, node: u8) -> String {
        self.peers
            .iter()
            .find(|p| p.cfg.node == node)
            .map_or_else(|| format!("node {node}"), |p| p.cfg.name.clone())
    }
}
