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

mod authkeys;
pub mod drbd;
mod drbd_options;
mod hacf;
mod haresources;
mod interfaces;

pub use authkeys::{load_authkeys, looks_like_authkeys, parse_authkeys};
use hacf::{Diags, Line, Media, logical_lines, ms, parse_hacf};
use haresources::{resource_toml, sanitize};
pub use interfaces::find_interface;

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
    // DRBD's files sit beside Heartbeat's: /etc/drbd.d for /etc/ha.d.
    let drbd_dir = dir.parent().unwrap_or(Path::new("/")).join("drbd.d");
    let drbd = if drbd_dir.is_dir() {
        drbd::read(&drbd_dir)?
    } else {
        Vec::new()
    };
    convert(
        &cf_path,
        &cf_text,
        res.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
        auth,
        &dir.join("authkeys"),
        &drbd,
    )
}

/// Converts the texts of ha.cf and haresources (pure, apart from the
/// routing-table look-up for bare addresses); `drbd` holds the DRBD
/// resource files the `drbddisk::NAME` resources refer to.
pub fn convert(
    cf_path: &Path,
    cf_text: &str,
    res: Option<(&Path, &str)>,
    auth: AuthKeys,
    authkeys_path: &Path,
    drbd: &[(PathBuf, String)],
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
                "deadtime ({}) must be at least {} ({}) for tandem",
                ms(dt),
                crate::model::MIN_DEADTIME_RULE,
                ms(crate::model::min_deadtime(ka))
            ),
            Some(
                "raise deadtime: the lease under which a node serves must outlast the wait for the next acknowledgement and a tick of the kernel's timer (docs/safety.md, \"Lease sizing\")"
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
        let mut drbd_names: Vec<String> = Vec::new();
        let mut alerts = String::new();
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
            for spec in &w[1..] {
                if let Some(r) = spec.strip_prefix("drbddisk::")
                    && !drbd_names.iter().any(|n| n == r)
                {
                    drbd_names.push(r.to_string());
                }
            }
            for (ri, spec) in w[1..].iter().enumerate() {
                // MailTo mails takeovers and releases: an alert, not a
                // resource (same worker, order and retries as every alert).
                if let Some(rest) = spec.strip_prefix("MailTo::") {
                    let mut parts = rest.split("::");
                    if let Some(addr) = parts.next().filter(|a| !a.is_empty()) {
                        let subject = parts
                            .next()
                            .map_or(String::new(), |s| format!("subject = {s:?}\n"));
                        let _ = write!(
                            alerts,
                            "\n[[alert]]  # {spec} (haresources line {})\nmail_to = {addr:?}\n{subject}groups = [{gname:?}]\n",
                            l.line
                        );
                        continue;
                    }
                }
                if let Some((name, body)) = resource_toml(spec, ri, &mut ip_count, &mut rg, l) {
                    let _ = writeln!(
                        toml,
                        "\n[[group.resource]]  # {spec}\nname = {name:?}\n{body}"
                    );
                }
            }
        }
        diags.extend(rg.out);
        toml.push_str(&alerts);
        if !drbd_names.is_empty() {
            let nodes: Vec<String> = cf.nodes.iter().map(|(n, _)| n.clone()).collect();
            match drbd::import(drbd, Some(&drbd_names), Some(&nodes)) {
                Ok(i) => {
                    toml.push_str(&i.toml);
                    diags.extend(i.notes);
                }
                Err(mut e) => {
                    if drbd.is_empty() {
                        e = vec![Diagnostic::at(
                            Severity::Error,
                            rpath,
                            rtext,
                            0,
                            format!(
                                "haresources names drbddisk::{} but no DRBD resource file was found",
                                drbd_names.join(", drbddisk::")
                            ),
                            Some("put the .res files in drbd.d beside the Heartbeat directory (/etc/drbd.d for /etc/ha.d), or convert them with `tandem import drbd`".into()),
                        )];
                    }
                    diags.extend(e);
                }
            }
        }
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
