//! A cluster of real `tandem daemon` processes on this machine's loopback
//! addresses (127.0.K.11, .12, …), each with its own control socket and
//! log file in a private temporary directory. Needs no root. Used by
//! `tandem demo`, the end-to-end tests and the heartbeat benchmark.
//!
//! Every child is ended by PID when the cluster is dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tandem_control::Status;

/// One node of a [`LocalCluster`].
#[derive(Debug)]
pub struct LocalNode {
    /// Node name (n1, n2, …).
    pub name: String,
    /// Its loopback address.
    pub addr: String,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its log file (stderr of the daemon; appended across restarts).
    pub log: PathBuf,
    /// Network namespace it runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
    child: Option<Child>,
}

/// A loopback cluster of real daemons. See the module documentation.
#[derive(Debug)]
pub struct LocalCluster {
    dir: tempfile::TempDir,
    exe: PathBuf,
    /// Configuration file shared by every node.
    pub config: PathBuf,
    /// Key file shared by every node.
    pub key: PathBuf,
    /// The nodes.
    pub nodes: Vec<LocalNode>,
    /// When set (e.g. by Ctrl-C), waits give up at once.
    pub abort: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Options for [`LocalCluster::new`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of nodes.
    pub nodes: usize,
    /// Third octet of the loopback addresses (keeps parallel clusters apart).
    pub subnet: u8,
    /// UDP port.
    pub port: u16,
    /// Extra `[timing]` lines, e.g. `keepalive = "50ms"`.
    pub timing: String,
    /// Extra nodes present in the configuration but not started by the
    /// cluster (their addresses are 127.0.K.200+).
    pub phantom_nodes: usize,
    /// Real-time scheduling for the heartbeat threads.
    pub realtime: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 2,
            subnet: 0,
            port: 7694,
            timing: String::new(),
            phantom_nodes: 0,
            realtime: false,
        }
    }
}

impl LocalCluster {
    /// Writes the configuration and key for a new loopback cluster; starts
    /// nothing.
    pub fn new(exe: &Path, opts: &Options) -> anyhow::Result<Self> {
        let mut text = format!(
            "cluster = \"local{}\"\nkey_file = \"authkey\"\nstate_dir = \"state\"\nrealtime = {}\n\n[timing]\n{}\n\n[[link]]\nname = \"lo\"\nkind = \"ucast\"\nport = {}\n",
            opts.subnet, opts.realtime, opts.timing, opts.port
        );
        let mut started = Vec::new();
        for i in 0..opts.nodes + opts.phantom_nodes {
            let phantom = i >= opts.nodes;
            let (name, host) = if phantom {
                (format!("x{}", i - opts.nodes + 1), 200 + i - opts.nodes)
            } else {
                (format!("n{}", i + 1), 11 + i)
            };
            let addr = format!("127.0.{}.{host}", opts.subnet);
            text.push_str(&format!(
                "\n[[node]]\nname = \"{name}\"\naddresses = {{ lo = \"{addr}\" }}\n"
            ));
            if !phantom {
                started.push((name, addr, None));
            }
        }
        Self::from_config(exe, &text, started)
    }

    /// A cluster from configuration text (whose `key_file` must be
    /// `"authkey"`, written here) and the nodes to run: (name, address, and
    /// the network namespace to run it in, if any).
    pub fn from_config(
        exe: &Path,
        text: &str,
        nodes: Vec<(String, String, Option<String>)>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tandem-local-")
            .tempdir()
            .context("create a temporary directory")?;
        let key = dir.path().join("authkey");
        tandem_config::keyfile::write_key(&key, b"local-cluster-demo-key-0123456789")?;
        let nodes = nodes
            .into_iter()
            .map(|(name, addr, netns)| LocalNode {
                socket: dir.path().join(format!("{name}.sock")),
                log: dir.path().join(format!("{name}.log")),
                name,
                addr,
                netns,
                child: None,
            })
            .collect();
        let config = dir.path().join("tandem.toml");
        std::fs::write(&config, text).context("write the configuration")?;
        Ok(Self {
            dir,
            exe: exe.to_path_buf(),
            config,
            key,
            nodes,
            abort: None,
        })
    }

