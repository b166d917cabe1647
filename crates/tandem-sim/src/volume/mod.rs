//! A deterministic simulator for the replication engine
//! (`tandem-volumes`): N nodes of one volume, each with a simulated disk
//! (volatile cache, crashes drop unflushed writes at random), connected by
//! pairs of ordered channels (data and meta) that can break; an
//! application writes and flushes on the primary with self-describing
//! data, so every copy can be checked for which write each sector holds.
//!
//! Invariants checked (violations are collected, see
//! [`VolumeSim::violations`]):
//! - a write acknowledged with protocol C is on every secondary that was
//!   in sync when the primary crashed ([`VolumeSim::crash`]);
//! - a completed flush made every write completed before it durable on
//!   the primary and on every peer in sync throughout;
//! - no copy ever holds torn or foreign data;
//! - after healing, every copy is identical and holds, per sector, the
//!   last acknowledged write (or one that was in flight at a crash).

mod app;
pub mod cluster;
mod disk;
mod driver;
pub mod pattern;
mod resize;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tandem_core::Timestamp;
use tandem_volumes::{Channel, Message, Metadata, PeerConfig, Protocol, Volume, VolumeConfig};

pub use app::App;
pub use disk::SimDisk;

/// A scheduled happening.
#[derive(Clone, Debug)]
enum Ev {
    /// A disk operation of `node` (of this life) completes.
    Disk {
        node: usize,
        life: u64,
        io: u64,
        op: DiskOp,
    },
    /// A message arrives.
    Deliver {
        from: usize,
        to: usize,
        session: u64,
        msg: Message,
    },
}

#[derive(Clone, Debug)]
enum DiskOp {
    Write {
        offset: u64,
        data: bytes::Bytes,
        fua: bool,
    },
    Read {
        offset: u64,
        len: u64,
    },
    Flush {
        mark: u64,
    },
    Meta {
        meta: Box<Metadata>,
    },
    Grow {
        meta: Box<Metadata>,
    },
}

/// One node.
#[derive(Debug)]
struct Node {
    vol: Option<Volume>,
    disk: SimDisk,
    /// Incremented at every crash: completions of an earlier life are void.
    life: u64,
}

/// The connection between two nodes.
#[derive(Clone, Debug, Default)]
struct Link {
    cable: bool,
    /// Every message is lost, the connection stays up (a firewall that
    /// drops packets: only timeouts notice).
    silent: bool,
    /// One side dropped the connection while the link was silent: the
    /// other side has not heard of it.
    half_open: bool,
    connected: bool,
    session: u64,
    retry_at: Timestamp,
}

/// The simulation. See the module docs.
pub struct VolumeSim {
    rng: ChaCha8Rng,
    now: Timestamp,
    size: u64,
    cfgs: Vec<VolumeConfig>,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Timestamp, u64)>>,
    events: BTreeMap<u64, Ev>,
    order: u64,
    links: BTreeMap<(usize, usize), Link>,
    /// Last delivery time per (from, to, channel): channels are ordered.
    lanes: BTreeMap<(usize, usize, bool), Timestamp>,
    /// The application and its checker.
    pub app: App,
    /// Log lines: (time, node, text).
    pub log: Vec<(Timestamp, usize, String)>,
    /// Every invariant broken.
    pub violations: Vec<String>,
    protocol: Protocol,
    /// Metadata write latency range, µs.
    pub meta_latency_us: (u64, u64),
    /// A fault armed for the next matching message (see
    /// [`VolumeSim::on_message`]).
    trap: Option<Trap>,
    /// Each direction of each link carries this many KiB/s (`None`: no
    /// bandwidth limit, only delay).
    pub link_kib_s: Option<u64>,
    /// When each direction's wire is free again (with a bandwidth).
    wires: BTreeMap<(usize, usize), Timestamp>,
    /// Resync requests sent (`ResyncData` messages), all nodes.
    pub resync_requests: u64,
}

