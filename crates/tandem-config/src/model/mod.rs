//! The validated configuration, and the checks that produce it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tandem_core::Timing;

mod alerts;
mod build;
mod check;
mod fencing;
mod http;
mod links;
mod nodes;
mod quorum;
mod resync;
mod volumes;

pub use alerts::{ALERT_KINDS, DEFAULT_ALERT_KINDS};
pub(crate) use build::build;
pub(crate) use check::{Checker, valid_name};
pub use check::{MIN_DEADTIME_RULE, min_deadtime};
pub use volumes::{
    DEFAULT_VOLUME_PORT, MetaPlace, NbdListen, ReplicationProtocol, Volume, VolumeNode,
};

/// UDP port used when a link names none: Heartbeat's IANA-registered 694.
pub const DEFAULT_PORT: u16 = 694;
/// Most nodes a cluster may have (as corosync): every heartbeat carries the
/// whole membership view, 19 bytes per node, within one 1400-byte datagram.
pub const MAX_NODES: usize = 32;
/// Most links a cluster may have.
pub const MAX_LINKS: usize = 8;

/// How a link carries heartbeats.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LinkKind {
    /// UDP unicast to each peer's address on the link.
    Ucast,
    /// UDP broadcast on the link's interface.
    Bcast,
    /// UDP multicast to `group` on the link's interface.
    Mcast {
        /// Multicast group.
        group: IpAddr,
        /// Time to live (hops); 1 keeps heartbeats on the local segment.
        ttl: u32,
    },
}

/// A heartbeat link (one network path between the nodes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    /// Name, used to key node addresses.
    pub name: String,
    /// Unicast, broadcast or multicast.
    pub kind: LinkKind,
    /// Interface to bind to, if named.
    pub interface: Option<String>,
    /// UDP port.
    pub port: u16,
    /// Unicast only: addresses to send to, Heartbeat style (`ucast IFACE
    /// PEER-IP` lines); a node skips those that are its own. When set,
    /// nodes need no address on the link.
    pub peers: Vec<IpAddr>,
}

impl Link {
    /// The label used in logs: the interface, or the link's name.
    pub fn label(&self) -> &str {
        self.interface.as_deref().unwrap_or(&self.name)
    }
}

/// A cluster node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// Name (by default it must equal the host name of the machine).
    pub name: String,
    /// Its address on each link, in link order (`None` where not given).
    pub addresses: Vec<Option<IpAddr>>,
    /// Its quorum votes (default 1).
    pub votes: u32,
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Cluster name.
    pub cluster: String,
    /// Key file path (absolute, or relative to the working directory).
    pub key_file: PathBuf,
    /// Control socket path.
    pub socket: PathBuf,
    /// Directory for state that must survive restarts (the incarnation).
    pub state_dir: PathBuf,
    /// Run the heartbeat thread with real-time priority and locked memory.
    pub realtime: bool,
    /// Failure-detection timings.
    pub timing: Timing,
    /// Heartbeat links.
    pub links: Vec<Link>,
    /// Nodes, in wire-id order (id = position + 1).
    pub nodes: Vec<Node>,
    /// Resource groups.
    pub groups: Vec<crate::groups::Group>,
    /// Quorum rules.
    pub quorum: tandem_core::Quorum,
    /// Witnesses for two-node clusters (probed at failover only).
    pub witness: Option<Witness>,
    /// Fence agent, if any.
    pub fencing: Option<Fencing>,
    /// The watchdog device to arm, if any.
    pub watchdog: Option<Watchdog>,
    /// Who besides root may use the control socket.
    pub control: Control,
    /// Replicated volumes.
    pub volumes: Vec<Volume>,
    /// The HTTP API, console, metrics and health endpoints (`[http]`),
    /// if enabled.
    pub http: Option<Http>,
    /// Alert programs (`[[alert]]`).
    pub alerts: Vec<Alert>,
}

/// What an `[[alert]]` does with each event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertAction {
    /// Run this program (e.g. Pacemaker's `alert_file.sh.sample`).
    Program(PathBuf),
    /// Mail the takeovers and releases (Heartbeat's `MailTo`) through
    /// `sendmail -t`.
    Mail {
        /// Recipient address(es).
        to: String,
        /// Subject prefix.
        subject: Option<String>,
        /// The MTA's sendmail (default `/usr/sbin/sendmail`).
        sendmail: PathBuf,
    },
}

/// `[[alert]]`: a program run for every transition of the chosen kinds, in
/// order, at least once, with a sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// What is done with each event.
    pub action: AlertAction,
    /// Only events about these groups (empty: every event).
    pub groups: Vec<String>,
    /// `CRM_alert_recipient` (a file, an address…), if any.
    pub recipient: Option<String>,
    /// Event kinds delivered (`node`, `resource`, `fencing`, `group`, …).
    pub kinds: Vec<String>,
    /// Longest one run may take.
    pub timeout: Duration,
    /// Retries after a failed run (exit code not 0, timeout).
    pub retries: u32,
}

