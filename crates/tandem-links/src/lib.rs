//! Heartbeat links: the UDP sockets that carry the brain's packets.
//!
//! [`open_links`] opens one [`LinkSocket`] per configured link for the local
//! node: a unicast link binds the node's own address and sends to each
//! peer's; a broadcast link binds the port on its interface and sends to
//! 255.255.255.255; a multicast link joins its group on its interface with
//! the configured TTL and loopback off. Sockets are non-blocking `mio`
//! sockets, so the heartbeat thread can poll them all with one timeout.
//! [`neighbours`] keeps unicast links quick to recover after a cable flap.

pub mod neighbours;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tandem_config::{Config, LinkKind};
use tandem_core::LinkId;

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A unicast link needs the local node's own address on it.
    #[error("link `{link}`: node `{node}` has no address on this unicast link")]
    NoLocalAddress {
        /// Link name.
        link: String,
        /// Node name.
        node: String,
    },
    /// The interface named by the link does not exist here.
    #[error(
        "link `{link}`: interface `{interface}` does not exist on this machine (see `ip link`)"
    )]
    NoInterface {
        /// Link name.
        link: String,
        /// Interface name.
        interface: String,
    },
    /// A socket operation failed.
    #[error("link `{link}`: cannot {what}: {source}{}", hint(.source))]
    Socket {
        /// Link name.
        link: String,
        /// What was attempted.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 and binding to an interface need root or CAP_NET_BIND_SERVICE/CAP_NET_RAW)"
        }
        io::ErrorKind::AddrNotAvailable => {
            " (the address is not configured on this machine: check the node's address and `ip addr`)"
        }
        io::ErrorKind::AddrInUse => " (another program, or another tandem, uses this port)",
        _ => "",
    }
}

/// One open heartbeat link.
#[derive(Debug)]
pub struct LinkSocket {
    /// The link's index, as the brain knows it.
    pub id: LinkId,
    /// The link's label for logs.
    pub label: String,
    /// The socket, registered with the heartbeat thread's poller.
    pub socket: mio::net::UdpSocket,
    /// Where each packet goes: each peer (unicast), or the broadcast or
    /// multicast address.
    pub destinations: Vec<SocketAddr>,
}

impl LinkSocket {
    /// Sends `payload` to every destination; returns how many sends failed
    /// (a peer that is down makes unicast sends fail with ECONNREFUSED or
    /// EHOSTUNREACH, which is normal and must not stop the others).
    pub fn send_all(&self, payload: &[u8]) -> usize {
        self.destinations
            .iter()
            .filter(|d| self.socket.send_to(payload, **d).is_err())
            .count()
    }
}

/// Whether `ip` is one of this machine's addresses (binding to it works).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn ifindex(link: &str, interface: &str) -> Result<u32, LinkError> {
    let path = format!("/sys/class/net/{interface}/ifindex");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| LinkError::NoInterface {
            link: link.to_string(),
            interface: interface.to_string(),
        })
}

