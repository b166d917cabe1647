//! Which interface carries an address, from the kernel's routing tables
//! (as Heartbeat's findif does).

use std::net::IpAddr;

/// The interface (and prefix) whose network contains `ip`, from the
/// kernel's routing table (as Heartbeat's findif does): `/proc/net/route`
/// for IPv4, `/proc/net/ipv6_route` for IPv6 (of the calling thread's
/// network namespace). Default routes are ignored.
pub fn find_interface(ip: IpAddr) -> Option<(String, u8)> {
    match ip {
        IpAddr::V4(v4) => find_interface_v4(
            v4,
            &std::fs::read_to_string("/proc/thread-self/net/route").ok()?,
        ),
        IpAddr::V6(v6) => find_interface_v6(
            v6,
            &std::fs::read_to_string("/proc/thread-self/net/ipv6_route").ok()?,
        ),
    }
}

pub(super) fn find_interface_v4(v4: std::net::Ipv4Addr, table: &str) -> Option<(String, u8)> {
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

pub(super) fn find_interface_v6(v6: std::net::Ipv6Addr, table: &str) -> Option<(String, u8)> {
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
