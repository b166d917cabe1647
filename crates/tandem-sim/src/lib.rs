//! A deterministic simulator for tandem's cluster brain.
//!
//! [`Sim`] runs N [`Brain`]s against a simulated clock and network. The
//! network drops, delays (and so reorders) and duplicates datagrams per
//! link, can cut links and partition node pairs; nodes can crash, restart
//! with a new incarnation, freeze (SIGSTOP: their datagrams queue up, as in
//! a socket buffer) and thaw. Everything random comes from one seeded
//! ChaCha generator, so a seed reproduces a run exactly.
//!
//! The loop is the one quinn-proto's tests use: jump the clock to the
//! earliest of the next delivery and every running brain's
//! [`Brain::poll_timeout`], process it, repeat.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tandem_core::{
    Action, Brain, BrainConfig, Event, GroupSpec, LinkId, NodeId, Op, OpResult, Output, Quorum,
    Timestamp, Timing,
};
use tandem_wire::{Key, Keyring};

mod fencing;
pub use fencing::{FENCE_LATENCY, FENCE_TIMEOUT, FenceAgent, FenceRecord};

/// Network behaviour of one link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a delivered datagram arrives twice.
    pub duplicate: f64,
    /// Smallest one-way delay.
    pub delay_min: Duration,
    /// Largest one-way delay (delays are uniform in between, which reorders).
    pub delay_max: Duration,
    /// Whether the link carries anything at all.
    pub up: bool,
}

impl Default for LinkModel {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            delay_min: Duration::from_micros(100),
            delay_max: Duration::from_millis(2),
            up: true,
        }
    }
}

/// What the simulator recorded: every event of every node, with its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When.
    pub at: Timestamp,
    /// Which node (index, 0-based) reported it.
    pub node: usize,
    /// What.
    pub event: Event,
}

#[derive(Debug)]
struct SimNode {
    brain: Option<Brain>,
    frozen: bool,
    inbox: Vec<(LinkId, Vec<u8>)>,
    incarnation: u64,
    /// `running[g][r]`: the simulated resource really runs on this node.
    running: Vec<Vec<bool>>,
    /// Results that arrived while frozen.
    results: Vec<(u64, OpResult)>,
}

/// Faults to inject into the simulated agents of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AgentFaults {
    /// Probability that a start fails.
    pub start_failure: f64,
    /// Probability that a stop fails (the resource keeps running).
    pub stop_failure: f64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    Datagram {
        link: u8,
        bytes: Vec<u8>,
    },
    Witness {
        id: u64,
        reachable: bool,
    },
    Vote {
        id: u64,
        vote: tandem_core::Vote,
    },
    OpDone {
        id: u64,
        group: usize,
        resource: usize,
        op: OpKind,
    },
    FenceDone {
        id: u64,
        victim: usize,
        ok: bool,
        record: usize,
    },
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum OpKind {
    Start,
    Stop,
    Monitor,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at: Timestamp,
    order: u64,
    to: usize,
    what: What,
}

/// The simulated cluster. See the crate documentation.
#[derive(Debug)]
pub struct Sim {
    rng: ChaCha8Rng,
    now: Timestamp,
    timing: Timing,
    nodes: Vec<SimNode>,
    links: Vec<LinkModel>,
    /// `blocked[a][b]`: datagrams from a to b are dropped.
    blocked: Vec<Vec<bool>>,
    queue: BinaryHeap<Reverse<Delivery>>,
    order: u64,
    /// Everything every node reported.
    pub log: Vec<Record>,
    /// Datagrams dropped by loss, cuts or partitions.
    pub dropped: u64,
    /// Datagrams delivered (duplicates included).
    pub delivered: u64,
    groups: Vec<GroupSpec>,
    quorum: Quorum,
    faults: Vec<AgentFaults>,
    /// Longest simulated agent operation.
    pub op_latency_max: Duration,
    /// Every moment a resource really ran on two nodes at once.
    pub violations: Vec<String>,
    /// Whether each node reaches a witness (`None`: no witness at all).
    witness: Vec<Option<bool>>,
    /// The arbitrator, when the witness is one (see [`Sim::use_arbiter`]).
    arbiter: Option<tandem_core::arbiter::Arbiter>,
    /// Per node: requests sent to the arbitrator.
    arbiter_counters: Vec<u64>,
    /// Whether the brains fence dead nodes (see [`Sim::use_fencing`]).
    fencing: bool,
    /// How the simulated fence agent behaves.
    fence_agent: FenceAgent,
    /// Every fence request played.
    fence_log: Vec<FenceRecord>,
}

