//! The lease, enforced by the kernel: nftables sets whose elements carry
//! the lease as a timeout. Rules drop IP traffic and ARP for every floating
//! IPv4 address whose element has expired, and IPv6 traffic to and from
//! every floating IPv6 address whose element has expired (the neighbour
//! advertisements that answer solicitations for it, and tandem's own
//! unsolicited ones, leave from that address, so they are dropped too), so a daemon that is frozen, starved
//! or hung stops answering on its VIPs by itself, before a peer can take
//! over — no help from the daemon needed. The heartbeat thread only sends
//! the new expiry to this module's thread, which feeds one long-running
//! `nft -i` process: each refresh is one line, one atomic transaction, with
//! no process start (with fast timings the lease is refreshed every few
//! milliseconds, and starting `nft` each time would cost a CPU).
//!
//! Timing rules (`docs/safety.md`, "Lease sizing"): the enforcer gets the
//! lease's *end* and turns it into a timeout at the moment it writes the
//! line, so queueing never lengthens the lease; the kernel counts element
//! timeouts in jiffies, so an element may live up to one tick longer or
//! shorter than asked: the timeout written is the time left minus one tick,
//! and refreshes come while the kernel's copy has more than two keepalives
//! and two ticks left. The enforcer thread, and the `nft -i` it starts,
//! run real-time just below the heartbeat thread, so CPU load does not
//! delay a refresh past the element's expiry.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

/// Real-time priority of the enforcer thread and its `nft -i`: just below
/// the heartbeat thread.
const PRIORITY: i32 = 49;

/// Handle of the enforcer thread.
pub struct KernelLease {
    tx: Sender<Option<Instant>>,
    table: String,
    /// Refresh once the kernel's copy has less than this left.
    pub refresh_below: Duration,
}

