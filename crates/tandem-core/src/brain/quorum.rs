//! Quorum: votes, the strict-majority test, and what a partition without
//! quorum may start.

use crate::Brain;
use crate::Event;
use crate::NodeId;
use crate::PeerState;
use crate::membership::Peer;
use tandem_wire::NodeState;

impl Brain {
    /// Start-up rule: with `wait_for_all`, nothing starts before every node
    /// was seen once, or initdead passed.
    pub(super) fn start_allowed(&self) -> bool {
        // After a stall (a frozen daemon reading packets queued while it
        // was stopped), the peers' reports it holds may be stale grants:
        // start nothing until fresh ones had time to arrive.
        self.last_now >= self.hold_until && self.start_allowed_by_quorum()
    }

    pub(super) fn start_allowed_by_quorum(&self) -> bool {
        !self.cfg.quorum.enabled
            || !self.cfg.quorum.wait_for_all
            || self.seen_all
            || self.last_now.since(self.started) >= self.cfg.timing.initdead
    }

    pub(super) fn votes(&self, id: NodeId) -> u32 {
        let i = usize::from(id.0).saturating_sub(1);
        self.cfg.quorum.votes.get(i).copied().unwrap_or(1)
    }

    /// Votes present (this node and peers heard within warntime) and total.
    /// A late peer does not count: a holder that stops hearing the majority
    /// gives up at warntime, before the others declare it dead at deadtime.
    pub fn quorum_votes(&self) -> (u32, u32) {
        let total = self.cfg.nodes.iter().map(|n| self.votes(n.id)).sum();
        // A peer counts only if we hear it and it hears us (its latest view
        // lists this incarnation as up): a node whose packets no longer get
        // through loses quorum even if it still hears everyone.
        let present = self.votes(self.cfg.local)
            + self
                .peers
                .iter()
                .filter(|p| self.counts_for_quorum(p))
                .map(|p| self.votes(p.id))
                .sum::<u32>();
        (present, total)
    }

    /// Whether peer `p` counts toward quorum: heard within warntime, and
    /// its latest view lists this incarnation as up (it hears us).
    pub(super) fn counts_for_quorum(&self, p: &Peer) -> bool {
        let me = (self.cfg.local.0, self.cfg.incarnation);
        p.state == PeerState::Online && p.view.iter().any(|e| (e.node, e.incarnation) == me && e.up)
    }

    /// Whether this partition has quorum (always, when quorum is off).
    pub fn has_quorum(&self) -> bool {
        let (present, total) = self.quorum_votes();
        !self.cfg.quorum.enabled || present * 2 > total
    }

    pub(super) fn check_quorum(&mut self) {
        let q = self.has_quorum();
        if q != self.had_quorum && self.state != NodeState::Starting {
            let (present, total) = self.quorum_votes();
            self.events.push_back(Event::Quorum {
                quorate: q,
                present,
                needed: total / 2 + 1,
                policy: self.cfg.quorum.no_quorum,
            });
        }
        self.had_quorum = q;
    }
}
