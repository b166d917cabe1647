//! Heartbeat compatibility: `ha.cf`, `haresources` and `authkeys` as users
//! have them, turned into tandem's native configuration.
//!
//! [`load_dir`] reads a Heartbeat directory (`/etc/ha.d` or
//! `/etc/heartbeat`), checks every line (errors name the file, the line and
//! a fix; directives tandem does not need are accepted with one warning
//! each), and produces the equivalent native TOML — the same text
//! `tandem import heartbeat` prints, comments naming where each setting came
//! from — which is then validated like any native file.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diagnostic::{Diagnostic, Severity};
use crate::{ConfigError, Loaded};

/// Name given to a cluster run from Heartbeat files (ha.cf has none).
pub const CLUSTER_NAME: &str = "heartbeat";

/// An authentication method of `authkeys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// No authentication at all.
    Crc,
    /// HMAC-MD5 in Heartbeat; the key signs tandem's HMAC-SHA256.
    Md5,
    /// HMAC-SHA1 in Heartbeat; the key signs tandem's HMAC-SHA256.
    Sha1,
}

/// A parsed `authkeys` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthKeys {
    /// The key selected by `auth N`.
    pub send: u8,
    /// Every key line: id, method, secret.
    pub keys: Vec<(u8, AuthMethod, Vec<u8>)>,
}

impl AuthKeys {
    /// The method of the selected key.
    pub fn method(&self) -> Option<AuthMethod> {
        self.keys.iter().find(|k| k.0 == self.send).map(|k| k.1)
    }
}

/// Facts from ha.cf that are not part of the native configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// `logfile`: where the Heartbeat-style log lines go.
    pub logfile: Option<PathBuf>,
    /// `debugfile`: the same lines plus debug output.
    pub debugfile: Option<PathBuf>,
    /// `ping` / `ping_group` addresses: they become witnesses.
    pub ping: Vec<IpAddr>,
    /// `watchdog`: the device to arm.
    pub watchdog: Option<PathBuf>,
}

/// A Heartbeat directory turned into tandem's configuration.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// The validated configuration (with warnings).
    pub loaded: Loaded,
    /// The native TOML it was built from (what `tandem import` prints).
    pub toml: String,
    /// What the native file does not carry.
    pub extras: Extras,
    /// The keys.
    pub auth: AuthKeys,
}

/// One logical line: text, 1-based line number, byte offset.
struct Line {
    text: String,
    line: usize,
    at: usize,
}

/// Splits a Heartbeat file into logical lines: `#` starts a comment, a
/// trailing `\` continues the line.
fn logical_lines(text: &str) -> Vec<Line> {
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

struct Diags<'a> {
    file: &'a Path,
    text: &'a str,
    out: Vec<Diagnostic>,
}

