//! `tandem daemon`: loads the configuration, opens the links, builds the
//! workers, and runs the node loop (on its own thread) and the control
//! socket side by side. Every worker reports to the node loop through one
//! [`inbox::Inbox`].

pub mod alert_spool;
pub mod alerts;
pub mod fence;
pub mod inbox;
pub mod incarnation;
pub mod journal;
pub mod kernel_lease;
pub mod known_peers;
pub mod logging;
pub mod loop_meter;
pub mod node_loop;
pub mod ocf;
pub mod operator;
pub mod realtime;
pub mod systemd;
pub mod volumes;
pub mod watchdog;
pub mod witness;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tandem_config::Config;
use tandem_control::DaemonInfo;
use tandem_core::{Brain, Timestamp};
use tandem_wire::{Key, Keyring};

use inbox::{Inbox, Input};
pub use logging::init_logging;
use node_loop::{NodeLoop, Shared, WAKE};

/// What `tandem daemon` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Configuration file.
    pub config: PathBuf,
    /// Node name override (default: the host name).
    pub node: Option<String>,
    /// Control socket override.
    pub socket: Option<PathBuf>,
    /// State directory override.
    pub state_dir: Option<PathBuf>,
    /// Run from Heartbeat's ha.cf, haresources and authkeys in this directory.
    pub heartbeat_dir: Option<PathBuf>,
    /// Accept `crc` in authkeys.
    pub allow_insecure_crc: bool,
}

/// A fixed text whose MAC tells whether two keys are the same.
const ARBITER_KEY_PROBE: &[u8] = b"tandem: is the arbitrator's key the heartbeat key?";

/// Loads the keys from a key file: a bare secret (key id 1), or a
/// Heartbeat `authkeys` file (every key line; `auth N` selects the sending
/// key).
pub fn load_keys(path: &Path, allow_crc: bool) -> anyhow::Result<Keyring> {
    let secret = tandem_config::keyfile::read_key(path)?;
    let text = String::from_utf8_lossy(&secret);
    if !tandem_config::legacy::looks_like_authkeys(&text) {
        tandem_config::keyfile::check_length(path, &secret)?;
        return Ok(Keyring::single(Key::new(1, &secret).context("key file")?));
    }
    let auth = tandem_config::legacy::parse_authkeys(&text, path)?;
    if auth.method() == Some(tandem_config::legacy::AuthMethod::Crc) {
        if !allow_crc {
            bail!(
                "{} selects `crc`, which authenticates nothing: anyone on the network could forge heartbeats. Use `sha1` with a secret, or start with --allow-insecure-crc if you accept the risk",
                path.display()
            );
        }
        tracing::warn!("INSECURE: authkeys selects crc; heartbeats are not authenticated");
    }
    // A `crc` line is a key whose secret everybody knows ("crc"): selected
    // or not, it would let anyone on the network forge heartbeats under its
    // id. Without the flag, every one of them is dropped.
    let crc = tandem_config::legacy::AuthMethod::Crc;
    if !allow_crc {
        for (id, _, _) in auth.keys.iter().filter(|(_, m, _)| *m == crc) {
            tracing::warn!(
                "{}: ignoring key {id} (`crc` authenticates nothing; anyone could forge heartbeats with it); delete the line, or start with --allow-insecure-crc",
                path.display()
            );
        }
    }
    for (id, _, key) in auth.keys.iter().filter(|(_, m, _)| *m != crc) {
        if key.len() < tandem_config::keyfile::MIN_KEY_LEN {
            tracing::warn!(
                "{}: key {id} is only {} bytes long: it can be guessed, and whoever guesses it can forge heartbeats; use a secret of {} bytes or more (`tandem keygen` prints one)",
                path.display(),
                key.len(),
                tandem_config::keyfile::MIN_KEY_LEN
            );
        }
    }
    let keys = auth
        .keys
        .iter()
        .filter(|(_, method, _)| allow_crc || *method != crc)
        .map(|(id, method, key)| {
            let material = if *method == tandem_config::legacy::AuthMethod::Crc {
                b"crc".to_vec()
            } else {
                key.clone()
            };
            Key::new(*id, &material)
        })
        .collect::<Result<Vec<_>, _>>()
        .context("authkeys")?;
    Keyring::new(keys, auth.send).context("authkeys")
}

