//! `ha.cf`: logical lines (with continuations), Heartbeat's time syntax,
//! media lines, and the directives tandem accepts and ignores.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Extras;
use crate::diagnostic::{Diagnostic, Severity};

/// One logical line: text, 1-based line number, byte offset.
pub(super) struct Line {
    pub(super) text: String,
    pub(super) line: usize,
    pub(super) at: usize,
}

/// Splits a Heartbeat file into logical lines: `#` starts a comment, a
/// trailing `\` continues the line.
pub(super) fn logical_lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut cur: Option<Line> = None;
    let mut offset = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let start = offset;
        offset += raw.len() + 1;
        let content = raw.split('#').next().unwrap_or("").trim_end_matches('\r');
        let (body, cont) = match content.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (content, false),
        };
        let entry = cur.get_or_insert(Line {
            text: String::new(),
            line: i + 1,
            at: start,
        });
        entry.text.push(' ');
        entry.text.push_str(body);
        if !cont
            && let Some(l) = cur.take()
            && !l.text.trim().is_empty()
        {
            out.push(Line {
                text: l.text.trim().to_string(),
                ..l
            });
        }
    }
    if let Some(l) = cur.take()
        && !l.text.trim().is_empty()
    {
        out.push(Line {
            text: l.text.trim().to_string(),
            ..l
        });
    }
    out
}

pub(super) struct Diags<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    pub(super) out: Vec<Diagnostic>,
}

impl Diags<'_> {
    pub(super) fn error(
        &mut self,
        l: &Line,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.out.push(Diagnostic::at(
            Severity::Error,
            self.file,
            self.text,
            l.at,
            msg,
            hint.into(),
        ));
    }
    pub(super) fn warn(&mut self, l: &Line, msg: impl Into<String>) {
        self.out.push(Diagnostic::at(
            Severity::Warning,
            self.file,
            self.text,
            l.at,
            msg,
            None,
        ));
    }
}

/// Heartbeat's time syntax: seconds (`2`, `1.5`), or `ms` / `us` suffixes.
pub(super) fn hb_time(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("usec").or_else(|| v.strip_suffix("us")) {
        (n, 1e-6)
    } else {
        (v, 1.0)
    };
    let x: f64 = num.trim().parse().ok()?;
    (x > 0.0 && x.is_finite() && x * scale < 86_400.0).then(|| Duration::from_secs_f64(x * scale))
}

pub(super) fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Directives accepted and ignored, with why.
pub(super) const IGNORED: &[(&str, &str)] = &[
    (
        "crm",
        "tandem manages resources itself; there is no separate CRM",
    ),
    (
        "pacemaker",
        "tandem manages resources itself; there is no Pacemaker",
    ),
    (
        "respawn",
        "tandem does not start helper programs; run them as services",
    ),
    (
        "apiauth",
        "tandem has no client API with per-group authorisation; the control socket is root-only",
    ),
    (
        "compression",
        "heartbeats are about 100 bytes; nothing to compress",
    ),
    (
        "compression_threshold",
        "heartbeats are about 100 bytes; nothing to compress",
    ),
    (
        "traditional_compression",
        "heartbeats are about 100 bytes; nothing to compress",
    ),
    (
        "serial",
        "serial links are not supported; use a second network link",
    ),
    ("baud", "serial links are not supported"),
    ("msgfmt", "tandem has its own binary wire format"),
    (
        "hbgenmethod",
        "tandem keeps its incarnation in its state directory",
    ),
    ("uuidfrom", "nodes are identified by name"),
    ("coredumps", "not applicable"),
    ("max_rexmit_delay", "heartbeats are not retransmitted"),
    (
        "memreserve",
        "the heartbeat thread locks its memory (realtime)",
    ),
    (
        "realtime",
        "the heartbeat thread always asks for real-time priority",
    ),
    ("rtprio", "the heartbeat thread uses SCHED_RR priority 50"),
    ("debug", "use RUST_LOG=debug"),
    ("hopfudge", "serial links are not supported"),
    ("autojoin", "nodes must be listed with `node`"),
    ("conn_logd_time", "tandem writes its log itself"),
    (
        "deadping",
        "ping nodes become witnesses, probed at failover with the [witness] timeout",
    ),
    (
        "stonith",
        "fencing is configured natively ([fencing] with a fence_* agent), not through cluster-glue plugins",
    ),
    (
        "stonith_host",
        "fencing is configured natively ([fencing] with a fence_* agent), not through cluster-glue plugins",
    ),
    ("crm_daemon_dir", "there is no CRM"),
    ("crmd_spawns_pengine", "there is no CRM"),
    ("quorum_server", "quorum is configured natively"),
    (
        "logfacility",
        "tandem logs to stderr and the logfile, not to syslog",
    ),
    (
        "use_logd",
        "tandem writes its log itself (to stderr and the logfile)",
    ),
    ("mcast6", "IPv6 multicast links are configured natively"),
    ("ucast6", "IPv6 unicast links are configured natively"),
];

