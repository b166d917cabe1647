//! Unsolicited neighbour advertisements (RFC 4861 §7.2.6): the IPv6
//! counterpart of gratuitous ARP. Sent from the floating address to
//! all-nodes (ff02::1) with the Override flag and the interface's MAC, hop
//! limit 255, on a raw ICMPv6 socket (the kernel fills in the checksum).

use std::net::{Ipv6Addr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};

/// The ICMPv6 message (pure; tested byte for byte).
pub fn message(target: Ipv6Addr, mac: [u8; 6]) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136; // neighbour advertisement
    m[4] = 0x20; // Override
    m[8..24].copy_from_slice(&target.octets());
    m[24] = 2; // option: target link-layer address
    m[25] = 1; // length in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

/// Sends one unsolicited neighbour advertisement for `vip` on `interface`.
pub fn send(interface: &str, vip: Ipv6Addr) -> std::io::Result<()> {
    let mac = crate::garp::mac_of(interface)?;
    let index: u32 = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))?
        .trim()
        .parse()
        .map_err(std::io::Error::other)?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.set_multicast_hops_v6(255)?;
    s.set_multicast_if_v6(index)?;
    s.bind(&SocketAddrV6::new(vip, 0, 0, index).into())?;
    let dest = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    s.send_to(&message(vip, mac), &dest.into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_layout() {
        let vip: std::net::Ipv6Addr = "fd00::200".parse().unwrap();
        let m = super::message(vip, [2, 0, 0, 0, 0, 9]);
        assert_eq!(m[0], 136);
        assert_eq!(m[4], 0x20, "override flag, not solicited");
        assert_eq!(&m[8..24], &vip.octets());
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], &[2, 0, 0, 0, 0, 9]);
    }
}