/// This machine's host name, as `uname -n` prints it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Resolves which configured node this process is.
pub fn local_node(config: &Config, path: &Path, over: Option<&str>) -> anyhow::Result<String> {
    let name = over.map_or_else(hostname, str::to_string);
    if config.node(&name).is_some() {
        return Ok(name);
    }
    // Heartbeat matches node names case-insensitively.
    if let Some(n) = config
        .nodes
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(&name))
    {
        return Ok(n.name.clone());
    }
    let known: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
    if over.is_some() {
        bail!(
            "node `{name}` is not in {} (nodes: {}); check --node",
            path.display(),
            known.join(", ")
        );
    }
    bail!(
        "this machine's host name `{name}` is not a node in {} (nodes: {}); name the node with --node NAME, or make the host name match as Heartbeat requires",
        path.display(),
        known.join(", ")
    )
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let (loaded, logfile, source) = match &opts.heartbeat_dir {
        Some(dir) => {
            let h = tandem_config::legacy::load_dir(dir)?;
            let logfile = h.extras.logfile.clone().or(h.extras.debugfile.clone());
            (h.loaded, logfile, dir.clone())
        }
        None => (
            tandem_config::load(&opts.config)?,
            None,
            opts.config.clone(),
        ),
    };
    let node_hint = opts.node.clone().unwrap_or_else(hostname);
    let _log_guards = init_logging(logfile.as_deref(), &node_hint)?;
    let r = run_loaded(opts, loaded, &source);
    if let Err(e) = &r {
        tracing::error!("{e:#}");
    }
    r
}

