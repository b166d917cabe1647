//! Resource groups in the configuration: `[[group]]` tables with their
//! `[[group.resource]]`s, validated with located diagnostics.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use crate::address::{AddressError, FloatingAddress};
use crate::model::{Checker, Node};
use crate::native::{Native, NativeError};
use crate::raw::{RawCheck, RawGroup};

/// Which agent manages a resource.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AgentKind {
    /// A floating IP address (netlink + gratuitous ARP), parsed.
    IpAddr(FloatingAddress),
    /// A command tandem runs and supervises itself.
    Process,
    /// An OCF resource agent: `/usr/lib/ocf/resource.d/PROVIDER/TYPE`.
    Ocf {
        /// Provider directory (e.g. `heartbeat`).
        provider: String,
        /// Agent name (e.g. `IPaddr2`).
        kind: String,
    },
    /// An LSB init script, looked up in `/etc/ha.d/resource.d`, then
    /// `/etc/init.d` (or an absolute path).
    Lsb {
        /// Script name or path.
        script: String,
    },
    /// A systemd unit, through systemd's D-Bus API.
    Systemd {
        /// Unit name.
        unit: String,
    },
    /// A replicated volume (`[[volume]]`): start promotes this node's copy
    /// to primary, stop demotes it, monitor checks role and disk.
    Volume {
        /// The volume's name.
        name: String,
    },
}

impl AgentKind {
    /// A short label for metrics and logs: `ipaddr`, `process`,
    /// `ocf:PROVIDER:TYPE`, `lsb:SCRIPT`, `systemd` or `volume`.
    pub fn label(&self) -> String {
        match self {
            AgentKind::IpAddr(_) => "ipaddr".into(),
            AgentKind::Process => "process".into(),
            AgentKind::Ocf { provider, kind } => format!("ocf:{provider}:{kind}"),
            AgentKind::Lsb { script } => format!("lsb:{script}"),
            AgentKind::Systemd { .. } => "systemd".into(),
            AgentKind::Volume { .. } => "volume".into(),
        }
    }
}

/// What a health check probes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CheckKind {
    /// A TCP connection to `address` (host:port) succeeds.
    Tcp {
        /// host:port.
        address: String,
    },
    /// An HTTP GET of `url` answers `status` (and contains `body`).
    Http {
        /// `http://host[:port]/path`.
        url: String,
        /// Expected status code.
        status: u16,
        /// Expected substring of the body.
        body: Option<String>,
    },
    /// A command exits 0.
    Script {
        /// Shell command.
        command: String,
    },
}

/// A health check attached to a resource, HAProxy style: the resource is
/// failed after `fall` consecutive failed probes and up again after `rise`
/// consecutive good ones.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HealthCheck {
    /// What to probe.
    pub kind: CheckKind,
    /// Probe interval (also the resource's monitor interval).
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Good probes to be up again.
    pub rise: u32,
    /// Failed probes to be down.
    pub fall: u32,
}

/// A resource.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Resource {
    /// Name, unique in its group.
    pub name: String,
    /// Its agent.
    pub agent: AgentKind,
    /// Agent parameters, as strings.
    pub params: BTreeMap<String, String>,
    /// Start timeout.
    pub start_timeout: Duration,
    /// Stop timeout.
    pub stop_timeout: Duration,
    /// Monitor interval (`None`: not monitored).
    pub monitor_interval: Option<Duration>,
    /// Monitor timeout.
    pub monitor_timeout: Duration,
    /// Optional health check.
    pub check: Option<HealthCheck>,
    /// Whether tandem runs the agent natively (OCF IPaddr/IPaddr2), or
    /// why the script runs.
    pub native: Native,
    /// Watch its main process and treat its exit as a failed monitor at
    /// once (`watch = false`: monitors only).
    pub watch: bool,
    /// Which of start/stop timeout, monitor timeout and monitor interval
    /// the file set explicitly (the others may come from an OCF agent's
    /// meta-data).
    pub explicit: Explicit,
}

/// Timings the configuration set explicitly for a resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Explicit {
    /// start_timeout (or timeout).
    pub start: bool,
    /// stop_timeout (or timeout).
    pub stop: bool,
    /// monitor_timeout (or timeout).
    pub monitor_timeout: bool,
    /// monitor (or a check interval).
    pub monitor_interval: bool,
}

