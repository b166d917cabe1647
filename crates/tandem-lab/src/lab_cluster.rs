//! The S1 deployment in the lab: two nodes, a floating IP and a web server
//! whose page names the node, and a client probing the VIP every 10 ms.
//! Used by `tandem demo`, the end-to-end tests and the failover benchmark.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::loopback_cluster::LocalCluster;
use crate::netns::Lab;
use tandem::cli::probe::Sample;

/// Options of a [`WebCluster`].
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// Lab prefix (unique per concurrent lab; at most 6 characters).
    pub prefix: String,
    /// Third octet of 198.18.S.0/24.
    pub subnet: u8,
    /// `[timing]` lines.
    pub timing: String,
    /// Whether the group moves back to n1 when it returns.
    pub auto_failback: bool,
    /// Extra lines for the web resource (e.g. `stop_timeout = "1s"`).
    pub web_extra: String,
    /// Command of the web resource; `{www}` is replaced by the page folder.
    pub web_command: String,
    /// Extra lines appended to the group (e.g. `migration_threshold = 2`).
    pub group_extra: String,
    /// Extra `[[group.resource]]` tables appended after the web server.
    pub extra_resources: String,
    /// Extra top-level tables (e.g. `[witness]`), placed before the links.
    pub extra_top: String,
    /// The group holds only the VIP; the web server runs on both nodes all
    /// the time, outside tandem (as keepalived users run it): see
    /// [`WebCluster::start_servers`].
    pub vip_only: bool,
    /// Replaces the VIP resource's agent and parameter lines (e.g. an
    /// `ocf:heartbeat:IPaddr` resource); `{vip}` is the address.
    pub vip_resource: Option<String>,
    /// Shell commands run before each daemon in private mount and PID
    /// namespaces (`unshare`; the shell stays as PID 1, reaping orphans),
    /// e.g. a fresh /run; `{dir}` is the cluster's folder. A SIGTERM to such
    /// a node ends it at once (no clean leave).
    pub node_prelude: Option<String>,
    /// Where the web servers outside tandem listen (busybox's `-p`).
    pub server_listen: String,
    /// More lab hosts beside n1, n2 and c1 (e.g. "c2", an attacker).
    pub extra_hosts: Vec<String>,
}

impl Default for WebOptions {
    fn default() -> Self {
        Self {
            prefix: "tdemo".into(),
            subnet: 60,
            timing: String::new(),
            auto_failback: true,
            web_extra: String::new(),
            web_command: "exec busybox httpd -f -p 80 -h {www}/$TANDEM_NODE".into(),
            group_extra: String::new(),
            extra_resources: String::new(),
            extra_top: String::new(),
            vip_only: false,
            vip_resource: None,
            node_prelude: None,
            server_listen: "80".into(),
            extra_hosts: Vec::new(),
        }
    }
}

/// The client's view: every probe answer or error.
pub type Samples = Arc<Mutex<Vec<Sample>>>;

