//! Resource agents: the IO side of resource management.
//!
//! The brain decides; the [`Executor`] carries out its [`Action`]s on a
//! thread of its own (each operation on its own short-lived thread, with its
//! own deadline), and sends each [`OpResult`] back with the action's id. No
//! agent ever runs on the heartbeat thread.
//!
//! Agents: [`ipaddr`] (floating IP via netlink, gratuitous ARP),
//! unsolicited neighbour advertisements for IPv6 ([`na`]), [`process`] (a supervised command), [`scripts`] (OCF agents and LSB init
//! scripts), [`systemd`] (units through systemd's D-Bus API), and [`check`]
//! (TCP/HTTP/script health checks with rise/fall).

pub mod check;
pub mod exec;
pub mod garp;
pub mod ipaddr;
pub mod na;
pub mod process;
pub mod scripts;
pub mod systemd;
pub mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_config::{AgentKind, Group, Resource};
use tandem_core::{Action, Op, OpResult};

/// Runs the operations of `volume:NAME` resources. The volume processes
/// live in the daemon's crate; the executor only calls through this.
pub trait VolumeAgent: Send + Sync {
    /// Start (promote), stop (demote) or monitor volume `name` here.
    fn run(&self, name: &str, op: Op, timeout: Duration) -> OpResult;
}

/// Everything agents share.
struct Shared {
    groups: Vec<Group>,
    volumes: Arc<dyn VolumeAgent>,
    processes: process::Processes,
    checks: Mutex<HashMap<tandem_core::ResourceKey, check::CheckState>>,
    watcher: watch::Watcher,
}

/// Runs agent operations off the heartbeat thread. See the crate docs.
pub struct Executor {
    tx: Sender<Action>,
}

/// Where results go: called with (action id, result) from the operation's
/// thread; the daemon hands them to its node loop.
pub type Report = Arc<dyn Fn(u64, OpResult) + Send + Sync>;

impl Executor {
    /// Starts the executor thread. `state_dir` keeps process pid files and
    /// logs; `node` is exported to commands as `TANDEM_NODE`; `volumes`
    /// runs `volume:NAME` resources; `exited` hears of started resources
    /// whose main process exited ([`watch`]).
    pub fn start(
        groups: Vec<Group>,
        state_dir: PathBuf,
        node: String,
        report: Report,
        volumes: Arc<dyn VolumeAgent>,
        exited: watch::Exited,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Action>();
        let shared = Arc::new(Shared {
            groups,
            volumes,
            processes: process::Processes::new(state_dir.join("processes"), node),
            checks: Mutex::new(HashMap::new()),
            watcher: watch::Watcher::start(exited)?,
        });
        std::thread::Builder::new()
            .name("tandem-executor".into())
            .spawn(move || dispatch(&rx, &shared, &report))?;
        Ok(Self { tx })
    }

    /// Queues an action; its result comes back through the report callback.
    pub fn submit(&self, action: Action) {
        let _ = self.tx.send(action);
    }
}

fn dispatch(rx: &Receiver<Action>, shared: &Arc<Shared>, report: &Report) {
    while let Ok(action) = rx.recv() {
        let id = action.id;
        let (shared, report2) = (shared.clone(), report.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("tandem-op-{id}"))
            .spawn(move || {
                let r = run_action(&shared, &action);
                report2(action.id, r);
            });
        if let Err(e) = spawned {
            report(id, OpResult::Failed(format!("cannot start a thread: {e}")));
        }
    }
}

