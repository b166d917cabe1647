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

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tandem_core::{
    Brain, BrainConfig, Event, GroupSpec, LinkId, NodeId, OpResult, Quorum, Timestamp, Timing,
};
use tandem_wire::{Key, Keyring};

mod driver;
mod external;
mod faults;
mod fencing;
mod fixtures;
mod resources;
pub mod volume;
pub use external::ExternalOp;
pub use fencing::{FENCE_LATENCY, FENCE_TIMEOUT, FenceAgent, FenceRecord};
pub use fixtures::{resource, s3_db_group, seeds, sole_holder, two_node_app_group};

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
    /// `unplugged[node][link]`: that node's cable on that link is out.
    unplugged: Vec<Vec<bool>>,
    /// Node and link names.
    names: Names,
    /// Whether the brains have a witness configured.
    witness_configured: bool,
    /// (group, resource) whose operations the caller carries out (see
    /// [`Sim::set_external`]).
    external: Option<(usize, usize)>,
    /// Its operations waiting for the caller.
    pending_external: Vec<ExternalOp>,
}

/// Builds the brain configuration of node `idx` (0-based) of an `n`-node,
/// `links`-link cluster.
pub fn brain_config(
    idx: usize,
    names: &Names,
    timing: Timing,
    incarnation: u64,
    groups: &[GroupSpec],
    quorum: &Quorum,
) -> BrainConfig {
    let mut cfg = BrainConfig::new(
        "sim",
        NodeId(u16::try_from(idx + 1).unwrap_or(u16::MAX)),
        names.nodes.iter().cloned(),
        names.links.iter().cloned(),
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

/// The names of the simulated nodes and links (default `n1`…, `eth0`…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Node names, in id order.
    pub nodes: Vec<String>,
    /// Link names.
    pub links: Vec<String>,
}

impl Names {
    /// `n1`…`nN` and `eth0`…
    pub fn numbered(n: usize, links: usize) -> Self {
        Self {
            nodes: (0..n).map(|i| format!("n{}", i + 1)).collect(),
            links: (0..links).map(|l| format!("eth{l}")).collect(),
        }
    }
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
        Self::with_names(seed, Names::numbered(n, links), timing, groups, quorum)
    }

    /// Like [`Sim::with_quorum`], with the nodes' and links' names (e.g.
    /// those of a real configuration, for `tandem simulate`).
    pub fn with_names(
        seed: u64,
        names: Names,
        timing: Timing,
        groups: &[GroupSpec],
        quorum: Quorum,
    ) -> Self {
        let (n, links) = (names.nodes.len(), names.links.len());
        let nodes = (0..n)
            .map(|i| {
                let incarnation = 1000 * (i as u64 + 1);
                SimNode {
                    brain: Some(Brain::new(
                        brain_config(i, &names, timing, incarnation, groups, &quorum),
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
            unplugged: vec![vec![false; links]; n],
            names,
            witness_configured: true,
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
            external: None,
            pending_external: Vec::new(),
        }
    }

    /// The brain configuration of node `i` as the simulation runs it now
    /// (arbitrator and fencing switched on as asked).
    fn node_config(&self, i: usize) -> BrainConfig {
        let mut cfg = brain_config(
            i,
            &self.names,
            self.timing,
            self.nodes[i].incarnation,
            &self.groups,
            &self.quorum,
        );
        cfg.witness_arbiter = self.arbiter.is_some();
        cfg.fencing = self.fencing;
        cfg.witness = self.witness_configured;
        cfg
    }

    /// Whether the brains are configured with a witness at all (default
    /// yes; call before running): without one, a two-node cluster's nodes
    /// act alone after deadtime, as Heartbeat's do.
    pub fn configure_witness(&mut self, on: bool) {
        self.witness_configured = on;
        for i in 0..self.nodes.len() {
            let cfg = self.node_config(i);
            self.nodes[i].brain = Some(Brain::new(cfg, self.now));
        }
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

    /// Whether node `i` is running (not crashed, not frozen).
    pub fn running(&self, i: usize) -> bool {
        self.nodes
            .get(i)
            .is_some_and(|n| n.brain.is_some() && !n.frozen)
    }

    /// Events reported by node `i` from time `since` on.
    pub fn events_of(&self, i: usize, since: Timestamp) -> impl Iterator<Item = &Record> {
        self.log
            .iter()
            .filter(move |r| r.node == i && r.at >= since)
    }
}
