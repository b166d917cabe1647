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

/// An open AF_PACKET socket ready to send gratuitous ARPs for one address.
/// Closing it waits for an RCU grace period in the kernel (10–20 ms seen
/// here), so callers on a latency-critical path drop it on another thread.
pub struct Garp {
    fd: std::os::fd::OwnedFd,
    frame: [u8; 42],
    addr: libc::sockaddr_ll,
}

impl Garp {
    /// Opens the socket for `ip` on `interface`.
    pub fn open(interface: &str, ip: Ipv4Addr) -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        let mac = mac_of(interface)?;
        let index: i32 = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))?
            .trim()
            .parse()
            .map_err(std::io::Error::other)?;
        let proto = (libc::ETH_P_ARP as u16).to_be();
        // SAFETY: socket(2) takes integers only; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is a plain C struct for which all-zero bytes
        // are a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = index;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        Ok(Self {
            fd,
            frame: frame(mac, ip),
            addr,
        })
    }

    /// Sends one gratuitous ARP.
    pub fn send(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: `frame` and `addr` are valid for the lengths passed and
        // outlive the call; the descriptor is open while `self` lives.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                self.frame.as_ptr().cast(),
                self.frame.len(),
                0,
                (&raw const self.addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Sends one gratuitous ARP for `ip` on `interface` (and closes the socket,
/// which takes a few milliseconds).
pub fn send(interface: &str, ip: Ipv4Addr) -> std::io::Result<()> {
    Garp::open(interface, ip)?.send()
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
