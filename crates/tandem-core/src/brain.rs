//! The brain: ties packet authentication, replay protection, membership and
//! the heartbeat schedule into one deterministic state machine.

use std::collections::VecDeque;
use std::time::Duration;

use tandem_wire::{Keyring, NodeState, Packet, PacketKind, ViewEntry};

use crate::event::{Event, RejectReason};
use crate::membership::{Admission, Peer, PeerState};
use crate::status::{LinkStatus, MembershipStatus, NodeStatus, Stats};
use crate::time::Timestamp;
use crate::{LinkId, NodeId};

/// Failure-detection timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Interval between heartbeats.
    pub keepalive: Duration,
    /// Silence after which a peer is reported late.
    pub warntime: Duration,
    /// Silence after which a peer (or one link to it) is declared dead.
    pub deadtime: Duration,
    /// How long a peer never heard since start-up is waited for.
    pub initdead: Duration,
}

impl Default for Timing {
    /// tandem's defaults: sub-second detection that tolerates four lost
    /// heartbeats in a row (see `docs/configuration.md`).
    fn default() -> Self {
        Self {
            keepalive: Duration::from_millis(100),
            warntime: Duration::from_millis(300),
            deadtime: Duration::from_millis(500),
            initdead: Duration::from_secs(3),
        }
    }
}

/// A configured node, as the brain needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Wire id.
    pub id: NodeId,
    /// Name, as in logs and status.
    pub name: String,
}

/// A configured link, as the brain needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Label used in logs: the interface name, or the link's own name.
    pub label: String,
}

/// Everything a brain is built from.
#[derive(Clone, Debug)]
pub struct BrainConfig {
    /// Cluster name.
    pub cluster: String,
    /// Cluster id on the wire.
    pub cluster_id: u32,
    /// This node.
    pub local: NodeId,
    /// Every node, the local one included.
    pub nodes: Vec<NodeInfo>,
    /// Every heartbeat link, indexed by [`LinkId`].
    pub links: Vec<LinkInfo>,
    /// Timings.
    pub timing: Timing,
    /// Keys to sign and verify packets.
    pub keys: Keyring,
    /// This daemon's boot incarnation; must grow at every start.
    pub incarnation: u64,
    /// Digest of the configuration, compared with peers'.
    pub config_digest: u64,
}

/// A datagram to send to every peer on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The link to send on.
    pub link: LinkId,
    /// The signed packet.
    pub payload: Vec<u8>,
}

/// The cluster brain of one node. See the crate documentation.
#[derive(Debug)]
pub struct Brain {
    cfg: BrainConfig,
    started: Timestamp,
    last_now: Timestamp,
    hold_until: Timestamp,
    next_send: Timestamp,
    seq: Vec<u64>,
    peers: Vec<Peer>,
    state: NodeState,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Brain {
    /// A brain starting at `now`. Its first heartbeats are due at once.
    pub fn new(cfg: BrainConfig, now: Timestamp) -> Self {
        let labels: Vec<String> = cfg.links.iter().map(|l| l.label.clone()).collect();
        let peers = cfg
            .nodes
            .iter()
            .filter(|n| n.id != cfg.local)
            .map(|n| Peer::new(n.id, n.name.clone(), &labels))
            .collect();
        let seq = vec![0; cfg.links.len()];
        Self {
            cfg,
            started: now,
            last_now: now,
            hold_until: now,
            next_send: now,
            seq,
            peers,
            state: NodeState::Starting,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The configuration this brain runs.
    pub fn config(&self) -> &BrainConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Name of the local node.
    pub fn local_name(&self) -> &str {
        self.name_of(self.cfg.local).unwrap_or("?")
    }

    fn name_of(&self, id: NodeId) -> Option<&str> {
        self.cfg
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.name.as_str())
    }

    fn link_label(&self, link: LinkId) -> String {
        self.cfg
            .links
            .get(usize::from(link.0))
            .map_or_else(|| format!("link{}", link.0), |l| l.label.clone())
    }

    /// Notices time that passed without the brain being run at all.
    fn advance(&mut self, now: Timestamp) {
        let gap = now.since(self.last_now);
        let threshold = self.cfg.timing.keepalive * 2;
        if gap > threshold {
            self.stats.stalls += 1;
            let us = u64::try_from(gap.as_micros()).unwrap_or(u64::MAX);
            self.stats.longest_stall_us = self.stats.longest_stall_us.max(us);
            self.hold_until = now + self.cfg.timing.keepalive * 2;
            self.events.push_back(Event::Stalled { gap });
        }
        if now > self.last_now {
            self.last_now = now;
        }
    }

    fn reject(&mut self, link: LinkId, reason: RejectReason) {
        let count = self.stats.count(reason);
        if count.is_power_of_two() {
            let link = self.link_label(link);
            self.events.push_back(Event::Rejected {
                reason,
                link,
                count,
            });
        }
    }

    /// Feeds a datagram received on `link` at `now`.
    pub fn handle_datagram(&mut self, now: Timestamp, link: LinkId, data: &[u8]) {
        self.advance(now);
        let packet = match tandem_wire::decode(data, self.cfg.cluster_id, &self.cfg.keys) {
            Ok(p) => p,
            Err(e) => return self.reject(link, RejectReason::from_decode(&e)),
        };
        if packet.sender == self.cfg.local.0 {
            self.stats.own += 1;
            if packet.incarnation != self.cfg.incarnation
                && packet.incarnation > 0
                && self.stats.own.is_power_of_two()
            {
                let node = self.local_name().to_string();
                self.events.push_back(Event::DuplicateNode {
                    node,
                    incarnation: packet.incarnation,
                });
            }
            return;
        }
        if packet.link != link.0 {
            return self.reject(link, RejectReason::WrongLink);
        }
        let Some(idx) = self.peers.iter().position(|p| p.id.0 == packet.sender) else {
            return self.reject(link, RejectReason::UnknownSender);
        };
        let mut out = Vec::new();
        let peer = &mut self.peers[idx];
        let admission = peer.heard(
            now,
            usize::from(link.0),
            packet.incarnation,
            packet.seq,
            &mut out,
        );
        match admission {
            Admission::Replayed => return self.reject(link, RejectReason::Replayed),
            Admission::Stale => return self.reject(link, RejectReason::Stale),
            Admission::Accepted => {}
        }
        self.stats.accepted += 1;
        self.stats.accepted_bytes += data.len() as u64;
        peer.remote_state = packet.state;
        peer.view = packet.view;
        let mismatch = packet.config_digest != self.cfg.config_digest;
        if mismatch && !peer.config_mismatch {
            out.push(Event::ConfigMismatch {
                node: peer.name.clone(),
            });
        }
        peer.config_mismatch = mismatch;
        if packet.kind == PacketKind::Leave {
            peer.left(&mut out);
        }
        self.events.extend(out);
        self.update_own_state();
    }

    /// Runs every timer due at `now`: deaths, warnings, heartbeats.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(due) = self.poll_timeout().filter(|d| now >= *d) {
            let late = u64::try_from(now.since(due).as_micros()).unwrap_or(u64::MAX);
            self.stats.max_timer_lateness_us = self.stats.max_timer_lateness_us.max(late);
        }
        self.advance(now);
        let mut out = Vec::new();
        for peer in &mut self.peers {
            peer.expire(
                now,
                self.started,
                self.hold_until,
                &self.cfg.timing,
                &mut out,
            );
        }
        self.events.extend(out);
        self.update_own_state();
        if now >= self.next_send && self.state != NodeState::Leaving {
            self.queue_heartbeats(PacketKind::Heartbeat);
            self.next_send = self.next_send + self.cfg.timing.keepalive;
            if self.next_send <= now {
                self.next_send = now + self.cfg.timing.keepalive;
            }
        }
    }