/// The kernel's timer tick, from `CONFIG_HZ` in `/proc/config.gz` or
/// `/boot/config-RELEASE`; 10 ms (HZ=100, the coarsest in use) when neither
/// says. Returns the tick and where it came from, for the log.
pub fn kernel_tick() -> (Duration, String) {
    use std::io::Read;
    let mut sources: Vec<(String, String)> = Vec::new();
    if let Ok(f) = std::fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .is_ok()
        {
            sources.push(("/proc/config.gz".into(), text));
        }
    }
    if let Ok(rel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        let path = format!("/boot/config-{}", rel.trim());
        if let Ok(text) = std::fs::read_to_string(&path) {
            sources.push((path, text));
        }
    }
    for (from, text) in sources {
        let hz = text
            .lines()
            .find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse::<u64>().ok());
        if let Some(hz) = hz.filter(|h| (24..=10_000).contains(h)) {
            return (
                Duration::from_nanos(1_000_000_000 / hz),
                format!("CONFIG_HZ={hz} in {from}"),
            );
        }
    }
    (
        Duration::from_millis(10),
        "CONFIG_HZ not found; assuming HZ=100".into(),
    )
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl KernelLease {
    /// Installs the tables for `vips` (floating addresses) and starts the
    /// enforcer thread. Fails (and the daemon says so) without nftables or
    /// privileges.
    /// `keepalive` is how often the brain renews the lease.
    pub fn start(cluster: &str, vips: &[IpAddr], keepalive: Duration) -> Result<Self, String> {
        let table = format!("tandem_{}", cluster.replace(['-', '.'], "_"));
        let v4: Vec<Ipv4Addr> = vips
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v) => Some(*v),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Vec<Ipv6Addr> = vips
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(v) => Some(*v),
                IpAddr::V4(_) => None,
            })
            .collect();
        let elements = |list: Vec<String>| {
            if list.is_empty() {
                String::new()
            } else {
                format!("elements = {{ {} }}", list.join(", "))
            }
        };
        let e4 = elements(v4.iter().map(ToString::to_string).collect());
        let e6 = elements(v6.iter().map(ToString::to_string).collect());
        let script = format!(
            "table inet {t}\ndelete table inet {t}\ntable arp {t}\ndelete table arp {t}\n\
table inet {t} {{\n set vips {{ type ipv4_addr; {e} }}\n set leases {{ type ipv4_addr; flags timeout; }}\n\
 set vips6 {{ type ipv6_addr; {e6} }}\n set leases6 {{ type ipv6_addr; flags timeout; }}\n\
 chain input {{ type filter hook input priority -10; policy accept; ip daddr @vips ip daddr != @leases drop; ip6 daddr @vips6 ip6 daddr != @leases6 drop; }}\n\
 chain output {{ type filter hook output priority -10; policy accept; ip saddr @vips ip saddr != @leases drop; ip6 saddr @vips6 ip6 saddr != @leases6 drop; }}\n}}\n\
table arp {t} {{\n set vips {{ type ipv4_addr; {e} }}\n set leases {{ type ipv4_addr; flags timeout; }}\n\
 chain input {{ type filter hook input priority 0; policy accept; arp daddr ip @vips arp daddr ip != @leases drop; }}\n\
 chain output {{ type filter hook output priority 0; policy accept; arp saddr ip @vips arp saddr ip != @leases drop; }}\n}}\n",
            t = table,
            e = e4,
            e6 = e6
        );
        nft(&script)?;
        let (tick, from) = kernel_tick();
        tracing::info!("kernel lease: timer tick {} µs ({from})", tick.as_micros());
        let in_place = refreshes_in_place(&table);
        if in_place {
            tracing::info!("kernel lease: elements are refreshed in place (`expires`)");
        } else {
            tracing::warn!(
                "kernel lease: this kernel cannot refresh a set element in place (Linux 6.10 or later can); refreshing by delete and add, which drops the VIP's packets for a moment whenever something lists the set at the same time"
            );
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (t, v) = (table.clone(), vips.to_vec());
        std::thread::Builder::new()
            .name("tandem-lease".into())
            .spawn(move || {
                if let Err(e) = super::realtime::set_priority(PRIORITY) {
                    tracing::warn!(
                        "kernel lease enforcer runs without real-time priority ({e}): under CPU load a refresh may come late"
                    );
                }
                enforce(&rx, &t, &v, tick, in_place);
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tx,
            table,
            refresh_below: keepalive * 2 + tick * 2,
        })
    }

    /// The lease now ends at `until` (`None`: no lease).
    pub fn set(&self, until: Option<Instant>) {
        let _ = self.tx.send(until);
    }

    /// Removes the tables (clean shutdown).
    pub fn remove(&self) {
        let t = &self.table;
        let _ = nft(&format!("delete table inet {t}\ndelete table arp {t}\n"));
    }
}

/// A long-running `nft -i`; its errors are logged by a thread of its own.
struct NftShell {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl NftShell {
    fn spawn() -> Result<Self, String> {
        let mut child = Command::new("nft")
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft -i: {e}"))?;
        let stdin = child.stdin.take().ok_or("nft -i has no stdin")?;
        if let Some(err) = child.stderr.take() {
            let _ = std::thread::Builder::new()
                .name("tandem-lease-err".into())
                .spawn(move || {
                    use std::io::BufRead;
                    // Only logs: no real-time priority needed.
                    super::realtime::set_normal();
                    for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                        if !line.trim().is_empty() {
                            tracing::warn!("kernel lease (nft): {line}");
                        }
                    }
                });
        }
        Ok(Self { child, stdin })
    }

    /// Runs `commands` as one line, hence one transaction.
    fn run(&mut self, commands: &str) -> std::io::Result<()> {
        self.stdin.write_all(commands.as_bytes())?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()
    }
}

impl Drop for NftShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A duration as `nft` prints it (`1m`, `1s996ms`, `2h3m`): milliseconds.
fn nft_millis(text: &str) -> Option<u64> {
    let (mut total, mut num, mut chars) = (0u64, String::new(), text.chars().peekable());
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    num.is_empty().then_some(total)
}

