//! The `[[node]]` tables: names, addresses per link, votes.

use std::net::IpAddr;

use super::check::{Checker, valid_name};
use super::{Link, LinkKind, MAX_NODES, Node};
use crate::raw::RawConfig;

/// Checks the `[[node]]` tables against the links.
pub(super) fn build_nodes(
    c: &mut Checker<'_>,
    raw: &RawConfig,
    text: &str,
    links: &[Link],
) -> Vec<Node> {
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
        for l in links {
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
    nodes
}
