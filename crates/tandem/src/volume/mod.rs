//! `tandem volume run`: one replicated volume on this node, in a process
//! of its own (so a hung disk or FUSE export never stalls the cluster's
//! heartbeats; part 2 has the daemon supervise it). One engine thread owns
//! the `tandem_volumes::Volume` and handles every [`Input`] with one
//! `match`, and every engine [`Output`] with another; disk I/O, the
//! metadata store, the peers' connections and the NBD clients each run on
//! threads of their own and report through the same channel.
//!
//! Modules: [`store`] (metadata slots on disk), [`io`] (disk workers and
//! the NBD listeners), [`direct`] (writes that bypass the page cache),
//! [`net`] (authenticated replication connections) and [`codec`] (their
//! messages, bulk data never copied),
//! `links` (dialing, pairing, reader/writer threads), [`nbd`] and
//! [`fuse`] (the exports), `requests` (application requests split and
//! answered), [`control`] and `commands` (the control socket and what it
//! does).

pub mod accept_gate;
pub mod codec;
mod commands;
pub mod control;
mod demote;
pub mod direct;
pub mod fuse;
pub mod handlers;
pub mod inbox;
pub mod io;
pub mod launch;
pub mod lease;
mod links;
pub mod nbd;
pub mod net;
pub mod outbox;
pub mod requests;
mod resize;
pub mod store;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use inbox::Inbox;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tandem_config::{Config, ReplicationProtocol};
use tandem_core::Timestamp;
use tandem_volumes::{
    IoError, Message, Output, PeerConfig, Protocol, ReqId, Volume, VolumeConfig, VolumeStatus,
};

/// Everything the engine thread is told.
pub enum Input {
    /// A disk or metadata operation finished.
    DiskDone {
        /// Its id.
        io: u64,
        /// Read data, or the error's text.
        result: Result<Option<Bytes>, String>,
    },
    /// Both connections to a peer are up.
    Connected {
        /// Peer index.
        peer: u8,
        /// Data connection.
        data: net::Conn,
        /// Meta connection.
        meta: net::Conn,
    },
    /// A message from a peer, on connection generation `gen`.
    Received {
        /// Peer index.
        peer: u8,
        /// Connection generation.
        generation: u64,
        /// The message.
        msg: Message,
    },
    /// A peer's connection (generation `gen`) broke.
    Lost {
        /// Peer index.
        peer: u8,
        /// Connection generation.
        generation: u64,
    },
    /// An NBD client connected; its replies go to `replies`.
    NbdOpened {
        /// Connection id.
        conn: u64,
        /// Where replies go.
        replies: nbd::ReplySender,
    },
    /// An NBD request.
    Nbd {
        /// Connection id.
        conn: u64,
        /// The client's cookie.
        cookie: u64,
        /// What it asks.
        req: nbd::Request,
    },
    /// A request on the FUSE export, with its reply.
    Fuse {
        /// What it asks.
        op: fuse::Op,
        /// Where the answer goes.
        reply: fuse::Reply,
    },
    /// The daemon renewed its lease: it ends at `until` (CLOCK_MONOTONIC
    /// ns; 0: the node holds none).
    Lease {
        /// The lease's end.
        until: u64,
    },
    /// The backing disk was measured (`resize`).
    Room {
        /// Data bytes it could hold.
        room: u64,
        /// The operator's command that asked, if any.
        ask: Option<resize::Ask>,
    },
    /// SIGTERM or SIGINT: demote if possible, then stop.
    Stop {
        /// The signal number.
        signal: i32,
    },
    /// An operator command, with where to answer.
    Control {
        /// The command.
        cmd: control::Command,
        /// The answer.
        reply: Sender<control::Answer>,
        /// Signalled once the answer is written to the client.
        written: Receiver<()>,
    },
}

/// A peer's live connection.
struct Link {
    generation: u64,
    data: outbox::Outbox,
    meta: outbox::Outbox,
    handles: Vec<std::net::TcpStream>,
}

/// How long writes are held after the lease lapsed before they fail with
/// EIO and the volume demotes itself: a lease renewed meanwhile (a peer
/// back from a freeze acknowledges a fresh heartbeat within a keepalive or
/// two) costs the application a short stall, not an I/O error. Nothing is
/// written while held, so a peer promoted meanwhile loses nothing.
const LAPSE_HOLD: Duration = Duration::from_millis(500);

/// Writes larger than this are split: their parts go to disk and peer side
/// by side (bench/README.md "volumes": 256 KiB beat 1 MiB, 512 and 128 KiB).
const MAX_CHUNK: u64 = 256 << 10;

/// An application request in flight: who to answer, and how many of its
/// parts are still outstanding.
struct Pending {
    origin: Origin,
    /// A write, zeroing or flush (not a read).
    write: bool,
    parts: usize,
    error: Option<IoError>,
    data: Option<Bytes>,
}

