//! The brain: ties packet authentication, replay protection, membership and
//! the heartbeat schedule into one deterministic state machine.

use std::collections::VecDeque;
use std::time::Duration;

use tandem_wire::{GroupPhase, GroupReport, Keyring, NodeState, Packet, PacketKind, ViewEntry};

use crate::event::{Event, RejectReason};
use crate::membership::{Admission, Peer, PeerState};
use crate::placement::{Candidate, place};
use crate::resources::{Action, GroupRt, GroupSpec, Op, OpResult, ResourceState};
use crate::settings::{Move, Settings};
use crate::status::{GroupStatus, LinkStatus, MembershipStatus, NodeStatus, ResourceStatus, Stats};
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

impl Timing {
    /// The `fast` preset: keepalive 10 ms, warntime 30 ms, deadtime 50 ms,
    /// initdead 2 s (100 heartbeats a second per link, as keepalived's
    /// `advert_int 0.01`; deadtime is the floor for that keepalive).
    pub fn fast() -> Self {
        Self {
            keepalive: Duration::from_millis(10),
            warntime: Duration::from_millis(30),
            deadtime: Duration::from_millis(50),
            initdead: Duration::from_secs(2),
        }
    }

    /// How long this node may serve its groups after it last sent a
    /// heartbeat (the bound for a frozen node): `deadtime − keepalive −
    /// deadtime/50`.
    ///
    /// A peer can take over only after it has heard nothing from this node
    /// for `deadtime`. This node sends every `keepalive`, so if it freezes
    /// right after a send and that last heartbeat is lost too, a peer's
    /// silence started at most one `keepalive` earlier. The last term (2 %
    /// of deadtime) covers clock-rate differences between the nodes. The
    /// lease is therefore sized from the takeover bound, not from the
    /// keepalive: it lasts several refresh periods, so scheduling hiccups
    /// shorter than `deadtime − 2 × keepalive` neither let it lapse nor
    /// make the node release its groups (`docs/safety.md`, "Lease sizing").
    pub fn lease_span(&self) -> Duration {
        self.deadtime
            .saturating_sub(self.keepalive)
            .saturating_sub(self.deadtime / 50)
            .max(Duration::from_millis(1))
    }
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
    /// This daemon's boot incarnation; must grow at every start. The daemon
    /// uses the wall clock in microseconds, so a peer's incarnation more
    /// than a day past this one (plus the time since start) is refused.
    pub incarnation: u64,
    /// Digest of the configuration, compared with peers'.
    pub config_digest: u64,
    /// Resource groups.
    pub groups: Vec<GroupSpec>,
    /// Quorum rules.
    pub quorum: Quorum,
    /// Whether witnesses are configured (two-node clusters): a node takes
    /// over from a silent peer only if it reaches a witness.
    pub witness: bool,
    /// Whether the witness is an arbitrator (`tandem witness`) that gives
    /// its vote to one node at a time for a limited time: answers come
    /// through [`Brain::handle_witness_vote`], a holder renews its vote
    /// and stops when it lapses, a waiting node asks again every second,
    /// and a node that holds no group asks only once the peer is dead (so
    /// the holder, which asks as soon as the peer is late, wins a tie).
    pub witness_arbiter: bool,
    /// Whether a fence agent is configured: a node declared dead is fenced
    /// (powered off) before anything is started in its place.
    pub fencing: bool,
    /// The latest incarnation of each peer seen before this start (kept by
    /// the daemon in its state directory): older ones are refused, so
    /// packets captured before a restart cannot be replayed after it.
    pub known_incarnations: Vec<(NodeId, u64)>,
}

/// What a partition without quorum does with its groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoQuorumPolicy {
    /// Stop every group (the default: never two actives).
    #[default]
    Stop,
    /// Keep what runs, start and stop nothing.
    Freeze,
    /// Act as if quorate (explicitly unsafe).
    Ignore,
}

/// Quorum rules: a partition acts only with a strict majority of votes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Quorum {
    /// Whether quorum is required at all (off for two-node clusters, which
    /// need a witness to break ties).
    pub enabled: bool,
    /// Votes of each node, in node order (empty: one each).
    pub votes: Vec<u32>,
    /// What a partition without quorum does.
    pub no_quorum: NoQuorumPolicy,
    /// At start-up, start nothing until every node was seen once (or
    /// initdead passed).
    pub wait_for_all: bool,
}

/// An operator command, as `tandem move|standby|unstandby|cleanup` sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Prefer `node` for `group` (for `duration`, or until cleared);
    /// `node: None` clears the preference.
    Move {
        /// Group name.
        group: String,
        /// Node name, or `None` to clear.
        node: Option<String>,
        /// How long the preference lasts.
        duration: Option<Duration>,
    },
    /// Put a node in standby (it runs nothing) or take it out.
    Standby {
        /// Node name.
        node: String,
        /// True: standby; false: back to normal.
        on: bool,
    },
    /// Forget a group's fail counts and blocked state everywhere.
    Cleanup {
        /// Group name.
        group: String,
    },
    /// Two-node clusters whose witness could not be reached: let `node`
    /// (which must be this node) run the groups alone. Refused while any
    /// peer is reachable.
    ForcePrimary {
        /// The node that should run the groups: this one.
        node: String,
    },
    /// Heartbeat's hb_takeover / hb_standby: pull (`take`) or push away all
    /// groups from the local node, as moves.
    TakeOver {
        /// True: move the groups here; false: move them off this node.
        take: bool,
        /// `all`, `local` (groups that prefer this node; also `failback`)
        /// or `foreign` (groups that prefer another node).
        which: String,
    },
}

/// A datagram to send to every peer on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The link to send on.
    pub link: LinkId,
    /// The signed packet.
    pub payload: Vec<u8>,
}

/// How far (µs) a peer's incarnation may be ahead of this node's clock: a
/// day of clock difference. Further is refused as forged.
pub const MAX_INCARNATION_AHEAD_US: u64 = 86_400_000_000;

