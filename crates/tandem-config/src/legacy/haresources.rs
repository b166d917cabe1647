//! `haresources`: each resource line turned into native TOML (IPaddr,
//! IPaddr2, bare addresses, Filesystem, MailTo, drbddisk (a tandem volume),
//! LSB and OCF scripts).

use super::hacf::{Diags, Line};
use super::interfaces::find_interface;
use std::net::IpAddr;

/// A resource of haresources, as native TOML lines.
pub(super) fn resource_toml(
    spec: &str,
    index: usize,
    ip_count: &mut usize,
    g: &mut Diags<'_>,
    l: &Line,
) -> Option<(String, String)> {
    let parts: Vec<&str> = spec.split("::").collect();
    let (kind, args) = (parts[0], &parts[1..]);
    let q = |s: &str| format!("{s:?}");
    // A bare address: IP[/CIDR[/IFACE[/BROADCAST]]].
    let ip_form = |a: &str| {
        a.split('/')
            .next()
            .is_some_and(|ip| ip.parse::<IpAddr>().is_ok())
    };
    let ipaddr = |addr: &str, ip_count: &mut usize, g: &mut Diags<'_>| -> Option<String> {
        let f: Vec<&str> = addr.split('/').collect();
        let ip = f[0];
        let (cidr, iface) = match (f.get(1), f.get(2)) {
            (Some(c), Some(i)) => (c.to_string(), i.split(':').next().unwrap_or(i).to_string()),
            (c, _) => match find_interface(ip.parse().ok()?) {
                Some((i, p)) => (c.map_or(p.to_string(), |c| (*c).to_string()), i),
                None => {
                    g.error(l, format!("no interface here is on the network of {ip}; tandem cannot tell where to add it"), Some(format!("write it as {ip}/CIDR/IFACE, e.g. {ip}/24/eth0")));
                    return None;
                }
            },
        };
        if cidr.parse::<u8>().is_err() {
            g.error(
                l,
                format!("`{cidr}` is not a prefix length"),
                Some("e.g. 192.168.1.10/24/eth0".into()),
            );
            return None;
        }
        let label = format!("{iface}:{}", *ip_count);
        *ip_count += 1;
        Some(format!(
            "agent = \"ipaddr\"\nparams = {{ address = {}, interface = {}, label = {} }}\nmonitor = \"5s\"\n",
            q(&format!("{ip}/{cidr}")),
            q(&iface),
            q(&label)
        ))
    };
    let name = format!("r{}-{}", index + 1, sanitize(kind));
    let body = if parts.len() == 1 && ip_form(kind) {
        ipaddr(kind, ip_count, g)?
    } else {
        match kind {
            "IPaddr" | "IPaddr2" => {
                let Some(a) = args.first() else {
                    g.error(
                        l,
                        format!("{kind} needs an address: {kind}::IP[/CIDR[/IFACE]]"),
                        None,
                    );
                    return None;
                };
                ipaddr(a, ip_count, g)?
            }
            "Filesystem" => {
                if args.len() < 2 {
                    g.error(
                        l,
                        "Filesystem needs a device and a mount point",
                        Some("Filesystem::/dev/drbd0::/data::ext4[::OPTIONS]".into()),
                    );
                    return None;
                }
                let mut p = format!("device = {}, directory = {}", q(args[0]), q(args[1]));
                if let Some(t) = args.get(2) {
                    p.push_str(&format!(", fstype = {}", q(t)));
                }
                if let Some(o) = args.get(3) {
                    p.push_str(&format!(", options = {}", q(o)));
                }
                format!(
                    "agent = \"ocf:heartbeat:Filesystem\"\nparams = {{ {p} }}\nmonitor = \"20s\"\ntimeout = \"60s\"\n"
                )
            }
            // Heartbeat's DRBD script: `drbddisk::r0` (or `drbddisk` alone,
            // which means every resource; tandem wants the name).
            "drbddisk" => {
                let Some(res) = args.first() else {
                    g.error(
                        l,
                        "drbddisk without a resource name: tandem promotes one named volume per resource",
                        Some("write drbddisk::r0".into()),
                    );
                    return None;
                };
                format!(
                    "agent = {}\nmonitor = \"5s\"\ntimeout = \"60s\"\n",
                    q(&format!("volume:{res}"))
                )
            }
            "MailTo" => {
                let Some(addr) = args.first() else {
                    g.error(
                        l,
                        "MailTo needs an address: MailTo::ADDRESS[::SUBJECT]",
                        None,
                    );
                    return None;
                };
                let mut p = format!("email = {}", q(addr));
                if let Some(s) = args.get(1) {
                    p.push_str(&format!(", subject = {}", q(s)));
                }
                format!("agent = \"ocf:heartbeat:MailTo\"\nparams = {{ {p} }}\nmonitor = 0\n")
            }
            script => {
                let mut p = String::from("r1_status = \"true\"");
                if !args.is_empty() {
                    p.push_str(&format!(", args = {}", q(&args.join("::"))));
                }
                format!(
                    "agent = {}\nparams = {{ {p} }}\nmonitor = \"10s\"\ntimeout = \"60s\"\n",
                    q(&format!("lsb:{script}"))
                )
            }
        }
    };
    Some((name, body))
}

pub(super) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