/// Who asked.
enum Origin {
    Nbd { conn: u64, cookie: u64, write: bool },
    Fuse(fuse::Reply),
}

/// The engine and its IO (run by whichever thread holds the inbox).
struct Runner {
    vol: Volume,
    epoch: Instant,
    inbox: Inbox,
    disk: io::DiskPool,
    key: Arc<net::Key>,
    links: BTreeMap<u8, Link>,
    next_generation: u64,
    nbd: BTreeMap<u64, nbd::ReplySender>,
    /// Engine request → application request.
    parts: BTreeMap<ReqId, u64>,
    pending: BTreeMap<u64, Pending>,
    next_req: ReqId,
    events: Vec<String>,
    stop: bool,
    size: u64,
    info: control::Info,
    describe: io::Describe,
    /// After `down`: signalled when its answer reached the client.
    down_written: Option<Receiver<()>>,
    /// Promoted by the cluster: writes need a running lease.
    managed: bool,
    /// The end of the daemon's latest lease (CLOCK_MONOTONIC ns).
    lease_until: u64,
    /// The lapse was logged (once per promotion).
    lapse_reported: bool,
    /// When the lease lapsed (writes are held meanwhile).
    lapsed_since: Option<Instant>,
    /// The lapse outlasted [`LAPSE_HOLD`]: writes fail with EIO.
    lapse_failed: bool,
    /// Programs run on events (`[volume.handlers]`).
    handlers: handlers::Handlers,
    /// Writes held while the lease is lapsed, in arrival order.
    held: Vec<(Origin, requests::Op)>,
    /// Writes refused because the lease had lapsed.
    lapsed_refusals: u64,
    /// Answers sent once the metadata they report is on disk (`outdate`).
    parked: Vec<(Sender<control::Answer>, control::Answer)>,
    /// Resizes (`resize`).
    grower: resize::Grower,
    /// A `secondary` waiting for the export's openers.
    demotion: demote::Demotion,
}

fn protocol(p: ReplicationProtocol) -> Protocol {
    match p {
        ReplicationProtocol::A => Protocol::A,
        ReplicationProtocol::B => Protocol::B,
        ReplicationProtocol::C => Protocol::C,
    }
}

/// The volume `name` of `config` on node `local`: its config for the
/// engine, this node's index, and the backing disk.
pub fn engine_config(
    config: &Config,
    name: &str,
    local: &str,
) -> anyhow::Result<(VolumeConfig, tandem_config::Volume, u8)> {
    let v = config
        .volumes
        .iter()
        .find(|v| v.name == name)
        .with_context(|| {
            let known: Vec<&str> = config.volumes.iter().map(|v| v.name.as_str()).collect();
            format!(
                "no volume `{name}` in the configuration (volumes: {})",
                known.join(", ")
            )
        })?;
    let (me, _) = v.node(local).with_context(|| {
        format!("volume `{name}` has no [volume.on.{local}] table: this node holds no copy")
    })?;
    let peers = v
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(i, n)| PeerConfig {
            node: i as u8,
            name: n.name.clone(),
            protocol: protocol(v.protocol_between(local, &n.name)),
        })
        .collect();
    // Generation identifiers must never repeat across the process's lives:
    // a fresh random seed each start (the clock and pid if the kernel's
    // generator fails).
    let mut seed = [0u8; 8];
    if getrandom::fill(&mut seed).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        seed = (t ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    let mut cfg = VolumeConfig::new(name, me as u8, peers, u64::from_le_bytes(seed));
    cfg.split_brain = v.split_brain;
    cfg.fencing = v.fencing;
    cfg.hold_resync_target = v.handlers.contains_key("before-resync-target");
    cfg.csums = v.csums;
    cfg.resync_rate_kib = v.resync_rate_kib;
    cfg.resync_min_rate_kib = v.resync_min_rate_kib;
    cfg.controller = v.controller;
    Ok((cfg, v.clone(), me as u8))
}