/// The cluster brain of one node. See the crate documentation.
#[derive(Debug)]
pub struct Brain {
    cfg: BrainConfig,
    started: Timestamp,
    last_now: Timestamp,
    hold_until: Timestamp,
    next_send: Timestamp,
    seq: u64,
    peers: Vec<Peer>,
    state: NodeState,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    groups: Vec<GroupRt>,
    grants: Vec<GrantState>,
    settings: Settings,
    actions: VecDeque<Action>,
    next_op: u64,
    op_started: Vec<(u64, Timestamp)>,
    leaving: bool,
    reported: (Vec<GroupReport>, (u64, u16)),
    had_quorum: bool,
    seen_all: bool,
    witness: WitnessState,
    witness_requests: VecDeque<u64>,
    /// Arbitrator vote: valid until then (`None`: no expiry, or no vote).
    witness_until: Option<Timestamp>,
    /// When the current vote was granted (renewed halfway to expiry).
    witness_granted_at: Timestamp,
    /// A renewal (or, while waiting, a retry) in flight.
    witness_again: Option<u64>,
    /// While waiting for an arbitrator: when to ask again.
    witness_retry_at: Option<Timestamp>,
    /// This node was given the arbitrator's vote and has not given it
    /// back yet.
    witness_vote_held: bool,
    /// The arbitrator's vote is no longer needed: tell it (see
    /// [`Output::WitnessRelease`]).
    witness_release: bool,
    lease_until: Option<Timestamp>,
    /// The lease last reported by [`Brain::poll`].
    lease_reported: Option<Timestamp>,
    lease_lost: bool,
    /// When this node last queued heartbeats: leases count from here.
    last_sent: Timestamp,
    /// Recent sends: (last sequence number of the batch, when), oldest
    /// first, to learn when a packet a peer acknowledges was sent.
    sent_log: VecDeque<(u64, Timestamp)>,
    /// Per peer (by index): fencing state since it was last declared dead.
    fence: Vec<FenceState>,
    fence_requests: VecDeque<(u64, NodeId)>,
    fence_history: VecDeque<crate::status::FenceRecord>,
}

/// What peers acknowledged of this node's heartbeats (see
/// `Brain::peers_acked_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acked {
    /// No peer that could take over has acknowledged anything.
    Nobody,
    /// The acknowledged packet was sent then.
    At(Timestamp),
    /// Longer ago than this node remembers (two deadtimes).
    TooLongAgo,
}

impl Acked {
    fn earlier(self, other: Acked) -> Acked {
        match (self, other) {
            (Acked::TooLongAgo, _) | (_, Acked::TooLongAgo) => Acked::TooLongAgo,
            (Acked::Nobody, x) | (x, Acked::Nobody) => x,
            (Acked::At(a), Acked::At(b)) => Acked::At(a.min(b)),
        }
    }
}

/// Fencing of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum FenceState {
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

/// What this node's reports grant for one group (see
/// `Brain::update_grants`).
#[derive(Clone, Copy, Debug, Default)]
struct GrantState {
    /// The node our reports name as the one that may run the group.
    to: Option<NodeId>,
    /// A grant being taken back from this peer: our reports name nobody
    /// until the peer has seen one of them (from this sequence number on)
    /// and reports the group stopped, or is no member any more. Otherwise
    /// the peer could still start on the old grant while we grant another.
    withdrawing: Option<(NodeId, u64)>,
}

/// Where the witness check of the current failover stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum WitnessState {
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

