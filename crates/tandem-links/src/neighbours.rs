//! Neighbour-table tuning for unicast heartbeat links.
//!
//! When an interface loses its carrier, Linux flushes its ARP/NDP entries.
//! The next heartbeat to a peer then waits in an INCOMPLETE entry until the
//! kernel's retransmit timer fires again: `retrans_time_ms`, one second by
//! default. Packets sent meanwhile do not hurry it. After a short cable flap
//! a unicast link would therefore stay silent for up to a second, longer
//! than a fast deadtime, and the peer would be declared dead although the
//! cable is back. Worse, a probe sent in the instant the carrier returns can
//! go unanswered, and after three probes the entry fails and the queued
//! heartbeats are dropped. So on the interfaces that carry unicast
//! heartbeats tandem probes every half keepalive, and sends enough probes to
//! keep an entry probing for a whole deadtime: after a flap shorter than
//! the deadtime the peer is found again within half a keepalive or so.
//! Broadcast and multicast links need no neighbour entry.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tandem_config::{Config, LinkKind};

/// The lowest retransmit time tandem sets, whatever the keepalive.
pub const MIN_RETRANSMIT: Duration = Duration::from_millis(20);

/// The most multicast probes tandem asks for.
pub const MAX_PROBES: u64 = 20;

/// One change (or attempted change) of a neighbour-table setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighbourTuning {
    /// Interface name.
    pub interface: String,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// The sysctl's name under `net/FAMILY/neigh/INTERFACE/`.
    pub setting: &'static str,
    /// The value before.
    pub from: u64,
    /// The value written.
    pub to: u64,
    /// Why writing failed, if it did.
    pub error: Option<String>,
}

/// The (interface, family) pairs that carry unicast heartbeats of `config`
/// for node `local`: the link's named interface, or the one the routing
/// table uses for each peer address.
pub fn unicast_interfaces(config: &Config, local: &str) -> BTreeSet<(String, &'static str)> {
    let mut out = BTreeSet::new();
    for (i, link) in config.links.iter().enumerate() {
        if link.kind != LinkKind::Ucast {
            continue;
        }
        let peers = config
            .nodes
            .iter()
            .filter(|n| n.name != local)
            .filter_map(|n| n.addresses.get(i).copied().flatten())
            .chain(link.peers.iter().copied());
        for peer in peers {
            let family = if peer.is_ipv4() { "ipv4" } else { "ipv6" };
            let interface = match &link.interface {
                Some(i) => Some(i.clone()),
                None => tandem_config::legacy::find_interface(peer).map(|(i, _)| i),
            };
            if let Some(interface) = interface {
                out.insert((interface, family));
            }
        }
    }
    out
}

fn sysctl_path(interface: &str, family: &str, setting: &str) -> PathBuf {
    PathBuf::from(format!(
        "/proc/sys/net/{family}/neigh/{interface}/{setting}"
    ))
}

/// The neighbour settings tandem wants for these timings: probes every
/// half keepalive (within [`MIN_RETRANSMIT`] and one second), and enough of
/// them to keep an unresolved entry probing for a whole deadtime. Returns
/// (retransmit time in ms, multicast probes).
pub fn wanted(keepalive: Duration, deadtime: Duration) -> (u64, u64) {
    let retrans = (keepalive / 2).clamp(MIN_RETRANSMIT, Duration::from_secs(1));
    let ms = u64::try_from(retrans.as_millis()).unwrap_or(1000).max(1);
    let dead = u64::try_from(deadtime.as_millis()).unwrap_or(u64::MAX);
    (ms, dead.div_ceil(ms).clamp(3, MAX_PROBES))
}

/// Applies [`wanted`] to every interface carrying unicast heartbeats:
/// lowers `retrans_time_ms` and raises `mcast_solicit`, never the other way.
/// Returns what was changed (or could not be), for the log.
pub fn tune(config: &Config, local: &str) -> Vec<NeighbourTuning> {
    let (retrans, probes) = wanted(config.timing.keepalive, config.timing.deadtime);
    let mut out = Vec::new();
    for (interface, family) in unicast_interfaces(config, local) {
        for (setting, want, lower) in [
            ("retrans_time_ms", retrans, true),
            ("mcast_solicit", probes, false),
        ] {
            let path = sysctl_path(&interface, family, setting);
            let Some(from) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
            else {
                continue;
            };
            // The kernel stores the time in jiffies: 50 ms may read back as 52.
            if (lower && from < want + 10) || (!lower && from >= want) {
                continue;
            }
            let error = std::fs::write(&path, format!("{want}\n"))
                .err()
                .map(|e| format!("write {}: {e}", path.display()));
            out.push(NeighbourTuning {
                interface: interface.clone(),
                family,
                setting,
                from,
                to: want,
                error,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_follow_keepalive_and_cover_a_deadtime() {
        let ms = Duration::from_millis;
        // Default timings.
        assert_eq!(wanted(ms(100), ms(500)), (50, 10));
        // Fast timings: floor on the interval, probes still cover deadtime.
        assert_eq!(wanted(ms(10), ms(40)), (20, 3));
        // Heartbeat's S1 (keepalive 2 s, deadtime 10 s).
        assert_eq!(wanted(ms(2000), ms(10_000)), (1000, 10));
        assert_eq!(wanted(ms(100), ms(60_000)), (50, MAX_PROBES));
    }

    #[test]
    fn named_interfaces_of_unicast_links_are_tuned_and_others_not() {
        let text = r#"
cluster = "t"
key_file = "k"
[[link]]
name = "a"
kind = "ucast"
interface = "eth7"
[[link]]
name = "b"
kind = "bcast"
interface = "eth8"
[[node]]
name = "n1"
addresses = { a = "10.9.0.1" }
[[node]]
name = "n2"
addresses = { a = "10.9.0.2" }
"#;
        let Ok(parsed) = tandem_config::parse(text, std::path::Path::new("t.toml")) else {
            panic!("config does not parse");
        };
        let config = parsed.config;
        let got = unicast_interfaces(&config, "n1");
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![("eth7".to_string(), "ipv4")]
        );
    }
}
