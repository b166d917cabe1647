//! The floating IP agent: adds and removes an address with netlink (as
//! `ip addr` would, with an `eth0:0`-style label for IPv4), announces it with
//! gratuitous ARP, and reports it present only while the link is up.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::LinkUnspec;
use tandem_config::FloatingAddress;
use tandem_core::OpResult;

fn ifindex(name: &str) -> Result<u32, String> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("interface {name} does not exist"))
}

fn link_up(name: &str) -> bool {
    // Carrier says whether the cable (or the veth peer) is up.
    std::fs::read_to_string(format!("/sys/class/net/{name}/carrier"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

fn block_on<F: std::future::Future<Output = Result<(), String>>>(
    timeout: Duration,
    f: impl FnOnce(rtnetlink::Handle) -> F,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a netlink runtime: {e}"))?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
        tokio::spawn(conn);
        match tokio::time::timeout(timeout, f(handle)).await {
            Ok(r) => r,
            Err(_) => Err("netlink timed out".into()),
        }
    })
}

async fn addresses(
    handle: &rtnetlink::Handle,
    index: u32,
    ip: IpAddr,
) -> Result<Vec<netlink_packet_route::address::AddressMessage>, String> {
    let mut out = Vec::new();
    let mut s = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(ip)
        .execute();
    while let Some(m) = s.try_next().await.map_err(|e| format!("netlink: {e}"))? {
        out.push(m);
    }
    Ok(out)
}

/// The broadcast address of the interface's own IPv4 address on the
/// network of `ip` (else of its first IPv4 address); `None` if it has none.
async fn primary_broadcast(
    handle: &rtnetlink::Handle,
    index: u32,
    ip: IpAddr,
) -> Result<Option<std::net::Ipv4Addr>, String> {
    let IpAddr::V4(ip) = ip else { return Ok(None) };
    let mut s = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut first = None;
    while let Some(m) = s.try_next().await.map_err(|e| format!("netlink: {e}"))? {
        let mut local = None;
        let mut brd = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(IpAddr::V4(l)) => local = Some(*l),
                AddressAttribute::Broadcast(b) => brd = Some(*b),
                _ => {}
            }
        }
        let Some(local) = local else { continue };
        let mask = u32::MAX
            .checked_shl(32 - u32::from(m.header.prefix_len))
            .unwrap_or(0);
        if u32::from(local) & mask == u32::from(ip) & mask {
            return Ok(brd);
        }
        first.get_or_insert(brd);
    }
    Ok(first.flatten())
}

/// Adds the address (idempotent) and starts announcing it.
pub fn start(f: &FloatingAddress, timeout: Duration) -> OpResult {
    let index = match ifindex(&f.interface) {
        Ok(i) => i,
        Err(e) => return OpResult::Failed(e),
    };
    let r = block_on(timeout, |h| async move {
        if !addresses(&h, index, f.ip).await?.is_empty() {
            return Ok(());
        }
        let brd = if f.broadcast_from_primary && f.ip.is_ipv4() {
            Some(primary_broadcast(&h, index, f.ip).await?)
        } else {
            None
        };
        let mut req = h.address().add(index, f.ip, f.prefix);
        if let Some(brd) = brd {
            let attrs = &mut req.message_mut().attributes;
            attrs.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
            attrs.extend(brd.map(AddressAttribute::Broadcast));
        }
        if f.ip.is_ipv4() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Label(f.label.clone()));
        } else {
            // No duplicate address detection: usable at once.
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(|e| format!("cannot add {}/{} to {}: {e}", f.ip, f.prefix, f.interface))?;
        if f.link_up {
            h.link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(|e| format!("cannot set {} up: {e}", f.interface))?;
        }
        Ok(())
    });
    if let Err(e) = r {
        return OpResult::Failed(e);
    }
    announce(f.interface.clone(), f.ip, f.garp_count, f.garp_interval);
    OpResult::Ok
}

/// Removes the address (and ends its announcements); removing an address
/// the node does not hold is fine.
pub fn stop(f: &FloatingAddress, timeout: Duration) -> OpResult {
    cancel_announcements(&f.interface, f.ip);
    let Ok(index) = ifindex(&f.interface) else {
        return OpResult::Ok; // no interface, no address
    };
    let r = block_on(timeout, |h| async move {
        for m in addresses(&h, index, f.ip).await? {
            h.address()
                .del(m)
                .execute()
                .await
                .map_err(|e| format!("cannot remove {}: {e}", f.ip))?;
        }
        Ok(())
    });
    match r {
        Ok(()) => OpResult::Ok,
        Err(e) => OpResult::Failed(e),
    }
}

