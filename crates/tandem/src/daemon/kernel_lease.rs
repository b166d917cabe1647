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
    /// The kernel's timer tick (element timeouts count in ticks).
    pub tick: Duration,
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
                enforce(&rx, &t, &v, tick);
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tx,
            table,
            tick,
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

fn enforce(rx: &Receiver<Option<Instant>>, table: &str, vips: &[IpAddr], tick: Duration) {
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
                // Add (a no-op if present), delete, add with the new
                // timeout: one atomic transaction that refreshes it.
                commands.push(format!(
                    "add element {fam} {table} {set} {{ {v} timeout 1s }}"
                ));
                commands.push(format!("delete element {fam} {table} {set} {{ {v} }}"));
                if let Some(d) = left {
                    commands.push(format!(
                        "add element {fam} {table} {set} {{ {v} timeout {}ms }}",
                        d.as_millis()
                    ));
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