    /// Starts a clean shutdown: queues a `Leave` packet on every link so
    /// peers need not wait for deadtime. No heartbeats follow.
    pub fn leave(&mut self, now: Timestamp) {
        self.advance(now);
        self.state = NodeState::Leaving;
        self.queue_heartbeats(PacketKind::Leave);
    }

    fn update_own_state(&mut self) {
        if self.state == NodeState::Starting
            && (self.last_now.since(self.started) >= self.cfg.timing.initdead
                || self.peers.iter().all(|p| p.state != PeerState::Pending))
        {
            self.state = NodeState::Online;
        }
    }

    fn view(&self) -> Vec<ViewEntry> {
        let mut v = vec![ViewEntry {
            node: self.cfg.local.0,
            incarnation: self.cfg.incarnation,
            up: true,
        }];
        v.extend(self.peers.iter().map(|p| ViewEntry {
            node: p.id.0,
            incarnation: p.incarnation.unwrap_or(0),
            up: p.state.is_member(),
        }));
        v
    }

    fn queue_heartbeats(&mut self, kind: PacketKind) {
        let view = self.view();
        for (i, seq) in self.seq.iter_mut().enumerate() {
            *seq += 1;
            let packet = Packet {
                kind,
                link: u8::try_from(i).unwrap_or(u8::MAX),
                cluster: self.cfg.cluster_id,
                sender: self.cfg.local.0,
                incarnation: self.cfg.incarnation,
                seq: *seq,
                state: self.state,
                view: view.clone(),
                config_digest: self.cfg.config_digest,
            };
            self.stats.sent += 1;
            self.transmits.push_back(Transmit {
                link: LinkId(packet.link),
                payload: tandem_wire::encode(&packet, &self.cfg.keys),
            });
        }
    }

    /// The next instant at which [`Brain::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next = if self.state == NodeState::Leaving {
            None
        } else {
            Some(self.next_send)
        };
        for p in &self.peers {
            if let Some(d) = p.next_deadline(self.started, &self.cfg.timing) {
                let d = d.max(self.hold_until);
                next = Some(next.map_or(d, |n: Timestamp| n.min(d)));
            }
        }
        next
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing that happened, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
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
                });
            }
        }
        MembershipStatus {
            cluster: self.cfg.cluster.clone(),
            local: self.local_name().to_string(),
            incarnation: self.cfg.incarnation,
            uptime_ms: ms(now.since(self.started)),
            members: self
                .members()
                .into_iter()
                .filter_map(|id| self.name_of(id).map(str::to_string))
                .collect(),
            nodes,
            stats: self.stats.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