/// A running S1 lab. See the module documentation.
pub struct WebCluster {
    /// Nodes n1, n2 and client c1.
    pub lab: Lab,
    /// The two daemons.
    pub cluster: LocalCluster,
    /// The floating IP.
    pub vip: String,
    probe: Option<Child>,
    servers: Vec<Child>,
    /// Web servers run outside tandem (restarted by [`WebCluster::power_on`]).
    vip_only: bool,
    samples: Samples,
    node_prelude: Option<String>,
    server_listen: String,
    /// Wall-clock start of the probe's time scale (ms since 1970), shared
    /// with the probe process so marks and samples use one clock.
    probe_started: Option<f64>,
    exe: std::path::PathBuf,
    /// When set (e.g. by Ctrl-C), waits give up at once.
    pub abort: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl WebCluster {
    /// Builds the lab and writes the configuration; starts nothing.
    pub fn new(exe: &Path, o: &WebOptions) -> anyhow::Result<Self> {
        if Command::new("busybox").arg("--help").output().is_err() {
            bail!("the lab web server needs busybox: apt-get install busybox");
        }
        let mut hosts = vec!["n1", "n2", "c1"];
        hosts.extend(o.extra_hosts.iter().map(String::as_str));
        let lab = Lab::new(&o.prefix, o.subnet, &hosts)?;
        let vip = format!("198.18.{}.200", o.subnet);
        let nodes: Vec<(String, String, Option<String>)> = lab
            .hosts
            .iter()
            .filter(|h| h.name.starts_with('n'))
            .map(|h| (h.name.clone(), h.addr.clone(), Some(h.netns.clone())))
            .collect();
        let text = format!(
            r#"cluster = "lab{s}"
key_file = "authkey"
realtime = true

[timing]
{timing}

{extra_top}

[[link]]
name = "lan"
kind = "ucast"
interface = "eth0"

[[node]]
name = "n1"
addresses = {{ lan = "198.18.{s}.11" }}

[[node]]
name = "n2"
addresses = {{ lan = "198.18.{s}.12" }}

[[group]]
name = "web"
prefer = {{ n1 = 200, n2 = 100 }}
auto_failback = {afb}
{group_extra}

[[group.resource]]
name = "vip"
{vip_resource}
{web}
{extra}
"#,
            web = if o.vip_only {
                String::new()
            } else {
                format!(
                    r#"
[[group.resource]]
name = "httpd"
agent = "process"
params = {{ command = "{cmd}" }}
check = {{ kind = "http", url = "http://127.0.0.1/", interval = "1s", timeout = "500ms", rise = 1, fall = 2 }}
{web_extra}"#,
                    cmd = o.web_command.replace("{www}", "WWW"),
                    web_extra = o.web_extra,
                )
            },
            vip_resource = o.vip_resource.as_deref().map_or_else(
                || format!("agent = \"ipaddr\"\nparams = {{ address = \"{vip}/24\", interface = \"eth0\", label = \"eth0:0\" }}\nmonitor = \"1s\""),
                |r| r.replace("{vip}", &vip),
            ),
            s = o.subnet,
            timing = o.timing,
            afb = o.auto_failback,
            group_extra = o.group_extra,
            extra = o.extra_resources,
            extra_top = o.extra_top,
        );
        let cluster = LocalCluster::from_config(exe, &text, nodes)?;
        let www = cluster.dir().join("www");
        for n in ["n1", "n2"] {
            std::fs::create_dir_all(www.join(n))?;
            std::fs::write(www.join(n).join("index.html"), format!("{n}\n"))?;
        }
        let text = text.replace("WWW", &www.to_string_lossy());
        std::fs::write(&cluster.config, text)?;
        Ok(Self {
            lab,
            cluster,
            vip,
            probe: None,
            servers: Vec::new(),
            vip_only: false,
            samples: Arc::new(Mutex::new(Vec::new())),
            node_prelude: o.node_prelude.clone(),
            server_listen: o.server_listen.clone(),
            probe_started: None,
            exe: exe.to_path_buf(),
            abort: None,
        })
    }

    /// Starts both daemons.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        self.start_node(0)?;
        self.start_node(1)
    }

