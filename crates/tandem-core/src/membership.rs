//! Membership and failure detection: what this node believes about each
//! peer and each (peer, link) path, from the packets it accepted.
//!
//! A peer is **late** once silent on every link for `warntime`, **dead**
//! after `deadtime`; a peer never heard is given `initdead` from start-up.
//! A link to a peer is dead after `deadtime` of silence on that link alone,
//! so one failed network does not make a node dead while another carries
//! its heartbeats.

use std::time::Duration;

use tandem_wire::{GroupReport, NodeState, ReplayVerdict, ReplayWindow, ViewEntry};

use crate::NodeId;
use crate::config::Timing;
use crate::event::Event;
use crate::time::Timestamp;

/// What this node believes about a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Not heard since start-up, still within `initdead`.
    Pending,
    /// Heard within `warntime`.
    Online,
    /// Silent for more than `warntime`, less than `deadtime`.
    Late,
    /// Silent for `deadtime` (or never heard within `initdead`).
    Dead,
    /// Announced a clean shutdown.
    Left,
}

impl PeerState {
    /// Whether the peer counts as a member of the cluster right now.
    pub fn is_member(self) -> bool {
        matches!(self, PeerState::Online | PeerState::Late)
    }
}

/// State of one (peer, link) path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Nothing heard on this link yet.
    Unknown,
    /// Heard within `deadtime`.
    Up,
    /// Silent for `deadtime`.
    Dead,
}

/// One (peer, link) path.
#[derive(Clone, Debug)]
pub(crate) struct PeerLink {
    pub(crate) label: String,
    pub(crate) state: LinkState,
    pub(crate) last_heard: Option<Timestamp>,
    pub(crate) window: ReplayWindow,
}

/// Everything known about one peer.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) state: PeerState,
    pub(crate) incarnation: Option<u64>,
    /// Incarnations below this were seen before this start: refused.
    pub(crate) min_incarnation: u64,
    pub(crate) last_heard: Option<Timestamp>,
    pub(crate) links: Vec<PeerLink>,
    pub(crate) remote_state: NodeState,
    pub(crate) view: Vec<ViewEntry>,
    pub(crate) config_mismatch: bool,
    pub(crate) groups: Vec<GroupReport>,
    /// (generation, origin) of the settings in the peer's latest packet.
    pub(crate) settings_key: (u64, u16),
    /// Sequence number of the packet whose state (groups, view, settings)
    /// was applied last: older packets arriving late are not applied.
    pub(crate) state_seq: u64,
    /// When this node last answered one of the peer's heartbeats at once
    /// (`Echo::Wanted`): one answer per keepalive/2, however many links
    /// carried the asking heartbeat.
    pub(crate) answered_at: Option<Timestamp>,
}

/// Outcome of offering an authenticated packet to a peer.
pub(crate) enum Admission {
    /// Fresh; with the time since the previous packet on the same link.
    Accepted {
        gap: Option<Duration>,
    },
    Replayed,
    Stale,
}

impl Peer {
    /// The highest sequence number of ours this peer applied, as its
    /// latest view says (0 when it lists another incarnation of us).
    pub(crate) fn seen(&self, me: (u16, u64)) -> u64 {
        self.view
            .iter()
            .find(|e| (e.node, e.incarnation) == me)
            .map_or(0, |e| e.seen)
    }

    pub(crate) fn new(id: NodeId, name: String, link_labels: &[String]) -> Self {
        Self {
            id,
            name,
            state: PeerState::Pending,
            incarnation: None,
            min_incarnation: 0,
            last_heard: None,
            links: link_labels
                .iter()
                .map(|label| PeerLink {
                    label: label.clone(),
                    state: LinkState::Unknown,
                    last_heard: None,
                    window: ReplayWindow::new(),
                })
                .collect(),
            remote_state: NodeState::Starting,
            view: Vec::new(),
            config_mismatch: false,
            groups: Vec::new(),
            settings_key: (0, 0),
            state_seq: 0,
            answered_at: None,
        }
    }

