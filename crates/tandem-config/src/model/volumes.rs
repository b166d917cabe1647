//! `[[volume]]`: replicated volumes (DRBD resources): the backing disk,
//! where the metadata lives, each node's replication address, the
//! protocol, and the exports (a FUSE file, an NBD server).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::Serialize;
use tandem_volumes::split_brain::{NoPrimary, OnePrimary, Policies, TwoPrimaries};
use toml::Spanned;

use super::Node;
use super::check::{Checker, valid_name};
use crate::raw::RawVolume;

/// Default replication port (DRBD's).
pub const DEFAULT_VOLUME_PORT: u16 = 7789;

/// Where a volume's metadata is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum MetaPlace {
    /// At the end of the backing disk.
    Internal,
    /// In a file of its own.
    External(PathBuf),
}

/// Where the NBD export listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum NbdListen {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// The replication protocol of a volume's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ReplicationProtocol {
    /// Asynchronous.
    A,
    /// Memory-synchronous.
    B,
    /// Synchronous.
    C,
}

/// One node's part of a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeNode {
    /// The node's name (a `[[node]]`).
    pub name: String,
    /// Its replication address.
    pub address: SocketAddr,
    /// Its backing disk.
    pub disk: PathBuf,
    /// The block device path the `volume:` agent points at a loop device
    /// on the export while this node is primary (e.g. `/dev/drbd0`, so a
    /// `Filesystem::/dev/drbd0::/data` line works unchanged).
    pub device: Option<PathBuf>,
}

/// A replicated volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// Name (`r0`).
    pub name: String,
    /// Where the metadata lives.
    pub meta: MetaPlace,
    /// Protocol of every connection not in `connections`.
    pub protocol: ReplicationProtocol,
    /// Connections with a protocol of their own (`[[volume.connection]]`,
    /// S3's "synchronous inside a site, asynchronous between sites").
    pub connections: Vec<VolumeConnection>,
    /// FUSE mount point; the volume is the file `<export>/<name>`.
    pub export: Option<PathBuf>,
    /// NBD listener.
    pub nbd: Option<NbdListen>,
    /// Activity-log extents (4 MiB each).
    pub al_extents: usize,
    /// Every node holding a copy (two or three), in node order.
    pub nodes: Vec<VolumeNode>,
    /// Automatic split-brain recovery (`after_sb_0pri`, `after_sb_1pri`,
    /// `after_sb_2pri`; default: disconnect).
    pub split_brain: Policies,
    /// What the primary does when it loses a peer (`fencing`; default
    /// resource-only).
    pub fencing: tandem_volumes::Fencing,
    /// Resync compares checksums before moving blocks (`csums`, DRBD's
    /// `csums-alg`; default off).
    pub csums: bool,
    /// Resync rate limit per peer in KiB/s (`resync_rate`, DRBD's
    /// `resync-rate`; default none).
    pub resync_rate_kib: Option<u64>,
    /// Resync rate while the application writes, KiB/s
    /// (`resync_min_rate`, DRBD's `c-min-rate`; default none).
    pub resync_min_rate_kib: Option<u64>,
    /// DRBD's dynamic resync controller (`c_plan_ahead` turns it on;
    /// `c_fill_target`, `c_delay_target`, `c_max_rate`); default off.
    #[serde(skip)]
    pub controller: Option<tandem_volumes::ControllerConfig>,
    /// DRBD-style handlers: event name (`split-brain`, `fence-peer`, …) →
    /// shell command, run with `DRBD_RESOURCE`, `DRBD_PEER`, … set.
    pub handlers: BTreeMap<String, String>,
}

/// A connection of a volume with its own protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeConnection {
    /// The two nodes, in the order written.
    pub hosts: [String; 2],
    /// Its protocol.
    pub protocol: ReplicationProtocol,
}

/// The handlers a `[volume.handlers]` table may name (DRBD's names).
pub const HANDLERS: &[&str] = &[
    "split-brain",
    "initial-split-brain",
    "fence-peer",
    "pri-on-incon-degr",
    "pri-lost-after-sb",
    "local-io-error",
    "before-resync-target",
    "after-resync-target",
    "out-of-sync",
];

