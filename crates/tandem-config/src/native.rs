//! Native fast paths for the most used OCF agents: an
//! `ocf:heartbeat:IPaddr2` or `ocf:heartbeat:IPaddr` resource whose
//! parameters tandem implements exactly is run by tandem's own netlink
//! address code (milliseconds) instead of the shell script (tens of
//! milliseconds of forks, and output held open by a background `send_arp`).
//! Anything else runs the script, and says why ([`Native::Script`]);
//! `native = false` on the resource forces the script.
//!
//! Semantics kept from the agents (resource-agents 4.12, as Debian ships
//! it): the address and its label (IPaddr2: none, `NIC:iflabel`, or the
//! `eth0:1` form of `nic`; IPaddr: `NIC:N`, N counting the IPaddr
//! resources on that interface in configuration order); the interface and
//! prefix found from the routing table when not given (findif); the
//! broadcast address; the announcements (IPaddr2: `arp_count` ×
//! `arp_interval`, `arp_count_refresh` at each monitor; IPaddr: 10 ×
//! 250 ms); IPaddr2 setting the link up; monitors that do not look at the
//! carrier ("running" means the address is on the interface, else "not
//! running"). Parameters the agents would refuse in `validate-all`
//! (exit 6) are configuration errors here, reported with file and line.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::address::FloatingAddress;

/// How a resource with a native fast path runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Native {
    /// Its agent has no native path.
    #[default]
    None,
    /// tandem runs it natively, as this address.
    IpAddr(FloatingAddress),
    /// The agent's script runs, for this reason.
    Script(String),
}

/// Why the parameters cannot run natively.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NativeError {
    /// The agent itself would refuse them (validate-all, exit 6).
    #[error("{0}")]
    Invalid(String),
    /// Valid, but not implemented natively: the script runs.
    #[error("{0}")]
    Unsupported(String),
}

/// Parameters both agents take that the native path implements.
const COMMON_KNOWN: [&str; 6] = [
    "ip",
    "cidr_netmask",
    "netmask",
    "nic",
    "iflabel",
    "broadcast",
];
/// IPaddr2's own parameters that the native path implements.
const IPADDR2_KNOWN: [&str; 3] = ["arp_count", "arp_interval", "arp_count_refresh"];
/// IPaddr's own parameters that the native path implements (default only).
const IPADDR_KNOWN: [&str; 1] = ["lvs_support"];

/// Parameters whose default value is implemented (other values: script).
const IPADDR2_DEFAULTS: [(&str, &[&str]); 11] = [
    ("arp_bg", &["", "true", "yes", "1", "false", "no", "0"]),
    ("arp_sender", &["", "send_arp"]),
    ("send_arp_opts", &[""]),
    ("lvs_support", &["", "false", "no", "0"]),
    ("lvs_ipv6_addrlabel", &["", "false", "no", "0"]),
    ("flush_routes", &["", "false", "no", "0"]),
    ("run_arping", &["", "false", "no", "0"]),
    ("noprefixroute", &["", "false", "no", "0"]),
    ("preferred_lft", &["", "forever"]),
    ("network_namespace", &[""]),
    ("nodad", &["", "false", "no", "0", "true", "yes", "1"]),
];

fn unsupported(what: impl Into<String>) -> NativeError {
    NativeError::Unsupported(what.into())
}

/// A prefix length from `cidr_netmask`: a number, or a dotted IPv4 mask.
fn prefix(text: &str, v4: bool) -> Result<u8, NativeError> {
    let max = if v4 { 32 } else { 128 };
    if let Ok(p) = text.parse::<u8>() {
        return if (1..=max).contains(&p) {
            Ok(p)
        } else {
            Err(NativeError::Invalid(format!(
                "cidr_netmask `{text}` is not from 1 to {max}"
            )))
        };
    }
    match text.parse::<Ipv4Addr>() {
        Ok(m) if v4 && (!u32::from(m)).wrapping_add(1).is_power_of_two() => {
            u8::try_from(u32::from(m).count_ones())
                .map_err(|_| NativeError::Invalid(format!("netmask `{text}`")))
        }
        _ => Err(NativeError::Invalid(format!(
            "cidr_netmask `{text}` is neither a prefix length nor a netmask"
        ))),
    }
}

fn count(p: &BTreeMap<String, String>, key: &str, default: u32) -> Result<u32, NativeError> {
    match p.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| NativeError::Invalid(format!("{key} `{v}` is not a whole number"))),
    }
}

