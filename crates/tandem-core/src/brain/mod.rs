//! The brain: one node's deterministic state machine. This file holds the
//! [`Brain`] type, its constructor and its inputs (`handle_*`); each concept
//! lives in its own module and owns its part of the state:
//!
//! | module | owns |
//! |---|---|
//! | [`crate::config`] | what a brain is built from (its own crate module) |
//! | `heartbeats` | packets in (authenticate, merge) and out |
//! | `quorum` | votes and the majority test |
//! | `witness` | the witness check and the arbitrator's vote |
//! | `lease` | how long this node may serve its addresses |
//! | `fencing` | powering off dead peers before taking over |
//! | `grants` | which node each group may run on (placement glue) |
//! | `reconcile` | the resource lifecycle (probe, start, stop, monitor) |
//! | `commands` | operator commands |
//! | `status` | the operator's snapshot |
//! | `timers` | the timer table |
//! | [`output`] | the one output type drivers handle |

use std::collections::VecDeque;
use std::time::Duration;

use tandem_wire::{GroupPhase, GroupReport, NodeState, PacketKind};

use crate::event::Event;
use crate::membership::{Peer, PeerState};
use crate::resources::{Action, GroupRt, OpResult, ResourceKey};
use crate::settings::Settings;
use crate::status::Stats;
use crate::time::Timestamp;
use crate::{LinkId, NodeId};

mod commands;
mod data;
mod fencing;
mod grants;
mod heartbeats;
mod lease;
mod quorum;
mod reconcile;
mod status;
mod timers;
mod witness;

use crate::config::BrainConfig;
pub use commands::{Command, CommandError};
use fencing::Fencing;
use grants::GrantState;
use lease::Lease;
use timers::TimerTable;
pub use witness::Vote;
use witness::{Arbitration, WitnessState};

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
    /// The witness check and the arbitrator's vote.
    witness: Arbitration,
    /// The lease and the send log it is computed from.
    lease: Lease,
    /// Fencing of dead peers.
    fencing: Fencing,
    /// Deadlines, re-armed after every input.
    timers: TimerTable,
    /// When each timer's deadline last changed.
    timers_armed_at: [Timestamp; timers::Timer::ALL.len()],
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
            .map(|g| {
                let mut rt = GroupRt::new(g.resources.len());
                // Until the daemon has looked at the volumes.
                rt.data_hold = (!g.volumes.is_empty())
                    .then(|| format!("waiting for the state of volume {}", g.volumes.join(", ")));
                rt
            })
            .collect();
        let grants = vec![GrantState::default(); groups.len()];
        let mut brain = Self {
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
            witness: Arbitration::default(),
            lease: Lease::new(now),
            fencing: Fencing::default(),
            timers: TimerTable::default(),
            timers_armed_at: [now; timers::Timer::ALL.len()],
        };
        brain.arm_timers();
        brain
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

    // The inputs. Each runs the concept module that owns it, then re-arms
    // the timer table.

    /// Feeds a datagram received on `link`: authenticated, checked against
    /// replay, then merged into membership, grants and reports.
    pub fn handle_datagram(&mut self, now: Timestamp, link: LinkId, data: &[u8]) {
        self.receive(now, link, data);
        self.arm_timers();
    }

    /// Runs every timer due at `now`: deaths, warnings, heartbeats.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.expire(now);
        self.arm_timers();
    }

    /// Starts a clean shutdown: stops every group here (a switchover: the
    /// peers start them only once they are stopped), then queues a `Leave`
    /// packet on every link so peers need not wait for deadtime. Call
    /// [`Brain::has_left`] to know when the daemon may exit.
    pub fn leave(&mut self, now: Timestamp) {
        self.start_leave(now);
        self.arm_timers();
    }

    /// Feeds the result of agent operation `id` (from [`Output::Action`]).
    pub fn handle_op_result(&mut self, now: Timestamp, id: u64, result: OpResult) {
        self.advance(now);
        self.op_result(now, id, result);
        self.arm_timers();
    }

    /// Reports that the main process of resource `key` exited here and no
    /// other took its place (`detail` says which, for the log): treated as
    /// a failed monitor at once, so the resource is restarted (or its group
    /// moved) without waiting for the next monitor.
    pub fn handle_main_exit(&mut self, now: Timestamp, key: &ResourceKey, detail: String) {
        self.advance(now);
        self.main_exited(now, key, detail);
        self.arm_timers();
    }

    /// Feeds the outcome of fence request `id` (from [`Output::Fence`]).
    pub fn handle_fence_result(&mut self, now: Timestamp, id: u64, result: Result<(), String>) {
        self.advance(now);
        self.fence_result(now, id, result);
        self.arm_timers();
    }

    /// Feeds whether the witness probe `id` reached a witness (from
    /// [`Output::WitnessProbe`], plain witnesses).
    pub fn handle_witness_result(&mut self, now: Timestamp, id: u64, reachable: bool) {
        self.advance(now);
        self.witness_result(now, id, reachable);
        self.arm_timers();
    }

    /// Feeds the arbitrator's answer to vote request `id` (from
    /// [`Output::WitnessProbe`], arbitrators).
    pub fn handle_witness_vote(&mut self, now: Timestamp, id: u64, vote: Vote) {
        self.advance(now);
        self.witness_vote(now, id, vote);
        self.arm_timers();
    }

    /// Feeds whether this node's copy of group `group`'s data (its
    /// volumes) is ready: `None`, or why not. A group is not started where
    /// its data is not ready. `stale`: the copy is durably unfit (Outdated
    /// or Inconsistent), which peers learn from the heartbeats (a primary
    /// whose IO waits for this copy to be fenced resumes on it).
    pub fn handle_data_readiness(
        &mut self,
        now: Timestamp,
        group: &str,
        hold: Option<String>,
        stale: bool,
    ) {
        self.advance(now);
        self.set_data_hold(now, group, hold, stale);
        self.arm_timers();
    }

    /// Applies an operator command; the message says what changed, the
    /// error why nothing did.
    pub fn handle_command(&mut self, now: Timestamp, cmd: Command) -> Result<String, CommandError> {
        self.advance(now);
        let result = self.apply_command(now, cmd);
        self.arm_timers();
        result
    }

    /// Runs every timer due at `now`: deaths, warnings, heartbeats.
    fn expire(&mut self, now: Timestamp) {
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
            let interval = self.send_interval();
            self.next_send = self.next_send + interval;
            if self.next_send <= now {
                self.next_send = now + interval;
            }
            // The lease counts from this send.
            self.renew_lease(now);
        }
    }

    /// Starts a clean shutdown: stops every group here (a switchover: the
    /// peers start them only once they are stopped), then queues a `Leave`
    /// packet on every link so peers need not wait for deadtime. Call
    /// [`Brain::has_left`] to know when the daemon may exit.
    fn start_leave(&mut self, now: Timestamp) {
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
}

pub mod output;
pub use output::Output;

#[cfg(test)]
mod tests;