/// Runs one operation of one resource, synchronously.
fn run_action(shared: &Shared, a: &Action) -> OpResult {
    // Looked up by name: the executor's list and the brain's need not be
    // in the same order.
    let Some(res) = shared
        .groups
        .iter()
        .find(|g| g.name == a.key.group)
        .and_then(|g| g.resources.iter().find(|r| r.name == a.key.resource))
    else {
        return OpResult::Failed(format!("unknown resource {}", a.key));
    };
    let group = &a.key.group;
    let deadline = Instant::now() + a.timeout;
    if a.op == Op::Stop {
        shared.watcher.unwatch(&a.key);
    }
    let mut r = agent_op(shared, group, res, a.op, a.timeout);
    // After a start (a new process) or a good monitor that finds nothing
    // watched yet (say, a daemon restart found the service running); a
    // watched process needs no looking up again: its exit is seen anyway.
    if r == OpResult::Ok
        && (a.op == Op::Start || (a.op == Op::Monitor && !shared.watcher.is_watching(&a.key)))
        && let Some(source) = main_pid(shared, group, res)
    {
        shared.watcher.watch(&a.key, source);
    }
    if let (Some(chk), OpResult::Ok) = (&res.check, &r) {
        let mut pause = Duration::from_millis(1);
        r = match a.op {
            // A start is done when the service answers its health check.
            // Polled at 1 ms, doubling up to 20 ms: a quick service is
            // seen ready within a millisecond, a slow one costs little.
            Op::Start => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match check::probe(
                    &chk.kind,
                    chk.timeout.min(left.max(Duration::from_millis(1))),
                ) {
                    Ok(()) => {
                        if let Ok(mut c) = shared.checks.lock() {
                            c.insert(a.key.clone(), check::CheckState::default());
                        }
                        break OpResult::Ok;
                    }
                    Err(e) if left.is_zero() => {
                        break OpResult::Failed(format!(
                            "started, but its health check never passed: {e}"
                        ));
                    }
                    Err(_) => {
                        std::thread::sleep(pause.min(left));
                        pause = (pause * 2).min(Duration::from_millis(20));
                    }
                }
            },
            Op::Monitor => {
                let outcome = check::probe(&chk.kind, chk.timeout);
                let mut checks = shared.checks.lock().unwrap_or_else(|p| p.into_inner());
                let st = checks.entry(a.key.clone()).or_default();
                st.record(outcome, chk.rise, chk.fall);
                if st.up {
                    OpResult::Ok
                } else {
                    OpResult::Failed(format!(
                        "health check failed {} times: {}",
                        st.failures(),
                        st.last_error.clone().unwrap_or_default()
                    ))
                }
            }
            Op::Stop => OpResult::Ok,
        };
    }
    r
}

/// Where the main process of a resource is found, if it has one.
fn main_pid(shared: &Shared, group: &str, res: &Resource) -> Option<watch::MainPid> {
    if !res.watch {
        return None;
    }
    if let Some(p) = res.params.get("pidfile") {
        return Some(watch::MainPid::Pidfile(p.into()));
    }
    match &res.agent {
        AgentKind::Process => shared
            .processes
            .main_pid(&format!("{group}@{}", res.name))
            .map(watch::MainPid::Child),
        AgentKind::Lsb { script } => {
            let text = std::fs::read_to_string(scripts::lsb_path(script)?).ok()?;
            watch::script_pidfile(&text).map(watch::MainPid::Pidfile)
        }
        AgentKind::Systemd { unit } => Some(watch::MainPid::Systemd(unit.clone())),
        AgentKind::IpAddr(_) | AgentKind::Ocf { .. } | AgentKind::Volume { .. } => None,
    }
}

fn agent_op(shared: &Shared, group: &str, res: &Resource, op: Op, timeout: Duration) -> OpResult {
    // `@` cannot appear in names, so `a.b`+`c` and `a`+`b.c` differ.
    let key = format!("{group}@{}", res.name);
    shared
        .processes
        .adopt_legacy_key(&format!("{group}.{}", res.name), &key);
    if let tandem_config::Native::IpAddr(f) = &res.native {
        // An OCF IPaddr/IPaddr2 resource run natively (tandem_config::native).
        return match op {
            Op::Start => ipaddr::start(f, timeout),
            Op::Stop => ipaddr::stop(f, timeout),
            Op::Monitor => ipaddr::monitor(f, timeout),
        };
    }
    match &res.agent {
        AgentKind::IpAddr(f) => match op {
            Op::Start => ipaddr::start(f, timeout),
            Op::Stop => ipaddr::stop(f, timeout),
            Op::Monitor => ipaddr::monitor(f, timeout),
        },
        AgentKind::Process => {
            let Some(cmd) = res.params.get("command") else {
                return OpResult::Failed("missing parameter `command`".into());
            };
            match op {
                Op::Start => shared.processes.start(&key, cmd),
                Op::Stop => {
                    let sig = res
                        .params
                        .get("stop_signal")
                        .map_or(Some(libc::SIGTERM), |s| process::stop_signal(s));
                    match sig {
                        Some(sig) => shared.processes.stop(&key, timeout, sig),
                        None => OpResult::Failed(
                            "stop_signal must be TERM, INT, QUIT, HUP, USR1 or USR2".into(),
                        ),
                    }
                }
                Op::Monitor => shared.processes.monitor(&key),
            }
        }
        AgentKind::Ocf { provider, kind } => {
            scripts::ocf(provider, kind, &res.name, &res.params, op, timeout)
        }
        AgentKind::Lsb { script } => {
            let args: Vec<String> = res
                .params
                .get("args")
                .map(|a| a.split("::").map(str::to_string).collect())
                .unwrap_or_default();
            let r1 = res.params.get("r1_status").is_some_and(|v| v == "true");
            scripts::lsb(script, &args, op, timeout, r1)
        }
        AgentKind::Systemd { unit } => systemd::run(unit, op, timeout),
        AgentKind::Volume { name } => shared.volumes.run(name, op, timeout),
    }
}
