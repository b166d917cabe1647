//! Grants: which node this node's reports say may run each group. A group
//! starts only where every member grants it; a grant taken back is
//! withdrawn until the old holder has seen it and stopped.

use crate::Brain;
use crate::NodeId;
use crate::membership::Peer;
use crate::placement::Candidate;
use crate::placement::place;
use tandem_wire::{GroupPhase, NodeState};

/// What this node's reports grant for one group (see
/// `Brain::update_grants`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GrantState {
    /// The node our reports name as the one that may run the group.
    pub(super) to: Option<NodeId>,
    /// A grant being taken back from this peer: our reports name nobody
    /// until the peer has seen one of them (from this sequence number on)
    /// and reports the group stopped, or is no member any more. Otherwise
    /// the peer could still start on the old grant while we grant another.
    pub(super) withdrawing: Option<(NodeId, u64)>,
}

impl Brain {
    /// Moves each group's grant where [`Brain::grant`] wants it, but takes
    /// a grant back from a peer that has not started the group before
    /// giving it to anyone else: nothing is granted until the peer has seen
    /// the withdrawal and reports the group stopped (or is no member).
    pub(super) fn update_grants(&mut self) {
        let me = (self.cfg.local.0, self.cfg.incarnation);
        let next_seq = self.seq + 1;
        for g in 0..self.groups.len() {
            let want = self.grant(g);
            let report = |p: &Peer| p.groups.iter().find(|r| usize::from(r.group) == g).copied();
            if let Some((x, from_seq)) = self.grants[g].withdrawing {
                let done = self.peers.iter().find(|p| p.id == x).is_none_or(|p| {
                    !p.state.is_member()
                        || (p.seen(me) >= from_seq
                            && report(p).is_none_or(|r| !r.phase.is_active()))
                });
                if !done {
                    self.grants[g].to = None;
                    continue;
                }
                self.grants[g].withdrawing = None;
            }
            let current = self.grants[g].to;
            let withdraw = current.filter(|x| {
                *x != self.cfg.local
                    && want != Some(*x)
                    && self.peers.iter().any(|p| {
                        p.id == *x
                            && p.state.is_member()
                            && report(p).is_none_or(|r| !r.phase.is_active())
                    })
            });
            match withdraw {
                Some(x) => {
                    self.grants[g].withdrawing = Some((x, next_seq));
                    self.grants[g].to = None;
                }
                None => self.grants[g].to = want,
            }
        }
    }

    /// Whether every member peer's latest report agrees that this node
    /// should start group `g`: same settings, same target (us), nothing
    /// running there. With reports applied in sequence order, two nodes can
    /// never both see this agreement for themselves.
    pub(super) fn peers_agree(&self, g: usize) -> bool {
        let me = self.cfg.local.0;
        let key = self.settings_key();
        self.peers.iter().filter(|p| p.state.is_member()).all(|p| {
            p.settings_key == key
                && p.groups.iter().any(|r| {
                    usize::from(r.group) == g && r.target == me && r.phase == GroupPhase::Stopped
                })
        })
    }

    /// The node this node grants group `g` to: the node where it is active
    /// (the lowest id, if several), else the placement target. A grant stays
    /// with the holder until it has stopped, so a majority never grants two
    /// holders at once.
    pub(super) fn grant(&self, g: usize) -> Option<NodeId> {
        if self.groups[g].phase().is_active() {
            let lower_peer = self
                .peers
                .iter()
                .filter(|p| p.id < self.cfg.local)
                .any(|p| {
                    p.state.is_member()
                        && p.groups
                            .iter()
                            .any(|r| usize::from(r.group) == g && r.phase.is_active())
                });
            if !lower_peer {
                return Some(self.cfg.local);
            }
        }
        let active_peer = self.peers.iter().find(|p| {
            p.state.is_member()
                && p.groups
                    .iter()
                    .any(|r| usize::from(r.group) == g && r.phase.is_active())
        });
        match active_peer {
            Some(p) => Some(p.id),
            None => self.target(g).0,
        }
    }

    /// Whether this node may run groups now.
    pub(super) fn eligible_here(&self) -> bool {
        self.state == NodeState::Online
            && !self.leaving
            && !self.settings.standby.contains(&self.cfg.local)
    }

    /// Where placement wants group `g`, and whether another node has it active.
    pub(super) fn target(&self, g: usize) -> (Option<NodeId>, bool) {
        let spec = &self.cfg.groups[g];
        let rt = &self.groups[g];
        let mut cands = vec![Candidate {
            node: self.cfg.local,
            eligible: self.eligible_here(),
            banned: rt.banned(spec.migration_threshold) || self.lease.lost || self.data_held(g),
            active: matches!(
                rt.phase(),
                GroupPhase::Starting
                    | GroupPhase::Started
                    | GroupPhase::Stopping
                    | GroupPhase::Blocked
            ),
        }];
        let mut elsewhere = false;
        for p in &self.peers {
            let report = p.groups.iter().find(|r| usize::from(r.group) == g);
            let member = p.state.is_member();
            elsewhere |= member && report.is_some_and(|r| r.phase.is_active());
            // A node still probing does not attract the group (stickiness).
            let active = member
                && report.is_some_and(|r| r.phase.is_active() && r.phase != GroupPhase::Probing);
            cands.push(Candidate {
                node: p.id,
                eligible: member
                    && p.remote_state == NodeState::Online
                    && !self.settings.standby.contains(&p.id),
                banned: report.is_some_and(|r| r.banned),
                active,
            });
        }
        cands.sort_by_key(|c| c.node);
        (
            place(&spec.rules, &cands, self.settings.moved_to(g)),
            elsewhere,
        )
    }
}
