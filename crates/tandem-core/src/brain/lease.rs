//! The lease: how long this node may keep serving its groups' addresses
//! without hearing back, bounded by when a peer could take over
//! (`docs/safety.md`, "Lease sizing"). Mirrored into the kernel by the driver.

use crate::Brain;
use crate::Timestamp;
use crate::membership::Peer;
use std::collections::VecDeque;
use tandem_wire::NodeState;

/// What peers acknowledged of this node's heartbeats (see
/// `Brain::peers_acked_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Acked {
    /// No peer that could take over has acknowledged anything.
    Nobody,
    /// The acknowledged packet was sent then.
    At(Timestamp),
    /// Longer ago than this node remembers (two deadtimes).
    TooLongAgo,
}

impl Acked {
    pub(super) fn earlier(self, other: Acked) -> Acked {
        match (self, other) {
            (Acked::TooLongAgo, _) | (_, Acked::TooLongAgo) => Acked::TooLongAgo,
            (Acked::Nobody, x) | (x, Acked::Nobody) => x,
            (Acked::At(a), Acked::At(b)) => Acked::At(a.min(b)),
        }
    }
}

/// This node's lease on its groups' addresses, and what it is computed
/// from.
#[derive(Debug)]
pub(super) struct Lease {
    /// The lease ends then (`None`: no lease).
    pub(super) until: Option<Timestamp>,
    /// The lease last reported by [`Brain::poll`].
    pub(super) reported: Option<Timestamp>,
    /// The lease lapsed while groups ran (reported once).
    pub(super) lost: bool,
    /// When this node last queued heartbeats.
    pub(super) last_sent: Timestamp,
    /// When it queued them the time before: with no acknowledgement to go
    /// by, a lease counts from here (the last ones may be lost).
    pub(super) prev_sent: Timestamp,
    /// Recent sends: (last sequence number of the batch, when), oldest
    /// first, to learn when a packet a peer acknowledges was sent.
    pub(super) sent_log: VecDeque<(u64, Timestamp)>,
}

impl Lease {
    /// No lease yet; sends count from `now`.
    pub(super) fn new(now: Timestamp) -> Self {
        Self {
            until: None,
            reported: None,
            lost: false,
            last_sent: now,
            prev_sent: now,
            sent_log: VecDeque::new(),
        }
    }
}

impl Brain {
    /// Renews (or lets lapse) the lease under which this node holds groups.
    ///
    /// `docs/safety.md`, "Lease sizing":
    /// - acknowledged: a peer declares this node dead `deadtime` after the
    ///   last packet it received from it, and its heartbeats say which one
    ///   that was (the view's `seen`), so the lease ends `deadtime − 2 %`
    ///   after that packet was sent — for every member peer with two
    ///   nodes, for the majority with quorum. Peers answer this node's
    ///   heartbeats at once while it holds groups, so that is nearly a
    ///   deadtime after its latest heartbeat;
    /// - unacknowledged (no member peer has acknowledged this incarnation:
    ///   alone after a failover, say), or while this node holds the
    ///   arbitrator's vote (no peer can act before the vote ends): a peer
    ///   that hears this node without being heard declares it dead
    ///   `deadtime` after the last packet it received, and the last one
    ///   sent may be lost, so `deadtime − 2 %` after the one before it (a
    ///   send interval before the last, at the earliest).
    ///   Heartbeats then go out every keepalive/2 ([`Brain::send_interval`]),
    ///   so that is `deadtime − keepalive/2 − 2 %` after the latest.
    pub(super) fn renew_lease(&mut self, now: Timestamp) {
        let holds = self.holds_groups();
        let may = !self.lease.lost
            && self.has_quorum()
            && self.witness_allows()
            && self.state != NodeState::Leaving;
        let t = &self.cfg.timing;
        // The heartbeat before the last one sent, counting only the
        // periodic rhythm: an answer or a state change sent a moment after
        // a periodic heartbeat is no evidence that one got through.
        let acked = self.peers_acked_at();
        let before_last = self
            .lease
            .prev_sent
            .min(self.lease.last_sent - self.interval_given(acked));
        let frozen_end = before_last + t.deadtime.saturating_sub(t.deadtime / 50);
        // Holding the arbitrator's vote, no peer can act before the vote
        // ends (the cap below): being cut off is not a reason to go silent.
        let span_end = match acked {
            _ if self.witness.until.is_some() => frozen_end,
            Acked::Nobody => frozen_end,
            // The acknowledgement alone bounds when a peer can act; with
            // immediate answers it is microseconds old, so the lease lasts
            // nearly a deadtime past each answer.
            Acked::At(at) => at + t.deadtime.saturating_sub(t.deadtime / 50),
            Acked::TooLongAgo => now,
        };
        // Acting alone on an arbitrator's vote: never past the vote.
        let end = self.witness.until.map_or(span_end, |u| u.min(span_end));
        self.lease.until = (holds && may && end > now).then_some(end);
    }

