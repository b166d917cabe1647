//! The validated configuration, and the checks that produce it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tandem_core::Timing;
use toml::Spanned;

use crate::diagnostic::{Diagnostic, Severity};
use crate::duration::parse_duration;
use crate::raw::{RawConfig, RawTime};
use crate::{ConfigError, Loaded};

/// UDP port used when a link names none: Heartbeat's IANA-registered 694.
pub const DEFAULT_PORT: u16 = 694;
/// Most nodes a cluster may have (as corosync): every heartbeat carries the
/// whole membership view, 19 bytes per node, within one 1400-byte datagram.
pub const MAX_NODES: usize = 32;
/// Most links a cluster may have.
pub const MAX_LINKS: usize = 8;

/// How a link carries heartbeats.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    /// The hosts; reaching any one is enough.
    pub addresses: Vec<IpAddr>,
    /// ICMP or TCP.
    pub kind: WitnessKind,
    /// How long one probe may take.
    pub timeout: Duration,
}

impl Config {
    /// Digest of what must be identical on every node (cluster, timings,
    /// links, nodes); carried in heartbeats to spot diverging files.
    pub fn digest(&self) -> u64 {
        let canonical = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.cluster, self.timing, self.links, self.nodes, self.groups, self.quorum
        ) + &format!("|{:?}", self.witness);
        let d = Sha256::digest(canonical.as_bytes());
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

pub(crate) struct Checker<'a> {
    text: &'a str,
    file: &'a Path,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(crate) fn error(
        &mut self,
        at: usize,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let d = Diagnostic::at(Severity::Error, self.file, self.text, at, msg, hint.into());
        self.out.push(d);
    }
    pub(crate) fn warn(
        &mut self,
        at: usize,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let d = Diagnostic::at(
            Severity::Warning,
            self.file,
            self.text,
            at,
            msg,
            hint.into(),
        );
        self.out.push(d);
    }
    pub(crate) fn time(
        &mut self,
        v: &Option<Spanned<RawTime>>,
        name: &str,
    ) -> Option<(Duration, usize)> {
        let v = v.as_ref()?;
        let at = v.span().start;
        let parsed = match v.get_ref() {
            // Every time is capped at a day: larger values overflow the
            // arithmetic on deadlines (and are mistakes anyway).
            RawTime::Int(i) if *i > 86_400 => Err(format!("`{i}` is too long (at most a day)")),
            RawTime::Float(f) if *f > 86_400.0 => Err(format!("`{f}` is too long (at most a day)")),
            RawTime::Int(i) if *i > 0 => Ok(Duration::from_secs(i.unsigned_abs())),
            RawTime::Float(f) if *f > 0.0 => Ok(Duration::from_secs_f64(*f)),
            RawTime::Int(_) | RawTime::Float(_) => Err("must be positive".to_string()),
            RawTime::Text(s) => parse_duration(s),
        };
        match parsed {
            Ok(d) if d.is_zero() => {
                self.error(at, format!("{name} must be longer than zero"), None);
                None
            }
            Ok(d) => Some((d, at)),
            Err(e) => {
                self.error(
                    at,
                    format!("invalid {name}: {e}"),
                    Some("write a time such as \"2s\", \"500ms\" or 2 (seconds)".into()),
                );
                None
            }
        }
    }
}

/// The shortest deadtime accepted with `keepalive`: 3 × keepalive + 20 ms.
///
/// The lease under which a node serves ends `deadtime − 2 %` after the
/// last heartbeat a peer acknowledged, which is up to two keepalives old
/// (three with one lost), and the kernel's copy of it is counted in timer
/// ticks (4 ms with HZ=250, 10 ms with HZ=100) and may end a tick early.
/// This floor keeps the kernel's copy alive through a lost heartbeat and
/// two ticks (`docs/safety.md`, "Lease sizing").
pub fn min_deadtime(keepalive: Duration) -> Duration {
    keepalive * 3 + Duration::from_millis(20)
}

pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn ms(d: Duration) -> String {
    tandem_core::time::human(d)
}

