//! Gratuitous ARP: a 42-byte broadcast ARP request whose sender and target
//! IP are both the floating address, sent on an AF_PACKET socket, so that
//! neighbours (switches, clients, routers) learn the new MAC at once.
#![allow(unsafe_code)]

use std::net::Ipv4Addr;

/// Builds the frame (pure; tested byte for byte).
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]); // destination: broadcast
    f[6..12].copy_from_slice(&mac); // source
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The MAC address of `interface`.
pub fn mac_of(interface: &str) -> std::io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(std::io::Error::other("unexpected MAC address format"));
    }
    for (i, p) in parts.iter().enumerate() {
        mac[i] = u8::from_str_radix(p, 16).map_err(std::io::Error::other)?;
    }
    Ok(mac)
}

/// Sends one gratuitous ARP for `ip` on `interface`.
pub fn send(interface: &str, ip: Ipv4Addr) -> std::io::Result<()> {
    let mac = mac_of(interface)?;
    let index: i32 = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))?
        .trim()
        .parse()
        .map_err(std::io::Error::other)?;
    let f = frame(mac, ip);
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) takes integers only; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is a plain C struct for which all-zero bytes are a
    // valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = index;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: `f` and `addr` are valid for the lengths passed and outlive
    // the call; `fd` is the socket opened above.
    let sent = unsafe {
        libc::sendto(
            fd,
            f.as_ptr().cast(),
            f.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours and closed exactly once.
    unsafe { libc::close(fd) };
    if sent < 0 { Err(err) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_layout() {
        let f = super::frame([2, 0, 0, 0, 0, 1], "198.18.0.200".parse().unwrap());
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[198, 18, 0, 200]);
        assert_eq!(&f[38..42], &[198, 18, 0, 200]);
    }
}
