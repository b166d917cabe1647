//! The lease, enforced by the kernel: nftables sets whose elements carry
//! the lease as a timeout. Rules drop IP traffic and ARP for every floating
//! address whose element has expired, so a daemon that is frozen, starved
//! or hung stops answering on its VIPs by itself, before a peer can take
//! over — no help from the daemon needed. The heartbeat thread only sends
//! the new expiry to this module's thread, which runs `nft`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

/// Handle of the enforcer thread.
pub struct KernelLease {
    tx: Sender<Option<Duration>>,
    table: String,
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
    /// Installs the tables for `vips` (IPv4 floating addresses) and starts
    /// the enforcer thread. Fails (and the daemon says so) without nftables
    /// or privileges.
    pub fn start(cluster: &str, vips: &[Ipv4Addr]) -> Result<Self, String> {
        let table = format!("tandem_{}", cluster.replace(['-', '.'], "_"));
        let list: Vec<String> = vips.iter().map(ToString::to_string).collect();
        let elements = if list.is_empty() {
            String::new()
        } else {
            format!("elements = {{ {} }}", list.join(", "))
        };
        let script = format!(
            "table inet {t}\ndelete table inet {t}\ntable arp {t}\ndelete table arp {t}\n\
table inet {t} {{\n set vips {{ type ipv4_addr; {e} }}\n set leases {{ type ipv4_addr; flags timeout; }}\n\
 chain input {{ type filter hook input priority -10; policy accept; ip daddr @vips ip daddr != @leases drop; }}\n\
 chain output {{ type filter hook output priority -10; policy accept; ip saddr @vips ip saddr != @leases drop; }}\n}}\n\
table arp {t} {{\n set vips {{ type ipv4_addr; {e} }}\n set leases {{ type ipv4_addr; flags timeout; }}\n\
 chain input {{ type filter hook input priority 0; policy accept; arp daddr ip @vips arp daddr ip != @leases drop; }}\n\
 chain output {{ type filter hook output priority 0; policy accept; arp saddr ip @vips arp saddr ip != @leases drop; }}\n}}\n",
            t = table,
            e = elements
        );
        nft(&script)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (t, v) = (table.clone(), vips.to_vec());
        std::thread::Builder::new()
            .name("tandem-lease".into())
            .spawn(move || enforce(&rx, &t, &v))
            .map_err(|e| e.to_string())?;
        Ok(Self { tx, table })
    }

    /// The lease now lasts `remaining` more (`None`: no lease).
    pub fn set(&self, remaining: Option<Duration>) {
        let _ = self.tx.send(remaining);
    }

    /// Removes the tables (clean shutdown).
    pub fn remove(&self) {
        let t = &self.table;
        let _ = nft(&format!("delete table inet {t}\ndelete table arp {t}\n"));
    }
}

fn enforce(rx: &Receiver<Option<Duration>>, table: &str, vips: &[Ipv4Addr]) {
    while let Ok(mut latest) = rx.recv() {
        // Only the newest expiry matters.
        while let Ok(l) = rx.try_recv() {
            latest = l;
        }
        let mut script = String::new();
        for fam in ["inet", "arp"] {
            for v in vips {
                // Add (a no-op if present), delete, add with the new
                // timeout: one atomic transaction that refreshes it.
                script.push_str(&format!(
                    "add element {fam} {table} leases {{ {v} timeout 1s }}\n"
                ));
                script.push_str(&format!("delete element {fam} {table} leases {{ {v} }}\n"));
                if let Some(d) = latest {
                    script.push_str(&format!(
                        "add element {fam} {table} leases {{ {v} timeout {}ms }}\n",
                        d.as_millis().max(1)
                    ));
                }
            }
        }
        if let Err(e) = nft(&script) {
            tracing::warn!("could not update the kernel lease: {e}");
        }
    }
}