fn build_quorum(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<crate::raw::RawQuorum>>,
    nodes: &[Node],
) -> tandem_core::Quorum {
    use tandem_core::NoQuorumPolicy;
    let q = raw.map(Spanned::get_ref);
    // Three or more nodes: majority by default. Two nodes cannot form a
    // majority after one fails, so they run without (as Heartbeat did).
    let enabled = match q.and_then(|q| q.policy.as_ref()) {
        None => nodes.len() >= 3,
        Some(p) => match p.get_ref().as_str() {
            "majority" => true,
            "none" => false,
            other => {
                c.error(
                    p.span().start,
                    format!("unknown quorum policy `{other}`"),
                    Some("use \"majority\" or \"none\"".to_string()),
                );
                false
            }
        },
    };
    if enabled
        && nodes.len() == 2
        && let Some(p) = q.and_then(|q| q.policy.as_ref())
    {
        c.warn(
                p.span().start,
                "majority quorum with two nodes: when one fails, the other has no quorum and stops everything",
                Some("use policy = \"none\" (and a witness, when available) for two-node clusters".to_string()),
            );
    }
    let no_quorum = match q.and_then(|q| q.no_quorum.as_ref()) {
        None => NoQuorumPolicy::Stop,
        Some(p) => match p.get_ref().as_str() {
            "stop" => NoQuorumPolicy::Stop,
            "freeze" => NoQuorumPolicy::Freeze,
            "ignore" => {
                c.warn(
                    p.span().start,
                    "no_quorum = \"ignore\" lets a minority run groups: two nodes may run the same group",
                    None,
                );
                NoQuorumPolicy::Ignore
            }
            other => {
                c.error(
                    p.span().start,
                    format!("unknown no_quorum policy `{other}`"),
                    Some("use \"stop\", \"freeze\" or \"ignore\" (unsafe)".to_string()),
                );
                NoQuorumPolicy::Stop
            }
        },
    };
    tandem_core::Quorum {
        enabled,
        votes: nodes.iter().map(|n| n.votes).collect(),
        no_quorum,
        wait_for_all: q.and_then(|q| q.wait_for_all).unwrap_or(true),
    }
}

