//! The daemon's side of replicated volumes (`[[volume]]`): it keeps each
//! local volume's process running (`tandem volume run`, a process of its
//! own, so a hung disk or export never stalls the heartbeats), runs the
//! `volume:NAME` agent (start = promote under the cluster's lease, stop =
//! demote), feeds the lease to the volumes, and tells the brain where each
//! group's data is ready.
//!
//! Threads: `tandem-vol-lease` forwards each lease the node loop hands it
//! (one datagram per volume, never on the node loop); `tandem-volumes`
//! watches every 200 ms: restarts a volume process that died, reports data
//! readiness per group ([`Input::DataReadiness`]), drops the replication
//! connection of a peer the cluster declared dead (so promotion need not
//! wait for the volume's own ping timeout), and outdates this copy when a
//! primary peer went on writing without it (resource-level fencing).

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_core::{MembershipStatus, Op, OpResult, PeerState, Timestamp};
use tandem_volumes::cluster::{Glue, GlueAction, PeerView};
use tandem_volumes::{DiskState, Role, VolumeStatus};

use super::inbox::{Inbox, Input};
use crate::volume::control::{self, Answer, Command};
use crate::volume::{launch, lease};

/// What the volume side of the daemon needs to know.
#[derive(Clone)]
struct Ctx {
    /// Where volume processes read the configuration.
    source: launch::Source,
    state_dir: PathBuf,
    local: String,
    /// Local volumes, by name.
    volumes: BTreeMap<String, tandem_config::Volume>,
    /// The latest lease end (CLOCK_MONOTONIC ns; 0: none).
    lease: Arc<AtomicU64>,
    /// Volume processes this daemon started (reaped when they exit).
    children: Arc<Mutex<BTreeMap<String, std::process::Child>>>,
}

/// Handle kept by the node loop: hands the lease to the forwarder.
pub struct VolumeLease {
    tx: Sender<Option<Instant>>,
}

impl VolumeLease {
    /// The brain's lease changed: it ends at `until` (`None`: no lease).
    pub fn set(&self, until: Option<Instant>) {
        let _ = self.tx.send(until);
    }
}

/// Runs `volume:NAME` resources for the executor.
pub struct VolumeOps {
    ctx: Ctx,
}

/// Starts the volume side: returns the agent for the executor and the
/// lease handle for the node loop (`None` when this node holds no volume).
pub fn start(
    config: &tandem_config::Config,
    opts: &super::Options,
    local: &str,
    inbox: &Inbox,
    shared: &Arc<super::node_loop::Shared>,
) -> anyhow::Result<(Arc<VolumeOps>, Option<VolumeLease>)> {
    // Volume processes read the configuration the daemon read.
    let source = match &opts.heartbeat_dir {
        Some(d) => launch::Source::HeartbeatDir(d.clone()),
        None => launch::Source::Config(opts.config.clone()),
    };
    let (inbox, shared) = (inbox.clone(), shared.clone());
    let volumes: BTreeMap<String, tandem_config::Volume> = config
        .volumes
        .iter()
        .filter(|v| v.node(local).is_some())
        .map(|v| (v.name.clone(), v.clone()))
        .collect();
    let ctx = Ctx {
        source,
        state_dir: config.state_dir.clone(),
        local: local.to_string(),
        volumes,
        lease: Arc::new(AtomicU64::new(0)),
        children: Arc::default(),
    };
    let ops = Arc::new(VolumeOps { ctx: ctx.clone() });
    if ctx.volumes.is_empty() {
        return Ok((ops, None));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("tandem-vol-lease".into())
            .spawn(move || forward_leases(&ctx, &rx))?;
    }
    let groups: Vec<(String, Vec<String>)> = config
        .groups
        .iter()
        .map(|g| {
            let vols = g
                .resources
                .iter()
                .filter_map(|r| match &r.agent {
                    tandem_config::AgentKind::Volume { name } => Some(name.clone()),
                    _ => None,
                })
                .collect();
            (g.name.clone(), vols)
        })
        .filter(|(_, v): &(String, Vec<String>)| !v.is_empty())
        .collect();
    let grace = config.timing.deadtime + Duration::from_secs(1);
    std::thread::Builder::new()
        .name("tandem-volumes".into())
        .spawn(move || Watcher::new(ctx, groups, grace).run(&inbox, &shared))?;
    Ok((ops, Some(VolumeLease { tx })))
}