    /// Starts node `i`'s daemon (after [`WebOptions::node_prelude`] in a
    /// private mount namespace, when there is one).
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(prelude) = &self.node_prelude else {
            return self.cluster.start(i);
        };
        let name = &self.cluster.nodes[i].name;
        let dir = self.cluster.dir();
        let daemon = format!(
            "{} daemon --config {} --node {name} --socket {} --state-dir {}",
            self.exe.display(),
            self.cluster.config.display(),
            self.cluster.nodes[i].socket.display(),
            dir.join(format!("state-{name}")).display()
        );
        // The shell stays as the node's PID 1 and reaps orphans at once, as
        // systemd does on a real node (the lab machine's own PID 1 reaps
        // them seconds late, and init scripts wait for their zombies).
        let script = format!(
            "set -e\n{}\n{daemon} &\nwait $!",
            prelude
                .replace("{dir}", &dir.to_string_lossy())
                .replace("{node}", name)
        );
        let argv: Vec<String> = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .chain([script])
        .collect();
        self.cluster.start_custom(i, &argv)
    }

    /// Starts a web server on n1 and n2 outside tandem, listening on every
    /// address (the VIP's included), for [`WebOptions::vip_only`] labs.
    pub fn start_servers(&mut self) -> anyhow::Result<()> {
        self.start_server(0)?;
        self.start_server(1)
    }

    /// Starts node `i`'s web server outside tandem (again, after a
    /// power-off killed it).
    pub fn start_server(&mut self, i: usize) -> anyhow::Result<()> {
        let n = self.lab.hosts[i].name.clone();
        let root = self.cluster.dir().join("www").join(&n);
        let child = self
            .lab
            .command(&n, "busybox")?
            .args(["httpd", "-f", "-p", &self.server_listen, "-h"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start busybox httpd on {n}"))?;
        self.servers.push(child);
        self.vip_only = true;
        Ok(())
    }

    /// Starts the client: `tandem probe http://VIP/` every 10 ms in c1.
    pub fn start_probe(&mut self) -> anyhow::Result<()> {
        let epoch = tandem::cli::probe::unix_ms().floor();
        let url = format!("http://{}/", self.vip);
        let child = self.spawn_probe(&url, epoch, self.samples.clone())?;
        self.probe = Some(child);
        self.probe_started = Some(epoch);
        Ok(())
    }

    /// Starts another client in c1 probing `url` (e.g. `tcp://VIP:443`) on
    /// the same clock as [`WebCluster::start_probe`] (which must run first);
    /// returns its samples.
    pub fn start_extra_probe(&mut self, url: &str) -> anyhow::Result<Samples> {
        let epoch = self.probe_started.context("start the main probe first")?;
        let samples: Samples = Arc::new(Mutex::new(Vec::new()));
        let child = self.spawn_probe(url, epoch, samples.clone())?;
        self.servers.push(child);
        Ok(samples)
    }

    fn spawn_probe(&self, url: &str, epoch: f64, samples: Samples) -> anyhow::Result<Child> {
        let mut child = self
            .lab
            .command("c1", &self.exe.to_string_lossy())?
            .args([
                "probe",
                url,
                "--interval",
                "10ms",
                "--timeout",
                "100ms",
                "--epoch-unix-ms",
                &format!("{epoch}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start the probe")?;
        let out = child.stdout.take().context("probe output")?;
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(s) = serde_json::from_str::<Sample>(&line)
                    && let Ok(mut v) = samples.lock()
                {
                    v.push(s);
                }
            }
        });
        Ok(child)
    }

    /// Milliseconds on the probe's clock (approximately) now.
    pub fn probe_now_ms(&self) -> f64 {
        self.probe_started
            .map_or(0.0, |epoch| tandem::cli::probe::unix_ms() - epoch)
    }

    /// A copy of every sample so far, in the order the requests were made.
    pub fn samples(&self) -> Vec<Sample> {
        let mut v = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        v
    }

    /// Waits until the client's latest `n` answers all come from `node`.
    pub fn wait_served_by(&self, node: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.samples();
            if s.len() >= n
                && s[s.len() - n..]
                    .iter()
                    .all(|x| x.answer.as_deref() == Some(node))
            {
                return Ok(());
            }
            if self
                .abort
                .as_ref()
                .is_some_and(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            {
                bail!("interrupted");
            }
            if Instant::now() > deadline {
                let tail: Vec<String> = s
                    .iter()
                    .rev()
                    .take(5)
                    .map(|x| x.answer.clone().or(x.error.clone()).unwrap_or_default())
                    .collect();
                let st: Vec<String> = (0..2)
                    .map(|i| {
                        self.cluster
                            .status(i)
                            .map(|s| tandem::cli::status::render(&s))
                            .unwrap_or_else(|e| format!("n{}: {e:#}", i + 1))
                    })
                    .collect();
                bail!(
                    "the client was not served by {node} within {timeout:?}; last answers (newest first): {tail:?}\n{}",
                    st.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Powers node `i` off: every process in its namespace is killed and
    /// its cable pulled.
    pub fn power_off(&mut self, i: usize) -> anyhow::Result<()> {
        let name = self.lab.hosts[i].name.clone();
        self.lab.power_off(&name)?;
        self.cluster.forget(i);
        Ok(())
    }

    /// Powers node `i` back on, as after a reboot: no floating IP on the
    /// interface, cable in, daemon started.
    pub fn power_on(&mut self, i: usize) -> anyhow::Result<()> {
        let h = self.lab.hosts[i].clone();
        let _ = Command::new("ip")
            .args([
                "-n",
                &h.netns,
                "addr",
                "del",
                &format!("{}/24", self.vip),
                "dev",
                "eth0",
            ])
            .output();
        self.lab.cable(&h.name, true)?;
        if self.vip_only {
            self.start_server(i)?;
        }
        self.start_node(i)
    }

    /// Runs `tandem ARGS` against node `i`'s daemon; returns its output.
    pub fn tandem(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.exe)
            .args(args)
            .arg("--socket")
            .arg(&self.cluster.nodes[i].socket)
            .output()?;
        if !out.status.success() {
            bail!(
                "tandem {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for WebCluster {
    fn drop(&mut self) {
        // TANDEM_KEEP_LOGS=DIR keeps the daemons' logs for a post-mortem.
        if let Some(dir) = std::env::var_os("TANDEM_KEEP_LOGS") {
            let dir = std::path::PathBuf::from(dir).join(&self.lab.prefix);
            let _ = std::fs::create_dir_all(&dir);
            for n in &self.cluster.nodes {
                let _ = std::fs::copy(&n.log, dir.join(format!("{}.log", n.name)));
            }
        }
        if let Some(mut p) = self.probe.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        for mut s in self.servers.drain(..) {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// What the client saw around a switch from one node to another.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outage {
    /// Last answer from the old node before the new one answered (ms).
    pub last_old_ms: f64,
    /// First answer from the new node (ms).
    pub first_new_ms: f64,
    /// `first_new_ms - last_old_ms`.
    pub outage_ms: f64,
    /// Failed probes in between.
    pub errors: usize,
    /// Answers from the old node after the new node answered.
    pub dual_answers: usize,
}

/// Measures the switch from `old` to `new` in `samples` taken after `since_ms`.
pub fn outage(samples: &[Sample], since_ms: f64, old: &str, new: &str) -> Option<Outage> {
    let s: Vec<&Sample> = samples.iter().filter(|x| x.t_ms >= since_ms).collect();
    let first_new = s.iter().position(|x| x.answer.as_deref() == Some(new))?;
    let last_old = s[..first_new]
        .iter()
        .rposition(|x| x.answer.as_deref() == Some(old));
    let last_old_ms = last_old.map_or(since_ms, |i| s[i].t_ms);
    let errors = s[last_old.map_or(0, |i| i + 1)..first_new]
        .iter()
        .filter(|x| x.answer.is_none())
        .count();
    let dual_answers = s[first_new..]
        .iter()
        .filter(|x| x.answer.as_deref() == Some(old))
        .count();
    Some(Outage {
        last_old_ms,
        first_new_ms: s[first_new].t_ms,
        outage_ms: s[first_new].t_ms - last_old_ms,
        errors,
        dual_answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, a: Option<&str>) -> Sample {
        Sample {
            t_ms: t,
            answer: a.map(str::to_string),
            error: a.is_none().then(|| "timeout".to_string()),
        }
    }

    #[test]
    fn outage_arithmetic() {
        let v = vec![
            s(0.0, Some("n1")),
            s(10.0, Some("n1")),
            s(20.0, None),
            s(30.0, None),
            s(40.0, Some("n2")),
            s(50.0, Some("n1")),
            s(60.0, Some("n2")),
        ];
        let o = outage(&v, 0.0, "n1", "n2").unwrap();
        assert_eq!(o.outage_ms, 30.0);
        assert_eq!(o.errors, 2);
        assert_eq!(o.dual_answers, 1);
        assert!(outage(&v, 0.0, "n1", "n3").is_none());
    }
}
