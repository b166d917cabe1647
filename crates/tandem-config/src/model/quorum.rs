//! `[quorum]` and `[witness]`: who may act after a partition.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::check::Checker;
use super::{Node, Witness, WitnessKind};
use toml::Spanned;

pub(super) fn build_quorum(
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

/// Checks `[witness]`.
pub(super) fn build_witness(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<crate::raw::RawWitness>>,
    _nodes: &[Node],
    key_file: &Path,
    base: &Path,
) -> Option<Witness> {
    raw.as_ref().map(|w| {
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
    })
}
