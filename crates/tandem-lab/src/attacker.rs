//! An attacker on the heartbeat network, for the adversarial drill (issue
//! 12): it captures real heartbeats (a raw socket in a node's namespace,
//! as a mirrored switch port would show them), and from its own namespace
//! sends them again (replays), heartbeats signed with a key it guessed
//! (forgeries), malformed datagrams, and a flood at the highest rate one
//! thread reaches. Test tooling: never shipped.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tandem_wire::{Key, Keyring, NodeState, Packet, PacketKind};

/// Captures, for `for_how_long`, the payloads of UDP datagrams to `port`
/// arriving in namespace `ns` (a raw socket: the daemon still gets them).
pub fn capture(ns: &str, port: u16, for_how_long: Duration) -> anyhow::Result<Vec<Vec<u8>>> {
    crate::netns::run_in(ns, move || -> anyhow::Result<Vec<Vec<u8>>> {
        let mut s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
            .context("raw socket (root needed)")?;
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        let end = Instant::now() + for_how_long;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            let Ok(n) = s.read(&mut buf) else { continue };
            let b = &buf[..n];
            let ihl = usize::from(b.first().copied().unwrap_or(0) & 0x0f) * 4;
            if b.len() < ihl + 8 {
                continue;
            }
            let dport = u16::from_be_bytes([b[ihl + 2], b[ihl + 3]]);
            if dport == port {
                out.push(b[ihl + 8..].to_vec());
            }
        }
        Ok(out)
    })?
}

/// A heartbeat of node `sender` signed with a key the attacker guessed.
pub fn forged(cluster: &str, sender: u16, incarnation: u64, seq: u64) -> Vec<u8> {
    let Ok(key) = Key::new(1, b"a guess at the cluster key") else {
        return Vec::new();
    };
    tandem_wire::encode(
        &Packet {
            kind: PacketKind::Heartbeat,
            link: 0,
            cluster: tandem_wire::cluster_id(cluster),
            sender,
            incarnation,
            seq,
            state: NodeState::Online,
            view: vec![],
            config_digest: 0,
            groups: vec![],
            settings: None,
            echo: tandem_wire::Echo::None,
        },
        &Keyring::single(key),
    )
}

/// Malformed datagrams: truncations and bit flips of `real`, and junk.
pub fn malformed(real: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new(), vec![0u8; 7], vec![0xff; 1400], b"TNDM".to_vec()];
    for (i, p) in real.iter().take(20).enumerate() {
        out.push(p[..p.len() / 2].to_vec());
        let mut flipped = p.clone();
        if let Some(b) = flipped.get_mut(i % p.len().max(1)) {
            *b ^= 0x40;
        }
        out.push(flipped);
    }
    out
}

/// What one attack sent.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Sent {
    /// Datagrams sent.
    pub datagrams: u64,
    /// Over this many seconds.
    pub seconds: f64,
}

impl Sent {
    /// Datagrams per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.datagrams as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Sends `packets` round-robin to every target from namespace `ns`, as
/// fast as one thread can, for `for_how_long` (or each once when zero).
pub fn send(
    ns: &str,
    targets: Vec<SocketAddr>,
    packets: Vec<Vec<u8>>,
    for_how_long: Duration,
) -> anyhow::Result<Sent> {
    crate::netns::run_in(ns, move || -> anyhow::Result<Sent> {
        let s = UdpSocket::bind("0.0.0.0:0").context("bind the attacker's socket")?;
        let start = Instant::now();
        let mut n = 0u64;
        if packets.is_empty() || targets.is_empty() {
            return Ok(Sent::default());
        }
        'outer: loop {
            for p in &packets {
                for t in &targets {
                    // A full queue or an ICMP error: keep going.
                    if s.send_to(p, t).is_ok() {
                        n += 1;
                    }
                }
                if !for_how_long.is_zero()
                    && n.is_multiple_of(64)
                    && start.elapsed() >= for_how_long
                {
                    break 'outer;
                }
            }
            if for_how_long.is_zero() {
                break;
            }
        }
        Ok(Sent {
            datagrams: n,
            seconds: start.elapsed().as_secs_f64(),
        })
    })?
}