/// Runs volume `name` until `down`.
pub fn run(config: &Config, name: &str, local: &str) -> anyhow::Result<()> {
    let (cfg, v, me) = engine_config(config, name, local)?;
    let disk_path = v.nodes[me as usize].disk.clone();
    let peers = v.nodes.len() - 1;
    let locator = store::locator_path(&config.state_dir, name);
    let (mut store, _) =
        store::MetaStore::open(&disk_path, &v.meta, peers, v.al_extents, Some(locator))?;
    let meta = store.load(name)?;
    let (size, room, capacity) = (meta.size, store.room(), store.capacity());
    anyhow::ensure!(
        size <= room,
        "volume {name}: the metadata says {size} bytes but {} holds only {room} for data: the backing disk shrank (volumes never shrink); grow it back to its former size",
        disk_path.display()
    );
    if capacity > size {
        tracing::info!(
            "volume {name}: {} could hold {capacity} bytes: `tandem volume resize {name}` on a node with every peer connected grows the volume",
            disk_path.display()
        );
    }
    let secret = tandem_config::keyfile::read_key(&config.key_file)
        .with_context(|| format!("volume {name}: the cluster key"))?;
    let key = Arc::new(net::Key::new(&secret));
    let (inbox, timer) = inbox::inbox();
    let disk = io::DiskPool::start(&disk_path, size, store, inbox.clone())?;
    // Replication listener and dialers.
    let listen = v.nodes[me as usize].address;
    let listener = TcpListener::bind(listen)
        .with_context(|| format!("volume {name}: listen on {listen} for its peers"))?;
    let (found_tx, found_rx) = std::sync::mpsc::channel();
    {
        let (name, key) = (name.to_string(), key.clone());
        let tx = found_tx.clone();
        std::thread::Builder::new()
            .name("tandem-vol-listen".into())
            .spawn(move || net::accept_loop(listener, name, me, key, tx))?;
    }
    let wants: inbox::Wants = Arc::default();
    for (i, n) in v.nodes.iter().enumerate() {
        if i as u8 > me {
            let (name, key, tx, wants) = (
                name.to_string(),
                key.clone(),
                found_tx.clone(),
                wants.clone(),
            );
            let (peer, to) = (i as u8, n.address);
            std::thread::Builder::new()
                .name("tandem-vol-dial".into())
                .spawn(move || links::net_dialer(&name, me, peer, to, &key, &tx, &wants))?;
        }
    }
    {
        let inbox = inbox.clone();
        std::thread::Builder::new()
            .name("tandem-vol-pair".into())
            .spawn(move || links::pair_connections(found_rx, &inbox))?;
    }
    // The exports and the control socket.
    {
        let inbox = inbox.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])?;
        std::thread::Builder::new()
            .name("tandem-vol-signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let _ = inbox.send(Input::Stop { signal });
                }
            })?;
    }
    let socket = control::socket_path(&config.state_dir, name);
    control::serve(&socket, inbox.clone())?;
    lease::serve(&lease::socket_path(&config.state_dir, name), inbox.clone())?;
    let describe: io::Describe = Arc::new(std::sync::Mutex::new((size, true)));
    if let Some(n) = &v.nbd {
        io::serve_nbd(n, name, inbox.clone(), describe.clone())?;
    }
    // The FUSE export: kept mounted until the volume goes down.
    let fuse_size: fuse::Size = Arc::new(size.into());
    let openers: demote::Openers = Arc::default();
    let fuse_session = match &v.export {
        Some(dir) => Some(fuse::mount(
            dir,
            name,
            fuse_size.clone(),
            openers.clone(),
            inbox.clone(),
        )?),
        None => None,
    };
    // Userspace storage under a loop device: never throttled as a writer
    // of dirty pages it is itself needed to clean (replication.md §3.4).
    if let Err(e) = rustix::process::configure_io_flusher_behavior(true) {
        tracing::warn!(
            "volume {name}: PR_SET_IO_FLUSHER refused ({e}); memory pressure could stall the export"
        );
    }
    // Its memory stays resident (replication.md §3.4): a fault needing IO
    // under memory pressure could wait for the very export it serves.
    // Locked as first touched, so the FUSE threads' request buffers cost
    // only what they use.
    use rustix::mm::MlockAllFlags as Mcl;
    if let Err(e) = rustix::mm::mlockall(Mcl::CURRENT | Mcl::FUTURE | Mcl::ONFAULT) {
        tracing::warn!(
            "volume {name}: memory not locked ({e}); memory pressure could stall the export"
        );
    }
    let device = v.export.as_ref().map(|e| e.join(name));
    let info = control::Info {
        device: device.clone(),
        nbd: v.nbd.as_ref().map(|n| match n {
            tandem_config::NbdListen::Unix(p) => format!("unix:{}", p.display()),
            tandem_config::NbdListen::Tcp(a) => a.to_string(),
        }),
    };
    let vol = Volume::attach(cfg, meta, Timestamp::ZERO);
    let mut r = Runner {
        vol,
        epoch: Instant::now(),
        inbox,
        disk,
        key,
        links: BTreeMap::new(),
        next_generation: 1,
        nbd: BTreeMap::new(),
        parts: BTreeMap::new(),
        pending: BTreeMap::new(),
        next_req: 1,
        events: Vec::new(),
        stop: false,
        size,
        info,
        describe,
        down_written: None,
        managed: false,
        lease_until: 0,
        lapse_reported: false,
        lapsed_since: None,
        lapse_failed: false,
        held: Vec::new(),
        parked: Vec::new(),
        handlers: handlers::Handlers::new(&v, local, socket.clone()),
        lapsed_refusals: 0,
        grower: resize::Grower::new(fuse_session.is_some().then_some(fuse_size)),
        demotion: demote::Demotion::new(fuse_session.is_some().then_some(openers), device),
    };
    tracing::info!(
        "volume {name}: attached {} ({size} bytes)",
        disk_path.display()
    );
    r.flush(&wants);
    let mut r = timer
        .run(inbox::Core { runner: r, wants })
        .with_context(|| format!("volume {name}: the engine failed"))?
        .runner;
    // The last metadata (a demotion's) reaches the disk before we exit.
    r.disk.finish(Duration::from_secs(5));
    if let Some(w) = r.down_written.take() {
        let _ = w.recv_timeout(Duration::from_secs(2));
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(lease::socket_path(&config.state_dir, name));
    tracing::info!("volume {name}: down");
    Ok(())
}

