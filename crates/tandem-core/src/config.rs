//! What a brain is built from: timings, nodes, links, groups, quorum rules,
//! witness and fencing switches.

use crate::GroupSpec;
use crate::NodeId;
use std::time::Duration;
use tandem_wire::Keyring;

/// Failure-detection timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
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
    /// The `fast` preset: keepalive 10 ms, warntime 23 ms, deadtime 25 ms,
    /// initdead 2 s (100 heartbeats a second per link, as keepalived's
    /// `advert_int 0.01`, which declares a master dead after about 36 ms;
    /// deadtime is the floor for that keepalive, so a peer is declared
    /// dead after two lost heartbeats).
    pub fn fast() -> Self {
        Self {
            keepalive: Duration::from_millis(10),
            warntime: Duration::from_millis(23),
            deadtime: Duration::from_millis(25),
            initdead: Duration::from_secs(2),
        }
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
    /// through [`crate::Brain::handle_witness_vote`], a holder renews its vote
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

impl BrainConfig {
    /// The configuration of node `local` (1-based position in `nodes`) of
    /// cluster `cluster`, its nodes numbered 1, 2, … in the order given
    /// and its links labelled in order. Groups, quorum, witness, fencing
    /// and known incarnations start empty or off; the digest is 0. Every
    /// driver (daemon, simulator, tests, fuzz targets) builds its brain
    /// configuration through here, so node ids and the wire cluster id are
    /// computed in one place.
    pub fn new(
        cluster: &str,
        local: NodeId,
        nodes: impl IntoIterator<Item = String>,
        links: impl IntoIterator<Item = String>,
        timing: Timing,
        keys: Keyring,
        incarnation: u64,
    ) -> Self {
        Self {
            cluster: cluster.to_string(),
            cluster_id: tandem_wire::cluster_id(cluster),
            local,
            nodes: nodes
                .into_iter()
                .enumerate()
                .map(|(i, name)| NodeInfo {
                    id: NodeId(u16::try_from(i + 1).unwrap_or(u16::MAX)),
                    name,
                })
                .collect(),
            links: links.into_iter().map(|label| LinkInfo { label }).collect(),
            timing,
            keys,
            incarnation,
            config_digest: 0,
            groups: Vec::new(),
            quorum: Quorum::default(),
            witness: false,
            witness_arbiter: false,
            fencing: false,
            known_incarnations: Vec::new(),
        }
    }
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
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize)]
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