impl Brain {
    /// A brain starting at `now`. Its first heartbeats are due at once.
    pub fn new(cfg: BrainConfig, now: Timestamp) -> Self {
        let labels: Vec<String> = cfg.links.iter().map(|l| l.label.clone()).collect();
        let peers = cfg
            .nodes
            .iter()
            .filter(|n| n.id != cfg.local)
            .map(|n| {
                let mut p = Peer::new(n.id, n.name.clone(), &labels);
                p.min_incarnation = cfg
                    .known_incarnations
                    .iter()
                    .find(|(id, _)| *id == n.id)
                    .map_or(0, |k| k.1);
                p
            })
            .collect();
        let groups: Vec<GroupRt> = cfg
            .groups
            .iter()
            .map(|g| GroupRt::new(g.resources.len()))
            .collect();
        let grants = vec![GrantState::default(); groups.len()];
        Self {
            grants,
            cfg,
            started: now,
            last_now: now,
            hold_until: now,
            next_send: now,
            seq: 0,
            peers,
            state: NodeState::Starting,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            groups,
            settings: Settings::default(),
            actions: VecDeque::new(),
            next_op: 1,
            op_started: Vec::new(),
            leaving: false,
            reported: (Vec::new(), (0, 0)),
            had_quorum: true,
            seen_all: false,
            witness: WitnessState::Idle,
            witness_requests: VecDeque::new(),
            witness_until: None,
            witness_granted_at: Timestamp::ZERO,
            witness_again: None,
            witness_retry_at: None,
            witness_vote_held: false,
            witness_release: false,
            lease_until: None,
            lease_reported: None,
            lease_lost: false,
            last_sent: now,
            sent_log: VecDeque::new(),
            fence: Vec::new(),
            fence_requests: VecDeque::new(),
            fence_history: VecDeque::new(),
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
            // Frozen past its lease: another node may run our groups now.
            // Release everything before doing anything else.
            if self.lease_until.is_some_and(|u| u <= now)
                && self.groups.iter().any(|g| g.phase().is_active())
            {
                self.lease_lost = true;
                self.lease_until = None;
                self.events.push_back(Event::LeaseLost { gap });
            }
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
        // An incarnation far in the future would lock the real peer out
        // (its packets would look stale) until the clock caught up.
        let since_start = u64::try_from(now.since(self.started).as_micros()).unwrap_or(u64::MAX);
        let latest_plausible = self
            .cfg
            .incarnation
            .saturating_add(since_start)
            .saturating_add(MAX_INCARNATION_AHEAD_US);
        if packet.incarnation > latest_plausible {
            return self.reject(link, RejectReason::FutureIncarnation);
        }
        let Some(idx) = self.peers.iter().position(|p| p.id.0 == packet.sender) else {
            return self.reject(link, RejectReason::UnknownSender);
        };
        // A `Leave` is never the first packet accepted from an incarnation:
        // a captured one replayed later must not make a silent peer "left"
        // (not fenced, no witness asked).
        if packet.kind == PacketKind::Leave
            && self.peers[idx].incarnation != Some(packet.incarnation)
        {
            return self.reject(link, RejectReason::Stale);
        }
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
        let fresh_state = packet.seq > peer.state_seq;
        let settings = packet.settings;
        // A peer that takes back a grant it gave us waits until our view
        // shows we saw it: answer at once instead of at the next keepalive.
        let me = self.cfg.local.0;
        let mut ack = false;
        if fresh_state {
            ack = peer.groups.iter().any(|old| {
                old.target == me
                    && packet
                        .groups
                        .iter()
                        .any(|new| new.group == old.group && new.target != me)
            });
            peer.state_seq = packet.seq;
            peer.remote_state = packet.state;
            peer.view = packet.view;
            peer.groups = packet.groups;
            peer.settings_key = settings
                .as_ref()
                .map_or((0, 0), |w| (w.generation, w.origin));
        }
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
        if let Some(w) = settings.filter(|w| self.settings.superseded_by(w)) {
            let nodes = u16::try_from(self.cfg.nodes.len()).unwrap_or(u16::MAX);
            self.settings.adopt(&w, now, self.cfg.groups.len(), nodes);
        }
        self.update_own_state();
        self.reconcile(now);
        if ack && self.state != NodeState::Leaving {
            self.queue_heartbeats(PacketKind::Heartbeat);
        }
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
        self.settings.expire(now);
        self.expire_failures(now);
        self.schedule_monitors(now);
        self.reconcile(now);
        if now >= self.next_send && self.state != NodeState::Leaving {
            self.queue_heartbeats(PacketKind::Heartbeat);
            self.next_send = self.next_send + self.cfg.timing.keepalive;
            if self.next_send <= now {
                self.next_send = now + self.cfg.timing.keepalive;
            }
            // The lease counts from this send.
            self.renew_lease(now);
        }
    }

    /// Starts a clean shutdown: stops every group here (a switchover: the
    /// peers start them only once they are stopped), then queues a `Leave`
    /// packet on every link so peers need not wait for deadtime. Call
    /// [`Brain::has_left`] to know when the daemon may exit.
    pub fn leave(&mut self, now: Timestamp) {
        self.advance(now);
        if !self.leaving {
            self.leaving = true;
            self.reconcile(now);
        }
    }

    /// Whether a shutdown started by [`Brain::leave`] is complete (groups
    /// stopped or blocked, `Leave` sent).
    pub fn has_left(&self) -> bool {
        self.state == NodeState::Leaving
    }

    fn finish_leave_if_done(&mut self) {
        if self.leaving
            && self.state != NodeState::Leaving
            && self.groups.iter().all(|g| {
                !g.busy() && matches!(g.phase(), GroupPhase::Stopped | GroupPhase::Blocked)
            })
        {
            self.state = NodeState::Leaving;
            self.queue_heartbeats(PacketKind::Leave);
        }
    }

    /// How long a node waiting for an arbitrator waits before asking again.
    pub const WITNESS_RETRY: Duration = Duration::from_secs(1);
    /// How soon a holder asks again after a renewal got no answer.
    pub const WITNESS_RENEW_RETRY: Duration = Duration::from_millis(200);

    fn witness_request(&mut self) -> u64 {
        let id = self.next_op;
        self.next_op += 1;
        self.witness_requests.push_back(id);
        id
    }

    /// Starts a witness check when a peer has gone silent, and forgets the
    /// last one when every peer is back; with an arbitrator, also renews a
    /// vote halfway to its expiry, gives up a vote that lapsed, and asks
    /// again while waiting.
    fn update_witness(&mut self) {
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
            if self.witness != WitnessState::Idle {
                self.witness = WitnessState::Idle;
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
            if self.witness_vote_held && heard_back {
                self.witness_vote_held = false;
                self.witness_release = true;
            }
            self.witness_until = None;
            self.witness_again = None;
            self.witness_retry_at = None;
            return;
        }
        match self.witness {
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
                self.witness = WitnessState::Checking(id);
            }
            WitnessState::Reached => {
                let Some(until) = self.witness_until else {
                    return;
                };
                if now >= until {
                    // The vote lapsed without a renewal: another node may
                    // hold it now. Stop acting alone (the lease ended too).
                    self.witness = WitnessState::Unreachable;
                    self.witness_until = None;
                    self.witness_again = None;
                    self.witness_retry_at = Some(now);
                    self.events.push_back(Event::Witness { reachable: false });
                } else if self.witness_again.is_none()
                    && self.witness_retry_at.is_none_or(|t| now >= t)
                {
                    let half = until.since(self.witness_granted_at) / 2;
                    if now >= self.witness_granted_at + half {
                        self.witness_again = Some(self.witness_request());
                    }
                }
            }
            WitnessState::Unreachable
                if self.cfg.witness_arbiter
                    && self.witness_again.is_none()
                    && self.witness_retry_at.is_none_or(|t| now >= t) =>
            {
                self.witness_again = Some(self.witness_request());
            }
            _ => {}
        }
    }