fn run_loaded(opts: &Options, loaded: tandem_config::Loaded, source: &Path) -> anyhow::Result<()> {
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let mut config = loaded.config;
    if let Some(d) = &opts.state_dir {
        config.state_dir.clone_from(d);
    }
    ocf::apply_ocf_defaults(&mut config);
    ocf::log_native_paths(&config);
    let local = local_node(&config, source, opts.node.as_deref())?;
    let keys = load_keys(&config.key_file, opts.allow_insecure_crc)?;
    // The heartbeat key's fingerprint (a MAC of a fixed text), to warn if
    // the arbitrator was given the same key.
    let heartbeat_fingerprint = keys.send_key().sign(ARBITER_KEY_PROBE);
    let (incarnation, warning) = incarnation::next(&config.state_dir);
    let known = known_peers::load(&config.state_dir);
    let peers_seen = known_peers::Recorder::start(&config.state_dir, known.clone())
        .context("start the peers' incarnation recorder")?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let links = tandem_links::open_links(&config, &local)?;
    for t in tandem_links::neighbours::tune(&config, &local) {
        let what = format!("{}: {} neighbour {}", t.interface, t.family, t.setting);
        match &t.error {
            None => tracing::info!(
                "{what} changed from {} to {}, so a unicast peer is found again quickly after a cable flap",
                t.from,
                t.to
            ),
            Some(e) => tracing::warn!(
                "{what} left at {} instead of {} ({e}): after a cable flap this unicast link may stay silent for about a second",
                t.from,
                t.to
            ),
        }
    }
    let socket = opts.socket.clone().unwrap_or_else(|| config.socket.clone());

    let brain_config = config.brain_config(&local, keys, incarnation, &known)?;
    let shared = Arc::new(Shared::default());
    let poll = mio::Poll::new().context("create poller")?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE).context("create waker")?);
    let (inbox, inputs) = Inbox::new(waker);

    // Signals: SIGTERM/SIGINT, the node loop leaves the cluster and stops;
    // SIGHUP, the log file is reopened (logrotate's postrotate).
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("install signal handlers")?;
    {
        let inbox = inbox.clone();
        std::thread::Builder::new()
            .name("tandem-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == signal_hook::consts::SIGHUP {
                        match logging::reopen_logfile() {
                            Some(Ok(p)) => {
                                tracing::info!("SIGHUP: log file {} reopened", p.display())
                            }
                            Some(Err(e)) => {
                                tracing::warn!("SIGHUP: {e:#}; still writing to the old file")
                            }
                            None => tracing::info!(
                                "SIGHUP: no log file to reopen (logging to stderr or the journal)"
                            ),
                        }
                        continue;
                    }
                    systemd::stopping();
                    inbox.send(Input::Stop { signal });
                }
            })
            .context("spawn signal thread")?;
    }

    let want_rt = config.realtime;
    if want_rt && !realtime::prepare_allocator() {
        tracing::warn!(
            "the allocator's real-time settings were refused: the heartbeat thread may share an arena with workers"
        );
    }
    let (sched_tx, sched_rx) = std::sync::mpsc::channel();
    let exec_inbox = inbox.clone();
    let exit_inbox = inbox.clone();
    let (volume_ops, volume_lease) = volumes::start(&config, opts, &local, &inbox, &shared)?;
    let executor = tandem_agents::Executor::start(
        config.groups.clone(),
        config.state_dir.clone(),
        local.clone(),
        Arc::new(move |id, result| exec_inbox.send(Input::OpDone { id, result })),
        volume_ops,
        Arc::new(move |key, detail| exit_inbox.send(Input::MainExited { key, detail })),
    )
    .context("start the agent executor")?;
    // A clean stop may take every stop timeout in turn, plus a margin.
    let shutdown_limit = config
        .groups
        .iter()
        .flat_map(|g| g.resources.iter().map(|r| r.stop_timeout))
        .sum::<Duration>()
        + Duration::from_secs(2);
    // Kernel-enforced leases on the floating addresses.
    let vips: Vec<std::net::IpAddr> = config
        .groups
        .iter()
        .flat_map(|g| g.resources.iter())
        .filter_map(|r| match (&r.agent, &r.native) {
            (tandem_config::AgentKind::IpAddr(f), _) | (_, tandem_config::Native::IpAddr(f)) => {
                Some(f.ip)
            }
            _ => None,
        })
        .collect();
    let kernel_lease = if vips.is_empty() {
        None
    } else {
        match kernel_lease::KernelLease::start(&config.cluster, &vips, config.timing.keepalive) {
            Ok(k) => {
                tracing::info!(
                    "kernel leases on {} floating address(es): a frozen daemon's addresses go silent by themselves",
                    vips.len()
                );
                Some(k)
            }
            Err(e) => {
                tracing::warn!(
                    "kernel leases unavailable ({e}): install nftables and run as root, or a frozen daemon's addresses keep answering"
                );
                None
            }
        }
    };
    let watchdog = match &config.watchdog {
        Some(w) => match watchdog::Watchdog::arm(w.device.clone(), w.timeout) {
            Ok((w, line)) => {
                tracing::info!("{line}");
                Some(w)
            }
            Err(e) => bail!("[watchdog]: {e} (remove [watchdog] to run without one)"),
        },
        None if std::path::Path::new("/dev/watchdog").exists() => {
            tracing::info!(
                "/dev/watchdog exists but is not armed: add [watchdog] to have a hung node reset"
            );
            None
        }
        None => {
            tracing::info!(
                "no /dev/watchdog on this machine: a hung node is not reset by hardware (kernel leases still silence its addresses)"
            );
            None
        }
    };
    let arbiter_key = match config.witness.as_ref().map(|w| &w.kind) {
        Some(tandem_config::WitnessKind::Arbiter { key_file, .. }) => {
            let secret = tandem_config::keyfile::read_key(key_file).with_context(|| {
                format!(
                    "[witness] key_file {}: the arbitrator's own key (make one with `tandem keygen {}` and give it to the arbitrator, not the heartbeat key)",
                    key_file.display(),
                    key_file.display()
                )
            })?;
            // Same key, same MAC: compared without keeping the secrets around.
            let own = Key::new(1, &secret).context("[witness] key_file")?;
            if own.sign(ARBITER_KEY_PROBE) == heartbeat_fingerprint {
                tracing::warn!(
                    "[witness] key_file {} holds the heartbeat key: the arbitrator's host can forge heartbeats; give the arbitrator a key of its own",
                    key_file.display()
                );
            }
            Some(Arc::new(
                Key::new(1, &secret).context("[witness] key_file")?,
            ))
        }
        _ => None,
    };
    let prober = witness::Prober::new(
        config.witness.clone(),
        witness::Identity {
            cluster: config.cluster.clone(),
            node: local.clone(),
            incarnation,
            key: arbiter_key,
        },
        inbox.clone(),
    );
    let fencer = fence::Fencer::new(config.fencing.clone(), inbox.clone());
    let agents = config
        .groups
        .iter()
        .flat_map(|g| {
            g.resources
                .iter()
                .map(move |r| (format!("{}/{}", g.name, r.name), r.agent.label()))
        })
        .collect();
    let (event_sink, events) =
        tandem_api::EventLog::start(&local, agents).context("start the event log")?;
    let origin = alerts::Origin {
        cluster: config.cluster.clone(),
        node: local.clone(),
        node_id: config
            .nodes
            .iter()
            .position(|n| n.name == local)
            .and_then(|i| u16::try_from(i + 1).ok())
            .unwrap_or(0),
        incarnation,
        spool_dir: config.state_dir.join("alerts"),
    };
    alerts::start(&config.alerts, &origin, &events, &shared).context("start the alert workers")?;
    let history = config.state_dir.join("history");
    tandem_api::history::start(&history, &events)
        .with_context(|| format!("keep the event history in {}", history.display()))?;
    let op_events = events.sink().context("start the operator's event queue")?;
    let node_shared = shared.clone();
    let node_thread = std::thread::Builder::new()
        .name("tandem-node".into())
        .spawn(move || {
            let sched = if want_rt {
                realtime::enter()
            } else {
                "normal scheduling (realtime = false)".to_string()
            };
            let _ = sched_tx.send(sched);
            // The clock starts with the loop: the set-up above (nftables,
            // links, locking memory) is not counted as timer lateness.
            let epoch = Instant::now();
            let brain = Brain::new(brain_config, Timestamp::ZERO);
            let node_loop = NodeLoop {
                events: event_sink,
                watchdog,
                peers_seen,
                lease_want: None,
                lease_sent: None,
                volume_lease,
                fencer,
                kernel_lease,
                prober,
                brain,
                links,
                poll,
                epoch,
                inputs,
                shared: node_shared,
                executor,
                shutdown_limit,
            };
            node_loop.run()
        })
        .context("spawn the node loop's thread")?;
    let scheduling = sched_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| "unknown".into());
    tracing::info!("node loop: {scheduling}");

    let info = DaemonInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        config: source.display().to_string(),
        scheduling,
        sent_datagrams: 0,
        sent_bytes: 0,
        send_errors: 0,
        alerts_delivered: 0,
        alerts_failed: 0,
    };
    let operator = Arc::new(operator::Operator::new(
        shared.clone(),
        info,
        inbox,
        op_events,
    ));
    let lookup = |name: &Option<String>, what: &str| -> anyhow::Result<Option<(String, u32)>> {
        name.as_ref()
            .map(|g| {
                tandem_control::access::group_id(g)
                    .map(|id| (g.clone(), id))
                    .with_context(|| {
                        format!(
                            "[control] {what} = {g:?}: no such group in /etc/group; create it (groupadd {g}) or remove the line"
                        )
                    })
            })
            .transpose()
    };
    let access = tandem_control::Access {
        admin_group: lookup(&config.control.admin_group, "admin_group")?,
        read_group: lookup(&config.control.read_group, "read_group")?,
    };
    let control = operator.clone();
    tandem_control::serve(&socket, access, move |req, caller| {
        control.handle(req, caller)
    })?;
    systemd::start(shared.clone()).context("start the systemd notifier")?;
    if let Some(http) = &config.http {
        start_http(http, &local, operator, events, history)?;
    }
    tracing::info!(
        "tandem {} node {local} of cluster {} started (incarnation {incarnation}); control socket {}",
        env!("CARGO_PKG_VERSION"),
        config.cluster,
        socket.display()
    );

    let result = node_thread
        .join()
        .map_err(|_| anyhow!("the node loop panicked"))?;
    let _ = std::fs::remove_file(&socket);
    result.context("node loop")?;
    tracing::info!("left the cluster; stopped");
    Ok(())
}