/// Running = the address is on the interface and the link has carrier.
pub fn monitor(f: &FloatingAddress, timeout: Duration) -> OpResult {
    let Ok(index) = ifindex(&f.interface) else {
        return OpResult::NotRunning;
    };
    let mut present = false;
    let r = block_on(timeout, |h| {
        let present = &mut present;
        async move {
            *present = !addresses(&h, index, f.ip).await?.is_empty();
            Ok(())
        }
    });
    match r {
        Err(e) => OpResult::Failed(e),
        Ok(()) if !present => OpResult::NotRunning,
        Ok(()) if f.monitor_carrier && !link_up(&f.interface) => {
            OpResult::Failed(format!("{} has no carrier (link down)", f.interface))
        }
        Ok(()) => {
            // Refresh neighbours' caches at every monitor (as keepalived's
            // garp_master_refresh): repairs a cache left pointing at another
            // node, e.g. after a daemon restart found the address in place.
            if f.refresh_garp && f.garp_count > 0 {
                let _ = send_one(&f.interface, f.ip);
            }
            OpResult::Ok
        }
    }
}

/// Announces `ip` once: a gratuitous ARP (IPv4) or an unsolicited
/// neighbour advertisement (IPv6).
fn send_one(interface: &str, ip: IpAddr) -> std::io::Result<()> {
    match ip {
        IpAddr::V4(v4) => crate::garp::send(interface, v4),
        IpAddr::V6(v6) => crate::na::send(interface, v6),
    }
}

/// An open socket announcing one address.
enum Announcer {
    Arp(crate::garp::Garp),
    Na(String, Ipv6Addr),
}

impl Announcer {
    fn open(interface: &str, ip: IpAddr) -> std::io::Result<Self> {
        Ok(match ip {
            IpAddr::V4(v4) => Self::Arp(crate::garp::Garp::open(interface, v4)?),
            IpAddr::V6(v6) => Self::Na(interface.to_string(), v6),
        })
    }

    fn send(&self) -> std::io::Result<()> {
        match self {
            Self::Arp(g) => g.send(),
            Self::Na(interface, v6) => crate::na::send(interface, *v6),
        }
    }
}

/// The announcements under way, by (interface, address): a stop cancels
/// them (a late announcement from a node that gave the address up would
/// point the neighbours back at it, as IPaddr2's stop kills its send_arp).
static ANNOUNCING: std::sync::Mutex<Vec<(String, IpAddr, Arc<AtomicBool>)>> =
    std::sync::Mutex::new(Vec::new());

/// Cancels the announcements of `ip` on `interface`, if any.
fn cancel_announcements(interface: &str, ip: IpAddr) {
    if let Ok(mut v) = ANNOUNCING.lock() {
        v.retain(|(i, a, flag)| {
            let hit = i == interface && *a == ip;
            if hit {
                flag.store(true, Ordering::Relaxed);
            }
            !hit
        });
    }
}

/// Sends `count` announcements (gratuitous ARP or unsolicited NA) for `ip`
/// on `interface`, the first at once and the rest `interval` apart on a
/// background thread, which also closes the socket: closing a packet
/// socket waits for the kernel (10–20 ms), and a start must not. A stop of
/// the address ends them.
pub fn announce(interface: String, ip: IpAddr, count: u32, interval: Duration) {
    if count == 0 {
        return;
    }
    let announcer = match Announcer::open(&interface, ip) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("announcing {ip} on {interface} failed: {e}");
            return;
        }
    };
    let first = announcer.send();
    cancel_announcements(&interface, ip);
    let cancelled = Arc::new(AtomicBool::new(false));
    if let Ok(mut v) = ANNOUNCING.lock() {
        v.push((interface.clone(), ip, cancelled.clone()));
    }
    std::thread::spawn(move || {
        // The kernel lease for a new address may land a moment after it:
        // until then the lease rules refuse what leaves from it (IPv6).
        if let Err(e) = first {
            let retried = (0..25).any(|_| {
                std::thread::sleep(Duration::from_millis(2));
                !cancelled.load(Ordering::Relaxed) && announcer.send().is_ok()
            });
            if !retried && !cancelled.load(Ordering::Relaxed) {
                tracing::warn!("announcing {ip} on {interface} failed: {e}");
            }
        }
        for _ in 1..count {
            std::thread::sleep(interval);
            if cancelled.load(Ordering::Relaxed) {
                break;
            }
            let _ = announcer.send();
        }
        drop(announcer);
        if let Ok(mut v) = ANNOUNCING.lock() {
            v.retain(|(_, _, f)| !Arc::ptr_eq(f, &cancelled));
        }
    });
}