    /// Feeds the outcome of witness probe `id`: whether any witness answered.
    pub fn handle_witness_result(&mut self, now: Timestamp, id: u64, reachable: bool) {
        self.advance(now);
        if self.witness == WitnessState::Checking(id) {
            self.witness = if reachable {
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
    pub fn handle_witness_vote(&mut self, now: Timestamp, id: u64, vote: Vote) {
        self.advance(now);
        let first = self.witness == WitnessState::Checking(id);
        let again = self.witness_again == Some(id);
        if !first && !again {
            return;
        }
        if again {
            self.witness_again = None;
        }
        let vote = match vote {
            Vote::Granted { until } if until <= now => Vote::NoAnswer,
            v => v,
        };
        match vote {
            Vote::Granted { until } => {
                if self.witness != WitnessState::Reached {
                    self.events.push_back(Event::Witness { reachable: true });
                }
                self.witness = WitnessState::Reached;
                self.witness_until = Some(until);
                self.witness_vote_held = true;
                self.witness_granted_at = now;
                self.witness_retry_at = None;
            }
            Vote::NoAnswer if self.witness == WitnessState::Reached => {
                self.witness_retry_at = Some(now + Self::WITNESS_RENEW_RETRY);
            }
            Vote::Refused | Vote::NoAnswer => {
                if self.witness != WitnessState::Unreachable {
                    self.events.push_back(Event::Witness { reachable: false });
                }
                self.witness = WitnessState::Unreachable;
                self.witness_until = None;
                self.witness_retry_at = Some(now + Self::WITNESS_RETRY);
            }
        }
        self.reconcile(now);
    }

    /// Why this node waits instead of acting alone, if it does.
    pub fn waiting(&self) -> Option<String> {
        match self.witness {
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

    /// Renews (or lets lapse) the lease under which this node holds groups.
    ///
    /// Two bounds, the earlier wins (`docs/safety.md`, "Lease sizing"):
    /// - frozen: the lease ends [`Timing::lease_span`] after the last
    ///   heartbeat this node sent;
    /// - cut off: a peer declares this node dead `deadtime` after the last
    ///   packet it received from it, and its heartbeats say which one that
    ///   was (the view's `seen`), so the lease ends `deadtime − 2 %` after
    ///   that packet was sent — for every member peer with two nodes, for
    ///   the majority with quorum. Not while this node holds the
    ///   arbitrator's vote: no peer can act before the vote ends.
    fn renew_lease(&mut self, now: Timestamp) {
        let holds = self.groups.iter().any(|g| g.phase().is_active());
        let may = !self.lease_lost
            && self.has_quorum()
            && self.witness_allows()
            && self.state != NodeState::Leaving;
        let t = &self.cfg.timing;
        let frozen_end = self.last_sent + t.lease_span();
        let cut_end = match self.peers_acked_at() {
            Acked::Nobody => frozen_end,
            Acked::At(at) => at + t.deadtime.saturating_sub(t.deadtime / 50),
            Acked::TooLongAgo => now,
        };
        // Holding the arbitrator's vote, no peer can act before the vote
        // ends (the cap below): being cut off is not a reason to go silent.
        let span_end = if self.witness_until.is_some() {
            frozen_end
        } else {
            cut_end.min(frozen_end)
        };
        // Acting alone on an arbitrator's vote: never past the vote.
        let end = self.witness_until.map_or(span_end, |u| u.min(span_end));
        self.lease_until = (holds && may && end > now).then_some(end);
    }

    /// When the packet the peers that could take over last acknowledged was
    /// sent: the earliest over member peers with two nodes; with quorum,
    /// the latest moment by which a majority (with this node) had received
    /// one. Peers that never acknowledged this incarnation are not counted
    /// (they have not heard it; `initdead` holds them back).
    fn peers_acked_at(&self) -> Acked {
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
        self.lease_until
    }

    /// Whether a holder may keep what runs as far as the witness rule goes:
    /// yes while the witness is being asked, no once it said no.
    fn witness_keeps(&self) -> bool {
        match self.witness {
            WitnessState::Unreachable => false,
            WitnessState::Idle => self.witness_allows(),
            WitnessState::Checking(_) | WitnessState::Reached | WitnessState::Forced => true,
        }
    }

    /// Whether this node may hold groups as far as the witness rule goes.
    fn witness_allows(&self) -> bool {
        match self.witness {
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
            WitnessState::Reached => self.witness_until.is_none_or(|u| self.last_now < u),
            WitnessState::Checking(_) | WitnessState::Unreachable => false,
        }
    }

    /// Starts fencing peers newly declared dead; forgets it for peers back.
    fn update_fencing(&mut self, now: Timestamp) {
        if !self.cfg.fencing {
            return;
        }
        if self.fence.len() != self.peers.len() {
            self.fence = vec![FenceState::None; self.peers.len()];
        }
        for i in 0..self.peers.len() {
            // Never heard since start-up counts too: such a peer may well be
            // running the groups (issue 12, finding 3).
            let dead = self.peers[i].state == PeerState::Dead;
            let st = self.fence[i];
            if !dead {
                if st != FenceState::None && self.peers[i].state.is_member() {
                    self.fence[i] = FenceState::None;
                }
                continue;
            }
            let retry = matches!(st, FenceState::RetryAt(t) if t <= now);
            if st == FenceState::None || retry {
                let id = self.next_op;
                self.next_op += 1;
                self.fence[i] = FenceState::Pending(id);
                self.fence_requests.push_back((id, self.peers[i].id));
            }
        }
    }

    /// Feeds the outcome of fence request `id`.
    pub fn handle_fence_result(&mut self, now: Timestamp, id: u64, result: Result<(), String>) {
        self.advance(now);
        let Some(i) = self
            .fence
            .iter()
            .position(|f| *f == FenceState::Pending(id))
        else {
            return;
        };
        let node = self.peers[i].name.clone();
        let ok = result.is_ok();
        self.fence[i] = if ok {
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
        self.fence_history.push_back(crate::status::FenceRecord {
            node,
            ok,
            detail: result.err().unwrap_or_else(|| "fenced".into()),
            uptime_ms: u64::try_from(now.since(self.started).as_millis()).unwrap_or(u64::MAX),
        });
        if self.fence_history.len() > 20 {
            self.fence_history.pop_front();
        }
        self.reconcile(now);
    }

    /// Whether some dead peer still waits to be fenced (nothing may start).
    fn fencing_pending(&self) -> bool {
        self.cfg.fencing
            && self
                .fence
                .iter()
                .any(|f| matches!(f, FenceState::Pending(_) | FenceState::RetryAt(_)))
    }

    fn update_own_state(&mut self) {
        let now = self.last_now;
        self.update_fencing(now);
        self.update_witness();
        if !self.seen_all && self.peers.iter().all(|p| p.incarnation.is_some()) {
            self.seen_all = true;
        }
        self.check_quorum();
        if self.state == NodeState::Starting
            && self.groups.iter().all(GroupRt::probed)
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
            seen: 0,
        }];
        // "Up" in the view means heard within warntime: a peer that stops
        // getting through learns it (and loses quorum) before anyone
        // declares it dead.
        v.extend(self.peers.iter().map(|p| ViewEntry {
            node: p.id.0,
            incarnation: p.incarnation.unwrap_or(0),
            up: p.state == PeerState::Online,
            seen: p.state_seq,
        }));
        v
    }

    fn group_reports(&self) -> Vec<GroupReport> {
        self.groups
            .iter()
            .zip(&self.cfg.groups)
            .enumerate()
            .map(|(i, (rt, spec))| GroupReport {
                group: u16::try_from(i).unwrap_or(u16::MAX),
                phase: rt.phase(),
                // A node releasing after a lost lease must not attract the
                // group back while it stops (stickiness): it reports itself
                // unavailable until it has released everything.
                banned: rt.banned(spec.migration_threshold) || self.lease_lost,
                target: self.grants.get(i).and_then(|st| st.to).map_or(0, |n| n.0),
            })
            .collect()
    }

    /// Moves each group's grant where [`Brain::grant`] wants it, but takes
    /// a grant back from a peer that has not started the group before
    /// giving it to anyone else: nothing is granted until the peer has seen
    /// the withdrawal and reports the group stopped (or is no member).
    fn update_grants(&mut self) {
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

    fn queue_heartbeats(&mut self, kind: PacketKind) {
        self.update_grants();
        let view = self.view();
        let groups = self.group_reports();
        let settings = (self.settings.generation > 0).then(|| self.settings.to_wire(self.last_now));
        self.reported = (groups.clone(), self.settings_key());
        self.last_sent = self.last_now;
        for i in 0..self.cfg.links.len() {
            // One sequence across links: packets of different links can be
            // ordered, so a late packet never overrides a newer state.
            self.seq += 1;
            let packet = Packet {
                kind,
                link: u8::try_from(i).unwrap_or(u8::MAX),
                cluster: self.cfg.cluster_id,
                sender: self.cfg.local.0,
                incarnation: self.cfg.incarnation,
                seq: self.seq,
                state: self.state,
                view: view.clone(),
                config_digest: self.cfg.config_digest,
                groups: groups.clone(),
                settings: settings.clone(),
            };
            self.stats.sent += 1;
            self.transmits.push_back(Transmit {
                link: LinkId(packet.link),
                payload: tandem_wire::encode(&packet, &self.cfg.keys),
            });
        }
        self.sent_log.push_back((self.seq, self.last_now));
        while self.sent_log.len() > 1
            && self
                .sent_log
                .front()
                .is_some_and(|&(_, at)| self.last_now.since(at) > self.cfg.timing.deadtime * 2)
        {
            self.sent_log.pop_front();
        }
    }

    /// When this node sent the packet with sequence number `seq`; `None`
    /// if it is older than the log (more than two deadtimes ago).
    fn sent_at(&self, seq: u64) -> Option<Timestamp> {
        let (first, _) = *self.sent_log.front()?;
        if seq + u64::try_from(self.cfg.links.len()).unwrap_or(u64::MAX) <= first {
            return None;
        }
        self.sent_log
            .iter()
            .find(|&&(last, _)| last >= seq)
            .map(|&(_, at)| at)
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
        let mut consider = |d: Option<Timestamp>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n: Timestamp| n.min(d)));
            }
        };
        consider(self.settings.next_expiry());
        if let Some(u) = self.witness_until {
            consider(Some(u));
            if self.witness_again.is_none() {
                let half = self.witness_granted_at + u.since(self.witness_granted_at) / 2;
                consider(Some(self.witness_retry_at.map_or(half, |t| t.max(half))));
            }
        }
        if self.witness_again.is_none() && self.witness == WitnessState::Unreachable {
            consider(self.witness_retry_at);
        }
        for f in &self.fence {
            if let FenceState::RetryAt(t) = f {
                consider(Some(*t));
            }
        }
        for (rt, spec) in self.groups.iter().zip(&self.cfg.groups) {
            if !rt.busy() {
                consider(
                    rt.resources
                        .iter()
                        .filter(|r| r.state == ResourceState::Started)
                        .filter_map(|r| r.next_monitor)
                        .min(),
                );
            }
            if let Some(ft) = spec.failure_timeout {
                consider(
                    rt.resources
                        .iter()
                        .filter(|r| r.fail_count > 0)
                        .filter_map(|r| r.last_failure.map(|t| t + ft))
                        .min(),
                );
            }
        }
        next
    }

    /// The next datagram to send, if any (in-crate tests; drivers use
    /// [`Brain::poll`]).
    #[cfg(test)]
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any (in-crate tests; drivers use [`Brain::poll`]).
    #[cfg(test)]
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn node_name(&self, id: NodeId) -> String {
        self.name_of(id).unwrap_or("?").to_string()
    }

    fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.cfg.nodes.iter().find(|n| n.name == name).map(|n| n.id)
    }

