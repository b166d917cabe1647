//! The `[[link]]` tables: kinds, interfaces, ports, peers.

use std::net::IpAddr;

use super::check::{Checker, valid_name};
use super::{DEFAULT_PORT, Link, LinkKind, MAX_LINKS};
use crate::raw::RawConfig;

/// Checks the `[[link]]` tables.
pub(super) fn build_links(c: &mut Checker<'_>, raw: &RawConfig, text: &str) -> Vec<Link> {
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
    links
}