/// Sends each lease to every local volume's lease socket.
fn forward_leases(ctx: &Ctx, rx: &Receiver<Option<Instant>>) {
    let Ok(sock) = UnixDatagram::unbound() else {
        tracing::error!(
            "volumes: cannot open a datagram socket; promoted volumes will refuse writes"
        );
        return;
    };
    let _ = sock.set_nonblocking(true);
    while let Ok(mut until) = rx.recv() {
        // Only the latest lease matters.
        while let Ok(u) = rx.try_recv() {
            until = u;
        }
        let end = until.map_or(0, |u| {
            let now = Instant::now();
            let mono = lease::mono_now();
            match u.checked_duration_since(now) {
                Some(d) => mono.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                None => mono.saturating_sub(
                    u64::try_from(now.duration_since(u).as_nanos()).unwrap_or(u64::MAX),
                ),
            }
        });
        ctx.lease.store(end, Ordering::Relaxed);
        for name in ctx.volumes.keys() {
            let _ = sock.send_to(
                &lease::encode(end),
                lease::socket_path(&ctx.state_dir, name),
            );
        }
    }
}

impl Ctx {
    fn socket(&self, name: &str) -> PathBuf {
        control::socket_path(&self.state_dir, name)
    }

    fn ask(&self, name: &str, cmd: &Command) -> anyhow::Result<Answer> {
        control::request(&self.socket(name), cmd)
    }