    fn group_by_name(&self, name: &str) -> Option<usize> {
        self.cfg.groups.iter().position(|g| g.name == name)
    }

    fn settings_key(&self) -> (u64, u16) {
        (self.settings.generation, self.settings.origin)
    }

    /// Start-up rule: with `wait_for_all`, nothing starts before every node
    /// was seen once, or initdead passed.
    fn start_allowed(&self) -> bool {
        // After a stall (a frozen daemon reading packets queued while it
        // was stopped), the peers' reports it holds may be stale grants:
        // start nothing until fresh ones had time to arrive.
        self.last_now >= self.hold_until && self.start_allowed_by_quorum()
    }

    fn start_allowed_by_quorum(&self) -> bool {
        !self.cfg.quorum.enabled
            || !self.cfg.quorum.wait_for_all
            || self.seen_all
            || self.last_now.since(self.started) >= self.cfg.timing.initdead
    }

    /// Whether every member peer's latest report agrees that this node
    /// should start group `g`: same settings, same target (us), nothing
    /// running there. With reports applied in sequence order, two nodes can
    /// never both see this agreement for themselves.
    fn peers_agree(&self, g: usize) -> bool {
        let me = self.cfg.local.0;
        let key = self.settings_key();
        self.peers.iter().filter(|p| p.state.is_member()).all(|p| {
            p.settings_key == key
                && p.groups.iter().any(|r| {
                    usize::from(r.group) == g && r.target == me && r.phase == GroupPhase::Stopped
                })
        })
    }