/// Whether `add element … expires` updates an element that exists (Linux
/// 6.10 and later): probed on an address no rule looks at. A refresh in
/// place never removes the element, even for a moment; the delete-and-add
/// fallback races with anything listing the set (measured: 5 % of packets
/// dropped while `nft list set` ran every 20 ms).
fn refreshes_in_place(table: &str) -> bool {
    let probe = "0.0.0.1";
    let set = format!("inet {table} leases");
    let ok = nft(&format!(
        "add element {set} {{ {probe} timeout 60s expires 60s }}\nadd element {set} {{ {probe} timeout 60s expires 2s }}\n"
    ))
    .is_ok();
    let listed = Command::new("nft")
        .args(["list", "set", "inet", table, "leases"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let _ = nft(&format!("delete element {set} {{ {probe} }}\n"));
    let expires = listed
        .split(probe)
        .nth(1)
        .and_then(|rest| rest.split("expires ").nth(1))
        .and_then(|e| e.split([' ', ',', '}']).next())
        .and_then(nft_millis);
    ok && expires.is_some_and(|ms| ms <= 2_000)
}

fn enforce(
    rx: &Receiver<Option<Instant>>,
    table: &str,
    vips: &[IpAddr],
    tick: Duration,
    in_place: bool,
) {
    let mut shell: Option<NftShell> = None;
    while let Ok(mut latest) = rx.recv() {
        // Only the newest expiry matters.
        while let Ok(l) = rx.try_recv() {
            latest = l;
        }
        // The timeout is taken at the last moment, one tick short: the
        // kernel may keep an element up to a tick past its timeout.
        let left = latest
            .map(|u| {
                u.saturating_duration_since(Instant::now())
                    .saturating_sub(tick)
            })
            .filter(|d| d.as_millis() >= 1);
        let mut commands = Vec::new();
        for v in vips {
            let places: &[(&str, &str)] = if v.is_ipv4() {
                &[("inet", "leases"), ("arp", "leases")]
            } else {
                &[("inet", "leases6")]
            };
            for (fam, set) in places {
                let el = format!("element {fam} {table} {set}");
                match left {
                    // In place: the element is never absent.
                    Some(d) if in_place => {
                        let ms = d.as_millis();
                        commands.push(format!("add {el} {{ {v} timeout {ms}ms expires {ms}ms }}"));
                    }
                    // Add (a no-op if present), delete, add with the new
                    // timeout: one atomic transaction.
                    Some(d) => {
                        commands.push(format!("add {el} {{ {v} timeout 1s }}"));
                        commands.push(format!("delete {el} {{ {v} }}"));
                        commands.push(format!("add {el} {{ {v} timeout {}ms }}", d.as_millis()));
                    }
                    None => {
                        commands.push(format!("add {el} {{ {v} timeout 1s }}"));
                        commands.push(format!("delete {el} {{ {v} }}"));
                    }
                }
            }
        }
        let line = commands.join("; ");
        // A shell that died is started again, once per update.
        for _ in 0..2 {
            if shell.is_none() {
                match NftShell::spawn() {
                    Ok(s) => shell = Some(s),
                    Err(e) => {
                        tracing::warn!("could not update the kernel lease: {e}");
                        break;
                    }
                }
            }
            match shell.as_mut().map(|s| s.run(&line)) {
                Some(Ok(())) => break,
                Some(Err(e)) => {
                    tracing::warn!("kernel lease: nft -i stopped ({e}); starting it again");
                    shell = None;
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nft_durations() {
        assert_eq!(super::nft_millis("1s996ms"), Some(1996));
        assert_eq!(super::nft_millis("1m"), Some(60_000));
        assert_eq!(super::nft_millis("59s999ms"), Some(59_999));
        assert_eq!(super::nft_millis("2h3m4s"), Some(7_384_000));
        assert_eq!(super::nft_millis("12ms"), Some(12));
        assert_eq!(super::nft_millis("soon"), None);
        assert_eq!(super::nft_millis("12"), None);
    }
}