fn policy<T: Copy>(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<String>>,
    key: &str,
    choices: &[(&str, T)],
    default: T,
) -> T {
    let Some(v) = raw else { return default };
    match choices.iter().find(|(n, _)| *n == v.get_ref().as_str()) {
        Some((_, t)) => *t,
        None => {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            c.error(
                v.span().start,
                format!("{key}: unknown policy `{}`", v.get_ref()),
                Some(format!("use one of: {}", names.join(", "))),
            );
            default
        }
    }
}

impl Volume {
    /// The protocol of the connection between nodes `a` and `b`.
    pub fn protocol_between(&self, a: &str, b: &str) -> ReplicationProtocol {
        self.connections
            .iter()
            .find(|c| (c.hosts[0] == a && c.hosts[1] == b) || (c.hosts[0] == b && c.hosts[1] == a))
            .map_or(self.protocol, |c| c.protocol)
    }

    /// Node `name`'s index and table, if it holds a copy.
    pub fn node(&self, name: &str) -> Option<(usize, &VolumeNode)> {
        self.nodes.iter().enumerate().find(|(_, n)| n.name == name)
    }
}

/// A rate as DRBD writes it: KiB/s, or with a K, M or G suffix (KiB, MiB,
/// GiB per second); zero is refused.
pub(crate) fn parse_rate(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1),
        (i, 'm' | 'M') => (&s[..i], 1024),
        (i, 'g' | 'G') => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(mult))
}

fn parse_protocol(
    c: &mut Checker<'_>,
    name: &str,
    raw: Option<&Spanned<String>>,
) -> ReplicationProtocol {
    match raw.map(|p| (p.get_ref().as_str(), p.span().start)) {
        None | Some(("C" | "c", _)) => ReplicationProtocol::C,
        Some(("A" | "a", _)) => ReplicationProtocol::A,
        Some(("B" | "b", _)) => ReplicationProtocol::B,
        Some((other, at)) => {
            c.error(
                at,
                format!("volume `{name}`: unknown protocol `{other}`"),
                Some("use \"A\" (asynchronous), \"B\" or \"C\" (synchronous, the default)".into()),
            );
            ReplicationProtocol::C
        }
    }
}

/// The `[[volume.connection]]` tables of volume `name`, checked against
/// its nodes.
fn parse_connections(
    c: &mut Checker<'_>,
    name: &str,
    raw: &[Spanned<crate::raw::RawVolumeConnection>],
    on: &BTreeMap<String, Spanned<crate::raw::RawVolumeNode>>,
) -> Vec<VolumeConnection> {
    let mut out: Vec<VolumeConnection> = Vec::new();
    for r in raw {
        let r = r.get_ref();
        let at = r.hosts.span().start;
        let hosts = r.hosts.get_ref();
        let protocol = parse_protocol(c, name, Some(&r.protocol));
        let [a, b] = hosts.as_slice() else {
            c.error(
                at,
                format!(
                    "volume `{name}`: a connection joins two nodes, not {}",
                    hosts.len()
                ),
                Some("write hosts = [\"n1\", \"n3\"]".into()),
            );
            continue;
        };
        if a == b {
            c.error(
                at,
                format!("volume `{name}`: a connection from `{a}` to itself"),
                None,
            );
            continue;
        }
        if let Some(x) = [a, b].into_iter().find(|h| !on.contains_key(*h)) {
            c.error(
                at,
                format!("volume `{name}`: connection to `{x}`, which holds no copy"),
                Some(format!(
                    "add [volume.on.{x}] or name one of the volume's nodes"
                )),
            );
            continue;
        }
        let same = |c: &VolumeConnection| {
            (&c.hosts[0] == a && &c.hosts[1] == b) || (&c.hosts[0] == b && &c.hosts[1] == a)
        };
        if out.iter().any(same) {
            c.error(
                at,
                format!("volume `{name}`: the connection {a}–{b} is given twice"),
                Some("keep one [[volume.connection]] per pair of nodes".into()),
            );
            continue;
        }
        out.push(VolumeConnection {
            hosts: [a.clone(), b.clone()],
            protocol,
        });
    }
    out
}

fn parse_nbd(s: &str, base: &Path) -> Option<NbdListen> {
    if let Some(p) = s.strip_prefix("unix:") {
        return Some(NbdListen::Unix(base.join(p)));
    }
    s.parse().ok().map(NbdListen::Tcp)
}