    fn votes(&self, id: NodeId) -> u32 {
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
    fn counts_for_quorum(&self, p: &Peer) -> bool {
        let me = (self.cfg.local.0, self.cfg.incarnation);
        p.state == PeerState::Online && p.view.iter().any(|e| (e.node, e.incarnation) == me && e.up)
    }

    /// Whether this partition has quorum (always, when quorum is off).
    pub fn has_quorum(&self) -> bool {
        let (present, total) = self.quorum_votes();
        !self.cfg.quorum.enabled || present * 2 > total
    }

    fn check_quorum(&mut self) {
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

    /// The node this node grants group `g` to: the node where it is active
    /// (the lowest id, if several), else the placement target. A grant stays
    /// with the holder until it has stopped, so a majority never grants two
    /// holders at once.
    fn grant(&self, g: usize) -> Option<NodeId> {
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
    fn eligible_here(&self) -> bool {
        self.state == NodeState::Online
            && !self.leaving
            && !self.settings.standby.contains(&self.cfg.local)
    }

    /// Where placement wants group `g`, and whether another node has it active.
    fn target(&self, g: usize) -> (Option<NodeId>, bool) {
        let spec = &self.cfg.groups[g];
        let rt = &self.groups[g];
        let mut cands = vec![Candidate {
            node: self.cfg.local,
            eligible: self.eligible_here(),
            banned: rt.banned(spec.migration_threshold) || self.lease_lost,
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

    fn emit(&mut self, now: Timestamp, g: usize, r: usize, op: Op) {
        let spec = &self.cfg.groups[g].resources[r];
        let timeout = match op {
            Op::Start => spec.start_timeout,
            Op::Stop => spec.stop_timeout,
            Op::Monitor => spec.monitor_timeout,
        };
        let id = self.next_op;
        self.next_op += 1;
        let rt = &mut self.groups[g].resources[r];
        rt.pending = Some((id, op));
        match op {
            Op::Start => rt.state = ResourceState::Starting,
            Op::Stop => {
                rt.state = ResourceState::Stopping;
                rt.next_monitor = None;
            }
            Op::Monitor => {}
        }
        if op != Op::Monitor {
            self.events.push_back(Event::OpStarted {
                group: self.cfg.groups[g].name.clone(),
                resource: spec.name.clone(),
                op,
            });
        }
        self.op_started.push((id, now));
        self.actions.push_back(Action {
            id,
            group: g,
            resource: r,
            op,
            timeout,
        });
    }

    /// Decides the next operation of every idle group, then announces any
    /// change of our groups' phases at once (peers waiting to start a group
    /// we stop learn it within a round trip, not a keepalive).
    fn reconcile(&mut self, now: Timestamp) {
        if self.lease_lost
            && self
                .groups
                .iter()
                .all(|g| matches!(g.phase(), GroupPhase::Stopped | GroupPhase::Blocked))
        {
            self.lease_lost = false;
        }
        self.update_grants();
        for g in 0..self.groups.len() {
            self.apply_cleanups(g);
            self.reconcile_group(now, g);
        }
        self.finish_leave_if_done();
        self.renew_lease(now);
        if self.state != NodeState::Leaving
            && (self.group_reports(), self.settings_key()) != self.reported
        {
            self.queue_heartbeats(PacketKind::Heartbeat);
        }
    }

    fn apply_cleanups(&mut self, g: usize) {
        let wanted = self.settings.cleanups.get(&g).copied().unwrap_or(0);
        let rt = &mut self.groups[g];
        if wanted > rt.cleanups_applied {
            rt.cleanups_applied = wanted;
            rt.blocked_on = None;
            rt.restart_from = None;
            for r in &mut rt.resources {
                r.fail_count = 0;
                r.last_failure = None;
                r.last_error = None;
                if r.state == ResourceState::Blocked {
                    // It may still run: probe it again.
                    r.state = ResourceState::Unknown;
                }
            }
        }
    }

    fn reconcile_group(&mut self, now: Timestamp, g: usize) {
        // Remember any member that reports the group blocked (in a report
        // that saw our latest settings, so not from before a cleanup).
        let key = self.settings_key();
        for p in &self.peers {
            if p.state.is_member()
                && p.settings_key == key
                && p.groups
                    .iter()
                    .any(|r| usize::from(r.group) == g && r.phase == GroupPhase::Blocked)
            {
                self.groups[g].blocked_on = Some(p.id);
            }
        }
        let rt = &self.groups[g];
        if rt.busy() || rt.phase() == GroupPhase::Blocked {
            return;
        }
        // Probe what is unknown first (e.g. left over by a crashed daemon).
        if let Some(r) = rt
            .resources
            .iter()
            .position(|r| r.state == ResourceState::Unknown)
        {
            return self.emit(now, g, r, Op::Monitor);
        }
        if self.state == NodeState::Starting {
            return; // wait until every peer is heard or initdead has passed
        }
        let (target, elsewhere) = self.target(g);
        let blocked = self.groups[g].blocked_on.is_some();
        // Starting from Stopped needs nothing active or blocked elsewhere and
        // the peers' agreement; a group already active here stays while
        // placement wants it here (another node that also runs it is not
        // its target, so that one stops).
        let quorate = self.has_quorum();
        if !quorate && self.cfg.quorum.no_quorum == NoQuorumPolicy::Freeze {
            return;
        }
        // While the witness is being asked, a holder keeps what runs (its
        // lease is not renewed meanwhile, so its addresses go silent if the
        // answer is slow) but starts nothing; a refusal stops it.
        let may_hold = (quorate || self.cfg.quorum.no_quorum == NoQuorumPolicy::Ignore)
            && self.witness_keeps()
            && !self.lease_lost;
        let want = may_hold
            && target == Some(self.cfg.local)
            && (self.groups[g].phase() != GroupPhase::Stopped
                || (!elsewhere
                    && !blocked
                    && self.witness_allows()
                    && self.grants[g].to == Some(self.cfg.local)
                    && !self.fencing_pending()
                    && self.start_allowed()
                    && self.peers_agree(g)));
        let rt = &mut self.groups[g];
        let n = rt.resources.len();
        if let Some(k) = rt.restart_from {
            // Restart in place: stop the failed resource and those after it.
            if want
                && let Some(r) = (k..n)
                    .rev()
                    .find(|&r| rt.resources[r].state != ResourceState::Stopped)
            {
                return self.emit(now, g, r, Op::Stop);
            }
            rt.restart_from = None;
        }
        let rt = &self.groups[g];
        if want {
            if let Some(r) = rt
                .resources
                .iter()
                .position(|r| r.state != ResourceState::Started)
            {
                if rt.resources[r].state == ResourceState::Failed {
                    return self.emit(now, g, r, Op::Stop);
                }
                if !rt.acquiring {
                    self.groups[g].releasing = false;
                    self.groups[g].acquiring = true;
                    self.events.push_back(Event::Acquiring {
                        group: self.cfg.groups[g].name.clone(),
                    });
                }
                self.emit(now, g, r, Op::Start)
            }
        } else if let Some(r) = rt
            .resources
            .iter()
            .rposition(|r| r.state != ResourceState::Stopped)
        {
            if !rt.releasing {
                let reason = self.release_reason(g, target);
                self.events.push_back(Event::Releasing {
                    group: self.cfg.groups[g].name.clone(),
                    reason,
                });
            }
            self.groups[g].acquiring = false;
            self.groups[g].releasing = true;
            self.emit(now, g, r, Op::Stop)
        }
    }

    fn release_reason(&self, g: usize, target: Option<NodeId>) -> String {
        let spec = &self.cfg.groups[g];
        if self.lease_lost {
            "lease lost while this daemon was frozen".into()
        } else if self.leaving {
            "shutting down".into()
        } else if self.settings.standby.contains(&self.cfg.local) {
            "this node is in standby".into()
        } else if self.groups[g].banned(spec.migration_threshold) {
            "too many failures here".into()
        } else if self.groups[g].blocked_on.is_some() {
            "blocked on another node".into()
        } else if self.witness == WitnessState::Unreachable {
            if self.cfg.witness_arbiter {
                "the arbitrator's vote is not ours".into()
            } else {
                "witness unreachable".into()
            }
        } else if !self.has_quorum() {
            let (present, total) = self.quorum_votes();
            format!("no quorum: {present} of {total} votes")
        } else if let Some(t) = target.filter(|t| *t != self.cfg.local) {
            if self.settings.moved_to(g) == Some(t) {
                format!("moved to {} by an operator", self.node_name(t))
            } else {
                format!("{} is preferred", self.node_name(t))
            }
        } else {
            "another node runs it".into()
        }
    }

    fn expire_failures(&mut self, now: Timestamp) {
        for (rt, spec) in self.groups.iter_mut().zip(&self.cfg.groups) {
            if let Some(ft) = spec.failure_timeout {
                for r in &mut rt.resources {
                    if r.fail_count > 0 && r.last_failure.is_some_and(|t| t + ft <= now) {
                        r.fail_count = 0;
                        r.last_failure = None;
                    }
                }
            }
        }
    }

    fn schedule_monitors(&mut self, now: Timestamp) {
        if self.lease_lost {
            return; // a monitor would re-announce the address
        }
        for g in 0..self.groups.len() {
            if self.groups[g].busy() {
                continue;
            }
            let due = self.groups[g].resources.iter().position(|r| {
                r.state == ResourceState::Started && r.next_monitor.is_some_and(|t| t <= now)
            });
            if let Some(r) = due {
                self.groups[g].resources[r].next_monitor = None;
                self.emit(now, g, r, Op::Monitor);
            }
        }
    }

    /// Feeds the outcome of the operation `id` (from an [`Output::Action`]).
    pub fn handle_op_result(&mut self, now: Timestamp, id: u64, result: OpResult) {
        self.advance(now);
        let Some((g, r)) = self.groups.iter().enumerate().find_map(|(g, rt)| {
            rt.resources
                .iter()
                .position(|x| x.pending.is_some_and(|(pid, _)| pid == id))
                .map(|r| (g, r))
        }) else {
            return; // unknown or stale id: ignore
        };
        let started = self
            .op_started
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(now, |(_, t)| *t);
        self.op_started.retain(|(i, _)| *i != id);
        let spec = self.cfg.groups[g].clone();
        let rspec = &spec.resources[r];
        let threshold = spec.migration_threshold.max(1);
        let Some((_, op)) = self.groups[g].resources[r].pending.take() else {
            return;
        };
        let detail = |res: &OpResult| match res {
            OpResult::Ok => "ok".to_string(),
            OpResult::NotRunning => "not running".to_string(),
            OpResult::Failed(m) => m.clone(),
            OpResult::TimedOut => format!(
                "timed out after {}",
                crate::time::human(match op {
                    Op::Start => rspec.start_timeout,
                    Op::Stop => rspec.stop_timeout,
                    Op::Monitor => rspec.monitor_timeout,
                })
            ),
        };
        let d = detail(&result);
        let names = (spec.name.clone(), rspec.name.clone());
        let res = &mut self.groups[g].resources[r];
        match (op, &result) {
            (Op::Start, OpResult::Ok) => {
                res.state = ResourceState::Started;
                res.next_monitor = rspec.monitor_interval.map(|i| now + i);
                self.events.push_back(Event::OpDone {
                    group: names.0.clone(),
                    resource: names.1,
                    op,
                    took: now.since(started),
                });
                if self.groups[g]
                    .resources
                    .iter()
                    .all(|x| x.state == ResourceState::Started)
                {
                    self.events.push_back(Event::Acquired { group: names.0 });
                }
            }
            (Op::Start, _) => {
                res.state = ResourceState::Failed;
                res.fail_count = threshold;
                res.last_failure = Some(now);
                res.last_error = Some(d.clone());
                self.events.push_back(Event::StartFailed {
                    group: names.0,
                    resource: names.1,
                    detail: d,
                });
            }
            (Op::Stop, OpResult::Ok | OpResult::NotRunning) => {
                res.state = ResourceState::Stopped;
                res.next_monitor = None;
                self.events.push_back(Event::OpDone {
                    group: names.0.clone(),
                    resource: names.1,
                    op,
                    took: now.since(started),
                });
                if self.groups[g]
                    .resources
                    .iter()
                    .all(|x| x.state == ResourceState::Stopped)
                {
                    self.groups[g].releasing = false;
                    self.events.push_back(Event::Released { group: names.0 });
                }
            }
            (Op::Stop, _) => {
                res.state = ResourceState::Blocked;
                res.last_error = Some(d.clone());
                self.groups[g].blocked_on = Some(self.cfg.local);
                self.events.push_back(Event::StopFailed {
                    group: names.0,
                    resource: names.1,
                    detail: d,
                });
            }
            (Op::Monitor, _) if res.state == ResourceState::Unknown => {
                // A probe: what runs here since before this daemon started?
                res.state = match result {
                    OpResult::Ok => ResourceState::Started,
                    OpResult::NotRunning => ResourceState::Stopped,
                    _ => ResourceState::Failed,
                };
                res.next_monitor = (res.state == ResourceState::Started)
                    .then(|| rspec.monitor_interval.map(|i| now + i))
                    .flatten();
            }
            (Op::Monitor, OpResult::Ok) => {
                res.next_monitor = rspec.monitor_interval.map(|i| now + i);
            }
            (Op::Monitor, _) => {
                if res.state == ResourceState::Started {
                    res.state = ResourceState::Failed;
                    res.fail_count += 1;
                    res.last_failure = Some(now);
                    res.last_error = Some(d.clone());
                    let count = res.fail_count;
                    if count < threshold {
                        self.groups[g].restart_from = Some(r);
                    }
                    self.events.push_back(Event::MonitorFailed {
                        group: names.0,
                        resource: names.1,
                        detail: d,
                        count,
                        threshold,
                    });
                }
            }
        }
        self.update_own_state();
        self.reconcile(now);
    }

    /// Applies an operator command; answers what changed, or why not.
    pub fn handle_command(&mut self, now: Timestamp, cmd: Command) -> Result<String, String> {
        self.advance(now);
        // Until every peer was heard (or initdead passed), this node may not
        // know the cluster's latest settings; a change made now could be
        // silently overridden by them.
        if self.state == NodeState::Starting {
            return Err(
                "this node is still joining the cluster (waiting for its peers or initdead); try again in a moment"
                    .into(),
            );
        }
        if self.leaving {
            return Err("this node is shutting down".into());
        }
        if let Command::ForcePrimary { node } = &cmd {
            if *node != self.local_name() {
                return Err(format!(
                    "run `tandem force-primary {node}` on {node} itself (this is {})",
                    self.local_name()
                ));
            }
            if let Some(p) = self.peers.iter().find(|p| p.state.is_member()) {
                return Err(format!(
                    "refused: {} is reachable, so this is no split; nothing to force",
                    p.name
                ));
            }
            if !matches!(
                self.witness,
                WitnessState::Unreachable | WitnessState::Checking(_)
            ) {
                return Err("this node is not waiting for a witness; nothing to force".into());
            }
            self.witness = WitnessState::Forced;
            let what = format!("{node} forced to act alone by an operator");
            self.events
                .push_back(Event::SettingsChanged { what: what.clone() });
            self.reconcile(now);
            return Ok(what);
        }
        let mut next = self.settings.clone();
        let answer = match cmd {
            Command::Move {
                group,
                node,
                duration,
            } => {
                let g = self
                    .group_by_name(&group)
                    .ok_or_else(|| self.unknown_group(&group))?;
                next.moves.retain(|m| m.group != g);
                match node {
                    None => format!("cleared the operator preference for {group}"),
                    Some(n) => {
                        let id = self.node_by_name(&n).ok_or_else(|| self.unknown_node(&n))?;
                        next.moves.push(Move {
                            group: g,
                            node: id,
                            until: duration.map(|d| now + d),
                        });
                        match duration {
                            Some(d) => {
                                format!("{group} moves to {n} for {}", crate::time::human(d))
                            }
                            None => format!(
                                "{group} moves to {n} (until `tandem move {group} --clear`)"
                            ),
                        }
                    }
                }
            }
            Command::Standby { node, on } => {
                let id = self
                    .node_by_name(&node)
                    .ok_or_else(|| self.unknown_node(&node))?;
                if on {
                    next.standby.insert(id);
                    format!("{node} is in standby: its groups move to other nodes")
                } else {
                    next.standby.remove(&id);
                    format!("{node} is back from standby")
                }
            }
            Command::Cleanup { group } => {
                let g = self
                    .group_by_name(&group)
                    .ok_or_else(|| self.unknown_group(&group))?;
                *next.cleanups.entry(g).or_insert(0) += 1;
                format!("{group}: fail counts and blocked state cleared on every node")
            }
            Command::ForcePrimary { .. } => return Err("force-primary is handled above".into()),
            Command::TakeOver { take, which } => {
                let me = self.cfg.local;
                let preferred = |g: usize| {
                    self.cfg.groups[g]
                        .rules
                        .scores
                        .iter()
                        .max_by_key(|(n, s)| (*s, std::cmp::Reverse(*n)))
                        .map(|(n, _)| *n)
                };
                let chosen: Vec<usize> = (0..self.cfg.groups.len())
                    .filter(|&g| match which.as_str() {
                        "all" => true,
                        "local" | "failback" => preferred(g) == Some(me),
                        "foreign" => preferred(g) != Some(me),
                        _ => false,
                    })
                    .collect();
                if !matches!(which.as_str(), "all" | "local" | "failback" | "foreign") {
                    return Err(format!("`{which}`: use all, local or foreign"));
                }
                let to = if take {
                    me
                } else {
                    self.peers
                        .iter()
                        .find(|p| p.state.is_member())
                        .map(|p| p.id)
                        .ok_or("no other node is online to take the groups")?
                };
                next.moves.retain(|m| !chosen.contains(&m.group));
                next.moves.extend(chosen.iter().map(|&g| Move {
                    group: g,
                    node: to,
                    until: None,
                }));
                let names: Vec<&str> = chosen
                    .iter()
                    .map(|&g| self.cfg.groups[g].name.as_str())
                    .collect();
                if names.is_empty() {
                    format!("no {which} group to move")
                } else {
                    format!(
                        "{} move{} to {} (until `tandem move GROUP --clear`)",
                        names.join(", "),
                        if names.len() == 1 { "s" } else { "" },
                        self.node_name(to)
                    )
                }
            }
        };
        next.generation = self
            .settings
            .generation
            .max(self.peers.iter().filter(|p| p.state.is_member()).count() as u64)
            // Adopted from peers: a key holder could send u64::MAX.
            .saturating_add(1);
        next.origin = self.cfg.local.0;
        self.settings = next;
        self.events.push_back(Event::SettingsChanged {
            what: answer.clone(),
        });
        // Tell everyone now.
        if self.state != NodeState::Leaving {
            self.queue_heartbeats(PacketKind::Heartbeat);
        }
        self.reconcile(now);
        Ok(answer)
    }

    fn unknown_group(&self, name: &str) -> String {
        let known: Vec<&str> = self.cfg.groups.iter().map(|g| g.name.as_str()).collect();
        format!("no group `{name}` (groups: {})", known.join(", "))
    }

    fn unknown_node(&self, name: &str) -> String {
        let known: Vec<&str> = self.cfg.nodes.iter().map(|n| n.name.as_str()).collect();
        format!("no node `{name}` (nodes: {})", known.join(", "))
    }

    /// The phase of group `g` on this node.
    pub fn group_phase(&self, g: usize) -> Option<GroupPhase> {
        self.groups.get(g).map(GroupRt::phase)
    }

    fn group_status(&self) -> Vec<GroupStatus> {
        let mut out = Vec::new();
        for (g, (rt, spec)) in self.groups.iter().zip(&self.cfg.groups).enumerate() {
            let mut active_on = Vec::new();
            let mut banned_on = Vec::new();
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
            fencing: self.fence_history.iter().cloned().collect(),
            lease_ms: self.lease_until.map(|u| ms(u.since(now))),
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

mod output;
pub use output::Output;

#[cfg(test)]
mod tests;
