//! Witnesses and the arbitrator: in a two-node cluster, a node takes over
//! from a silent peer only if it reaches a witness, or holds the
//! arbitrator's vote (asked for, renewed halfway, given back).

use super::Brain;
use crate::event::Event;
use crate::membership::PeerState;
use crate::time::Timestamp;
use std::collections::VecDeque;

use super::timers::earliest;

/// An arbitrator's answer to a vote request (see
/// [`Brain::handle_witness_vote`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vote {
    /// This node holds the vote until then (the daemon counts from when it
    /// sent the request, minus a margin for clock-rate differences).
    Granted {
        /// End of the vote, in brain time.
        until: Timestamp,
    },
    /// Another node holds the vote.
    Refused,
    /// No valid answer in time.
    NoAnswer,
}

/// Where the witness check of the current failover stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) enum WitnessState {
    /// Every peer is a member: nothing to check.
    #[default]
    Idle,
    /// A peer went silent; the witness is being probed (request id).
    Checking(u64),
    /// The witness answered: this node may act alone.
    Reached,
    /// No witness answered: this node waits (runs nothing).
    Unreachable,
    /// An operator forced this node to act alone.
    Forced,
}

/// The witness check of the current failover and the arbitrator's vote.
#[derive(Debug, Default)]
pub(super) struct Arbitration {
    /// Where the witness check stands.
    pub(super) state: WitnessState,
    /// Probes and vote requests to hand to the driver.
    pub(super) requests: VecDeque<u64>,
    /// Arbitrator vote: valid until then (`None`: no expiry, or no vote).
    pub(super) until: Option<Timestamp>,
    /// When the current vote was granted (renewed halfway to expiry).
    pub(super) granted_at: Timestamp,
    /// A renewal (or, while waiting, a retry) in flight.
    pub(super) again: Option<u64>,
    /// While waiting for an arbitrator: when to ask again.
    pub(super) retry_at: Option<Timestamp>,
    /// This node was given the arbitrator's vote and has not given it
    /// back yet.
    pub(super) vote_held: bool,
    /// The arbitrator's vote is no longer needed: tell it (see
    /// [`Output::WitnessRelease`]).
    pub(super) release: bool,
}

impl Brain {
    pub(super) fn witness_request(&mut self) -> u64 {
        let id = self.next_op;
        self.next_op += 1;
        self.witness.requests.push_back(id);
        id
    }

    /// Starts a witness check when a peer has gone silent, and forgets the
    /// last one when every peer is back; with an arbitrator, also renews a
    /// vote halfway to its expiry, gives up a vote that lapsed, and asks
    /// again while waiting.
    pub(super) fn update_witness(&mut self) {
        if !self.cfg.witness || self.cfg.quorum.enabled {
            return;
        }
        let now = self.last_now;
        let all_members = self.peers.iter().all(|p| p.state.is_member());
        let anyone_silent = self
            .peers
            .iter()
            .any(|p| matches!(p.state, PeerState::Dead | PeerState::Late));
        if all_members && !anyone_silent {
            if self.witness.state != WitnessState::Idle {
                self.witness.state = WitnessState::Idle;
            }
            // Every peer is back, and hears us: give the arbitrator's vote
            // back, so a new split does not find it still with this node.
            // (Not before they hear us: one that still thinks we are dead
            // would be given the vote and act.)
            let me = (self.cfg.local.0, self.cfg.incarnation);
            let heard_back = self
                .peers
                .iter()
                .all(|p| p.view.iter().any(|e| (e.node, e.incarnation) == me && e.up));
            if self.witness.vote_held && heard_back {
                self.witness.vote_held = false;
                self.witness.release = true;
            }
            self.witness.until = None;
            self.witness.again = None;
            self.witness.retry_at = None;
            return;
        }
        match self.witness.state {
            WitnessState::Idle if anyone_silent => {
                // With an arbitrator, a node that holds nothing asks only
                // once the peer is dead: the holder asks at warntime and so
                // keeps the groups when both sides reach the arbitrator.
                let holds = self.groups.iter().any(|g| g.phase().is_active());
                let anyone_dead = self.peers.iter().any(|p| p.state == PeerState::Dead);
                if self.cfg.witness_arbiter && !holds && !anyone_dead {
                    return;
                }
                // Checked as soon as a peer is late: a holder that cannot
                // reach the witness gives its groups up before the peer, at
                // deadtime, may take them.
                let id = self.witness_request();
                self.witness.state = WitnessState::Checking(id);
            }
            WitnessState::Reached => {
                let Some(until) = self.witness.until else {
                    return;
                };
                if now >= until {
                    // The vote lapsed without a renewal: another node may
                    // hold it now. Stop acting alone (the lease ended too).
                    self.witness.state = WitnessState::Unreachable;
                    self.witness.until = None;
                    self.witness.again = None;
                    self.witness.retry_at = Some(now);
                    self.events.push_back(Event::Witness { reachable: false });
                } else if self.witness.again.is_none()
                    && self.witness.retry_at.is_none_or(|t| now >= t)
                {
                    let half = until.since(self.witness.granted_at) / 2;
                    if now >= self.witness.granted_at + half {
                        self.witness.again = Some(self.witness_request());
                    }
                }
            }
            WitnessState::Unreachable
                if self.cfg.witness_arbiter
                    && self.witness.again.is_none()
                    && self.witness.retry_at.is_none_or(|t| now >= t) =>
            {
                self.witness.again = Some(self.witness_request());
            }
            _ => {}
        }
    }