/// What happens when the trapped message arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapAction {
    /// The connection breaks just before it is delivered.
    CutBefore,
    /// It is delivered, then node `.0` loses power at once.
    CrashAfter(usize),
}

#[derive(Clone, Copy, Debug)]
struct Trap {
    to: usize,
    pred: fn(&Message) -> bool,
    action: TrapAction,
}

impl VolumeSim {
    /// `n` nodes of a volume of `size` bytes, every connection with
    /// `protocol`, created (`create-md`) and attached at time zero; pings
    /// every 200 ms answered within 100 ms (short, so failures are found
    /// quickly in simulated time).
    pub fn new(seed: u64, n: usize, size: u64, protocol: Protocol) -> Self {
        Self::new_with(seed, n, size, protocol, |c| {
            c.ping_interval = Duration::from_millis(200);
            c.ping_timeout = Duration::from_millis(100);
        })
    }

    /// As [`VolumeSim::new`], each node's configuration from DRBD's
    /// defaults ([`VolumeConfig::new`]) changed by `tune`.
    pub fn new_with(
        seed: u64,
        n: usize,
        size: u64,
        protocol: Protocol,
        tune: impl Fn(&mut VolumeConfig),
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cfgs: Vec<VolumeConfig> = (0..n)
            .map(|i| {
                let peers = (0..n)
                    .filter(|j| *j != i)
                    .map(|j| PeerConfig {
                        node: j as u8,
                        name: format!("n{}", j + 1),
                        protocol,
                    })
                    .collect();
                let mut c = VolumeConfig::new("r0", i as u8, peers, rand::Rng::random(&mut rng));
                c.resync_window = 8;
                tune(&mut c);
                c
            })
            .collect();
        let nodes = cfgs
            .iter()
            .map(|c| {
                let peers: Vec<u8> = c.peers.iter().map(|p| p.node).collect();
                let meta = Metadata::create(size, c.node, &peers, 8);
                let mut disk = SimDisk::new(size);
                disk.meta = Some(meta.clone());
                Node {
                    vol: Some(Volume::attach(c.clone(), meta, Timestamp::ZERO)),
                    disk,
                    life: 0,
                }
            })
            .collect();
        let mut links = BTreeMap::new();
        for a in 0..n {
            for b in a + 1..n {
                links.insert(
                    (a, b),
                    Link {
                        cable: true,
                        ..Link::default()
                    },
                );
            }
        }
        let mut s = Self {
            rng,
            now: Timestamp::ZERO,
            size,
            cfgs,
            nodes,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            order: 0,
            links,
            lanes: BTreeMap::new(),
            app: App::new(size),
            log: Vec::new(),
            violations: Vec::new(),
            protocol,
            meta_latency_us: (200, 1000),
            trap: None,
            link_kib_s: None,
            resync_requests: 0,
            wires: BTreeMap::new(),
        };
        for i in 0..n {
            s.drain(i);
        }
        s
    }

    /// Current simulated time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The volume of node `i` (none while crashed).
    pub fn volume(&self, i: usize) -> Option<&Volume> {
        self.nodes[i].vol.as_ref()
    }

    /// Schedules metadata operation `op` of node `i` (a write or a grow)
    /// after the metadata latency.
    fn meta_op(&mut self, i: usize, io: tandem_volumes::IoId, op: DiskOp) {
        let (lo, hi) = self.meta_latency_us;
        let at = self.now + Duration::from_micros(self.rng.random_range(lo..hi));
        let life = self.nodes[i].life;
        let ev = Ev::Disk {
            node: i,
            life,
            io,
            op,
        };
        self.schedule(at, ev);
    }

    /// The volume of node `i`, mutably, for operator commands (outputs are
    /// carried out at the next step).
    pub fn volume_mut(&mut self, i: usize) -> Option<&mut Volume> {
        self.nodes[i].vol.as_mut()
    }

    /// What a read of node `i`'s disk sees.
    pub fn contents(&self, i: usize) -> Vec<u8> {
        self.nodes[i].disk.contents()
    }