/// Builds the brain configuration of node `idx` (0-based) of an `n`-node,
/// `links`-link cluster.
pub fn brain_config(
    idx: usize,
    n: usize,
    links: usize,
    timing: Timing,
    incarnation: u64,
    groups: &[GroupSpec],
    quorum: &Quorum,
) -> BrainConfig {
    let mut cfg = BrainConfig::new(
        "sim",
        NodeId(u16::try_from(idx + 1).unwrap_or(u16::MAX)),
        (0..n).map(|i| format!("n{}", i + 1)),
        (0..links).map(|l| format!("eth{l}")),
        timing,
        Keyring::single(Key::new(1, b"simulation key").expect("the constant key is not empty")),
        incarnation,
    );
    cfg.config_digest = 1;
    cfg.groups = groups.to_vec();
    cfg.quorum = quorum.clone();
    cfg.witness = true;
    cfg
}

impl Sim {
    /// A cluster of `n` nodes and `links` links, all started at time zero.
    pub fn new(seed: u64, n: usize, links: usize, timing: Timing) -> Self {
        Self::with_groups(seed, n, links, timing, &[])
    }

    /// A cluster running resource groups, whose agents the simulator plays:
    /// each operation takes 1–20 ms; a start makes the resource run, a stop
    /// makes it stop, a monitor reports whether it runs.
    pub fn with_groups(
        seed: u64,
        n: usize,
        links: usize,
        timing: Timing,
        groups: &[GroupSpec],
    ) -> Self {
        Self::with_quorum(seed, n, links, timing, groups, Quorum::default())
    }