/// What the adversarial drill saw (see [`drill`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DrillReport {
    /// Seconds the attack lasted.
    pub seconds: f64,
    /// The flood: forged heartbeats, as fast as one thread sends them.
    pub flood: Sent,
    /// Captured heartbeats sent again (from before n1's restart and after).
    pub replays: Sent,
    /// Heartbeats signed with a guessed key.
    pub forged: Sent,
    /// Truncated, bit-flipped and junk datagrams.
    pub malformed: Sent,
    /// Client requests during the attack.
    pub requests: usize,
    /// Client requests that failed.
    pub failed: usize,
    /// Answers from n2 (a failover).
    pub answers_from_n2: usize,
    /// "is dead" lines logged during the attack, both nodes.
    pub deaths_logged: usize,
    /// Whether both daemons were the same processes after it.
    pub same_processes: bool,
    /// Each node's worst timer lateness over its life (ms).
    pub lateness_ms: Vec<f64>,
    /// Each node's rejected packets by reason, after the attack.
    pub rejected: Vec<std::collections::BTreeMap<String, u64>>,
    /// What the daemons logged during the attack, beyond the expected
    /// rejections (node loop lateness, stalls, deaths, takeovers): where
    /// to look when the drill fails. At most 40 lines.
    pub logged: Vec<String>,
}