/// A resource group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    /// Name.
    pub name: String,
    /// Node scores (node name, score).
    pub prefer: Vec<(String, i32)>,
    /// Move back to the preferred node when it returns.
    pub auto_failback: bool,
    /// Bonus for staying where it runs.
    pub stickiness: i32,
    /// Monitor failures on a node before the group leaves it.
    pub migration_threshold: u32,
    /// Failures are forgotten after this long.
    pub failure_timeout: Option<Duration>,
    /// Resources in start order.
    pub resources: Vec<Resource>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

fn param_string(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn int<T: TryFrom<i64>>(
    c: &mut Checker<'_>,
    v: &Option<Spanned<i64>>,
    what: &str,
    default: T,
    min: i64,
) -> T {
    match v {
        None => default,
        Some(x) if *x.get_ref() >= min => T::try_from(*x.get_ref()).unwrap_or(default),
        Some(x) => {
            c.error(
                x.span().start,
                format!("{what} must be at least {min}"),
                None,
            );
            default
        }
    }
}

pub(crate) fn build_groups(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawGroup>],
    nodes: &[Node],
) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut ipaddr_index = BTreeMap::new();
    // Heartbeats report up to MAX_GROUPS groups, but carry moves and
    // cleanups for only MAX_LIST: more groups could not all be moved.
    let max = tandem_wire::MAX_GROUPS.min(tandem_wire::MAX_LIST);
    if raw.len() > max {
        c.error(
            raw[max].span().start,
            format!("at most {max} groups are supported (every heartbeat carries each group's moves and cleanups)"),
            Some("merge groups that always move together".to_string()),
        );
    }
    // Every node's view must fit a heartbeat next to the groups' reports.
    let room = tandem_wire::view_room(nodes.len(), raw.len());
    if !raw.is_empty() && room < nodes.len() {
        c.error(
            raw[0].span().start,
            format!(
                "{} nodes and {} groups do not fit one heartbeat ({} bytes): its membership view would hold only {room} of the {} nodes",
                nodes.len(),
                raw.len(),
                tandem_wire::MAX_PACKET,
                nodes.len()
            ),
            Some("use fewer groups (merge the ones that move together) or fewer nodes".to_string()),
        );
    }
    for g in raw {
        let g_at = g.span().start;
        let g = g.get_ref();
        let name = g.name.get_ref().clone();
        if !crate::model::valid_name(&name) {
            c.error(
                g.name.span().start,
                format!("invalid group name `{name}`"),
                Some("use letters, digits, '-', '_' or '.'".to_string()),
            );
        }
        if out.iter().any(|x| x.name == name) {
            c.error(
                g.name.span().start,
                format!("group `{name}` is defined twice"),
                None,
            );
        }
        let mut prefer = Vec::new();
        for (node, score) in &g.prefer {
            if !nodes.iter().any(|n| &n.name == node) {
                let known: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                c.error(
                    score.span().start,
                    format!("group `{name}` prefers unknown node `{node}`"),
                    Some(format!("known nodes: {}", known.join(", "))),
                );
            }
            let s = i32::try_from(*score.get_ref()).unwrap_or(0);
            prefer.push((node.clone(), s));
        }
        let stickiness = int(c, &g.stickiness, "stickiness", 0i32, -1_000_000);
        let migration_threshold = int(c, &g.migration_threshold, "migration_threshold", 3u32, 1);
        let failure_timeout = c.time(&g.failure_timeout, "failure_timeout").map(|v| v.0);
        if g.resources.is_empty() {
            c.error(
                g_at,
                format!("group `{name}` has no resource"),
                Some("add [[group.resource]] tables after the [[group]]".to_string()),
            );
        }
        let mut resources: Vec<Resource> = Vec::new();
        for r in &g.resources {
            let r = r.get_ref();
            let rname = r.name.get_ref().clone();
            if !crate::model::valid_name(&rname) {
                c.error(
                    r.name.span().start,
                    format!("invalid resource name `{rname}`"),
                    None,
                );
            }
            if resources.iter().any(|x| x.name == rname) {
                c.error(
                    r.name.span().start,
                    format!("resource `{rname}` appears twice in group `{name}`"),
                    None,
                );
            }
            let mut params = BTreeMap::new();
            for (k, v) in &r.params {
                match param_string(v.get_ref()) {
                    Some(s) => {
                        params.insert(k.clone(), s);
                    }
                    None => c.error(
                        v.span().start,
                        format!("parameter `{k}` must be a string, number or boolean"),
                        None,
                    ),
                }
            }
            let agent_text = r.agent.get_ref().as_str();
            let at = r.agent.span().start;
            let mut agent = match agent_text.split(':').collect::<Vec<_>>().as_slice() {
                ["ipaddr"] => AgentKind::IpAddr(FloatingAddress::default()),
                ["process"] => AgentKind::Process,
                ["ocf", provider, kind] if !provider.is_empty() && !kind.is_empty() => {
                    AgentKind::Ocf {
                        provider: (*provider).to_string(),
                        kind: (*kind).to_string(),
                    }
                }
                ["lsb", script] if !script.is_empty() => AgentKind::Lsb {
                    script: (*script).to_string(),
                },
                ["systemd", unit] if !unit.is_empty() => AgentKind::Systemd {
                    unit: (*unit).to_string(),
                },
                ["volume", volume] if !volume.is_empty() => AgentKind::Volume {
                    name: (*volume).to_string(),
                },
                _ => {
                    c.error(at, format!("unknown agent `{agent_text}`"), Some("use \"ipaddr\", \"process\", \"ocf:PROVIDER:TYPE\", \"lsb:SCRIPT\", \"systemd:UNIT\" or \"volume:NAME\"".to_string()));
                    AgentKind::Process
                }
            };
            let need = |c: &mut Checker<'_>, key: &str, example: &str| {
                if !params.contains_key(key) {
                    c.error(
                        at,
                        format!("resource `{rname}` ({agent_text}) needs the parameter `{key}`"),
                        Some(format!("add to its params: {key} = {example}")),
                    );
                }
            };
            match &mut agent {
                AgentKind::IpAddr(address) => {
                    need(c, "address", "\"198.18.0.200/24\"");
                    need(c, "interface", "\"eth0\"");
                    match FloatingAddress::from_params(&params) {
                        Ok(a) => *address = a,
                        Err(AddressError::Missing(_)) => {} // reported above
                        Err(e) => c.error(
                            at,
                            format!("resource `{rname}`: {e}"),
                            Some(e.hint().to_string()),
                        ),
                    }
                }
                AgentKind::Process => {
                    need(c, "command", "\"python3 -m http.server 80\"");
                    if let Some(sig) = params.get("stop_signal")
                        && !["TERM", "INT", "QUIT", "HUP", "USR1", "USR2"]
                            .contains(&sig.trim_start_matches("SIG"))
                    {
                        c.error(
                            at,
                            format!("resource `{rname}`: unknown stop_signal `{sig}`"),
                            Some("use TERM (the default), INT, QUIT, HUP, USR1 or USR2; e.g. INT for PostgreSQL's fast shutdown".into()),
                        );
                    }
                }
                _ => {}
            }
            let timeout = c
                .time(&r.timeout, "timeout")
                .map_or(DEFAULT_TIMEOUT, |v| v.0);
            let start_timeout = c
                .time(&r.start_timeout, "start_timeout")
                .map_or(timeout, |v| v.0);
            let stop_timeout = c
                .time(&r.stop_timeout, "stop_timeout")
                .map_or(timeout, |v| v.0);
            let native = native_path(
                c,
                at,
                &agent,
                &params,
                r.native.as_ref(),
                &rname,
                &mut ipaddr_index,
            );
            let check = r.check.as_ref().and_then(|ch| build_check(c, ch));
            let monitor_interval = match (&r.monitor, &check) {
                (Some(m), _) => match m.get_ref() {
                    crate::raw::RawTime::Int(0) => None,
                    _ => c.time(&r.monitor, "monitor").map(|v| v.0),
                },
                (None, Some(ch)) => Some(ch.interval),
                (None, None) => Some(DEFAULT_MONITOR),
            };
            let monitor_timeout = c
                .time(&r.monitor_timeout, "monitor_timeout")
                .map_or(timeout.min(Duration::from_secs(10)), |v| v.0);
            resources.push(Resource {
                name: rname,
                agent,
                params,
                start_timeout,
                stop_timeout,
                monitor_interval,
                monitor_timeout,
                explicit: Explicit {
                    start: r.start_timeout.is_some() || r.timeout.is_some(),
                    stop: r.stop_timeout.is_some() || r.timeout.is_some(),
                    monitor_timeout: r.monitor_timeout.is_some() || r.timeout.is_some(),
                    monitor_interval: r.monitor.is_some() || r.check.is_some(),
                },
                check,
                native,
                watch: r.watch.unwrap_or(true),
            });
        }
        out.push(Group {
            name,
            prefer,
            auto_failback: g.auto_failback.unwrap_or(true),
            stickiness,
            migration_threshold,
            failure_timeout,
            resources,
        });
    }
    out
}