    /// Applies replay protection, then records that the peer was heard on
    /// `link` at `now`, emitting the resulting transitions.
    pub(crate) fn heard(
        &mut self,
        now: Timestamp,
        link: usize,
        incarnation: u64,
        seq: u64,
        events: &mut Vec<Event>,
    ) -> Admission {
        if incarnation < self.min_incarnation
            || self.incarnation.is_some_and(|cur| incarnation < cur)
        {
            return Admission::Stale;
        }
        let Some(pl) = self.links.get_mut(link) else {
            return Admission::Stale;
        };
        match pl.window.check(incarnation, seq) {
            ReplayVerdict::Replayed => return Admission::Replayed,
            ReplayVerdict::Stale => return Admission::Stale,
            ReplayVerdict::Fresh | ReplayVerdict::NewIncarnation => {}
        }
        let gap = pl.last_heard.map(|t| now.since(t));
        pl.last_heard = Some(now);
        if pl.state != LinkState::Up {
            pl.state = LinkState::Up;
            events.push(Event::LinkUp {
                node: self.name.clone(),
                link: pl.label.clone(),
            });
        }

        let silent = self.last_heard.map(|t| now.since(t)).unwrap_or_default();
        match (self.state, self.incarnation) {
            (PeerState::Pending, _) => events.push(Event::Joined {
                node: self.name.clone(),
                incarnation,
            }),
            (PeerState::Dead | PeerState::Left, _) => events.push(Event::Back {
                node: self.name.clone(),
                incarnation,
            }),
            (PeerState::Online | PeerState::Late, Some(old)) if incarnation > old => {
                events.push(Event::Restarted {
                    node: self.name.clone(),
                    old,
                    new: incarnation,
                })
            }
            (PeerState::Late, _) => events.push(Event::Resumed {
                node: self.name.clone(),
                silent,
            }),
            _ => {}
        }
        if self.incarnation != Some(incarnation) {
            self.state_seq = 0;
        }
        self.incarnation = Some(incarnation);
        self.last_heard = Some(now);
        self.state = PeerState::Online;
        Admission::Accepted { gap }
    }

    /// The peer announced a clean shutdown.
    pub(crate) fn left(&mut self, events: &mut Vec<Event>) {
        if self.state != PeerState::Left {
            self.state = PeerState::Left;
            for pl in &mut self.links {
                if pl.state == LinkState::Up {
                    pl.state = LinkState::Dead;
                }
            }
            events.push(Event::Left {
                node: self.name.clone(),
            });
        }
    }

    /// The next instant at which this peer's state changes if nothing is heard.
    pub(crate) fn next_deadline(&self, started: Timestamp, t: &Timing) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut consider = |d: Timestamp| next = Some(next.map_or(d, |n| n.min(d)));
        match (self.state, self.last_heard) {
            (PeerState::Pending, _) => consider(started + t.initdead),
            (PeerState::Online, Some(h)) => consider(h + t.warntime.min(t.deadtime)),
            (PeerState::Late, Some(h)) => consider(h + t.deadtime),
            _ => {}
        }
        for pl in &self.links {
            if let (LinkState::Up, Some(h)) = (pl.state, pl.last_heard) {
                consider(h + t.deadtime);
            }
        }
        next
    }

    /// Applies every deadline that has passed at `now`. Deaths are not
    /// declared before `hold_until` (set after this node itself stalled).
    pub(crate) fn expire(
        &mut self,
        now: Timestamp,
        started: Timestamp,
        hold_until: Timestamp,
        t: &Timing,
        events: &mut Vec<Event>,
    ) {
        let may_kill = now >= hold_until;
        for pl in &mut self.links {
            if let (LinkState::Up, Some(h)) = (pl.state, pl.last_heard)
                && may_kill
                && now.since(h) >= t.deadtime
            {
                {
                    pl.state = LinkState::Dead;
                    events.push(Event::LinkDead {
                        node: self.name.clone(),
                        link: pl.label.clone(),
                        silent: now.since(h),
                    });
                }
            }
        }
        match (self.state, self.last_heard) {
            (PeerState::Pending, _) if may_kill && now.since(started) >= t.initdead => {
                self.state = PeerState::Dead;
                events.push(Event::Dead {
                    node: self.name.clone(),
                    silent: now.since(started),
                    never_heard: true,
                });
            }
            (PeerState::Online | PeerState::Late, Some(h)) => {
                let silent = now.since(h);
                if may_kill && silent >= t.deadtime {
                    self.state = PeerState::Dead;
                    events.push(Event::Dead {
                        node: self.name.clone(),
                        silent,
                        never_heard: false,
                    });
                } else if self.state == PeerState::Online && silent >= t.warntime {
                    self.state = PeerState::Late;
                    events.push(Event::Late {
                        node: self.name.clone(),
                        silent,
                    });
                }
            }
            _ => {}
        }
    }

    /// How long since this peer was heard, if ever.
    pub(crate) fn silent_for(&self, now: Timestamp) -> Option<Duration> {
        self.last_heard.map(|h| now.since(h))
    }
}
