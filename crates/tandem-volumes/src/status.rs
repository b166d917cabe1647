//! What `tandem volume status` shows: per volume and per peer, in DRBD's
//! words and with the counters DRBD users know.

use serde::{Deserialize, Serialize};

use crate::gi::Uuid;
use crate::message::{Message, Protocol};
use crate::state::{ConnState, DiskState, ReplState, Role};

/// Counters, named as in `/proc/drbd` (all KiB unless said otherwise).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Network send.
    pub ns: u64,
    /// Network receive.
    pub nr: u64,
    /// Disk write.
    pub dw: u64,
    /// Disk read.
    pub dr: u64,
    /// Activity-log updates (count).
    pub al: u64,
    /// Metadata (bitmap) writes (count).
    pub bm: u64,
    /// Local disk requests open (count).
    pub lo: u64,
    /// Application requests not yet completed (count).
    pub ap: u64,
    /// Metadata writes of any kind (count).
    pub meta_writes: u64,
}

impl Counters {
    pub(crate) fn note_sent(&mut self, m: &Message) {
        self.ns += payload(m) / 1024;
    }
    pub(crate) fn note_received(&mut self, m: &Message) {
        self.nr += payload(m) / 1024;
    }
}

fn payload(m: &Message) -> u64 {
    match m {
        Message::Write { data, .. } | Message::ResyncData { data, .. } => data.len() as u64,
        _ => 0,
    }
}

/// One peer as this node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Peer name.
    pub node: String,
    /// Connection state.
    pub connection: ConnState,
    /// Replication state.
    pub replication: ReplState,
    /// The peer's role.
    pub role: Role,
    /// The peer's disk state.
    pub peer_disk: DiskState,
    /// Resync progress in percent.
    pub done: f64,
    /// Out of sync with it.
    pub out_of_sync_kib: u64,
    /// During a resync: its rate so far, KiB/s.
    pub resync_kib_s: Option<f64>,
    /// During a resync: seconds left at that rate.
    pub eta_seconds: Option<f64>,
    /// Writes sent and not yet acknowledged (`pe`).
    pub pending: u64,
    /// Requests received from it not yet answered (`ua`).
    pub unacked: u64,
    /// Replication protocol.
    pub protocol: Protocol,
}

/// One volume as this node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeStatus {
    /// Volume name.
    pub name: String,
    /// This node's role.
    pub role: Role,
    /// The local disk.
    pub disk: DiskState,
    /// Every peer.
    pub peers: Vec<PeerStatus>,
    /// Counters.
    pub counters: Counters,
    /// The current generation.
    pub current: Uuid,
    /// Usable size in bytes.
    pub size: u64,
    /// Peers IO is suspended for (`fencing = resource-and-stonith`): writes
    /// wait until each is fenced or back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspended_for: Vec<String>,
}

impl VolumeStatus {
    /// `drbdadm status` style text.
    pub fn render(&self) -> String {
        let suspended = if self.suspended_for.is_empty() {
            String::new()
        } else {
            format!(" suspended:fencing({})", self.suspended_for.join(","))
        };
        let mut s = format!(
            "{} role:{}{suspended}\n  disk:{}\n",
            self.name, self.role, self.disk
        );
        for p in &self.peers {
            s.push_str(&format!("  {} role:{}", p.node, p.role));
            if p.connection != ConnState::Connected {
                s.push_str(&format!(" connection:{}", p.connection));
            }
            s.push('\n');
            let mut line = format!("    peer-disk:{}", p.peer_disk);
            if !matches!(p.replication, ReplState::Established | ReplState::Off) {
                line.push_str(&format!(" replication:{}", p.replication));
            }
            if matches!(p.replication, ReplState::SyncSource | ReplState::SyncTarget) {
                line.push_str(&format!(" done:{:.2}", p.done));
                if let (Some(r), Some(e)) = (p.resync_kib_s, p.eta_seconds) {
                    line.push_str(&format!(" speed:{r:.0}KiB/s eta:{e:.0}s"));
                }
            }
            if p.out_of_sync_kib > 0 {
                line.push_str(&format!(" out-of-sync:{}", p.out_of_sync_kib));
            }
            s.push_str(&line);
            s.push('\n');
        }
        s
    }
}

/// `n` bytes for people, exact figure included: "1.50 GiB (1610612736
/// bytes)".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let (mut v, mut u) = (n as f64 / 1024.0, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    let v = if (v - v.round()).abs() < 0.005 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    format!("{v} {} ({n} bytes)", UNITS[u])
}