/// Checks the `[[volume]]` tables.
pub(super) fn build_volumes(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawVolume>],
    nodes: &[Node],
    base: &Path,
) -> Vec<Volume> {
    let mut out: Vec<Volume> = Vec::new();
    for v in raw {
        let at = v.span().start;
        let v = v.get_ref();
        let name = v.name.get_ref().clone();
        if !valid_name(&name) {
            c.error(
                v.name.span().start,
                format!("invalid volume name `{name}`"),
                Some("use letters, digits, '-', '_' or '.', e.g. \"r0\"".to_string()),
            );
        }
        if out.iter().any(|o| o.name == name) {
            c.error(
                v.name.span().start,
                format!("volume `{name}` appears twice"),
                None,
            );
        }
        let port = match &v.port {
            None => DEFAULT_VOLUME_PORT,
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(p) if p > 0 => p,
                _ => {
                    c.error(p.span().start, "port must be 1 to 65535", None);
                    DEFAULT_VOLUME_PORT
                }
            },
        };
        let protocol = parse_protocol(c, &name, v.protocol.as_ref());
        let meta = match v.meta.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("internal") => MetaPlace::Internal,
            Some(p) => MetaPlace::External(base.join(p)),
        };
        let nbd = v.nbd.as_ref().and_then(|n| {
            c.parsed(
                n,
                |t| parse_nbd(t, base).ok_or(()),
                |t, ()| format!("volume `{name}`: nbd `{t}` is neither unix:PATH nor HOST:PORT"),
                "write e.g. nbd = \"unix:/run/tandem/r0.nbd\" or \"127.0.0.1:10809\"",
            )
        });
        let mut rate = |key: &str, raw: Option<&Spanned<String>>| {
            c.parsed(
                raw?,
                |t| parse_rate(t).ok_or(()),
                |t, ()| format!("{key}: `{t}` is not a rate"),
                "write KiB per second, or with a suffix: \"40M\" is 40 MiB/s (as DRBD's resync-rate)",
            )
        };
        let resync_rate_kib = rate("resync_rate", v.resync_rate.as_ref());
        let resync_min_rate_kib = rate("resync_min_rate", v.resync_min_rate.as_ref());
        let al_extents = match &v.al_extents {
            None => 1237,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if (7..=65536).contains(&n) => n,
                _ => {
                    c.error(n.span().start, "al_extents must be 7 to 65536", None);
                    1237
                }
            },
        };
        let mut vnodes = Vec::new();
        for node in nodes {
            let Some(on) = v.on.get(&node.name) else {
                continue;
            };
            let on = on.get_ref();
            let a = on.address.get_ref();
            let address = a
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| a.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port)));
            let Some(address) = address else {
                c.error(
                    on.address.span().start,
                    format!("volume `{name}`: `{a}` is not an address"),
                    Some("write the node's replication address, e.g. \"198.18.0.1\" or \"198.18.0.1:7789\"".into()),
                );
                continue;
            };
            let disk = on
                .disk
                .as_ref()
                .or(v.disk.as_ref())
                .map(|d| base.join(d.get_ref()));
            let Some(disk) = disk else {
                c.error(
                    on.address.span().start,
                    format!("volume `{name}`: no backing disk for node `{}`", node.name),
                    Some(
                        "add disk = \"/var/lib/tandem/r0.img\" to the volume (or to its node)"
                            .into(),
                    ),
                );
                continue;
            };
            let device = on
                .device
                .as_ref()
                .or(v.device.as_ref())
                .map(|d| base.join(d.get_ref()));
            if let (Some(_), None) = (&device, &v.export) {
                c.error(
                    on.address.span().start,
                    format!("volume `{name}`: a `device` needs an `export` (the loop device is attached to the exported file)"),
                    Some("add export = \"/run/tandem/export\" to the volume".into()),
                );
            }
            vnodes.push(VolumeNode {
                name: node.name.clone(),
                address,
                disk,
                device,
            });
        }
        for (n, on) in &v.on {
            if !nodes.iter().any(|x| &x.name == n) {
                c.error(
                    on.span().start,
                    format!("volume `{name}`: `{n}` is not a configured [[node]]"),
                    None,
                );
            }
        }
        if !(2..=3).contains(&v.on.len()) {
            c.error(
                at,
                format!(
                    "volume `{name}` has {} node(s); a volume has two or three",
                    v.on.len()
                ),
                Some("add [volume.on.NODE] tables with each node's address".into()),
            );
        }
        let split_brain = Policies {
            zero: policy(
                c,
                v.after_sb_0pri.as_ref(),
                "after_sb_0pri",
                &[
                    ("disconnect", NoPrimary::Disconnect),
                    ("discard-younger-primary", NoPrimary::DiscardYoungerPrimary),
                    ("discard-older-primary", NoPrimary::DiscardOlderPrimary),
                    ("discard-zero-changes", NoPrimary::DiscardZeroChanges),
                    ("discard-least-changes", NoPrimary::DiscardLeastChanges),
                ],
                NoPrimary::Disconnect,
            ),
            one: policy(
                c,
                v.after_sb_1pri.as_ref(),
                "after_sb_1pri",
                &[
                    ("disconnect", OnePrimary::Disconnect),
                    ("consensus", OnePrimary::Consensus),
                    ("discard-secondary", OnePrimary::DiscardSecondary),
                ],
                OnePrimary::Disconnect,
            ),
            two: policy(
                c,
                v.after_sb_2pri.as_ref(),
                "after_sb_2pri",
                &[("disconnect", TwoPrimaries::Disconnect)],
                TwoPrimaries::Disconnect,
            ),
        };
        use tandem_volumes::Fencing;
        let fencing = policy(
            c,
            v.fencing.as_ref(),
            "fencing",
            &[
                ("dont-care", Fencing::DontCare),
                ("resource-only", Fencing::ResourceOnly),
                ("resource-and-stonith", Fencing::ResourceAndStonith),
            ],
            Fencing::ResourceOnly,
        );
        let mut handlers = BTreeMap::new();
        for (k, cmd) in &v.handlers {
            if HANDLERS.contains(&k.as_str()) {
                handlers.insert(k.clone(), cmd.get_ref().clone());
            } else {
                c.error(
                    cmd.span().start,
                    format!("volume `{name}`: unknown handler `{k}`"),
                    Some(format!("handlers: {}", HANDLERS.join(", "))),
                );
            }
        }
        let connections = parse_connections(c, &name, &v.connections, &v.on);
        let controller = super::resync::parse_controller(c, &name, v);
        out.push(Volume {
            controller,
            connections,
            split_brain,
            fencing,
            csums: v.csums.as_ref().is_some_and(|c| *c.get_ref()),
            resync_rate_kib,
            resync_min_rate_kib,
            handlers,
            name,
            meta,
            protocol,
            export: v.export.as_ref().map(|e| base.join(e.get_ref())),
            nbd,
            al_extents,
            nodes: vnodes,
        });
    }
    out
}