    /// Feeds the outcome of witness probe `id`: whether any witness answered.
    pub(super) fn witness_result(&mut self, now: Timestamp, id: u64, reachable: bool) {
        self.advance(now);
        if self.witness.state == WitnessState::Checking(id) {
            self.witness.state = if reachable {
                WitnessState::Reached
            } else {
                WitnessState::Unreachable
            };
            self.events.push_back(Event::Witness { reachable });
            self.reconcile(now);
        }
    }

    /// Feeds an arbitrator's answer to request `id`. A holder whose
    /// renewal got no answer keeps its vote until it lapses and asks again
    /// every [`Brain::WITNESS_RENEW_RETRY`]; a refusal stops it at once.
    pub(super) fn witness_vote(&mut self, now: Timestamp, id: u64, vote: Vote) {
        self.advance(now);
        let first = self.witness.state == WitnessState::Checking(id);
        let again = self.witness.again == Some(id);
        if !first && !again {
            return;
        }
        if again {
            self.witness.again = None;
        }
        let vote = match vote {
            Vote::Granted { until } if until <= now => Vote::NoAnswer,
            v => v,
        };
        match vote {
            Vote::Granted { until } => {
                if self.witness.state != WitnessState::Reached {
                    self.events.push_back(Event::Witness { reachable: true });
                }
                self.witness.state = WitnessState::Reached;
                self.witness.until = Some(until);
                self.witness.vote_held = true;
                self.witness.granted_at = now;
                self.witness.retry_at = None;
            }
            Vote::NoAnswer if self.witness.state == WitnessState::Reached => {
                self.witness.retry_at = Some(now + Self::WITNESS_RENEW_RETRY);
            }
            Vote::Refused | Vote::NoAnswer => {
                if self.witness.state != WitnessState::Unreachable {
                    self.events.push_back(Event::Witness { reachable: false });
                }
                self.witness.state = WitnessState::Unreachable;
                self.witness.until = None;
                self.witness.retry_at = Some(now + Self::WITNESS_RETRY);
            }
        }
        self.reconcile(now);
    }

    /// Whether a holder may keep what runs as far as the witness rule goes:
    /// yes while the witness is being asked, no once it said no.
    pub(super) fn witness_keeps(&self) -> bool {
        match self.witness.state {
            WitnessState::Unreachable => false,
            WitnessState::Idle => self.witness_allows(),
            WitnessState::Checking(_) | WitnessState::Reached | WitnessState::Forced => true,
        }
    }

    /// Whether this node may hold groups as far as the witness rule goes.
    pub(super) fn witness_allows(&self) -> bool {
        match self.witness.state {
            WitnessState::Forced => true,
            // Idle means every peer is a member (or left cleanly); a peer
            // never heard since this daemon started counts as silent too.
            WitnessState::Idle => {
                !self.cfg.witness
                    || self.cfg.quorum.enabled
                    || self.peers.iter().all(|p| {
                        !matches!(
                            p.state,
                            PeerState::Pending | PeerState::Late | PeerState::Dead
                        )
                    })
            }
            WitnessState::Reached => self.witness.until.is_none_or(|u| self.last_now < u),
            WitnessState::Checking(_) | WitnessState::Unreachable => false,
        }
    }

    /// When the arbitrator's vote ends, is due for renewal (halfway), or
    /// is asked for again.
    pub(super) fn witness_deadline(&self) -> Option<Timestamp> {
        let w = &self.witness;
        let mut next = None;
        if let Some(u) = w.until {
            next = earliest(next, Some(u));
            if w.again.is_none() {
                let half = w.granted_at + u.since(w.granted_at) / 2;
                next = earliest(next, Some(w.retry_at.map_or(half, |t| t.max(half))));
            }
        }
        if w.again.is_none() && w.state == WitnessState::Unreachable {
            next = earliest(next, w.retry_at);
        }
        next
    }
}