/// Starts the HTTP API, console, metrics and health endpoints (`[http]`).
fn start_http(
    http: &tandem_config::Http,
    local: &str,
    operator: Arc<operator::Operator>,
    events: Arc<tandem_api::EventLog>,
    history: PathBuf,
) -> anyhow::Result<()> {
    let tokens = match &http.tokens_file {
        Some(f) => tandem_api::Tokens::load(f)?,
        None => tandem_api::Tokens::none(),
    };
    let read_only = tokens.is_empty();
    let config = tandem_api::ApiConfig {
        listen: http.listen_for(local),
        tls: http.tls.clone(),
        tokens,
        history: Some(history),
    };
    let tls = config.tls.is_some();
    let server = tandem_api::serve(config, operator, events)?;
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(
        "HTTP API on {scheme}://{}/ (console at /, /metrics, /health, /ready, /active/GROUP){}",
        server.local_addr,
        if read_only {
            "; read-only: no tokens_file"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod key_tests {
    use super::load_keys;

    fn authkeys(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("authkeys");
        std::fs::write(&path, text).expect("write authkeys");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        (dir, path)
    }

    /// Issue 12, finding 1: an unselected `crc` line was a receive key with
    /// the public secret "crc".
    #[test]
    fn an_unselected_crc_line_is_no_key() {
        let (_d, path) = authkeys("auth 1\n1 sha1 a-long-enough-secret\n2 crc\n");
        let keys = load_keys(&path, false).expect("sha1 selected");
        assert!(keys.get(1).is_some());
        assert!(keys.get(2).is_none(), "crc key 2 accepted");
        // With the flag, the operator asked for it.
        let keys = load_keys(&path, true).expect("allowed");
        assert!(keys.get(2).is_some());
    }

    #[test]
    fn a_selected_crc_line_is_refused_without_the_flag() {
        let (_d, path) = authkeys("auth 2\n1 sha1 a-long-enough-secret\n2 crc\n");
        let err = load_keys(&path, false).expect_err("crc selected");
        assert!(
            format!("{err:#}").contains("--allow-insecure-crc"),
            "{err:#}"
        );
    }
}