    /// Like [`Sim::with_groups`], with quorum rules.
    pub fn with_quorum(
        seed: u64,
        n: usize,
        links: usize,
        timing: Timing,
        groups: &[GroupSpec],
        quorum: Quorum,
    ) -> Self {
        let nodes = (0..n)
            .map(|i| {
                let incarnation = 1000 * (i as u64 + 1);
                SimNode {
                    brain: Some(Brain::new(
                        brain_config(i, n, links, timing, incarnation, groups, &quorum),
                        Timestamp::ZERO,
                    )),
                    frozen: false,
                    inbox: Vec::new(),
                    incarnation,
                    running: groups
                        .iter()
                        .map(|g| vec![false; g.resources.len()])
                        .collect(),
                    results: Vec::new(),
                }
            })
            .collect();
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Timestamp::ZERO,
            timing,
            nodes,
            links: vec![LinkModel::default(); links],
            blocked: vec![vec![false; n]; n],
            queue: BinaryHeap::new(),
            order: 0,
            log: Vec::new(),
            dropped: 0,
            delivered: 0,
            groups: groups.to_vec(),
            quorum,
            faults: vec![AgentFaults::default(); n],
            op_latency_max: Duration::from_millis(20),
            violations: Vec::new(),
            witness: vec![None; n],
            arbiter: None,
            arbiter_counters: vec![0; n],
            fencing: false,
            fence_agent: FenceAgent::default(),
            fence_log: Vec::new(),
        }
    }

    /// The brain configuration of node `i` as the simulation runs it now
    /// (arbitrator and fencing switched on as asked).
    fn node_config(&self, i: usize) -> BrainConfig {
        let mut cfg = brain_config(
            i,
            self.nodes.len(),
            self.links.len(),
            self.timing,
            self.nodes[i].incarnation,
            &self.groups,
            &self.quorum,
        );
        cfg.witness_arbiter = self.arbiter.is_some();
        cfg.fencing = self.fencing;
        cfg
    }

    /// Makes the witness an arbitrator whose votes last `vote` (call before
    /// running): nodes ask it for its vote, it gives it to one at a time;
    /// [`Sim::set_witness`] says who reaches it. A node counts a vote as
    /// valid for 95 % of `vote` from when it asked.
    pub fn use_arbiter(&mut self, vote: Duration) {
        self.arbiter = Some(tandem_core::arbiter::Arbiter::new(vote));
        for i in 0..self.nodes.len() {
            let cfg = self.node_config(i);
            self.nodes[i].brain = Some(Brain::new(cfg, self.now));
        }
    }

    /// Who holds the arbitrator's vote now (node index).
    pub fn arbiter_holder(&self) -> Option<usize> {
        let name = self.arbiter.as_ref()?.holder(self.now, "sim")?.to_string();
        name.strip_prefix('n')?
            .parse::<usize>()
            .ok()
            .and_then(|k| k.checked_sub(1))
    }

    /// Says whether node `i` reaches a witness; until called for a node,
    /// its witness probes answer "unreachable" only if some node was set.
    pub fn set_witness(&mut self, i: usize, reachable: bool) {
        if let Some(w) = self.witness.get_mut(i) {
            *w = Some(reachable);
        }
    }

    /// Whether node `i` serves what it runs: its resources run and its
    /// lease is valid (the kernel drops a VIP's traffic once the lease
    /// lapses, frozen daemon or not).
    fn serving(&self, i: usize, g: usize, r: usize) -> bool {
        let node = &self.nodes[i];
        node.running
            .get(g)
            .and_then(|v| v.get(r))
            .copied()
            .unwrap_or(false)
            && node
                .brain
                .as_ref()
                .and_then(Brain::lease_until)
                .is_some_and(|u| u > self.now)
    }

    /// Records a violation if any resource is served by two nodes at once.
    fn check_exclusive(&mut self) {
        for (g, spec) in self.groups.iter().enumerate() {
            for r in 0..spec.resources.len() {
                let on: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.serving(i, g, r))
                    .collect();
                if on.len() > 1 && self.violations.len() < 10 {
                    self.violations.push(format!(
                        "at {:?}: {}/{} served by nodes {:?}",
                        self.now, spec.name, spec.resources[r].name, on
                    ));
                }
            }
        }
    }

    /// Sets the agent faults of node `i`.
    pub fn set_faults(&mut self, i: usize, f: AgentFaults) {
        if let Some(x) = self.faults.get_mut(i) {
            *x = f;
        }
    }

    /// Whether resource `r` of group `g` really runs on node `i`.
    pub fn is_running(&self, i: usize, g: usize, r: usize) -> bool {
        self.nodes
            .get(i)
            .and_then(|n| n.running.get(g))
            .and_then(|v| v.get(r))
            .copied()
            .unwrap_or(false)
    }

    /// Nodes on which resource `r` of group `g` really runs.
    pub fn running_on(&self, g: usize, r: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i, g, r))
            .collect()
    }

    /// Makes resource `r` of group `g` stop by itself on node `i` (a crash of
    /// the service, not of the node).
    pub fn kill_resource(&mut self, i: usize, g: usize, r: usize) {
        if let Some(x) = self
            .nodes
            .get_mut(i)
            .and_then(|n| n.running.get_mut(g))
            .and_then(|v| v.get_mut(r))
        {
            *x = false;
        }
    }

    /// Sends an operator command to node `i` (an error message if the
    /// brain refuses it, or if the node is down).
    pub fn command(&mut self, i: usize, cmd: tandem_core::Command) -> Result<String, String> {
        let now = self.now;
        let r = match self.nodes.get_mut(i).and_then(|n| n.brain.as_mut()) {
            Some(b) => b.handle_command(now, cmd).map_err(|e| e.to_string()),
            None => Err("node is down".into()),
        };
        self.drain(i);
        r
    }

    /// Asks node `i` to leave cleanly (SIGTERM).
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        if let Some(b) = self.nodes.get_mut(i).and_then(|n| n.brain.as_mut()) {
            b.leave(now);
        }
        self.drain(i);
    }

    /// Current simulated time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The timings every node runs with.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The random generator, for scenarios that draw their own faults.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Node `i`'s brain, unless crashed.
    pub fn brain(&self, i: usize) -> Option<&Brain> {
        self.nodes.get(i).and_then(|n| n.brain.as_ref())
    }

    /// Sets link `l`'s behaviour.
    pub fn set_link(&mut self, l: usize, model: LinkModel) {
        if let Some(m) = self.links.get_mut(l) {
            *m = model;
        }
    }

    /// Link `l`'s behaviour.
    pub fn link(&self, l: usize) -> LinkModel {
        self.links.get(l).copied().unwrap_or_default()
    }

    /// Splits the cluster: nodes in `side` no longer reach the others, and
    /// the others no longer reach them (on every link).
    pub fn partition(&mut self, side: &[usize]) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in 0..n {
                if side.contains(&a) != side.contains(&b) {
                    self.blocked[a][b] = true;
                }
            }
        }
    }

    /// Drops datagrams from `a` to `b` only (an asymmetric fault).
    pub fn block(&mut self, a: usize, b: usize) {
        if let Some(row) = self.blocked.get_mut(a)
            && let Some(x) = row.get_mut(b)
        {
            *x = true;
        }
    }

    /// Removes every partition and block.
    pub fn heal(&mut self) {
        for row in &mut self.blocked {
            row.iter_mut().for_each(|x| *x = false);
        }
    }

    /// Crashes node `i` (a power-off): its brain and its resources are
    /// gone, datagrams to it are lost.
    pub fn crash(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.brain = None;
            n.frozen = false;
            n.inbox.clear();
            n.results.clear();
            n.running
                .iter_mut()
                .for_each(|g| g.iter_mut().for_each(|r| *r = false));
        }
    }

    /// Crashes only node `i`'s daemon: its resources keep running.
    pub fn crash_daemon(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.brain = None;
            n.frozen = false;
            n.inbox.clear();
            n.results.clear();
        }
    }

    /// Restarts a crashed node with a new, larger incarnation.
    pub fn restart(&mut self, i: usize) {
        let now = self.now;
        if i >= self.nodes.len() {
            return;
        }
        self.nodes[i].incarnation += 1;
        let cfg = self.node_config(i);
        let node = &mut self.nodes[i];
        node.brain = Some(Brain::new(cfg, now));
        node.frozen = false;
        node.inbox.clear();
    }

    /// Freezes node `i` (SIGSTOP): it runs nothing; datagrams to it queue.
    pub fn freeze(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.frozen = true;
        }
    }

    /// Thaws node `i` (SIGCONT): it reads its queued datagrams, then runs on.
    pub fn thaw(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        node.frozen = false;
        let inbox = std::mem::take(&mut node.inbox);
        let results = std::mem::take(&mut node.results);
        if let Some(b) = node.brain.as_mut() {
            for (link, bytes) in inbox {
                b.handle_datagram(now, link, &bytes);
            }
            for (id, r) in results {
                b.handle_op_result(now, id, r);
            }
        }
        self.drain(i);
    }

    /// Whether node `i` is running (not crashed, not frozen).
    pub fn running(&self, i: usize) -> bool {
        self.nodes
            .get(i)
            .is_some_and(|n| n.brain.is_some() && !n.frozen)
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let mut sends = Vec::new();
        let mut actions: Vec<Action> = Vec::new();
        let mut witness_probes: Vec<u64> = Vec::new();
        let mut fences: Vec<(u64, String)> = Vec::new();
        let mut release = false;
        if let Some(b) = self.nodes.get_mut(i).and_then(|n| n.brain.as_mut()) {
            while let Some(out) = b.poll() {
                match out {
                    // The simulated kernel enforces the brain's lease
                    // exactly: `serving` reads it from the brain.
                    Output::Lease(_) => {}
                    Output::Action(a) => actions.push(a),
                    Output::WitnessProbe { id } => witness_probes.push(id),
                    Output::WitnessRelease => release = true,
                    Output::Fence { id, node } => fences.push((id, node)),
                    Output::Transmit(t) => sends.push(t),
                    Output::Event(e) => self.log.push(Record {
                        at: now,
                        node: i,
                        event: e,
                    }),
                }
            }
        }
        for (id, victim) in fences {
            self.fence_request(i, id, &victim);
        }
        // Witness probes answer after a few milliseconds. Without any
        // witness configured in the simulation, every probe succeeds (the
        // two-node behaviour of plain Heartbeat).
        let any_witness = self.witness.iter().any(Option::is_some);
        if release {
            let reaches = !any_witness || self.witness.get(i).copied().flatten().unwrap_or(false);
            let incarnation = self.nodes.get(i).map_or(0, |n| n.incarnation);
            if reaches && let Some(a) = self.arbiter.as_mut() {
                self.arbiter_counters[i] += 1;
                a.release(
                    "sim",
                    &format!("n{}", i + 1),
                    incarnation,
                    self.arbiter_counters[i],
                );
            }
        }
        if self.arbiter.is_some() {
            // The arbitrator decides when the request arrives (2 ms); the
            // answer is back 2 ms later; the node counts its vote from when
            // it asked, minus 5 % for clock-rate differences.
            let reaches = !any_witness || self.witness.get(i).copied().flatten().unwrap_or(false);
            let incarnation = self.nodes.get(i).map_or(0, |n| n.incarnation);
            for id in witness_probes {
                let mut vote = tandem_core::Vote::NoAnswer;
                if reaches && let Some(a) = self.arbiter.as_mut() {
                    self.arbiter_counters[i] += 1;
                    let vote_for = a.vote();
                    let d = a.request(
                        now + Duration::from_millis(2),
                        "sim",
                        &format!("n{}", i + 1),
                        incarnation,
                        self.arbiter_counters[i],
                    );
                    vote = match d {
                        tandem_core::arbiter::Decision::Granted { .. } => {
                            tandem_core::Vote::Granted {
                                until: now + vote_for.mul_f64(0.95),
                            }
                        }
                        _ => tandem_core::Vote::Refused,
                    };
                }
                self.order += 1;
                self.queue.push(Reverse(Delivery {
                    at: now + Duration::from_millis(4),
                    order: self.order,
                    to: i,
                    what: What::Vote { id, vote },
                }));
            }
            witness_probes = Vec::new();
        }
        for id in witness_probes {
            let reachable = !any_witness || self.witness.get(i).copied().flatten().unwrap_or(false);
            self.order += 1;
            self.queue.push(Reverse(Delivery {
                at: now + Duration::from_millis(5),
                order: self.order,
                to: i,
                what: What::Witness { id, reachable },
            }));
        }
        for a in actions {
            let span = self.op_latency_max.as_nanos() as u64;
            let latency =
                Duration::from_millis(1) + Duration::from_nanos(self.rng.random_range(0..=span));
            self.order += 1;
            let op = match a.op {
                Op::Start => OpKind::Start,
                Op::Stop => OpKind::Stop,
                Op::Monitor => OpKind::Monitor,
            };
            self.queue.push(Reverse(Delivery {
                at: now + latency,
                order: self.order,
                to: i,
                what: What::OpDone {
                    id: a.id,
                    group: a.group,
                    resource: a.resource,
                    op,
                },
            }));
        }
        for t in sends {
            let l = usize::from(t.link.0);
            let model = self.link(l);
            for to in 0..self.nodes.len() {
                if to == i {
                    continue;
                }
                if !model.up
                    || self.blocked[i][to]
                    || self.rng.random_bool(model.loss.clamp(0.0, 1.0))
                {
                    self.dropped += 1;
                    continue;
                }
                let copies = if self.rng.random_bool(model.duplicate.clamp(0.0, 1.0)) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let span = model.delay_max.saturating_sub(model.delay_min).as_nanos() as u64;
                    let delay =
                        model.delay_min + Duration::from_nanos(self.rng.random_range(0..=span));
                    self.order += 1;
                    self.queue.push(Reverse(Delivery {
                        at: now + delay,
                        order: self.order,
                        to,
                        what: What::Datagram {
                            link: t.link.0,
                            bytes: t.payload.clone(),
                        },
                    }));
                }
            }
        }
    }

    fn next_timer(&self) -> Option<(Timestamp, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.frozen)
            .filter_map(|(i, n)| Some((n.brain.as_ref()?.poll_timeout()?, i)))
            .min()
    }

    /// Runs the simulation until time `until`.
    ///
    /// Panics if a brain livelocks: asks to be woken at a time that has
    /// passed, again and again, without the clock moving (a brain bug the
    /// real daemon would turn into a busy loop).
    pub fn run_until(&mut self, until: Timestamp) {
        let mut same_instant = 0u32;
        let mut last = self.now;
        loop {
            let next_delivery = self.queue.peek().map(|Reverse(d)| d.at);
            let next_timer = self.next_timer();
            let deliver_first = match (next_delivery, next_timer) {
                (Some(d), Some((t, _))) => d <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let at = if deliver_first {
                next_delivery
            } else {
                next_timer.map(|t| t.0)
            };
            let Some(at) = at else { break };
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            if self.now == last {
                same_instant += 1;
                assert!(
                    same_instant < 100_000,
                    "livelock at {:?}: a brain keeps asking to be woken in the past",
                    self.now
                );
            } else {
                same_instant = 0;
                last = self.now;
            }
            if deliver_first {
                let Some(Reverse(d)) = self.queue.pop() else {
                    break;
                };
                let now = self.now;
                let mut check = false;
                match d.what {
                    What::Datagram { link, bytes } => {
                        let Some(node) = self.nodes.get_mut(d.to) else {
                            continue;
                        };
                        let Some(brain) = node.brain.as_mut() else {
                            self.dropped += 1;
                            continue;
                        };
                        self.delivered += 1;
                        if node.frozen {
                            // The socket buffer holds it; bounded like a real one.
                            if node.inbox.len() < 4096 {
                                node.inbox.push((LinkId(link), bytes));
                            }
                            continue;
                        }
                        brain.handle_datagram(now, LinkId(link), &bytes);
                    }
                    What::Witness { id, reachable } => {
                        if let Some(node) = self.nodes.get_mut(d.to).filter(|n| !n.frozen)
                            && let Some(b) = node.brain.as_mut()
                        {
                            b.handle_witness_result(now, id, reachable);
                        }
                    }
                    What::FenceDone {
                        id,
                        victim,
                        ok,
                        record,
                    } => {
                        self.fence_done(d.to, id, victim, ok, record);
                        check = true;
                    }
                    What::Vote { id, vote } => {
                        if let Some(node) = self.nodes.get_mut(d.to).filter(|n| !n.frozen)
                            && let Some(b) = node.brain.as_mut()
                        {
                            b.handle_witness_vote(now, id, vote);
                        }
                    }
                    What::OpDone {
                        id,
                        group,
                        resource,
                        op,
                    } => {
                        let faults = self.faults.get(d.to).copied().unwrap_or_default();
                        let fail_start = self.rng.random_bool(faults.start_failure.clamp(0.0, 1.0));
                        let fail_stop = self.rng.random_bool(faults.stop_failure.clamp(0.0, 1.0));
                        let Some(node) = self.nodes.get_mut(d.to) else {
                            continue;
                        };
                        if node.brain.is_none() {
                            continue; // the daemon died meanwhile: nobody waits
                        }
                        let Some(run) = node
                            .running
                            .get_mut(group)
                            .and_then(|v| v.get_mut(resource))
                        else {
                            continue;
                        };
                        let result = match op {
                            OpKind::Start if fail_start => {
                                OpResult::Failed("simulated start failure".into())
                            }
                            OpKind::Start => {
                                *run = true;
                                check = true;
                                OpResult::Ok
                            }
                            OpKind::Stop if fail_stop => OpResult::TimedOut,
                            OpKind::Stop => {
                                *run = false;
                                OpResult::Ok
                            }
                            OpKind::Monitor if *run => OpResult::Ok,
                            OpKind::Monitor => OpResult::NotRunning,
                        };
                        if node.frozen {
                            node.results.push((id, result));
                            continue;
                        }
                        if let Some(b) = node.brain.as_mut() {
                            b.handle_op_result(now, id, result);
                        }
                    }
                }
                if check {
                    self.check_exclusive();
                }
                self.drain(d.to);
            } else if let Some((_, i)) = next_timer {
                let now = self.now;
                if let Some(b) = self.nodes[i].brain.as_mut() {
                    b.handle_timeout(now);
                }
                self.drain(i);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs the simulation for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs in 1 ms steps until `pred` holds or `limit` passes; returns how
    /// long it took.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now.since(start) <= limit {
            if pred(self) {
                return Some(self.now.since(start));
            }
            self.run_for(Duration::from_millis(1));
        }
        None
    }

    /// Events reported by node `i` from time `since` on.
    pub fn events_of(&self, i: usize, since: Timestamp) -> impl Iterator<Item = &Record> {
        self.log
            .iter()
            .filter(move |r| r.node == i && r.at >= since)
    }
}

/// The two-node group the witness and arbitrator campaigns use: `app`,
/// with resources `vip` and `app` (5 s start/stop, monitored every second),
/// preferring n1, no auto-failback, moved after three failures.
pub fn two_node_app_group() -> GroupSpec {
    let r = |n: &str| tandem_core::ResourceSpec {
        name: n.into(),
        start_timeout: Duration::from_secs(5),
        stop_timeout: Duration::from_secs(5),
        monitor_interval: Some(Duration::from_secs(1)),
        monitor_timeout: Duration::from_secs(1),
    };
    GroupSpec {
        name: "app".into(),
        resources: vec![r("vip"), r("app")],
        rules: tandem_core::PlacementRules {
            scores: vec![(NodeId(1), 100)],
            stickiness: 0,
            auto_failback: false,
        },
        migration_threshold: 3,
        failure_timeout: None,
    }
}

/// Whether group 0's resources 0 and 1 both run on one node only: which.
pub fn sole_holder(s: &Sim) -> Option<usize> {
    let on = s.running_on(0, 1);
    (on.len() == 1 && s.running_on(0, 0) == on).then(|| on[0])
}

/// Seeds to run: `TANDEM_SIM_SEED=N` runs just N (to reproduce a failure),
/// otherwise `TANDEM_SIM_SEEDS=K` (default `default`) seeds from 1.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("TANDEM_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let k = std::env::var("TANDEM_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=k).collect()
}