fn rejected(st: &tandem_core::MembershipStatus) -> std::collections::BTreeMap<String, u64> {
    let s = &st.stats;
    [
        ("truncated", s.truncated),
        ("oversized", s.oversized),
        ("bad_magic", s.bad_magic),
        ("wrong_cluster", s.wrong_cluster),
        ("unknown_key", s.unknown_key),
        ("bad_mac", s.bad_mac),
        ("malformed", s.malformed),
        ("unknown_sender", s.unknown_sender),
        ("replayed", s.replayed),
        ("stale", s.stale),
        ("own", s.own),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Each node's log size now, to read what comes after.
fn log_ends(w: &crate::lab_cluster::WebCluster) -> Vec<u64> {
    w.cluster
        .nodes
        .iter()
        .map(|n| std::fs::metadata(&n.log).map_or(0, |m| m.len()))
        .collect()
}

/// The lines each node logged since `ends`, without the rejections the
/// attack is meant to cause.
fn logged_since(w: &crate::lab_cluster::WebCluster, ends: &[u64]) -> Vec<String> {
    let expected = ["Rejected datagram", "signs heartbeats as"];
    let mut lines = Vec::new();
    for (n, from) in w.cluster.nodes.iter().zip(ends) {
        let text = std::fs::read(&n.log).unwrap_or_default();
        let start = usize::try_from(*from).unwrap_or(0).min(text.len());
        for line in String::from_utf8_lossy(&text[start..]).lines() {
            if !expected.iter().any(|e| line.contains(e)) {
                lines.push(format!("{}: {line}", n.name));
            }
        }
    }
    lines.truncate(40);
    lines
}

fn deaths(w: &crate::lab_cluster::WebCluster) -> usize {
    w.cluster
        .nodes
        .iter()
        .map(|n| {
            std::fs::read_to_string(&n.log)
                .unwrap_or_default()
                .matches(" is dead")
                .count()
        })
        .sum()
}

/// Issue 12's adversarial drill on an S1 lab with an extra host `c2` (the
/// attacker) and heartbeats on `port`: captures n1's heartbeats at n2,
/// restarts n1 (so those are from an old incarnation), captures again, then
/// for `window` sends from c2, all at once: the captures again (to both
/// nodes), forgeries, malformed datagrams, and a flood of forgeries; the
/// client keeps probing the VIP. Returns what happened.
pub fn drill(
    w: &mut crate::lab_cluster::WebCluster,
    port: u16,
    window: Duration,
) -> anyhow::Result<DrillReport> {
    let n2 = w.lab.hosts[1].netns.clone();
    let attacker = w
        .lab
        .hosts
        .iter()
        .find(|h| h.name == "c2")
        .context("the lab needs a host c2")?
        .netns
        .clone();
    let before = capture(&n2, port, Duration::from_millis(1500))?;
    w.cluster.stop(0, Duration::from_secs(15))?;
    w.start_node(0)?;
    w.wait_served_by("n1", 5, Duration::from_secs(30))?;
    w.cluster
        .wait_for(1, Duration::from_secs(30), "n1 back", |s| {
            s.membership.members.len() == 2
        })?;
    let after = capture(&n2, port, Duration::from_millis(1000))?;
    anyhow::ensure!(
        !before.is_empty() && !after.is_empty(),
        "no heartbeat captured ({} before the restart, {} after)",
        before.len(),
        after.len()
    );
    let targets: Vec<SocketAddr> = w.lab.hosts[..2]
        .iter()
        .filter_map(|h| format!("{}:{port}", h.addr).parse().ok())
        .collect();
    let cluster = w
        .cluster
        .status(0)
        .map(|s| s.membership.cluster.clone())
        .unwrap_or_default();
    let replays: Vec<Vec<u8>> = before.iter().chain(&after).cloned().collect();
    let forgeries: Vec<Vec<u8>> = (0..64)
        .map(|i| forged(&cluster, 1 + (i % 2) as u16, u64::MAX - i, i))
        .chain((0..64).map(|i| forged(&cluster, 2, 1, i)))
        .collect();
    let junk = malformed(&after);
    let pids = [w.cluster.pid(0), w.cluster.pid(1)];
    let deaths_before = deaths(w);
    let ends = log_ends(w);
    let t0 = w.probe_now_ms();
    let started = Instant::now();
    let run = |packets: Vec<Vec<u8>>, targets: Vec<SocketAddr>| {
        let a = attacker.clone();
        std::thread::spawn(move || send(&a, targets, packets, window))
    };
    let flood = run(forgeries.clone(), targets[..1].to_vec());
    let replay = run(replays, targets.clone());
    let forge = run(forgeries, targets.clone());
    let bad = run(junk, targets.clone());
    let join = |h: std::thread::JoinHandle<anyhow::Result<Sent>>| {
        h.join()
            .map_err(|_| anyhow::anyhow!("an attacker thread panicked"))?
    };
    let report_flood = join(flood)?;
    let report_replays = join(replay)?;
    let report_forged = join(forge)?;
    let report_malformed = join(bad)?;
    let seconds = started.elapsed().as_secs_f64();
    let t1 = w.probe_now_ms();
    let samples: Vec<_> = w
        .samples()
        .into_iter()
        .filter(|s| s.t_ms >= t0 && s.t_ms <= t1)
        .collect();
    let statuses: Vec<_> = (0..2).filter_map(|i| w.cluster.status(i).ok()).collect();
    Ok(DrillReport {
        seconds,
        flood: report_flood,
        replays: report_replays,
        forged: report_forged,
        malformed: report_malformed,
        requests: samples.len(),
        failed: samples.iter().filter(|s| s.answer.is_none()).count(),
        answers_from_n2: samples
            .iter()
            .filter(|s| s.answer.as_deref() == Some("n2"))
            .count(),
        deaths_logged: deaths(w) - deaths_before,
        same_processes: pids == [w.cluster.pid(0), w.cluster.pid(1)]
            && pids
                .iter()
                .flatten()
                .all(|p| std::path::Path::new(&format!("/proc/{p}")).exists()),
        lateness_ms: statuses
            .iter()
            .map(|s| s.membership.stats.max_timer_lateness_us as f64 / 1000.0)
            .collect(),
        rejected: statuses.iter().map(|s| rejected(&s.membership)).collect(),
        logged: logged_since(w, &ends),
    })
}