impl Runner {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    pub(super) fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::DiskDone { io, result } => self.vol.disk_done(now, io, result),
            Input::Connected { peer, data, meta } => self.connect(peer, data, meta),
            Input::Received {
                peer,
                generation,
                msg,
            } => {
                if self
                    .links
                    .get(&peer)
                    .is_some_and(|l| l.generation == generation)
                {
                    self.vol.received(now, peer, msg);
                }
            }
            Input::Lost { peer, generation } => {
                if self
                    .links
                    .get(&peer)
                    .is_some_and(|l| l.generation == generation)
                {
                    self.drop_link(peer);
                    self.vol.connection_lost(now, peer);
                }
            }
            Input::NbdOpened { conn, replies } => {
                self.nbd.insert(conn, replies);
            }
            Input::Nbd { conn, cookie, req } => self.nbd_request(conn, cookie, req),
            Input::Fuse { op, reply } => self.fuse_request(op, reply),
            Input::Lease { until } => self.lease_until = until,
            Input::Room { room, ask } => self.room(room, ask),
            Input::Stop { signal } => {
                let now = self.now();
                tracing::info!("volume {}: signal {signal}: stopping", self.vol.name());
                if self.vol.role() == tandem_volumes::Role::Primary
                    && let Err(e) = self.vol.demote(now)
                {
                    // Stopping anyway: at the next start the copy is
                    // treated as a crashed primary (its hot extents resync).
                    tracing::warn!("volume {}: {e}; stopping as primary", self.vol.name());
                }
                self.stop = true;
            }
            Input::Control {
                cmd,
                reply,
                written,
            } => {
                self.answer_control(cmd, reply);
                if self.stop {
                    self.down_written = Some(written);
                }
            }
        }
    }

    /// Carries out every engine output, with one exhaustive match.
    fn flush(&mut self, wants: &std::sync::Mutex<BTreeMap<u8, bool>>) {
        while let Some(out) = self.vol.poll() {
            match out {
                Output::MetaWrite { io, meta } => self.disk.meta(io, *meta),
                Output::DiskWrite {
                    io,
                    offset,
                    data,
                    fua,
                } => self.disk.write(io, offset, data, fua),
                Output::DiskRead { io, offset, len } => self.disk.read(io, offset, len),
                Output::DiskFlush { io } => self.disk.flush(io),
                Output::Send { peer, msg } => {
                    if let Some(l) = self.links.get(&peer) {
                        let ch = if net::is_meta(&msg) { &l.meta } else { &l.data };
                        let _ = ch.send(msg);
                    }
                }
                Output::Disconnect { peer } => self.drop_link(peer),
                Output::Complete { req, result } => self.complete(req, result),
                Output::MeasureRoom => self.disk.measure(None),
                Output::Grow { io, meta } => self.disk.grow(io, *meta),
                Output::Event(e) => {
                    self.resize_event(&e);
                    tracing::info!(target: "tandem::volume", "{}: {e}", self.vol.name());
                    self.handlers.on_event(&e, self.vol.role());
                    self.events.push(e.to_string());
                    if self.events.len() > 1000 {
                        self.events.remove(0);
                    }
                }
            }
        }
        if let Ok(mut w) = wants.lock() {
            let nodes: Vec<u8> = self.vol.peer_nodes().collect();
            for peer in nodes {
                if self.vol.wants_connection(peer) && !self.links.contains_key(&peer) {
                    w.insert(peer, true);
                }
            }
        }
        if let Ok(mut d) = self.describe.lock() {
            *d = (self.size, self.vol.role() != tandem_volumes::Role::Primary);
        }
    }

    fn status(&self) -> VolumeStatus {
        self.vol.status()
    }
}

/// Where a volume's log goes when `tandem volume up` starts it.
pub fn log_path(state_dir: &std::path::Path, name: &str) -> PathBuf {
    state_dir.join("volumes").join(format!("{name}.log"))
}