    fn status(&self, name: &str) -> Option<VolumeStatus> {
        match self.ask(name, &Command::Status) {
            Ok(Answer::Status { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// Starts the volume's process unless it answers already.
    fn ensure_running(&self, name: &str) -> bool {
        if self.status(name).is_some() {
            return true;
        }
        match launch::launch(&self.source, &self.state_dir, &self.local, name) {
            Ok(child) => {
                tracing::info!("volume {name}: process started (pid {})", child.id());
                if let Ok(mut c) = self.children.lock() {
                    c.insert(name.to_string(), child);
                }
                true
            }
            Err(e) => {
                tracing::error!("volume {name}: {e:#}");
                false
            }
        }
    }

    /// The exported file a loop device is attached to, and the device path
    /// that points at it while primary.
    fn device(&self, name: &str) -> Option<(PathBuf, PathBuf)> {
        let v = self.volumes.get(name)?;
        let (_, node) = v.node(&self.local)?;
        Some((v.export.as_ref()?.join(name), node.device.clone()?))
    }
}

impl tandem_agents::VolumeAgent for VolumeOps {
    fn run(&self, name: &str, op: Op, timeout: Duration) -> OpResult {
        if !self.ctx.volumes.contains_key(name) {
            return OpResult::Failed(format!(
                "volume {name} has no copy on {} (no [volume.on.{}] in its [[volume]])",
                self.ctx.local, self.ctx.local
            ));
        }
        let deadline = Instant::now() + timeout;
        match op {
            Op::Start => self.start(name, deadline),
            Op::Stop => self.stop(name, deadline),
            Op::Monitor => self.monitor(name),
        }
    }
}

impl VolumeOps {
    /// Promotes under the lease (retrying while the old primary is still
    /// demoting), then points the device at a loop device on the export.
    fn start(&self, name: &str, deadline: Instant) -> OpResult {
        let ctx = &self.ctx;
        if !ctx.ensure_running(name) {
            return OpResult::Failed(format!(
                "volume {name} is not running here; see {}",
                crate::volume::log_path(&ctx.state_dir, name).display()
            ));
        }
        let mut last;
        loop {
            let lease = ctx.lease.load(Ordering::Relaxed);
            if lease > lease::mono_now() {
                let cmd = Command::Primary {
                    force: false,
                    lease: Some(lease),
                };
                match ctx.ask(name, &cmd) {
                    Ok(Answer::Done { .. }) => break,
                    Ok(Answer::Refused { message }) => {
                        // Only a peer still primary (demoting, or about to
                        // be found dead) is worth waiting for.
                        if !message.contains("is primary") {
                            return OpResult::Failed(message);
                        }
                        last = message;
                    }
                    Ok(_) => last = "unexpected answer".into(),
                    Err(e) => last = format!("{e:#}"),
                }
            } else {
                last = "this node holds no lease yet".into();
            }
            if Instant::now() >= deadline {
                return OpResult::Failed(last);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some((file, device)) = ctx.device(name)
            && let Err(e) = attach_loop(&file, &device, &loop_record(&ctx.state_dir, name))
        {
            let _ = ctx.ask(name, &Command::Secondary);
            return OpResult::Failed(format!("volume {name}: {e}"));
        }
        OpResult::Ok
    }

    /// Detaches the loop device, then demotes (retrying while writes drain).
    fn stop(&self, name: &str, deadline: Instant) -> OpResult {
        let ctx = &self.ctx;
        if let Some((_, device)) = ctx.device(name) {
            detach_loop(&device, &loop_record(&ctx.state_dir, name));
        }
        loop {
            match ctx.ask(name, &Command::Secondary) {
                // Not running: not primary either (it restarts secondary).
                Err(_) | Ok(Answer::Done { .. }) => return OpResult::Ok,
                Ok(Answer::Refused { message }) if Instant::now() >= deadline => {
                    return OpResult::Failed(message);
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn monitor(&self, name: &str) -> OpResult {
        match self.ctx.status(name) {
            None => OpResult::NotRunning,
            Some(st) if st.role != Role::Primary => OpResult::NotRunning,
            Some(st) if matches!(st.disk, DiskState::UpToDate) => OpResult::Ok,
            Some(st) => OpResult::Failed(format!(
                "volume {name}: primary, but the local copy is {:?}",
                st.disk
            )),
        }
    }
}

/// `losetup ARGS FILE`, killed after 10 s (a loop device stuck on a dead
/// export must not hang the agent): exit code and output.
fn losetup(args: &[&str], file: &Path) -> Result<(i32, String), String> {
    use tandem_agents::exec::{Exit, run};
    let file = file.to_string_lossy();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&file);
    match run("losetup", &all, &BTreeMap::new(), Duration::from_secs(10)) {
        Exit::Code(c, out) => Ok((c, out)),
        Exit::Signal(s) => Err(format!("losetup killed by signal {s}")),
        Exit::TimedOut => Err("losetup did not finish within 10 s".into()),
        Exit::SpawnFailed(e) => Err(format!("{e} (install util-linux's losetup)")),
    }
}

/// Where the loop device attached for volume `name` is recorded, so the
/// stop detaches exactly that one (and the daemon finds it after a
/// restart).
fn loop_record(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("volumes").join(format!("{name}.loop"))
}

/// `losetup` on the exported file, and `device` made a symlink to it.
fn attach_loop(file: &Path, device: &Path, record: &Path) -> Result<(), String> {
    // Direct I/O: no second page cache between the filesystem and the
    // volume (replication.md §3.4); plain if the kernel refuses it.
    let mut out = losetup(&["--find", "--show", "--direct-io=on"], file)?;
    if out.0 != 0 {
        out = losetup(&["--find", "--show"], file)?;
    }
    let loopdev = out
        .1
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("/dev/"))
        .map(str::to_string);
    let Some(loopdev) = loopdev.filter(|_| out.0 == 0) else {
        return Err(format!("losetup {}: {}", file.display(), out.1.trim()));
    };
    let _ = std::fs::write(record, &loopdev);
    if let Some(d) = device.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let tmp = device.with_extension("tandem-new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&loopdev, &tmp)
        .and_then(|()| std::fs::rename(&tmp, device))
        .map_err(|e| format!("{} -> {loopdev}: {e}", device.display()))
}

/// The loop device this node attached is detached (lazily if something
/// still has it mounted), and `device` removed if it points at it.
fn detach_loop(device: &Path, record: &Path) {
    let Ok(loopdev) = std::fs::read_to_string(record) else {
        return;
    };
    let loopdev = loopdev.trim();
    if std::fs::read_link(device).is_ok_and(|t| t == Path::new(loopdev)) {
        let _ = std::fs::remove_file(device);
    }
    match losetup(&["-d"], Path::new(loopdev)) {
        Ok((0, _)) => {}
        Ok((_, out)) if out.contains("No such device") => {}
        Ok((_, out)) => tracing::warn!("losetup -d {loopdev}: {}", out.trim()),
        Err(e) => tracing::warn!("losetup -d {loopdev}: {e}"),
    }
    let _ = std::fs::remove_file(record);
}

/// What the watcher remembers between rounds.
struct Watcher {
    ctx: Ctx,
    /// Groups with volumes, and their volumes.
    groups: Vec<(String, Vec<String>)>,
    /// How long a primary peer may stay a live member after its
    /// replication connection broke before this copy is outdated.
    grace: Duration,
    /// Holds (and whether the copy is stale) last reported, by group.
    reported: BTreeMap<String, (Option<String>, bool)>,
    /// The rules (forget the dead, outdate after a replication-only
    /// partition, readiness), with their memory.
    glue: Glue,
    /// The glue's time origin.
    epoch: Instant,
    /// Last launch attempt per volume.
    launched: BTreeMap<String, Instant>,
}

impl Watcher {
    fn new(ctx: Ctx, groups: Vec<(String, Vec<String>)>, grace: Duration) -> Self {
        Self {
            ctx,
            groups,
            grace,
            reported: BTreeMap::new(),
            glue: Glue::new(grace),
            epoch: Instant::now(),
            launched: BTreeMap::new(),
        }
    }

    fn run(mut self, inbox: &Inbox, shared: &super::node_loop::Shared) {
        loop {
            let view = shared
                .snapshot
                .lock()
                .ok()
                .and_then(|s| s.as_ref().map(|(m, _)| m.clone()));
            let mut holds: BTreeMap<String, Option<String>> = BTreeMap::new();
            let mut stale: Vec<String> = Vec::new();
            let names: Vec<String> = self.ctx.volumes.keys().cloned().collect();
            let mut seen = Vec::new();
            for name in names {
                let (hold, st) = self.look(&name, view.as_ref());
                if st.as_ref().is_some_and(tandem_volumes::cluster::is_stale) {
                    stale.push(name.clone());
                }
                holds.insert(name, hold);
                seen.extend(st);
            }
            if let Ok(mut v) = shared.volumes.lock() {
                *v = seen;
            }
            for (group, vols) in &self.groups {
                let hold = vols.iter().find_map(|v| {
                    holds
                        .get(v)
                        .cloned()
                        .unwrap_or_else(|| Some(format!("volume {v} has no copy on this node")))
                });
                let state = (hold, vols.iter().any(|v| stale.contains(v)));
                if self.reported.get(group) != Some(&state) {
                    self.reported.insert(group.clone(), state.clone());
                    inbox.send(Input::DataReadiness {
                        group: group.clone(),
                        hold: state.0,
                        stale: state.1,
                    });
                }
            }
            self.reap();
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One volume: its readiness (`None`: ready), and the cluster's view
    /// applied to it (the rules are `tandem_volumes::cluster`'s, shared
    /// with the simulator).
    fn look(
        &mut self,
        name: &str,
        view: Option<&MembershipStatus>,
    ) -> (Option<String>, Option<VolumeStatus>) {
        let Some(st) = self.ctx.status(name) else {
            let due = self
                .launched
                .get(name)
                .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
            if due {
                self.launched.insert(name.to_string(), Instant::now());
                self.ctx.ensure_running(name);
            }
            return (Some(format!("volume {name} is not running here")), None);
        };
        // The groups that use this volume, as the cluster sees them.
        let its_groups: Vec<&tandem_core::GroupStatus> = view
            .into_iter()
            .flat_map(|v| &v.groups)
            .filter(|g| {
                self.groups
                    .iter()
                    .any(|(n, vols)| *n == g.name && vols.iter().any(|x| x == name))
            })
            .collect();
        let peers: Vec<PeerView> = st
            .peers
            .iter()
            .map(|p| {
                let node = view.and_then(|v| v.nodes.iter().find(|n| n.name == p.node));
                let state = node.map(|n| n.state);
                PeerView {
                    name: p.node.clone(),
                    member: state.is_some_and(PeerState::is_member),
                    gone: matches!(state, Some(PeerState::Dead | PeerState::Left)),
                    runs_its_group: its_groups.iter().any(|g| g.active_on.contains(&p.node)),
                    stale: its_groups.iter().any(|g| g.stale_on.contains(&p.node)),
                    fenced: node.is_some_and(|n| n.fenced),
                }
            })
            .collect();
        let now = Timestamp::from_nanos(
            u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
        );
        let (hold, actions) = self.glue.look(now, &st, &peers);
        for a in actions {
            match a {
                GlueAction::Forget { peer } => {
                    if let Ok(Answer::Done { message }) =
                        self.ctx.ask(name, &Command::Forget { peer })
                    {
                        tracing::info!("{message}");
                    }
                }
                GlueAction::Outdate { peer } => match self.ctx.ask(name, &Command::Outdate) {
                    Ok(Answer::Done { .. }) => tracing::warn!(
                        "volume {name}: {peer} stayed primary and a member for {} s after its replication connection broke: this copy is outdated (it cannot be promoted until it resynced)",
                        self.grace.as_secs()
                    ),
                    Ok(Answer::Refused { message }) => tracing::info!("{message}"),
                    _ => {}
                },
                GlueAction::PeerFenced { peer, how } => {
                    // The volume's own log says whether IO resumed.
                    if let Ok(Answer::Done { message }) =
                        self.ctx.ask(name, &Command::PeerFenced { peer, how })
                    {
                        tracing::info!("volume {message}");
                    }
                }
            }
        }
        (hold, Some(st))
    }

    /// Reaps volume processes this daemon started that exited.
    fn reap(&self) {
        if let Ok(mut c) = self.ctx.children.lock() {
            c.retain(|name, child| match child.try_wait() {
                Ok(Some(st)) => {
                    tracing::warn!("volume {name}: process exited ({st}); restarting it");
                    false
                }
                _ => true,
            });
        }
    }
}