/// Opens every link of `config` for the node named `local`.
pub fn open_links(config: &Config, local: &str) -> Result<Vec<LinkSocket>, LinkError> {
    let Some((_, me)) = config.node(local) else {
        return Err(LinkError::NoLocalAddress {
            link: String::new(),
            node: local.to_string(),
        });
    };
    let mut out = Vec::with_capacity(config.links.len());
    for (i, link) in config.links.iter().enumerate() {
        let name = link.name.clone();
        let err = |what: &str| {
            let name = name.clone();
            let what = what.to_string();
            move |source| LinkError::Socket {
                link: name,
                what,
                source,
            }
        };
        let own = me.addresses.get(i).copied().flatten();
        let index = match &link.interface {
            Some(ifname) => Some(ifindex(&link.name, ifname)?),
            None => None,
        };
        let v6 = match &link.kind {
            LinkKind::Mcast { group, .. } => group.is_ipv6(),
            _ => own.is_some_and(|a| a.is_ipv6()),
        };
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
            .map_err(err("create a UDP socket"))?;
        sock.set_reuse_address(true)
            .map_err(err("set SO_REUSEADDR"))?;
        if let Some(ifname) = &link.interface {
            sock.bind_device(Some(ifname.as_bytes()))
                .map_err(err(&format!("bind to interface {ifname}")))?;
        }
        let any: IpAddr = if v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let destinations = match &link.kind {
            LinkKind::Ucast => {
                match own {
                    Some(addr) => sock
                        .bind(&SocketAddr::new(addr, link.port).into())
                        .map_err(err(&format!("bind {addr} port {}", link.port)))?,
                    None if !link.peers.is_empty() => sock
                        .bind(&SocketAddr::new(any, link.port).into())
                        .map_err(err(&format!("bind port {}", link.port)))?,
                    None => {
                        return Err(LinkError::NoLocalAddress {
                            link: link.name.clone(),
                            node: local.to_string(),
                        });
                    }
                }
                let mut dests: Vec<SocketAddr> = config
                    .nodes
                    .iter()
                    .filter(|n| n.name != local)
                    .filter_map(|n| n.addresses.get(i).copied().flatten())
                    .map(|a| SocketAddr::new(a, link.port))
                    .collect();
                // Heartbeat's `ucast` lines: every listed peer but ourselves.
                for p in &link.peers {
                    let d = SocketAddr::new(*p, link.port);
                    if Some(*p) != own && !is_local(*p) && !dests.contains(&d) {
                        dests.push(d);
                    }
                }
                dests
            }
            LinkKind::Bcast => {
                sock.set_broadcast(true).map_err(err("enable broadcast"))?;
                sock.bind(&SocketAddr::new(any, link.port).into())
                    .map_err(err(&format!("bind port {}", link.port)))?;
                vec![SocketAddr::new(Ipv4Addr::BROADCAST.into(), link.port)]
            }
            LinkKind::Mcast { group, ttl } => {
                sock.bind(&SocketAddr::new(any, link.port).into())
                    .map_err(err(&format!("bind port {}", link.port)))?;
                let idx = index.unwrap_or(0);
                match group {
                    IpAddr::V4(g) => {
                        sock.join_multicast_v4_n(g, &socket2::InterfaceIndexOrAddress::Index(idx))
                            .map_err(err(&format!("join multicast group {g}")))?;
                        sock.set_multicast_ttl_v4(*ttl)
                            .map_err(err("set multicast TTL"))?;
                        sock.set_multicast_loop_v4(false)
                            .map_err(err("disable multicast loopback"))?;
                        if let Some(IpAddr::V4(a)) = own {
                            sock.set_multicast_if_v4(&a)
                                .map_err(err("choose the multicast interface"))?;
                        }
                    }
                    IpAddr::V6(g) => {
                        sock.join_multicast_v6(g, idx)
                            .map_err(err(&format!("join multicast group {g}")))?;
                        sock.set_multicast_hops_v6(*ttl)
                            .map_err(err("set multicast hops"))?;
                        sock.set_multicast_loop_v6(false)
                            .map_err(err("disable multicast loopback"))?;
                        sock.set_multicast_if_v6(idx)
                            .map_err(err("choose the multicast interface"))?;
                    }
                }
                vec![SocketAddr::new(*group, link.port)]
            }
        };
        sock.set_nonblocking(true)
            .map_err(err("make the socket non-blocking"))?;
        let std_sock: std::net::UdpSocket = sock.into();
        out.push(LinkSocket {
            id: LinkId(u8::try_from(i).unwrap_or(u8::MAX)),
            label: config.link_label(i),
            socket: mio::net::UdpSocket::from_std(std_sock),
            destinations,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(port: u16) -> Config {
        let text = format!(
            r#"
cluster = "t"
key_file = "k"
[[link]]
name = "lo"
kind = "ucast"
port = {port}
[[node]]
name = "a"
addresses = {{ lo = "127.0.0.21" }}
[[node]]
name = "b"
addresses = {{ lo = "127.0.0.22" }}
"#
        );
        tandem_config::parse(&text, Path::new("t.toml"))
            .unwrap()
            .config
    }

    #[test]
    fn unicast_links_reach_each_other_on_loopback() {
        let c = config(17_694);
        let a = open_links(&c, "a").unwrap();
        let b = open_links(&c, "b").unwrap();
        assert_eq!(a[0].destinations, vec!["127.0.0.22:17694".parse().unwrap()]);
        assert_eq!(a[0].send_all(b"ping"), 0);
        let mut buf = [0u8; 16];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let (n, from) = loop {
            match b[0].socket.recv_from(&mut buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "nothing received");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from, "127.0.0.21:17694".parse().unwrap());
    }

    #[test]
    fn errors_name_the_link_and_the_fix() {
        let c = config(17_695);
        let _a = open_links(&c, "a").unwrap();
        let mut other = c.clone();
        other.nodes[0].addresses[0] = Some("198.18.250.1".parse().unwrap());
        let e = open_links(&other, "a").unwrap_err().to_string();
        assert!(
            e.contains("link `lo`") && e.contains("not configured on this machine"),
            "{e}"
        );
        let mut noif = c.clone();
        noif.links[0].interface = Some("nosuchif0".into());
        let e = open_links(&noif, "a").unwrap_err().to_string();
        assert!(e.contains("interface `nosuchif0` does not exist"), "{e}");
    }
}