    /// How often this node sends heartbeats: every keepalive, and every
    /// keepalive/2 while it holds groups under a lease no peer's
    /// acknowledgement renews (alone after a failover, or on an
    /// arbitrator's vote), so that lease stays a refresh period and two
    /// kernel ticks ahead at the tightest timings.
    pub(super) fn send_interval(&self) -> std::time::Duration {
        self.interval_given(self.peers_acked_at())
    }

    /// [`Brain::send_interval`], given what peers acknowledged (worked
    /// out once per renewal).
    fn interval_given(&self, acked: Acked) -> std::time::Duration {
        let k = self.cfg.timing.keepalive;
        let unacked = self.witness.until.is_some() || acked == Acked::Nobody;
        if self.holds_groups() && unacked {
            k / 2
        } else {
            k
        }
    }

    /// When the packet the peers that could take over last acknowledged was
    /// sent: the earliest over member peers with two nodes; with quorum,
    /// the latest moment by which a majority (with this node) had received
    /// one. Peers that never acknowledged this incarnation are not counted
    /// (they have not heard it; `initdead` holds them back).
    pub(super) fn peers_acked_at(&self) -> Acked {
        let me = (self.cfg.local.0, self.cfg.incarnation);
        let acked = |p: &Peer| match p.seen(me) {
            0 => Acked::Nobody,
            seq => self.sent_at(seq).map_or(Acked::TooLongAgo, Acked::At),
        };
        if !self.cfg.quorum.enabled {
            return self
                .peers
                .iter()
                .filter(|p| p.state.is_member())
                .map(acked)
                .fold(Acked::Nobody, Acked::earlier);
        }
        let total: u32 = self.cfg.nodes.iter().map(|n| self.votes(n.id)).sum();
        let mut heard: Vec<(Timestamp, u32)> = self
            .peers
            .iter()
            .filter(|p| self.counts_for_quorum(p))
            .filter_map(|p| match acked(p) {
                Acked::At(t) => Some((t, self.votes(p.id))),
                Acked::Nobody | Acked::TooLongAgo => None,
            })
            .collect();
        heard.sort_by_key(|h| std::cmp::Reverse(h.0));
        let mut present = self.votes(self.cfg.local);
        let mut at = Acked::Nobody;
        for (t, v) in heard {
            if present * 2 > total {
                break;
            }
            present += v;
            at = Acked::At(t);
        }
        if present * 2 > total {
            at
        } else {
            Acked::TooLongAgo
        }
    }

    /// Until when this node may serve its groups' addresses (the daemon
    /// mirrors it into the kernel, so a frozen daemon's addresses go silent
    /// by themselves); `None`: it holds nothing, or may not.
    pub fn lease_until(&self) -> Option<Timestamp> {
        self.lease.until
    }

    /// When this node sent the packet with sequence number `seq`; `None`
    /// if it is older than the log (more than two deadtimes ago).
    pub(super) fn sent_at(&self, seq: u64) -> Option<Timestamp> {
        let (first, _) = *self.lease.sent_log.front()?;
        if seq + u64::try_from(self.cfg.links.len()).unwrap_or(u64::MAX) <= first {
            return None;
        }
        self.lease
            .sent_log
            .iter()
            .find(|&&(last, _)| last >= seq)
            .map(|&(_, at)| at)
    }
}