impl Diags<'_> {
    fn error(&mut self, l: &Line, msg: impl Into<String>, hint: impl Into<Option<String>>) {
        self.out.push(Diagnostic::at(
            Severity::Error,
            self.file,
            self.text,
            l.at,
            msg,
            hint.into(),
        ));
    }
    fn warn(&mut self, l: &Line, msg: impl Into<String>) {
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
fn hb_time(v: &str) -> Option<Duration> {
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

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Directives accepted and ignored, with why.
const IGNORED: &[(&str, &str)] = &[
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
enum Media {
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

struct HaCf {
    keepalive: Option<(Duration, usize)>,
    deadtime: Option<(Duration, usize)>,
    warntime: Option<(Duration, usize)>,
    initdead: Option<(Duration, usize)>,
    media: Vec<Media>,
    nodes: Vec<(String, usize)>,
    auto_failback: (bool, Option<usize>),
    extras: Extras,
}

fn parse_hacf(text: &str, file: &Path, d: &mut Vec<Diagnostic>) -> HaCf {
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

/// Parses `authkeys`, checking its permissions first.
pub fn load_authkeys(path: &Path) -> Result<AuthKeys, ConfigError> {
    crate::keyfile::check_permissions(path).map_err(|e| {
        ConfigError::Invalid(vec![Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: e.to_string().lines().next().unwrap_or("").to_string(),
            hint: Some(format!(
                "run `chmod 600 {}` (Heartbeat refuses it too)",
                path.display()
            )),
            source_line: String::new(),
        }])
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_authkeys(&text, path)
}

/// Parses the text of an `authkeys` file.
pub fn parse_authkeys(text: &str, file: &Path) -> Result<AuthKeys, ConfigError> {
    let mut g = Diags {
        file,
        text,
        out: Vec::new(),
    };
    let mut send: Option<(u8, Line)> = None;
    let mut keys = Vec::new();
    for l in logical_lines(text) {
        let w: Vec<&str> = l.text.split_whitespace().collect();
        if w[0] == "auth" {
            match w.get(1).and_then(|n| n.parse::<u8>().ok()) {
                Some(n) if (1..=15).contains(&n) => send = Some((n, l)),
                _ => g.error(
                    &l,
                    "`auth` needs a key number from 1 to 15",
                    Some("e.g. auth 1".into()),
                ),
            }
            continue;
        }
        let Some(id) = w[0].parse::<u8>().ok().filter(|n| (1..=15).contains(n)) else {
            g.error(
                &l,
                "unexpected line (not shown: it may hold a secret)",
                Some("lines are `auth N` or `N METHOD KEY` (e.g. 1 sha1 secret)".into()),
            );
            continue;
        };
        let method = match w.get(1).map(|m| m.to_ascii_lowercase()).as_deref() {
            Some("crc") => AuthMethod::Crc,
            Some("md5") => AuthMethod::Md5,
            Some("sha1") => AuthMethod::Sha1,
            _ => {
                // The word is not echoed: it may be the secret itself
                // (`1 mysecret`, the method forgotten).
                g.error(
                    &l,
                    format!("key {id}: unknown method (not sha1, md5 or crc)"),
                    Some(format!(
                        "write `{id} sha1 YOUR-SECRET` (sha1 is best; crc secures nothing)"
                    )),
                );
                continue;
            }
        };
        let key = w.get(2..).map(|k| k.join(" ")).unwrap_or_default();
        if method != AuthMethod::Crc && key.is_empty() {
            g.error(
                &l,
                format!("key {id} has no secret"),
                Some(format!("write: {id} sha1 YOUR-SECRET")),
            );
            continue;
        }
        if keys.iter().any(|(k, _, _)| *k == id) {
            g.error(&l, format!("key {id} is defined twice"), None);
        }
        keys.push((id, method, key.into_bytes()));
    }
    match &send {
        None => g.out.push(Diagnostic::at(
            Severity::Error,
            file,
            text,
            0,
            "no `auth N` line selects a key",
            Some("add a line `auth 1`".into()),
        )),
        Some((n, l)) if !keys.iter().any(|(k, _, _)| k == n) => {
            g.error(
                l,
                format!("`auth {n}` selects key {n}, which no line defines"),
                Some(format!("add a line `{n} sha1 YOUR-SECRET`")),
            );
        }
        _ => {}
    }
    // Diagnostics quote their line: never the secrets on it.
    for d in &mut g.out {
        d.source_line = redact_key_line(&d.source_line);
    }
    if g.out.iter().any(|d| d.severity == Severity::Error) {
        return Err(ConfigError::Invalid(g.out));
    }
    Ok(AuthKeys {
        send: send.map_or(1, |s| s.0),
        keys,
    })
}

/// An authkeys line as it may be shown: `auth N` lines as they are, key
/// lines with everything after the key number hidden.
fn redact_key_line(line: &str) -> String {
    let mut words = line.split_whitespace();
    match words.next() {
        None => String::new(),
        Some("auth") => line.to_string(),
        Some(first) if words.next().is_some() => format!("{first} <hidden>"),
        Some(_) => "<hidden>".to_string(),
    }
}

/// Whether a key file is a Heartbeat `authkeys` file rather than a bare secret.
pub fn looks_like_authkeys(text: &str) -> bool {
    text.lines().any(|l| {
        l.split('#')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with("auth ")
    })
}

/// A resource of haresources, as native TOML lines.
fn resource_toml(
    spec: &str,
    index: usize,
    ip_count: &mut usize,
    g: &mut Diags<'_>,
    l: &Line,
) -> Option<(String, String)> {
    let parts: Vec<&str> = spec.split("::").collect();
    let (kind, args) = (parts[0], &parts[1..]);
    let q = |s: &str| format!("{s:?}");
    // A bare address: IP[/CIDR[/IFACE[/BROADCAST]]].
    let ip_form = |a: &str| {
        a.split('/')
            .next()
            .is_some_and(|ip| ip.parse::<IpAddr>().is_ok())
    };
    let ipaddr = |addr: &str, ip_count: &mut usize, g: &mut Diags<'_>| -> Option<String> {
        let f: Vec<&str> = addr.split('/').collect();
        let ip = f[0];
        let (cidr, iface) = match (f.get(1), f.get(2)) {
            (Some(c), Some(i)) => (c.to_string(), i.split(':').next().unwrap_or(i).to_string()),
            (c, _) => match find_interface(ip.parse().ok()?) {
                Some((i, p)) => (c.map_or(p.to_string(), |c| (*c).to_string()), i),
                None => {
                    g.error(l, format!("no interface here is on the network of {ip}; tandem cannot tell where to add it"), Some(format!("write it as {ip}/CIDR/IFACE, e.g. {ip}/24/eth0")));
                    return None;
                }
            },
        };
        if cidr.parse::<u8>().is_err() {
            g.error(
                l,
                format!("`{cidr}` is not a prefix length"),
                Some("e.g. 192.168.1.10/24/eth0".into()),
            );
            return None;
        }
        let label = format!("{iface}:{}", *ip_count);
        *ip_count += 1;
        Some(format!(
            "agent = \"ipaddr\"\nparams = {{ address = {}, interface = {}, label = {} }}\nmonitor = \"5s\"\n",
            q(&format!("{ip}/{cidr}")),
            q(&iface),
            q(&label)
        ))
    };
    let name = format!("r{}-{}", index + 1, sanitize(kind));
    let body = if parts.len() == 1 && ip_form(kind) {
        ipaddr(kind, ip_count, g)?
    } else {
        match kind {
            "IPaddr" | "IPaddr2" => {
                let Some(a) = args.first() else {
                    g.error(
                        l,
                        format!("{kind} needs an address: {kind}::IP[/CIDR[/IFACE]]"),
                        None,
                    );
                    return None;
                };
                ipaddr(a, ip_count, g)?
            }
            "Filesystem" => {
                if args.len() < 2 {
                    g.error(
                        l,
                        "Filesystem needs a device and a mount point",
                        Some("Filesystem::/dev/drbd0::/data::ext4[::OPTIONS]".into()),
                    );
                    return None;
                }
                let mut p = format!("device = {}, directory = {}", q(args[0]), q(args[1]));
                if let Some(t) = args.get(2) {
                    p.push_str(&format!(", fstype = {}", q(t)));
                }
                if let Some(o) = args.get(3) {
                    p.push_str(&format!(", options = {}", q(o)));
                }
                format!(
                    "agent = \"ocf:heartbeat:Filesystem\"\nparams = {{ {p} }}\nmonitor = \"20s\"\ntimeout = \"60s\"\n"
                )
            }
            "MailTo" => {
                let Some(addr) = args.first() else {
                    g.error(
                        l,
                        "MailTo needs an address: MailTo::ADDRESS[::SUBJECT]",
                        None,
                    );
                    return None;
                };
                let mut p = format!("email = {}", q(addr));
                if let Some(s) = args.get(1) {
                    p.push_str(&format!(", subject = {}", q(s)));
                }
                format!("agent = \"ocf:heartbeat:MailTo\"\nparams = {{ {p} }}\nmonitor = 0\n")
            }
            script => {
                let mut p = String::from("r1_status = \"true\"");
                if !args.is_empty() {
                    p.push_str(&format!(", args = {}", q(&args.join("::"))));
                }
                format!(
                    "agent = {}\nparams = {{ {p} }}\nmonitor = \"10s\"\ntimeout = \"60s\"\n",
                    q(&format!("lsb:{script}"))
                )
            }
        }
    };
    Some((name, body))
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The interface (and prefix) whose network contains `ip`, from the
/// kernel's routing table (as Heartbeat's findif does): `/proc/net/route`
/// for IPv4, `/proc/net/ipv6_route` for IPv6. Default routes are ignored.
pub fn find_interface(ip: IpAddr) -> Option<(String, u8)> {
    match ip {
        IpAddr::V4(v4) => find_interface_v4(v4, &std::fs::read_to_string("/proc/net/route").ok()?),
        IpAddr::V6(v6) => {
            find_interface_v6(v6, &std::fs::read_to_string("/proc/net/ipv6_route").ok()?)
        }
    }
}

fn find_interface_v4(v4: std::net::Ipv4Addr, table: &str) -> Option<(String, u8)> {
    let target = u32::from(v4);
    let mut best: Option<(String, u8)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        let (dest, mask) = (
            u32::from_be_bytes(dest.to_ne_bytes()),
            u32::from_be_bytes(mask.to_ne_bytes()),
        );
        if mask == 0 || target & mask != dest {
            continue;
        }
        let prefix = u8::try_from(mask.count_ones()).unwrap_or(32);
        if best.as_ref().is_none_or(|(_, p)| prefix > *p) {
            best = Some((f[0].to_string(), prefix));
        }
    }
    best
}

fn find_interface_v6(v6: std::net::Ipv6Addr, table: &str) -> Option<(String, u8)> {
    let target = u128::from(v6);
    let mut best: Option<(String, u8)> = None;
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Ok(dest), Ok(prefix)) = (u128::from_str_radix(f[0], 16), u8::from_str_radix(f[1], 16))
        else {
            continue;
        };
        if prefix == 0 || prefix > 128 || f[9] == "lo" {
            continue;
        }
        let mask = u128::MAX << (128 - u32::from(prefix));
        if target & mask != dest & mask {
            continue;
        }
        if best.as_ref().is_none_or(|(_, p)| prefix > *p) {
            best = Some((f[9].to_string(), prefix));
        }
    }
    best
}

/// Reads `DIR/ha.cf`, `DIR/haresources` and `DIR/authkeys`.
pub fn load_dir(dir: &Path) -> Result<HeartbeatConfig, ConfigError> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p)
            .map(|t| (p.clone(), t))
            .map_err(|source| ConfigError::Io { path: p, source })
    };
    let (cf_path, cf_text) = read("ha.cf")?;
    let res = read("haresources").ok();
    let auth = load_authkeys(&dir.join("authkeys"))?;
    convert(
        &cf_path,
        &cf_text,
        res.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
        auth,
        &dir.join("authkeys"),
    )
}

