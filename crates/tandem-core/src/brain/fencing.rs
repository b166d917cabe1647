//! Fencing: a peer declared dead is powered off by the driver's fence agent
//! before anything it ran is started elsewhere; failures are retried, and
//! the outcomes are kept for status.
use crate::Brain;
use crate::Event;
use crate::NodeId;
use crate::PeerState;
use crate::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

/// Fencing of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) enum FenceState {
    /// Not dead, or fencing not configured.
    #[default]
    None,
    /// Declared dead; the fence request `id` is under way.
    Pending(u64),
    /// Fencing failed; retried at this time.
    RetryAt(Timestamp),
    /// Fenced: it runs nothing any more.
    Done,
}

/// Fencing of dead peers.
#[derive(Debug, Default)]
pub(super) struct Fencing {
    /// Per peer (by index): fencing state since it was last declared dead.
    pub(super) peers: Vec<FenceState>,
    /// Fence requests to hand to the driver: (request id, node).
    pub(super) requests: VecDeque<(u64, NodeId)>,
    /// Recent fence outcomes, for status.
    pub(super) history: VecDeque<crate::status::FenceRecord>,
}

impl Brain {
    /// Starts fencing peers newly declared dead; forgets it for peers back.
    pub(super) fn update_fencing(&mut self, now: Timestamp) {
        if !self.cfg.fencing {
            return;
        }
        if self.fencing.peers.len() != self.peers.len() {
            self.fencing.peers = vec![FenceState::None; self.peers.len()];
        }
        for i in 0..self.peers.len() {
            // Never heard since start-up counts too: such a peer may well be
            // running the groups (issue 12, finding 3).
            let dead = self.peers[i].state == PeerState::Dead;
            let st = self.fencing.peers[i];
            if !dead {
                if st != FenceState::None && self.peers[i].state.is_member() {
                    self.fencing.peers[i] = FenceState::None;
                }
                continue;
            }
            let retry = matches!(st, FenceState::RetryAt(t) if t <= now);
            if st == FenceState::None || retry {
                let id = self.next_op;
                self.next_op += 1;
                self.fencing.peers[i] = FenceState::Pending(id);
                self.fencing.requests.push_back((id, self.peers[i].id));
            }
        }
    }

    /// Feeds the outcome of fence request `id`.
    pub(super) fn fence_result(&mut self, now: Timestamp, id: u64, result: Result<(), String>) {
        self.advance(now);
        let Some(i) = self
            .fencing
            .peers
            .iter()
            .position(|f| *f == FenceState::Pending(id))
        else {
            return;
        };
        let node = self.peers[i].name.clone();
        let ok = result.is_ok();
        self.fencing.peers[i] = if ok {
            FenceState::Done
        } else {
            FenceState::RetryAt(now + Duration::from_secs(1))
        };
        if ok {
            // A group blocked by a failed stop there is recovered by fencing.
            let id = self.peers[i].id;
            for g in &mut self.groups {
                if g.blocked_on == Some(id) {
                    g.blocked_on = None;
                }
            }
        }
        self.events.push_back(Event::Fenced {
            node: node.clone(),
            error: result.as_ref().err().cloned(),
        });
        self.fencing.history.push_back(crate::status::FenceRecord {
            node,
            ok,
            detail: result.err().unwrap_or_else(|| "fenced".into()),
            uptime_ms: u64::try_from(now.since(self.started).as_millis()).unwrap_or(u64::MAX),
        });
        if self.fencing.history.len() > 20 {
            self.fencing.history.pop_front();
        }
        self.reconcile(now);
    }

    /// Whether peer `id` was declared dead and fenced since.
    pub(super) fn peer_fenced(&self, id: NodeId) -> bool {
        self.peers
            .iter()
            .position(|p| p.id == id)
            .and_then(|i| self.fencing.peers.get(i))
            .is_some_and(|f| *f == FenceState::Done)
    }

    /// Whether some dead peer still waits to be fenced (nothing may start).
    pub(super) fn fencing_pending(&self) -> bool {
        self.cfg.fencing
            && self
                .fencing
                .peers
                .iter()
                .any(|f| matches!(f, FenceState::Pending(_) | FenceState::RetryAt(_)))
    }

    /// When the next failed fence is retried.
    pub(super) fn fence_retry_deadline(&self) -> Option<Timestamp> {
        self.fencing
            .peers
            .iter()
            .filter_map(|f| match f {
                FenceState::RetryAt(t) => Some(*t),
                _ => None,
            })
            .min()
    }
}
