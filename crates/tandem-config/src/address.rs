//! A floating address (`agent = "ipaddr"`), parsed once when the
//! configuration loads: agents, the kernel lease and status use the parsed
//! value, never the parameter strings.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::duration::parse_duration;

/// The parameters of a floating-address resource.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FloatingAddress {
    /// The address.
    pub ip: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// Interface name.
    pub interface: String,
    /// Label for IPv4 (`ip addr` shows it), e.g. `eth0:0`.
    pub label: String,
    /// Gratuitous ARPs (or unsolicited neighbour advertisements) sent after
    /// adding the address.
    pub garp_count: u32,
    /// Interval between them.
    pub garp_interval: Duration,
    /// A monitor fails when the link has no carrier (tandem's own agent;
    /// the OCF IPaddr agents do not look).
    pub monitor_carrier: bool,
    /// Each monitor sends one more announcement (keepalived's
    /// `garp_master_refresh`; IPaddr2's `arp_count_refresh`).
    pub refresh_garp: bool,
    /// A start also sets the link up (IPaddr2 runs `ip link set NIC up`).
    pub link_up: bool,
    /// The broadcast address is copied from the interface's own address
    /// on that network, or none if it has none (IPaddr2's default); else
    /// it is the network's broadcast address.
    pub broadcast_from_primary: bool,
}

/// Why the parameters of a floating address are unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A required parameter is absent.
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    /// `address` is not ADDRESS/PREFIX.
    #[error("`{0}` is not an address with a prefix length")]
    NotAddress(String),
    /// The label does not fit the kernel's 15 characters.
    #[error("label `{0}` is longer than 15 characters")]
    LabelTooLong(String),
    /// `garp_count` is not a small number.
    #[error("garp_count `{0}` is not a number from 0 to 100")]
    GarpCount(String),
    /// `garp_interval` is not a time.
    #[error("garp_interval `{0}` is not a time")]
    GarpInterval(String),
}

impl AddressError {
    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Missing("interface") => "add to its params: interface = \"eth0\"",
            Self::Missing(_) | Self::NotAddress(_) => "write e.g. address = \"198.18.0.200/24\"",
            Self::LabelTooLong(_) => "use a label such as \"eth0:vip\" (at most 15 characters)",
            Self::GarpCount(_) => "write e.g. garp_count = 5",
            Self::GarpInterval(_) => "write e.g. garp_interval = \"200ms\"",
        }
    }
}

impl FloatingAddress {
    /// Parses a resource's parameters: `address` (ADDRESS/PREFIX) and
    /// `interface` are required; `label` (default `IFACE:0`), `garp_count`
    /// (default 5) and `garp_interval` (default 200 ms) are optional.
    pub fn from_params(p: &BTreeMap<String, String>) -> Result<Self, AddressError> {
        let addr = p.get("address").ok_or(AddressError::Missing("address"))?;
        let (ip, prefix) = addr
            .split_once('/')
            .and_then(|(a, b)| {
                Some((
                    a.trim().parse::<IpAddr>().ok()?,
                    b.trim().parse::<u8>().ok()?,
                ))
            })
            .filter(|(ip, p)| *p <= if ip.is_ipv4() { 32 } else { 128 })
            .ok_or_else(|| AddressError::NotAddress(addr.clone()))?;
        let interface = p
            .get("interface")
            .ok_or(AddressError::Missing("interface"))?
            .clone();
        let label = p
            .get("label")
            .cloned()
            .unwrap_or_else(|| format!("{interface}:0"));
        if label.len() > 15 {
            return Err(AddressError::LabelTooLong(label));
        }
        let garp_count = match p.get("garp_count") {
            None => 5,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| *n <= 100)
                .ok_or_else(|| AddressError::GarpCount(v.clone()))?,
        };
        let garp_interval = match p.get("garp_interval") {
            None => Duration::from_millis(200),
            Some(v) => parse_duration(v).map_err(|_| AddressError::GarpInterval(v.clone()))?,
        };
        Ok(Self {
            ip,
            prefix,
            interface,
            label,
            garp_count,
            garp_interval,
            monitor_carrier: true,
            refresh_garp: true,
            link_up: false,
            broadcast_from_primary: false,
        })
    }
}

impl Default for FloatingAddress {
    /// A placeholder for a resource whose parameters were rejected (the
    /// configuration is refused, so it is never used).
    fn default() -> Self {
        Self {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix: 0,
            interface: String::new(),
            label: String::new(),
            garp_count: 0,
            garp_interval: Duration::ZERO,
            monitor_carrier: true,
            refresh_garp: true,
            link_up: false,
            broadcast_from_primary: false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parameters from pairs (shared with `native`'s tests).
    pub(crate) fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_with_defaults() {
        let f = FloatingAddress::from_params(&params(&[
            ("address", "198.18.0.200/24"),
            ("interface", "eth0"),
        ]))
        .unwrap();
        assert_eq!(f.ip, "198.18.0.200".parse::<IpAddr>().unwrap());
        assert_eq!(
            (f.prefix, f.label.as_str(), f.garp_count),
            (24, "eth0:0", 5)
        );
    }

    #[test]
    fn rejects_what_the_kernel_would() {
        let bad = |kv: &[(&str, &str)]| FloatingAddress::from_params(&params(kv)).unwrap_err();
        assert_eq!(
            bad(&[("address", "198.18.0.200/33"), ("interface", "eth0")]),
            AddressError::NotAddress("198.18.0.200/33".into())
        );
        assert_eq!(
            bad(&[("address", "fd00::1/64")]),
            AddressError::Missing("interface")
        );
        assert!(matches!(
            bad(&[
                ("address", "fd00::1/64"),
                ("interface", "eth0"),
                ("label", "a-very-long-label")
            ]),
            AddressError::LabelTooLong(_)
        ));
        assert!(matches!(
            bad(&[
                ("address", "fd00::1/64"),
                ("interface", "eth0"),
                ("garp_count", "-1")
            ]),
            AddressError::GarpCount(_)
        ));
    }
}