    /// The simulation's random generator.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Arms a fault for the next message to node `to` matching `pred`:
    /// the connection breaks before it arrives, or a node crashes right
    /// after it arrived (a lost sync generation, a missed resync end…).
    pub fn on_message(&mut self, to: usize, pred: fn(&Message) -> bool, action: TrapAction) {
        self.trap = Some(Trap { to, pred, action });
    }

    /// Whether the armed fault has fired.
    pub fn trap_fired(&self) -> bool {
        self.trap.is_none()
    }

    /// Whether node `i` runs (not crashed).
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].vol.is_some()
    }

    /// The log lines of node `i` so far.
    pub fn log_of(&self, i: usize) -> Vec<String> {
        self.log
            .iter()
            .filter(|(_, n, _)| *n == i)
            .map(|(_, _, l)| l.clone())
            .collect()
    }

    /// The whole log, one line per entry.
    pub fn log_text(&self) -> String {
        self.log
            .iter()
            .map(|(t, n, l)| format!("{:>10.3} ms n{}: {l}", t.as_nanos() as f64 / 1e6, n + 1))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn key(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    /// The byte ranges of node `i`'s application writes still on their
    /// way to a peer.
    fn writes_on_the_wire(&self, i: usize) -> Vec<(u64, u64)> {
        self.events
            .values()
            .filter_map(|ev| match ev {
                Ev::Deliver {
                    from,
                    msg: tandem_volumes::Message::Write { offset, data, .. },
                    ..
                } if *from == i => Some((*offset, data.len() as u64)),
                _ => None,
            })
            .collect()
    }

    fn schedule(&mut self, at: Timestamp, ev: Ev) {
        self.order += 1;
        self.events.insert(self.order, ev);
        self.queue.push(Reverse((at, self.order)));
    }

    /// Sets every node's automatic split-brain recovery (also across
    /// restarts).
    pub fn set_split_brain(&mut self, p: tandem_volumes::split_brain::Policies) {
        for (c, n) in self.cfgs.iter_mut().zip(&mut self.nodes) {
            c.split_brain = p;
            if let Some(v) = n.vol.as_mut() {
                v.set_split_brain(p);
            }
        }
    }

    /// Sets every node's fencing policy (also across restarts).
    pub fn set_fencing(&mut self, f: tandem_volumes::Fencing) {
        for (c, n) in self.cfgs.iter_mut().zip(&mut self.nodes) {
            c.fencing = f;
            if let Some(v) = n.vol.as_mut() {
                v.set_fencing(f);
            }
        }
    }

    /// Runs `f` on node `i`'s engine (if up) at the current time, then
    /// carries out what it asked.
    pub fn with_volume<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Volume, Timestamp) -> R,
    ) -> Option<R> {
        let now = self.now;
        let r = self.nodes[i].vol.as_mut().map(|v| f(v, now));
        self.drain(i);
        r
    }

    /// Cuts (`false`) or restores the cable between `a` and `b`.
    pub fn cable(&mut self, a: usize, b: usize, up: bool) {
        let k = Self::key(a, b);
        if let Some(l) = self.links.get_mut(&k) {
            l.cable = up;
            l.retry_at = self.now + Duration::from_millis(5);
        }
        if !up {
            self.break_link(a, b);
        }
    }

    /// Makes the link between `a` and `b` silently drop everything
    /// (`true`) or carry messages again; the connection stays up.
    pub fn silence(&mut self, a: usize, b: usize, silent: bool) {
        let k = Self::key(a, b);
        let half_open = self.links.get_mut(&k).is_some_and(|l| {
            l.silent = silent;
            l.half_open
        });
        // The side still connected hears of the close now (its next
        // packet gets a reset).
        if !silent && half_open {
            self.break_link(a, b);
        }
    }

    /// Node `i` drops its connection to `peer`: over a silent link only `i`
    /// knows; otherwise both ends do.
    pub(super) fn drop_connection(&mut self, i: usize, peer: usize) {
        let k = Self::key(i, peer);
        let silent = self.links.get(&k).is_some_and(|l| l.silent && l.connected);
        if !silent {
            return self.break_link(i, peer);
        }
        let already = self.links.get_mut(&k).is_some_and(|l| {
            let was = l.half_open;
            l.half_open = true;
            was
        });
        if already {
            // Both sides gave up on it.
            return self.break_link(i, peer);
        }
        let now = self.now;
        if let Some(v) = self.nodes[i].vol.as_mut() {
            v.connection_lost(now, peer as u8);
        }
        self.drain(i);
    }

    /// Every cable between the two sides cut.
    pub fn partition(&mut self, side: &[usize]) {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                if side.contains(&a) != side.contains(&b) {
                    self.cable(a, b, false);
                }
            }
        }
    }

    /// Every cable restored.
    pub fn heal(&mut self) {
        let keys: Vec<(usize, usize)> = self.links.keys().copied().collect();
        for (a, b) in keys {
            self.cable(a, b, true);
        }
    }

    fn break_link(&mut self, a: usize, b: usize) {
        let k = Self::key(a, b);
        let Some(l) = self.links.get_mut(&k) else {
            return;
        };
        if !l.connected {
            return;
        }
        l.connected = false;
        l.half_open = false;
        l.session += 1;
        l.retry_at = self.now + Duration::from_millis(5);
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(v) = self.nodes[x].vol.as_mut() {
                v.connection_lost(now, y as u8);
            }
            self.drain(x);
        }
    }

    /// When `msg`, sent now from `from` to `to`, arrives: after the wire
    /// carried it (with a bandwidth) and a random 50–400 µs, never before
    /// an earlier one on the same channel.
    fn channel_delay(&mut self, from: usize, to: usize, msg: &Message) -> Timestamp {
        let ch = msg.channel();
        // Headers, plus the data a write or resync block carries.
        if matches!(msg, Message::ResyncData { .. }) {
            self.resync_requests += 1;
        }
        let bytes = 64
            + match msg {
                Message::Write { data, .. } | Message::ResyncData { data, .. } => data.len() as u64,
                _ => 0,
            };
        let d = Duration::from_micros(rand::Rng::random_range(&mut self.rng, 50..400));
        let mut sent = self.now;
        if let Some(kib_s) = self.link_kib_s.filter(|k| *k > 0) {
            let wire = self.wires.entry((from, to)).or_insert(Timestamp::ZERO);
            let start = (*wire).max(self.now);
            let ns = bytes.saturating_mul(1_000_000_000) / kib_s.saturating_mul(1024);
            *wire = start + Duration::from_nanos(ns);
            sent = *wire;
        }
        let lane = (from, to, ch == Channel::Meta);
        let at = (sent + d).max(self.lanes.get(&lane).copied().unwrap_or(Timestamp::ZERO));
        self.lanes.insert(lane, at);
        at
    }

    /// How long what was sent from `from` to `to` still waits for the wire
    /// (with a bandwidth; zero otherwise).
    pub fn link_backlog(&self, from: usize, to: usize) -> Duration {
        self.wires
            .get(&(from, to))
            .map_or(Duration::ZERO, |w| w.since(self.now))
    }
}

pub use driver::seeds_for_volumes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_nodes_come_up_in_sync_after_a_forced_primary() {
        let mut s = VolumeSim::new(1, 2, 64 * 4096, Protocol::C);
        s.run_for(Duration::from_millis(50));
        assert!(s.promote(0, true));
        s.run_for(Duration::from_millis(500));
        let ok = s.converge(Duration::from_secs(5));
        let log: Vec<String> = s
            .log
            .iter()
            .map(|(t, n, l)| format!("{t:?} n{}: {l}", n + 1))
            .collect();
        assert!(ok, "{:?}\n{}", s.violations, log.join("\n"));
        assert!(s.app.writes_done > 100, "{} writes", s.app.writes_done);
    }
}