/// `[http]`: where the API listens and who may change things through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http {
    /// Address and port to listen on (default `127.0.0.1:7080`).
    pub listen: std::net::SocketAddr,
    /// Per-node addresses (`on = { n1 = "10.0.0.1:7080" }`), overriding
    /// `listen` on that node.
    pub listen_on: std::collections::BTreeMap<String, std::net::SocketAddr>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<Tls>,
    /// File of `NAME TOKEN` lines: bearers of a token may change things
    /// (over TLS or from loopback). Without it the API is read-only.
    pub tokens_file: Option<PathBuf>,
}

impl Http {
    /// Where the API listens on `node`.
    pub fn listen_for(&self, node: &str) -> std::net::SocketAddr {
        self.listen_on.get(node).copied().unwrap_or(self.listen)
    }
}

/// A certificate and its private key, PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// `[control]`: groups let into the control socket besides root (names;
/// the daemon looks them up in `/etc/group` at start).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Members may change things (move, standby, cleanup, force-primary).
    pub admin_group: Option<String>,
    /// Members may read the status.
    pub read_group: Option<String>,
}

/// A watchdog device (`/dev/watchdog`): armed at start-up, petted by the
/// heartbeat thread, disarmed on a clean stop; a hung node is reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watchdog {
    /// The device (default `/dev/watchdog`).
    pub device: PathBuf,
    /// Reset after this long without a pet (whole seconds; default 10 s).
    pub timeout: Duration,
}

/// A fence agent: run before anything starts in place of a dead node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fencing {
    /// The program (a `fence_*` agent or a script with the same stdin convention).
    pub agent: PathBuf,
    /// Extra `key=value` lines for its stdin.
    pub params: std::collections::BTreeMap<String, String>,
    /// `off` (default) or `reboot`.
    pub action: String,
    /// How long one run may take.
    pub timeout: Duration,
}

/// How witnesses are probed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum WitnessKind {
    /// ICMP echo (`ping`).
    Icmp,
    /// A TCP connection to this port.
    Tcp(u16),
    /// A `tandem witness` arbitrator: it gives its vote to one node of the
    /// cluster at a time.
    Arbiter {
        /// Its UDP port (default 7695).
        port: u16,
        /// The key shared with the arbitrator (default: the cluster's key).
        key_file: PathBuf,
    },
}

/// Witnesses: hosts that are always on (a router, say). At failover only, a
/// node that reaches one of them may act alone; one that cannot waits.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Witness {
    /// The hosts; reaching any one is enough.
    pub addresses: Vec<IpAddr>,
    /// ICMP or TCP.
    pub kind: WitnessKind,
    /// How long one probe may take.
    pub timeout: Duration,
}

impl Config {
    /// Digest of what must be identical on every node: the cluster name,
    /// timings, links, nodes, groups, quorum and witness (not the local
    /// paths, realtime, watchdog, fencing agent or control groups).
    /// Carried in heartbeats to spot diverging files.
    ///
    /// Volumes count too (when there are any).
    ///
    /// The canonical encoding is compact JSON (serde_json) of those fields
    /// in this order, each struct's fields in declaration order, maps
    /// sorted by key, times as `{"secs":S,"nanos":N}`; the digest is the
    /// first 8 bytes of its SHA-256, big-endian. It does not depend on
    /// `Debug` output; `digest_is_pinned` in the tests fixes its value, so
    /// a change that would make nodes of two versions disagree during a
    /// rolling upgrade fails there first.
    pub fn digest(&self) -> u64 {
        #[derive(serde::Serialize)]
        struct Shared<'a> {
            cluster: &'a str,
            timing: &'a Timing,
            links: &'a [Link],
            nodes: &'a [Node],
            groups: &'a [crate::groups::Group],
            quorum: &'a tandem_core::Quorum,
            witness: &'a Option<Witness>,
            #[serde(skip_serializing_if = "<[Volume]>::is_empty")]
            volumes: &'a [Volume],
        }
        let shared = Shared {
            cluster: &self.cluster,
            timing: &self.timing,
            links: &self.links,
            nodes: &self.nodes,
            groups: &self.groups,
            quorum: &self.quorum,
            witness: &self.witness,
            volumes: &self.volumes,
        };
        // Serializing plain structs, strings, numbers and sorted maps to a
        // Vec cannot fail; an empty encoding would still give a digest.
        let canonical = serde_json::to_vec(&shared).unwrap_or_default();
        let d = Sha256::digest(&canonical);
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_be_bytes(b)
    }

    /// The label of link `i` in logs and status: its interface (as
    /// Heartbeat users know "Link n1:eth0 up"), qualified by the link's
    /// name when two links share that interface.
    pub fn link_label(&self, i: usize) -> String {
        let Some(link) = self.links.get(i) else {
            return format!("link{i}");
        };
        let shared = link.interface.is_some()
            && self
                .links
                .iter()
                .filter(|l| l.interface == link.interface)
                .count()
                > 1;
        if shared {
            format!("{}/{}", link.label(), link.name)
        } else {
            link.label().to_string()
        }
    }

    /// The node named `name`, with its wire id.
    pub fn node(&self, name: &str) -> Option<(u16, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .find(|(_, n)| n.name == name)
            .and_then(|(i, n)| Some((u16::try_from(i + 1).ok()?, n)))
    }
}

#[cfg(test)]
mod tests;