/// The native fast path of a resource (see [`crate::native`]).
fn native_path(
    c: &mut Checker<'_>,
    at: usize,
    agent: &AgentKind,
    params: &BTreeMap<String, String>,
    native: Option<&Spanned<bool>>,
    rname: &str,
    ipaddr_index: &mut BTreeMap<String, u32>,
) -> Native {
    let wanted = native.map(|n| *n.get_ref());
    let AgentKind::Ocf { provider, kind } = agent else {
        if let (Some(n), Some(true)) = (native, wanted) {
            c.error(
                n.span().start,
                format!(
                    "resource `{rname}`: tandem has no native path for agent `{}`",
                    agent.label()
                ),
                Some(
                    "only ocf:heartbeat:IPaddr and ocf:heartbeat:IPaddr2 have one; remove `native`"
                        .into(),
                ),
            );
        }
        return Native::None;
    };
    if provider != "heartbeat" || !matches!(kind.as_str(), "IPaddr" | "IPaddr2") {
        return Native::None;
    }
    if wanted == Some(false) {
        return Native::Script("native = false".into());
    }
    match crate::native::ipaddr(kind, params, &crate::legacy::find_interface, ipaddr_index) {
        Ok(f) => Native::IpAddr(f),
        Err(NativeError::Unsupported(why)) => Native::Script(why),
        Err(NativeError::Invalid(why)) => {
            c.error(
                at,
                format!("resource `{rname}` (ocf:{provider}:{kind}): {why}"),
                Some(format!("{kind}'s own validate-all refuses this too (exit 6, not configured); fix the parameter")),
            );
            Native::None
        }
    }
}