/// The address of an IPaddr/IPaddr2 resource, if it can run natively.
/// `kind` is the agent (`IPaddr2` or `IPaddr`); `find` finds the
/// interface and prefix of a network from the routing table; `ipaddr_index`
/// counts IPaddr resources already seen per interface (for `NIC:N`).
pub fn ipaddr(
    kind: &str,
    p: &BTreeMap<String, String>,
    find: &dyn Fn(IpAddr) -> Option<(String, u8)>,
    ipaddr_index: &mut BTreeMap<String, u32>,
) -> Result<FloatingAddress, NativeError> {
    let old = match kind {
        "IPaddr2" => false,
        "IPaddr" => true,
        _ => return Err(unsupported(format!("no native path for {kind}"))),
    };
    let get = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let ip_text =
        get("ip").ok_or_else(|| NativeError::Invalid("the parameter `ip` is required".into()))?;
    let ip: IpAddr = ip_text.parse().map_err(|_| {
        NativeError::Invalid(format!("ip `{ip_text}` is not an IPv4 or IPv6 address"))
    })?;
    let own: &[&str] = if old { &IPADDR_KNOWN } else { &IPADDR2_KNOWN };
    for (k, v) in p {
        if COMMON_KNOWN.contains(&k.as_str()) || own.contains(&k.as_str()) {
            continue;
        }
        match IPADDR2_DEFAULTS.iter().find(|(d, _)| d == k) {
            Some((_, ok)) if !old && ok.contains(&v.trim()) => {}
            Some(_) if !old => {
                return Err(unsupported(format!(
                    "{k} = \"{v}\" is not implemented natively"
                )));
            }
            _ => {
                return Err(unsupported(format!(
                    "the parameter `{k}` is not implemented natively"
                )));
            }
        }
    }
    if old && ip.is_ipv6() {
        return Err(unsupported("IPaddr is for IPv4 only"));
    }
    if ip.is_ipv6() && !matches!(get("nodad"), Some("true" | "yes" | "1")) {
        // IPaddr2 waits for duplicate address detection (about 3 s).
        return Err(unsupported(
            "IPv6 without nodad = true (the script waits for duplicate address detection)",
        ));
    }
    if old && get("lvs_support").is_some_and(|v| !matches!(v, "false" | "no" | "0")) {
        return Err(unsupported("lvs_support is not implemented natively"));
    }
    // IPaddr2 copies the broadcast address of the interface's own address
    // unless told `+` (computed); IPaddr always computes it.
    let broadcast_from_primary = match get("broadcast") {
        None => !old,
        Some("+") => false,
        Some(b) => {
            return Err(unsupported(format!(
                "broadcast = \"{b}\" is not implemented natively"
            )));
        }
    };
    let mask = get("cidr_netmask").or_else(|| get("netmask"));
    let (nic_text, label_in_nic) = match get("nic") {
        Some(n) => match n.split_once(':') {
            Some((base, l)) => (Some(base.to_string()), Some(format!("{base}:{l}"))),
            None => (Some(n.to_string()), None),
        },
        None if old => (Some("eth0".to_string()), None),
        None => (None, None),
    };
    if old && mask.is_none() {
        // IPaddr's findif then picks /32 with nic given: the script decides.
        return Err(unsupported(
            "IPaddr without cidr_netmask (its findif picks the netmask)",
        ));
    }
    let (interface, prefix) = match (nic_text, mask) {
        (Some(n), Some(m)) => (n, prefix(m, ip.is_ipv4())?),
        (nic, m) => {
            let (found, found_prefix) = find(ip).ok_or_else(|| {
                unsupported(format!("no route here reaches {ip}, so the interface or netmask is not known before the agent runs"))
            })?;
            if let Some(n) = &nic
                && *n != found
            {
                return Err(unsupported(format!(
                    "{ip} is routed through {found}, not {n}"
                )));
            }
            let prefix = match m {
                Some(m) => prefix(m, ip.is_ipv4())?,
                None => found_prefix,
            };
            (found, prefix)
        }
    };
    let label = if old {
        let n = ipaddr_index.entry(interface.clone()).or_insert(0);
        let l = format!("{interface}:{n}");
        *n += 1;
        l
    } else if let Some(l) = label_in_nic {
        l
    } else if let Some(l) = get("iflabel") {
        format!("{interface}:{l}")
    } else {
        interface.clone()
    };
    if label.len() > 15 {
        return Err(NativeError::Invalid(format!(
            "the label `{label}` is longer than 15 characters"
        )));
    }
    let (garp_count, garp_interval, refresh_garp) = if old {
        (10, Duration::from_millis(250), false)
    } else {
        let c = count(p, "arp_count", 5)?;
        let i = count(p, "arp_interval", 200)?;
        if c == 0 || i == 0 {
            return Err(NativeError::Invalid(
                "arp_count and arp_interval must be above 0".into(),
            ));
        }
        (
            c,
            Duration::from_millis(u64::from(i)),
            count(p, "arp_count_refresh", 0)? > 0,
        )
    };
    Ok(FloatingAddress {
        ip,
        prefix,
        interface,
        label,
        garp_count,
        garp_interval,
        monitor_carrier: false,
        refresh_garp,
        link_up: !old,
        broadcast_from_primary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::address::tests::params;

    fn route(ip: IpAddr) -> Option<(String, u8)> {
        ip.to_string()
            .starts_with("198.18.")
            .then(|| ("eth0".to_string(), 24))
    }

    fn two(p: &[(&str, &str)]) -> Result<FloatingAddress, NativeError> {
        ipaddr("IPaddr2", &params(p), &route, &mut BTreeMap::new())
    }

    #[test]
    fn ipaddr2_labels_prefixes_and_interfaces_follow_the_agent() {
        let f = two(&[
            ("ip", "198.18.0.200"),
            ("cidr_netmask", "24"),
            ("nic", "eth1"),
        ])
        .unwrap();
        assert_eq!(
            (f.interface.as_str(), f.prefix, f.label.as_str()),
            ("eth1", 24, "eth1")
        );
        assert!(f.link_up && !f.monitor_carrier && !f.refresh_garp);
        assert_eq!(
            (f.garp_count, f.garp_interval),
            (5, Duration::from_millis(200))
        );
        let f = two(&[
            ("ip", "198.18.0.200"),
            ("nic", "eth1:vip"),
            ("cidr_netmask", "255.255.0.0"),
        ])
        .unwrap();
        assert_eq!((f.label.as_str(), f.prefix), ("eth1:vip", 16));
        let f = two(&[
            ("ip", "198.18.0.200"),
            ("iflabel", "web"),
            ("arp_count_refresh", "1"),
        ])
        .unwrap();
        assert_eq!(
            (f.interface.as_str(), f.prefix, f.label.as_str()),
            ("eth0", 24, "eth0:web")
        );
        assert!(f.refresh_garp);
    }

    #[test]
    fn what_the_agent_refuses_is_invalid_and_what_is_not_implemented_falls_back() {
        for p in [
            vec![("ip", "notanip")],
            vec![("ip", "198.18.0.1"), ("cidr_netmask", "33")],
            vec![("ip", "198.18.0.1"), ("iflabel", "averyverylonglabel")],
            vec![("ip", "198.18.0.1"), ("arp_count", "0")],
            vec![("nic", "eth0")],
        ] {
            assert!(matches!(two(&p), Err(NativeError::Invalid(_))), "{p:?}");
        }
        for p in [
            vec![("ip", "198.18.0.1"), ("lvs_support", "true")],
            vec![("ip", "198.18.0.1"), ("clusterip_hash", "sourceip")],
            vec![("ip", "10.1.1.1")],                    // no route, no nic
            vec![("ip", "198.18.0.1"), ("nic", "eth3")], // routed elsewhere, no mask
            vec![("ip", "fd00::1"), ("nic", "eth0"), ("cidr_netmask", "64")],
            vec![("ip", "198.18.0.1"), ("broadcast", "198.18.0.127")],
        ] {
            assert!(matches!(two(&p), Err(NativeError::Unsupported(_))), "{p:?}");
        }
        assert!(
            two(&[
                ("ip", "fd00::1"),
                ("nic", "eth0"),
                ("cidr_netmask", "64"),
                ("nodad", "true")
            ])
            .is_ok()
        );
    }

    #[test]
    fn ipaddr_numbers_its_labels_per_interface_and_needs_a_netmask() {
        let mut idx = BTreeMap::new();
        let p = params(&[
            ("ip", "198.18.0.200"),
            ("cidr_netmask", "24"),
            ("nic", "eth0"),
        ]);
        let a = ipaddr("IPaddr", &p, &route, &mut idx).unwrap();
        let b = ipaddr("IPaddr", &p, &route, &mut idx).unwrap();
        assert_eq!((a.label.as_str(), b.label.as_str()), ("eth0:0", "eth0:1"));
        assert!(!a.link_up && !a.monitor_carrier);
        assert_eq!(
            (a.garp_count, a.garp_interval),
            (10, Duration::from_millis(250))
        );
        let p = params(&[("ip", "198.18.0.200")]);
        assert!(matches!(
            ipaddr("IPaddr", &p, &route, &mut idx),
            Err(NativeError::Unsupported(_))
        ));
    }
}