pub(crate) fn build(text: &str, file: &Path) -> Result<Loaded, ConfigError> {
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let msg = e.message().trim().to_string();
            let hint = if msg.contains("unknown field") {
                Some("check the spelling; `tandem config check --help` lists every key".into())
            } else {
                None
            };
            return Err(ConfigError::Invalid(vec![Diagnostic::at(
                Severity::Error,
                file,
                text,
                at,
                msg,
                hint,
            )]));
        }
    };
    let mut c = Checker {
        text,
        file,
        out: Vec::new(),
    };

    let cluster = match &raw.cluster {
        Some(s) if valid_name(s.get_ref()) => s.get_ref().clone(),
        Some(s) => {
            c.error(
                s.span().start,
                format!("invalid cluster name `{}`", s.get_ref()),
                Some("use 1-64 letters, digits, '-', '_' or '.'".to_string()),
            );
            String::new()
        }
        None => {
            c.error(
                0,
                "missing `cluster` (the cluster's name)",
                Some("add a line such as: cluster = \"web\"".to_string()),
            );
            String::new()
        }
    };

    let base = file.parent().unwrap_or(Path::new(""));
    let key_file = match &raw.key_file {
        Some(k) if !k.get_ref().is_empty() => base.join(k.get_ref()),
        Some(k) => {
            c.error(k.span().start, "key_file is empty", None);
            PathBuf::new()
        }
        None => {
            c.error(
                0,
                "missing `key_file` (the shared secret that signs heartbeats)",
                Some(
                    "add: key_file = \"/etc/tandem/authkey\" and create it with `tandem keygen /etc/tandem/authkey`"
                        .to_string(),
                ),
            );
            PathBuf::new()
        }
    };
    let socket = raw.socket.as_ref().map_or_else(
        || PathBuf::from("/run/tandem/tandem.sock"),
        |s| base.join(s.get_ref()),
    );
    let state_dir = raw.state_dir.as_ref().map_or_else(
        || PathBuf::from("/var/lib/tandem"),
        |s| base.join(s.get_ref()),
    );

    // Timings: a preset, then defaults derived from whatever the operator
    // did set.
    let t = &raw.timing;
    let preset = t.preset.as_ref().and_then(|p| match p.get_ref().as_str() {
        "default" => Some(Timing::default()),
        "fast" => Some(Timing::fast()),
        other => {
            c.error(
                p.span().start,
                format!("unknown timing preset `{other}`"),
                Some(
                    "use preset = \"default\" (keepalive 100 ms, deadtime 500 ms) or \"fast\" (keepalive 10 ms, deadtime 50 ms)"
                        .into(),
                ),
            );
            None
        }
    });
    let keepalive = c.time(&t.keepalive, "keepalive");
    let deadtime = c.time(&t.deadtime, "deadtime");
    let warntime = c.time(&t.warntime, "warntime");
    let initdead = c.time(&t.initdead, "initdead");
    let ka = keepalive.map_or(
        preset.map_or(Duration::from_millis(100), |p| p.keepalive),
        |v| v.0,
    );
    let dt = deadtime.map_or(
        preset
            .filter(|_| keepalive.is_none())
            .map_or(ka * 5, |p| p.deadtime),
        |v| v.0,
    );
    let wt = warntime.map_or(
        preset
            .filter(|_| keepalive.is_none() && deadtime.is_none())
            .map_or(dt * 3 / 5, |p| p.warntime),
        |v| v.0,
    );
    let id = initdead.map_or(
        preset
            .filter(|_| deadtime.is_none())
            .map_or((dt * 2).max(Duration::from_secs(3)), |p| p.initdead),
        |v| v.0,
    );
    let dt_at = deadtime.or(keepalive).map_or(0, |v| v.1);
    if dt < min_deadtime(ka) {
        c.error(
            dt_at,
            format!(
                "deadtime ({}) must be at least 3 x keepalive + 20 ms ({}) with keepalive {}",
                ms(dt),
                ms(min_deadtime(ka)),
                ms(ka)
            ),
            Some(format!(
                "set deadtime to at least {}: the lease under which a node serves must outlast a lost heartbeat, a refresh period and two ticks of the kernel's timer (docs/safety.md, \"Lease sizing\")",
                ms(min_deadtime(ka))
            )),
        );
    }
    if wt <= ka || wt >= dt {
        c.error(
            warntime.or(deadtime).map_or(0, |v| v.1),
            format!(
                "warntime ({}) must lie between keepalive ({}) and deadtime ({})",
                ms(wt),
                ms(ka),
                ms(dt)
            ),
            Some("remove warntime to get 3/5 of deadtime".to_string()),
        );
    }
    if id < dt {
        c.error(
            initdead.map_or(0, |v| v.1),
            format!(
                "initdead ({}) must be at least deadtime ({})",
                ms(id),
                ms(dt)
            ),
            Some(
                "initdead covers nodes booting at different speeds; make it 2 x deadtime or more"
                    .to_string(),
            ),
        );
    }
    let timing = Timing {
        keepalive: ka,
        warntime: wt,
        deadtime: dt,
        initdead: id,
    };

    // Links.
    let mut links = Vec::new();
    if raw.links.is_empty() {
        c.error(
            text.len(),
            "no heartbeat link is configured",
            Some("add a [[link]] table, e.g. name = \"lan\", kind = \"ucast\"".to_string()),
        );
    }
    if raw.links.len() > MAX_LINKS {
        c.error(
            raw.links[MAX_LINKS].span().start,
            format!("at most {MAX_LINKS} links are supported"),
            None,
        );
    }
    for l in &raw.links {
        let l = l.get_ref();
        let name = l.name.get_ref().clone();
        if !valid_name(&name) {
            c.error(
                l.name.span().start,
                format!("invalid link name `{name}`"),
                Some("use letters, digits, '-', '_' or '.'".to_string()),
            );
        }
        if links.iter().any(|x: &Link| x.name == name) {
            c.error(
                l.name.span().start,
                format!("link `{name}` is defined twice"),
                None,
            );
        }
        let interface = l.interface.as_ref().map(|i| i.get_ref().clone());
        if let Some(i) = &l.interface
            && (i.get_ref().is_empty() || i.get_ref().len() > 15)
        {
            c.error(
                i.span().start,
                format!("invalid interface name `{}`", i.get_ref()),
                Some("Linux interface names have 1 to 15 characters".to_string()),
            );
        }
        let port = match &l.port {
            None => DEFAULT_PORT,
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(v) if v > 0 => v,
                _ => {
                    c.error(
                        p.span().start,
                        format!("port {} is out of range", p.get_ref()),
                        Some("use 1-65535; the default is 694".to_string()),
                    );
                    DEFAULT_PORT
                }
            },
        };
        let kind = match l.kind.get_ref().as_str() {
            "ucast" => LinkKind::Ucast,
            "bcast" => LinkKind::Bcast,
            "mcast" => {
                let group = match &l.group {
                    None => {
                        c.error(
                            l.kind.span().start,
                            format!("multicast link `{name}` needs a `group`"),
                            Some(
                                "add e.g. group = \"239.192.0.1\" (an organisation-local group)"
                                    .to_string(),
                            ),
                        );
                        None
                    }
                    Some(g) => {
                        match g.get_ref().parse::<IpAddr>() {
                            Ok(a) if a.is_multicast() => Some(a),
                            _ => {
                                c.error(g.span().start, format!("`{}` is not a multicast address", g.get_ref()), Some("use an address in 239.192.0.0/14 (IPv4) or ff12::/16 (IPv6)".to_string()));
                                None
                            }
                        }
                    }
                };
                let ttl = match &l.ttl {
                    None => 1,
                    Some(t) => match u32::try_from(*t.get_ref()) {
                        Ok(v) if (1..=255).contains(&v) => v,
                        _ => {
                            c.error(
                                t.span().start,
                                "ttl must be 1-255",
                                Some("1 keeps heartbeats on the local segment".to_string()),
                            );
                            1
                        }
                    },
                };
                LinkKind::Mcast {
                    group: group.unwrap_or(IpAddr::from([239, 192, 0, 1])),
                    ttl,
                }
            }
            other => {
                c.error(
                    l.kind.span().start,
                    format!("unknown link kind `{other}`"),
                    Some("use \"ucast\", \"bcast\" or \"mcast\"".to_string()),
                );
                LinkKind::Ucast
            }
        };
        if matches!(kind, LinkKind::Bcast | LinkKind::Mcast { .. }) && interface.is_none() {
            c.error(
                l.kind.span().start,
                format!("{} link `{name}` needs an `interface`", l.kind.get_ref()),
                Some("add e.g. interface = \"eth0\"".to_string()),
            );
        }
        if !matches!(kind, LinkKind::Mcast { .. })
            && let Some(g) = &l.group
        {
            c.warn(
                g.span().start,
                "`group` is only used by mcast links; ignored",
                None,
            );
        }
        let mut peers = Vec::new();
        for p in &l.peers {
            match p.get_ref().parse::<IpAddr>() {
                Ok(a) => peers.push(a),
                Err(_) => c.error(
                    p.span().start,
                    format!("`{}` is not an IP address", p.get_ref()),
                    None,
                ),
            }
        }
        if !peers.is_empty() && kind != LinkKind::Ucast {
            c.error(l.kind.span().start, "`peers` is only for ucast links", None);
        }
        links.push(Link {
            name,
            kind,
            interface,
            port,
            peers,
        });
    }

    // Nodes.
    let mut nodes: Vec<Node> = Vec::new();
    if raw.nodes.is_empty() {
        c.error(
            text.len(),
            "no node is configured",
            Some("add a [[node]] table per machine: name = \"n1\" and its addresses".to_string()),
        );
    } else if raw.nodes.len() == 1 {
        c.warn(
            raw.nodes[0].span().start,
            "only one node is configured: nothing can fail over",
            None,
        );
    }
    if raw.nodes.len() > MAX_NODES {
        c.error(
            raw.nodes[MAX_NODES].span().start,
            format!("at most {MAX_NODES} nodes are supported"),
            None,
        );
    }
    for n in &raw.nodes {
        let node_at = n.span().start;
        let n = n.get_ref();
        let name = n.name.get_ref().clone();
        if !valid_name(&name) {
            c.error(
                n.name.span().start,
                format!("invalid node name `{name}`"),
                Some(
                    "use the machine's host name (`uname -n`): letters, digits, '-', '_' or '.'"
                        .to_string(),
                ),
            );
        }
        if nodes.iter().any(|x| x.name == name) {
            c.error(
                n.name.span().start,
                format!("node `{name}` is defined twice"),
                None,
            );
        }
        for (link, addr) in &n.addresses {
            if !links.iter().any(|l| &l.name == link) {
                let known: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
                c.error(
                    addr.span().start,
                    format!("node `{name}` has an address on unknown link `{link}`"),
                    Some(format!("known links: {}", known.join(", "))),
                );
            }
        }
        let mut addresses = Vec::with_capacity(links.len());
        for l in &links {
            let addr = match n.addresses.get(&l.name) {
                None => {
                    if l.kind == LinkKind::Ucast && l.peers.is_empty() {
                        c.error(node_at, format!("node `{name}` has no address on unicast link `{}`", l.name), Some(format!("add `addresses = {{ {} = \"198.18.0.11\" }}` with the node's real address", l.name)));
                    }
                    None
                }
                Some(a) => match a.get_ref().parse::<IpAddr>() {
                    Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() => Some(ip),
                    _ => {
                        c.error(
                            a.span().start,
                            format!("`{}` is not a usable IP address", a.get_ref()),
                            Some(
                                "write the node's own unicast address, e.g. \"198.18.0.11\""
                                    .to_string(),
                            ),
                        );
                        None
                    }
                },
            };
            if let Some(ip) = addr {
                for (other, prev) in nodes.iter().filter_map(|o| {
                    let i = links.iter().position(|x| x.name == l.name)?;
                    Some((o, o.addresses.get(i).copied().flatten()?))
                }) {
                    if prev == ip {
                        let at = n.addresses.get(&l.name).map_or(node_at, |a| a.span().start);
                        c.error(
                            at,
                            format!(
                                "address {ip} on link `{}` is also node `{}`'s",
                                l.name, other.name
                            ),
                            None,
                        );
                    }
                }
            }
            addresses.push(addr);
        }
        let votes = match &n.votes {
            None => 1,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(x) if x <= 100 => x,
                _ => {
                    c.error(v.span().start, "votes must be 0-100", None);
                    1
                }
            },
        };
        nodes.push(Node {
            name,
            addresses,
            votes,
        });
    }

    let groups = crate::groups::build_groups(&mut c, &raw.groups, &nodes);
    let quorum = build_quorum(&mut c, raw.quorum.as_ref(), &nodes);
    let fencing = raw.fencing.as_ref().map(|f| {
        let f = f.get_ref();
        let action = f.action.clone().unwrap_or_else(|| "off".into());
        if action != "off" && action != "reboot" {
            c.error(
                f.agent.span().start,
                format!("fencing action `{action}`?"),
                Some("use \"off\" or \"reboot\"".to_string()),
            );
        }
        Fencing {
            agent: base.join(f.agent.get_ref()),
            params: f.params.clone(),
            action,
            timeout: c
                .time(&f.timeout, "timeout")
                .map_or(Duration::from_secs(30), |v| v.0),
        }
    });
    let witness = raw.witness.as_ref().map(|w| {
        let w = w.get_ref();
        let mut addresses = Vec::new();
        for a in &w.addresses {
            match a.get_ref().parse::<IpAddr>() {
                Ok(ip) => addresses.push(ip),
                Err(_) => c.error(
                    a.span().start,
                    format!("`{}` is not an IP address", a.get_ref()),
                    None,
                ),
            }
        }
        let kind_name = w.kind.as_ref().map(|k| k.get_ref().as_str());
        if let Some(k) = &w.key_file
            && kind_name != Some("arbiter")
        {
            c.error(
                k.span().start,
                "`key_file` is only for kind = \"arbiter\"",
                Some("ICMP and TCP witnesses need no key".to_string()),
            );
        }
        let kind = match kind_name {
            None | Some("icmp") => WitnessKind::Icmp,
            Some("arbiter") => {
                if addresses.len() != 1 {
                    c.error(
                        w.kind.as_ref().map_or(0, |k| k.span().start),
                        format!(
                            "an arbitrator witness needs exactly one address (got {})",
                            addresses.len()
                        ),
                        Some("two arbitrators could each give their vote to a different node; use one `tandem witness`".to_string()),
                    );
                }
                let port = match w.port.as_ref().map(|p| u16::try_from(*p.get_ref())) {
                    None => 7695,
                    Some(Ok(p)) if p > 0 => p,
                    Some(_) => {
                        c.error(
                            w.port.as_ref().map_or(0, |p| p.span().start),
                            "port must be 1-65535",
                            None,
                        );
                        7695
                    }
                };
                WitnessKind::Arbiter {
                    port,
                    // Not the heartbeat key by default: the arbitrator's
                    // host must not be able to forge heartbeats.
                    key_file: w.key_file.as_ref().map_or_else(
                        || key_file.with_file_name("arbiter.key"),
                        |k| base.join(k.get_ref()),
                    ),
                }
            }
            Some("tcp") => match w.port.as_ref().map(|p| u16::try_from(*p.get_ref())) {
                Some(Ok(p)) if p > 0 => WitnessKind::Tcp(p),
                _ => {
                    c.error(
                        w.kind.as_ref().map_or(0, |k| k.span().start),
                        "a tcp witness needs a `port` (1-65535)",
                        None,
                    );
                    WitnessKind::Icmp
                }
            },
            Some(other) => {
                c.error(
                    w.kind.as_ref().map_or(0, |k| k.span().start),
                    format!("unknown witness kind `{other}`"),
                    Some("use \"icmp\", \"tcp\" or \"arbiter\"".to_string()),
                );
                WitnessKind::Icmp
            }
        };
        Witness {
            addresses,
            kind,
            timeout: c
                .time(&w.timeout, "timeout")
                .map_or(Duration::from_millis(500), |v| v.0),
        }
    });
    let watchdog = raw.watchdog.as_ref().map(|w| {
        let w = w.get_ref();
        let timeout = c
            .time(&w.timeout, "timeout")
            .map_or(Duration::from_secs(10), |v| v.0);
        if timeout < Duration::from_secs(1) {
            c.error(
                w.timeout.as_ref().map_or(0, |t| t.span().start),
                "the watchdog timeout must be at least 1s",
                Some("watchdog devices count in whole seconds; 10s is a common choice".to_string()),
            );
        }
        Watchdog {
            device: w.device.as_ref().map_or_else(
                || PathBuf::from("/dev/watchdog"),
                |d| base.join(d.get_ref()),
            ),
            timeout,
        }
    });

    let (errors, warnings): (Vec<_>, Vec<_>) = c
        .out
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(ConfigError::Invalid(all));
    }
    Ok(Loaded {
        config: Config {
            cluster,
            key_file,
            socket,
            state_dir,
            realtime: raw.realtime.unwrap_or(true),
            timing,
            links,
            nodes,
            groups,
            quorum,
            witness,
            fencing,
            watchdog,
            control: Control {
                admin_group: raw
                    .control
                    .as_ref()
                    .and_then(|c| c.get_ref().admin_group.as_ref())
                    .map(|g| g.get_ref().clone()),
                read_group: raw
                    .control
                    .as_ref()
                    .and_then(|c| c.get_ref().read_group.as_ref())
                    .map(|g| g.get_ref().clone()),
            },
        },
        warnings,
    })
}

#[cfg(test)]
mod tests;