/// A media line of ha.cf.
pub(super) enum Media {
    Bcast {
        iface: String,
        port: u16,
        line: usize,
    },
    Mcast {
        iface: String,
        group: IpAddr,
        port: u16,
        ttl: u32,
        line: usize,
    },
    Ucast {
        iface: String,
        peer: IpAddr,
        port: u16,
        line: usize,
    },
}

pub(super) struct HaCf {
    pub(super) keepalive: Option<(Duration, usize)>,
    pub(super) deadtime: Option<(Duration, usize)>,
    pub(super) warntime: Option<(Duration, usize)>,
    pub(super) initdead: Option<(Duration, usize)>,
    pub(super) media: Vec<Media>,
    pub(super) nodes: Vec<(String, usize)>,
    pub(super) auto_failback: (bool, Option<usize>),
    pub(super) extras: Extras,
}

pub(super) fn parse_hacf(text: &str, file: &Path, d: &mut Vec<Diagnostic>) -> HaCf {
    let mut g = Diags {
        file,
        text,
        out: Vec::new(),
    };
    let mut cf = HaCf {
        keepalive: None,
        deadtime: None,
        warntime: None,
        initdead: None,
        media: Vec::new(),
        nodes: Vec::new(),
        auto_failback: (true, None),
        extras: Extras::default(),
    };
    let mut port: u16 = 694;
    for l in logical_lines(text) {
        let mut words = l.text.split_whitespace();
        let Some(directive) = words.next() else {
            continue;
        };
        let args: Vec<&str> = words.collect();
        let directive = directive.to_ascii_lowercase();
        let need = |g: &mut Diags<'_>, n: usize, usage: &str| -> bool {
            if args.len() < n {
                g.error(
                    &l,
                    format!("`{directive}` needs {usage}"),
                    Some(format!("write: {directive} {usage}")),
                );
                false
            } else {
                true
            }
        };
        match directive.as_str() {
            "keepalive" | "deadtime" | "warntime" | "initdead" => {
                if !need(&mut g, 1, "a time, e.g. 2 or 500ms") {
                    continue;
                }
                let Some(t) = hb_time(args[0]) else {
                    g.error(&l, format!("`{}` is not a time", args[0]), Some("write seconds (2, 1.5) or milliseconds (500ms)".into()));
                    continue;
                };
                let slot = match directive.as_str() {
                    "keepalive" => &mut cf.keepalive,
                    "deadtime" => &mut cf.deadtime,
                    "warntime" => &mut cf.warntime,
                    _ => &mut cf.initdead,
                };
                *slot = Some((t, l.line));
            }
            "udpport" => {
                if !need(&mut g, 1, "a port number") {
                    continue;
                }
                match args[0].parse::<u16>() {
                    Ok(p) if p > 0 => port = p,
                    _ => g.error(&l, format!("`{}` is not a UDP port", args[0]), Some("use 1-65535 (Heartbeat's default is 694)".into())),
                }
            }
            "bcast" => {
                if !need(&mut g, 1, "one or more interfaces, e.g. eth0") {
                    continue;
                }
                for iface in &args {
                    cf.media.push(Media::Bcast { iface: (*iface).to_string(), port, line: l.line });
                }
            }
            "mcast" => {
                if !need(&mut g, 5, "IFACE GROUP PORT TTL LOOP, e.g. eth0 239.0.0.1 694 1 0") {
                    continue;
                }
                let group = args[1].parse::<IpAddr>().ok().filter(IpAddr::is_multicast);
                let p = args[2].parse::<u16>().ok().filter(|p| *p > 0);
                let ttl = args[3].parse::<u32>().ok().filter(|t| (1..=255).contains(t));
                match (group, p, ttl) {
                    (Some(group), Some(port), Some(ttl)) => {
                        if args[4] != "0" {
                            g.warn(&l, "mcast loop must be 0 (ha.cf(5)); tandem never loops its own multicast back");
                        }
                        cf.media.push(Media::Mcast { iface: args[0].to_string(), group, port, ttl, line: l.line });
                    }
                    _ => g.error(&l, "malformed mcast line", Some("write: mcast IFACE GROUP PORT TTL LOOP, e.g. mcast eth0 239.0.0.1 694 1 0".into())),
                }
            }
            "ucast" => {
                if !need(&mut g, 2, "IFACE PEER-IP, e.g. eth0 192.168.1.2") {
                    continue;
                }
                match args[1].parse::<IpAddr>() {
                    Ok(peer) => cf.media.push(Media::Ucast { iface: args[0].to_string(), peer, port, line: l.line }),
                    Err(_) => g.error(&l, format!("`{}` is not an IP address", args[1]), Some("write: ucast IFACE PEER-IP".into())),
                }
            }
            "node" => {
                if !need(&mut g, 1, "one or more node names (as `uname -n` prints them)") {
                    continue;
                }
                for n in &args {
                    let n = n.to_ascii_lowercase();
                    if cf.nodes.iter().any(|(x, _)| *x == n) {
                        g.warn(&l, format!("node {n} is listed twice"));
                    } else {
                        cf.nodes.push((n, l.line));
                    }
                }
            }
            "auto_failback" => {
                if !need(&mut g, 1, "on, off or legacy") {
                    continue;
                }
                match args[0].to_ascii_lowercase().as_str() {
                    "on" | "yes" | "true" | "1" | "y" => cf.auto_failback = (true, Some(l.line)),
                    "off" | "no" | "false" | "0" | "n" => cf.auto_failback = (false, Some(l.line)),
                    "legacy" => {
                        g.warn(&l, "auto_failback legacy is deprecated in Heartbeat; tandem treats it as `on` (the preferred node takes its groups back)");
                        cf.auto_failback = (true, Some(l.line));
                    }
                    other => g.error(&l, format!("auto_failback `{other}`?"), Some("use on, off or legacy".into())),
                }
            }
            "logfile" | "debugfile" => {
                if !need(&mut g, 1, "a file path") {
                    continue;
                }
                let p = PathBuf::from(args[0]);
                if directive == "logfile" {
                    cf.extras.logfile = Some(p);
                } else {
                    cf.extras.debugfile = Some(p);
                }
            }
            "watchdog" => match args.first() {
                Some(dev) if args.len() == 1 => cf.extras.watchdog = Some(PathBuf::from(dev)),
                _ => g.error(&l, "`watchdog` takes one device path", Some("e.g. `watchdog /dev/watchdog`".into())),
            },
            "ping" | "ping_group" => {
                let addrs = if directive == "ping" { &args[..] } else { args.get(1..).unwrap_or(&[]) };
                for a in addrs {
                    match a.parse::<IpAddr>() {
                        Ok(ip) => cf.extras.ping.push(ip),
                        Err(_) => g.error(&l, format!("`{a}` is not an IP address"), None),
                    }
                }
                g.warn(&l, format!("`{directive}`: these hosts become witnesses; at failover, only a node that reaches one of them takes over alone"));
            }
            other => match IGNORED.iter().find(|(n, _)| *n == other) {
                Some((_, why)) => g.warn(&l, format!("`{other}` is ignored: {why}")),
                None => g.error(&l, format!("unknown directive `{other}`"), Some("check the spelling against ha.cf(5); tandem accepts every Heartbeat 3 directive".into())),
            },
        }
    }
    d.extend(g.out);
    cf
}
