//! The snapshot served to operators (`tandem status`), and small queries
//! about membership.

use super::{Brain, WitnessState};
use crate::NodeId;
use crate::membership::PeerState;
use crate::resources::GroupRt;
use crate::status::{GroupStatus, LinkStatus, MembershipStatus, NodeStatus, ResourceStatus};
use crate::time::Timestamp;
use std::time::Duration;
use tandem_wire::{GroupPhase, NodeState, ViewEntry};

impl Brain {
    /// Why this node waits instead of acting alone, if it does.
    pub fn waiting(&self) -> Option<String> {
        match self.witness.state {
            WitnessState::Checking(_) => Some("checking the witness before acting alone".into()),
            WitnessState::Unreachable if self.cfg.witness_arbiter => Some(
                "waiting: the arbitrator's vote is not ours (the peer holds it, or the arbitrator is unreachable); asking again every second. If the peer is really down and the arbitrator gone, run `tandem force-primary` on the node that should run the groups"
                    .into(),
            ),
            WitnessState::Unreachable => Some(
                "waiting: witness unreachable at failover; if the peer is really down, run `tandem force-primary` on the node that should run the groups"
                    .into(),
            ),
            WitnessState::Idle if !self.witness_allows() && self.cfg.witness_arbiter => Some(
                "waiting: the peer is silent; asking the arbitrator once it is declared dead"
                    .into(),
            ),
            _ => None,
        }
    }

    /// The phase of group `g` on this node.
    pub fn group_phase(&self, g: usize) -> Option<GroupPhase> {
        self.groups.get(g).map(GroupRt::phase)
    }

    pub(super) fn group_status(&self) -> Vec<GroupStatus> {
        let mut out = Vec::new();
        for (g, (rt, spec)) in self.groups.iter().zip(&self.cfg.groups).enumerate() {
            let mut active_on = Vec::new();
            let mut banned_on = Vec::new();
            let mut stale_on = Vec::new();
            if rt.data_stale {
                stale_on.push(self.local_name().to_string());
            }
            if rt.phase().is_active() {
                active_on.push(self.local_name().to_string());
            }
            if rt.banned(spec.migration_threshold) {
                banned_on.push(self.local_name().to_string());
            }
            for p in &self.peers {
                if let Some(r) = p.groups.iter().find(|r| usize::from(r.group) == g) {
                    if p.state.is_member() && r.phase.is_active() {
                        active_on.push(p.name.clone());
                    }
                    if p.state.is_member() && r.banned {
                        banned_on.push(p.name.clone());
                    }
                    if r.stale {
                        stale_on.push(p.name.clone());
                    }
                }
            }
            let (target, _) = self.target(g);
            out.push(GroupStatus {
                name: spec.name.clone(),
                active_on,
                target: target.map(|t| self.node_name(t)),
                phase_here: format!("{:?}", rt.phase()).to_lowercase(),
                blocked_on: rt.blocked_on.map(|n| self.node_name(n)),
                moved_to: self.settings.moved_to(g).map(|n| self.node_name(n)),
                banned_on,
                stale_on,
                data_hold_here: rt.data_hold.clone(),
                resources: rt
                    .resources
                    .iter()
                    .zip(&spec.resources)
                    .map(|(r, s)| ResourceStatus {
                        name: s.name.clone(),
                        state: r.state,
                        fail_count: r.fail_count,
                        last_error: r.last_error.clone(),
                    })
                    .collect(),
            });
        }
        out
    }

    /// The nodes this node counts as members, local included, by id.
    pub fn members(&self) -> Vec<NodeId> {
        let mut m: Vec<NodeId> = std::iter::once(self.cfg.local)
            .chain(
                self.peers
                    .iter()
                    .filter(|p| p.state.is_member())
                    .map(|p| p.id),
            )
            .collect();
        m.sort_unstable();
        m
    }

    /// What this node believes about `node` (the local node is always online).
    pub fn peer_state(&self, node: NodeId) -> Option<PeerState> {
        if node == self.cfg.local {
            return Some(PeerState::Online);
        }
        self.peers.iter().find(|p| p.id == node).map(|p| p.state)
    }

    /// The incarnation last heard from `node`.
    pub fn peer_incarnation(&self, node: NodeId) -> Option<u64> {
        if node == self.cfg.local {
            return Some(self.cfg.incarnation);
        }
        self.peers
            .iter()
            .find(|p| p.id == node)
            .and_then(|p| p.incarnation)
    }

    /// The snapshot served by `tandem status`.
    pub fn status(&self, now: Timestamp) -> MembershipStatus {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let names = |view: &[ViewEntry]| -> Vec<String> {
            view.iter()
                .filter(|e| e.up)
                .filter_map(|e| self.name_of(NodeId(e.node)).map(str::to_string))
                .collect()
        };
        let mut nodes = Vec::with_capacity(self.cfg.nodes.len());
        for n in &self.cfg.nodes {
            if n.id == self.cfg.local {
                nodes.push(NodeStatus {
                    name: n.name.clone(),
                    id: n.id.0,
                    local: true,
                    state: PeerState::Online,
                    incarnation: Some(self.cfg.incarnation),
                    last_heard_ms: Some(0),
                    links: Vec::new(),
                    config_mismatch: false,
                    sees: names(&self.view()),
                    fenced: false,
                });
            } else if let Some(p) = self.peers.iter().find(|p| p.id == n.id) {
                nodes.push(NodeStatus {
                    name: p.name.clone(),
                    id: p.id.0,
                    local: false,
                    state: p.state,
                    incarnation: p.incarnation,
                    last_heard_ms: p.silent_for(now).map(ms),
                    links: p
                        .links
                        .iter()
                        .map(|l| LinkStatus {
                            name: l.label.clone(),
                            state: l.state,
                            last_heard_ms: l.last_heard.map(|h| ms(now.since(h))),
                        })
                        .collect(),
                    config_mismatch: p.config_mismatch,
                    sees: names(&p.view),
                    fenced: self.peer_fenced(p.id),
                });
            }
        }
        MembershipStatus {
            cluster: self.cfg.cluster.clone(),
            local: self.local_name().to_string(),
            incarnation: self.cfg.incarnation,
            uptime_ms: ms(now.since(self.started)),
            joined: self.state != NodeState::Starting,
            members: self
                .members()
                .into_iter()
                .filter_map(|id| self.name_of(id).map(str::to_string))
                .collect(),
            nodes,
            standby: self
                .settings
                .standby
                .iter()
                .map(|n| self.node_name(*n))
                .collect(),
            groups: self.group_status(),
            waiting: self.waiting().or_else(|| {
                self.fencing_pending().then(|| {
                    "waiting: a dead node is being fenced before anything starts".to_string()
                })
            }),
            fencing: self.fencing.history.iter().cloned().collect(),
            lease_ms: self.lease.until.map(|u| ms(u.since(now))),
            quorum: self.cfg.quorum.enabled.then(|| {
                let (present, total) = self.quorum_votes();
                crate::status::QuorumStatus {
                    present,
                    needed: total / 2 + 1,
                    total,
                    quorate: self.has_quorum(),
                    no_quorum: self.cfg.quorum.no_quorum,
                }
            }),
            stats: self.stats.clone(),
        }
    }
}