/// Warns about `fencing = "resource-and-stonith"` in a cluster without
/// fence agents: a dead peer is never powered off, so the primary's IO
/// stays suspended until someone confirms it.
pub(super) fn check_stonith_fencing(
    c: &mut Checker<'_>,
    volumes: &[Spanned<crate::raw::RawVolume>],
) {
    for v in volumes {
        let v = v.get_ref();
        if let Some(f) = &v.fencing
            && f.get_ref() == "resource-and-stonith"
        {
            c.warn(
                f.span().start,
                format!(
                    "volume `{}`: fencing = \"resource-and-stonith\" but no [fencing] agent is configured: when a peer dies, the primary's IO stays suspended until a fence-peer handler confirms it or you run `tandem volume resume-io {}`",
                    v.name.get_ref(),
                    v.name.get_ref()
                ),
                Some("add a [fencing] section with the agent that powers nodes off, or use fencing = \"resource-only\"".into()),
            );
        }
    }
}

/// Checks that every `volume:NAME` resource names a `[[volume]]`.
pub(super) fn check_volume_agents(
    c: &mut Checker<'_>,
    groups: &[Spanned<crate::raw::RawGroup>],
    volumes: &[Volume],
) {
    for g in groups {
        for r in &g.get_ref().resources {
            let r = r.get_ref();
            let Some(name) = r.agent.get_ref().strip_prefix("volume:") else {
                continue;
            };
            if !volumes.iter().any(|v| v.name == name) {
                let known: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
                c.error(
                    r.agent.span().start,
                    format!("resource `{}` uses volume `{name}`, which no [[volume]] defines", r.name.get_ref()),
                    Some(if known.is_empty() {
                        format!("add a [[volume]] with name = \"{name}\" (or import a DRBD file with `tandem import drbd`)")
                    } else {
                        format!("volumes here: {}", known.join(", "))
                    }),
                );
            }
        }
    }
}