fn build_check(c: &mut Checker<'_>, ch: &Spanned<RawCheck>) -> Option<HealthCheck> {
    let at = ch.span().start;
    let ch = ch.get_ref();
    let kind = match ch.kind.get_ref().as_str() {
        "tcp" => match &ch.address {
            Some(a) => CheckKind::Tcp {
                address: a.get_ref().clone(),
            },
            None => {
                c.error(at, "a tcp check needs `address` (host:port)", None);
                return None;
            }
        },
        "http" => match &ch.url {
            Some(u) if u.get_ref().starts_with("http://") => CheckKind::Http {
                url: u.get_ref().clone(),
                status: int(c, &ch.expect_status, "expect_status", 200u16, 100),
                body: ch.expect_body.clone(),
            },
            Some(u) => {
                c.error(u.span().start, "only http:// URLs can be checked", None);
                return None;
            }
            None => {
                c.error(
                    at,
                    "an http check needs `url`",
                    Some("e.g. url = \"http://127.0.0.1/\"".to_string()),
                );
                return None;
            }
        },
        "script" => match &ch.command {
            Some(cmd) => CheckKind::Script {
                command: cmd.get_ref().clone(),
            },
            None => {
                c.error(at, "a script check needs `command`", None);
                return None;
            }
        },
        other => {
            c.error(
                ch.kind.span().start,
                format!("unknown check kind `{other}`"),
                Some("use \"tcp\", \"http\" or \"script\"".to_string()),
            );
            return None;
        }
    };
    Some(HealthCheck {
        kind,
        interval: c
            .time(&ch.interval, "interval")
            .map_or(Duration::from_secs(2), |v| v.0),
        timeout: c
            .time(&ch.timeout, "timeout")
            .map_or(Duration::from_secs(1), |v| v.0),
        rise: int(c, &ch.rise, "rise", 2u32, 1),
        fall: int(c, &ch.fall, "fall", 3u32, 1),
    })
}