    /// The temporary directory holding configuration, logs and sockets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (or restarts) node `i`.
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let n = self.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
        let argv: Vec<String> = [
            self.exe.to_string_lossy().to_string(),
            "daemon".into(),
            "--config".into(),
            self.config.to_string_lossy().to_string(),
            "--node".into(),
            n.name.clone(),
            "--socket".into(),
            n.socket.to_string_lossy().to_string(),
            "--state-dir".into(),
            self.dir
                .path()
                .join(format!("state-{}", n.name))
                .to_string_lossy()
                .to_string(),
        ]
        .into();
        self.start_custom(i, &argv)
    }

    /// Starts node `i` with a custom command line (run in its namespace, if
    /// any, with its log as stdout and stderr); the command must end by
    /// exec-ing the daemon so that its PID is the daemon's.
    pub fn start_custom(&mut self, i: usize, argv: &[String]) -> anyhow::Result<()> {
        let n = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| anyhow!("no node {i}"))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&n.log)
            .context("open the node's log")?;
        let mut cmd = match &n.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(argv);
                c
            }
            None => {
                let mut c = Command::new(argv.first().map_or("false", String::as_str));
                c.args(argv.iter().skip(1));
                c
            }
        };
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start the node")?;
        n.child = Some(child);
        Ok(())
    }

    /// Starts every node.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        (0..self.nodes.len()).try_for_each(|i| self.start(i))
    }

    /// PID of node `i`, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes.get(i)?.child.as_ref().map(Child::id)
    }

    /// Forgets node `i`'s process (after something else ended it, e.g. a
    /// lab power-off), reaping it.
    pub fn forget(&mut self, i: usize) {
        if let Some(mut c) = self.nodes.get_mut(i).and_then(|n| n.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to node `i`.
    pub fn signal(&self, i: usize, sig: libc::c_int) -> anyhow::Result<()> {
        let pid = self
            .pid(i)
            .ok_or_else(|| anyhow!("node {i} is not running"))?;
        tandem::process::signal(pid, sig).context("signal")
    }

    /// Kills node `i` with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut c) = self.nodes.get_mut(i).and_then(|n| n.child.take()) {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Stops node `i` cleanly with SIGTERM, waiting at most `timeout`.
    pub fn stop(&mut self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let Some(mut c) = self.nodes.get_mut(i).and_then(|n| n.child.take()) else {
            return Ok(());
        };
        tandem::process::signal(c.id(), libc::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("node {i} did not stop within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks node `i` for its status.
    pub fn status(&self, i: usize) -> anyhow::Result<Status> {
        let n = self.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
        tandem::cli::status::fetch(&n.socket)
    }

    /// Polls node `i`'s status every 10 ms until `pred` holds or `timeout`
    /// passes; the error says what was last observed.
    pub fn wait_for(
        &self,
        i: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Status) -> bool,
    ) -> anyhow::Result<Status> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.status(i) {
                Ok(s) if pred(&s) => return Ok(s),
                Ok(s) => last = tandem::cli::status::render(&s),
                Err(e) => last = format!("{e:#}"),
            }
            if self
                .abort
                .as_ref()
                .is_some_and(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            {
                bail!("interrupted");
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
                bail!(
                    "timed out after {timeout:?} waiting for {what} on {}; last observed:\n{last}\nlog:\n{log}",
                    self.nodes[i].name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls node `i`'s log until it contains every one of `needles` (log
    /// lines are written by a background thread, so they trail the status),
    /// or `timeout` passes; returns the log, or says what is missing.
    pub fn wait_log(
        &self,
        i: usize,
        timeout: Duration,
        needles: &[&str],
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
            let missing: Vec<&&str> = needles.iter().filter(|n| !log.contains(**n)).collect();
            if missing.is_empty() {
                return Ok(log);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} never logged {missing:?}; log:\n{log}",
                    self.nodes[i].name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The state node `i` reports for node `name`.
    pub fn state_of(s: &Status, name: &str) -> Option<tandem_core::PeerState> {
        s.membership
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.state)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A two-node cluster on loopback (see [`WebPair::build`]): the shape most
/// end-to-end tests of the operator surface need.
#[derive(Debug, Clone, Default)]
pub struct WebPair {
    /// Cluster name prefix (the subnet is appended).
    pub name: String,
    /// Third octet: the nodes are 127.0.S.11 and 127.0.S.12.
    pub subnet: u8,
    /// The command of the group's one resource `daemon` (process agent).
    pub command: String,
    /// Extra lines for the group (e.g. `migration_threshold = 1`).
    pub group_extra: String,
    /// Extra lines for the resource (e.g. `monitor = "200ms"`).
    pub resource_extra: String,
    /// Extra tables at the end (e.g. `[http]`, `[[alert]]`).
    pub extra: String,
}

impl WebPair {
    /// Writes the configuration of nodes n1 and n2 with one group `web`
    /// preferring n1 (200 over 100); starts nothing.
    pub fn build(&self, exe: &Path) -> anyhow::Result<LocalCluster> {
        let s = self.subnet;
        let text = format!(
            "cluster = \"{name}{s}\"\nkey_file = \"authkey\"\nstate_dir = \"state\"\nrealtime = false\n\n\
             [[link]]\nname = \"lo\"\nkind = \"ucast\"\nport = 7694\n\n\
             [[node]]\nname = \"n1\"\naddresses = {{ lo = \"127.0.{s}.11\" }}\n\n\
             [[node]]\nname = \"n2\"\naddresses = {{ lo = \"127.0.{s}.12\" }}\n\n\
             [[group]]\nname = \"web\"\nprefer = {{ n1 = 200, n2 = 100 }}\n{group}\n\n\
             [[group.resource]]\nname = \"daemon\"\nagent = \"process\"\nparams = {{ command = {command:?} }}\n{resource}\n\n{extra}\n",
            name = self.name,
            group = self.group_extra,
            command = self.command,
            resource = self.resource_extra,
            extra = self.extra,
        );
        let nodes = ["n1", "n2"]
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_string(), format!("127.0.{s}.{}", 11 + i), None))
            .collect();
        LocalCluster::from_config(exe, &text, nodes)
    }
}