/// Converts the texts of ha.cf and haresources (pure, apart from the
/// routing-table look-up for bare addresses).
pub fn convert(
    cf_path: &Path,
    cf_text: &str,
    res: Option<(&Path, &str)>,
    auth: AuthKeys,
    authkeys_path: &Path,
) -> Result<HeartbeatConfig, ConfigError> {
    let mut diags = Vec::new();
    let cf = parse_hacf(cf_text, cf_path, &mut diags);
    let mut g = Diags {
        file: cf_path,
        text: cf_text,
        out: Vec::new(),
    };
    let at_line = |n: usize| {
        cf_text
            .split('\n')
            .take(n.saturating_sub(1))
            .map(|l| l.len() + 1)
            .sum::<usize>()
    };
    let line_of = |n: usize| Line {
        text: String::new(),
        line: n,
        at: at_line(n),
    };
    if cf.media.is_empty() {
        g.out.push(Diagnostic::at(
            Severity::Error,
            cf_path,
            cf_text,
            0,
            "no heartbeat media: add a bcast, mcast or ucast line",
            Some("e.g. bcast eth0".into()),
        ));
    }
    if cf.nodes.is_empty() {
        g.out.push(Diagnostic::at(
            Severity::Error,
            cf_path,
            cf_text,
            0,
            "no nodes defined: add `node NAME` lines (names as `uname -n` prints them)",
            None,
        ));
    }
    // Heartbeat's defaults and rules.
    let ka = cf.keepalive.map_or(Duration::from_secs(1), |v| v.0);
    let dt = cf.deadtime.map_or(Duration::from_secs(30), |v| v.0);
    if dt <= ka * 2 {
        let l = line_of(cf.deadtime.or(cf.keepalive).map_or(1, |v| v.1));
        g.error(
            &l,
            format!(
                "deadtime ({}) must be more than twice keepalive ({})",
                ms(dt),
                ms(ka)
            ),
            Some("Heartbeat refuses this too; raise deadtime".into()),
        );
    } else if dt < crate::model::min_deadtime(ka) {
        let l = line_of(cf.deadtime.or(cf.keepalive).map_or(1, |v| v.1));
        g.error(
            &l,
            format!(
                "deadtime ({}) must be at least 3 x keepalive + 20 ms ({}) for tandem",
                ms(dt),
                ms(crate::model::min_deadtime(ka))
            ),
            Some(
                "raise deadtime: the lease under which a node serves must outlast a lost heartbeat, a refresh period and two ticks of the kernel's timer (docs/safety.md, \"Lease sizing\")"
                    .into(),
            ),
        );
    }
    let wt = cf.warntime.map_or(dt / 2, |v| v.0);
    if wt <= ka || wt >= dt {
        let l = line_of(cf.warntime.map_or(1, |v| v.1));
        g.error(
            &l,
            format!(
                "warntime ({}) must lie between keepalive ({}) and deadtime ({})",
                ms(wt),
                ms(ka),
                ms(dt)
            ),
            None,
        );
    }
    let id = cf.initdead.map_or_else(
        || {
            if dt > Duration::from_secs(10) {
                dt
            } else if dt < Duration::from_secs(6) {
                Duration::from_secs(12)
            } else {
                dt * 2
            }
        },
        |v| v.0,
    );
    if id < dt {
        let l = line_of(cf.initdead.map_or(1, |v| v.1));
        g.error(
            &l,
            format!(
                "initdead ({}) must be at least deadtime ({})",
                ms(id),
                ms(dt)
            ),
            None,
        );
    }

    // Links: one per (kind, interface, port) like Heartbeat's media.
    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Generated by `tandem import heartbeat` from {}",
        cf_path.parent().unwrap_or(Path::new(".")).display()
    );
    let _ = writeln!(
        toml,
        "# ha.cf has no cluster name: every node imported from the same files uses this one."
    );
    let _ = writeln!(toml, "cluster = {CLUSTER_NAME:?}");
    let _ = writeln!(
        toml,
        "# authkeys is read as is (auth {} selects the key).",
        auth.send
    );
    let _ = writeln!(toml, "key_file = {:?}", authkeys_path.display().to_string());
    let _ = writeln!(toml, "\n[timing]");
    let src = |v: Option<(Duration, usize)>| {
        v.map_or("Heartbeat's default".to_string(), |(_, l)| {
            format!("ha.cf line {l}")
        })
    };
    let _ = writeln!(toml, "keepalive = {:?}  # {}", ms(ka), src(cf.keepalive));
    let _ = writeln!(toml, "warntime = {:?}  # {}", ms(wt), src(cf.warntime));
    let _ = writeln!(toml, "deadtime = {:?}  # {}", ms(dt), src(cf.deadtime));
    let _ = writeln!(toml, "initdead = {:?}  # {}", ms(id), src(cf.initdead));

    let mut ucast: Vec<(String, u16, Vec<IpAddr>, Vec<usize>)> = Vec::new();
    let mut n = 0;
    for m in &cf.media {
        match m {
            Media::Bcast { iface, port, line } => {
                n += 1;
                let _ = writeln!(
                    toml,
                    "\n[[link]]  # ha.cf line {line}: bcast {iface}\nname = \"bcast-{}\"\nkind = \"bcast\"\ninterface = {iface:?}\nport = {port}",
                    sanitize(iface)
                );
            }
            Media::Mcast {
                iface,
                group,
                port,
                ttl,
                line,
            } => {
                n += 1;
                let _ = writeln!(
                    toml,
                    "\n[[link]]  # ha.cf line {line}: mcast {iface} {group}\nname = \"mcast{n}-{}\"\nkind = \"mcast\"\ninterface = {iface:?}\ngroup = \"{group}\"\nport = {port}\nttl = {ttl}",
                    sanitize(iface)
                );
            }
            Media::Ucast {
                iface,
                peer,
                port,
                line,
            } => match ucast.iter_mut().find(|u| u.0 == *iface && u.1 == *port) {
                Some(u) => {
                    u.2.push(*peer);
                    u.3.push(*line);
                }
                None => ucast.push((iface.clone(), *port, vec![*peer], vec![*line])),
            },
        }
    }
    for (iface, port, peers, lines) in &ucast {
        let lines: Vec<String> = lines.iter().map(ToString::to_string).collect();
        let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
        let _ = writeln!(
            toml,
            "\n[[link]]  # ha.cf lines {}: ucast {iface} (each node skips its own address)\nname = \"ucast-{}\"\nkind = \"ucast\"\ninterface = {iface:?}\nport = {port}\npeers = [{}]",
            lines.join(", "),
            sanitize(iface),
            peers.join(", ")
        );
    }
    if !cf.extras.ping.is_empty() {
        let list: Vec<String> = cf.extras.ping.iter().map(|p| format!("\"{p}\"")).collect();
        let _ = writeln!(
            toml,
            "\n[witness]  # ha.cf ping / ping_group: at failover, only a node that reaches one acts alone\naddresses = [{}]\nkind = \"icmp\"",
            list.join(", ")
        );
    }
    if let Some(dev) = &cf.extras.watchdog {
        let _ = writeln!(
            toml,
            "\n[watchdog]  # ha.cf watchdog: a hung or killed daemon resets this node\ndevice = {:?}\ntimeout = \"10s\"",
            dev.display().to_string()
        );
    }
    for (node, line) in &cf.nodes {
        let _ = writeln!(toml, "\n[[node]]  # ha.cf line {line}\nname = {node:?}");
    }

    // haresources: one group per logical line.
    if let Some((rpath, rtext)) = res {
        let mut rg = Diags {
            file: rpath,
            text: rtext,
            out: Vec::new(),
        };
        let mut ip_count = 0;
        for (gi, l) in logical_lines(rtext).iter().enumerate() {
            let w: Vec<&str> = l.text.split_whitespace().collect();
            let pref = w[0].to_ascii_lowercase();
            if !cf.nodes.iter().any(|(n, _)| *n == pref) {
                let known: Vec<&str> = cf.nodes.iter().map(|(n, _)| n.as_str()).collect();
                rg.error(
                    l,
                    format!(
                        "unknown node `{}` (ha.cf nodes: {})",
                        w[0],
                        known.join(", ")
                    ),
                    Some("the first word of each line is the preferred node, as in ha.cf".into()),
                );
                continue;
            }
            if w.len() < 2 {
                rg.error(
                    l,
                    "a group needs at least one resource after the node name",
                    None,
                );
                continue;
            }
            let gname = sanitize(w[1].split("::").last().unwrap_or(w[1]));
            let gname = if gname.is_empty() {
                format!("group{}", gi + 1)
            } else {
                gname
            };
            let afb = match cf.auto_failback.1 {
                Some(l) => format!("  # ha.cf line {l}"),
                None => "  # Heartbeat's default (legacy) behaves like on".into(),
            };
            let _ = writeln!(
                toml,
                "\n[[group]]  # haresources line {}: {}\nname = {gname:?}\nprefer = {{ {pref:?} = 100 }}\nauto_failback = {}{afb}\nmigration_threshold = 3",
                l.line, l.text, cf.auto_failback.0
            );
            for (ri, spec) in w[1..].iter().enumerate() {
                if let Some((name, body)) = resource_toml(spec, ri, &mut ip_count, &mut rg, l) {
                    let _ = writeln!(
                        toml,
                        "\n[[group.resource]]  # {spec}\nname = {name:?}\n{body}"
                    );
                }
            }
        }
        diags.extend(rg.out);
    }
    diags.extend(g.out);
    match auth.method() {
        Some(AuthMethod::Crc) => diags.push(Diagnostic::at(Severity::Warning, authkeys_path, "", 0, "authkeys selects `crc`: heartbeats are NOT authenticated; anyone on the network can forge them", Some("use `sha1` with a long secret".into()))),
        Some(AuthMethod::Md5) => diags.push(Diagnostic::at(Severity::Warning, authkeys_path, "", 0, "authkeys selects `md5`: tandem signs with HMAC-SHA256 using that key", None)),
        _ => {}
    }
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(ConfigError::Invalid(diags));
    }
    let mut loaded = crate::parse(&toml, &cf_path.with_file_name("tandem.toml"))?;
    diags.append(&mut loaded.warnings);
    loaded.warnings = diags;
    Ok(HeartbeatConfig {
        loaded,
        toml,
        extras: cf.extras,
        auth,
    })
}

#[cfg(test)]
mod tests;
