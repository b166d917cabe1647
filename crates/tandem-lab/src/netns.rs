//! The lab: real multi-node topologies on one machine, in network
//! namespaces (see `docs/testing.md`).
//!
//! ```text
//!  ns <p>-sw:  bridge br0 (no address: the root namespace stays off the lab)
//!  ns <p>-n1:  eth0 198.18.S.11/24
//!  ns <p>-n2:  eth0 198.18.S.12/24
//!  ns <p>-c1:  eth0 198.18.S.100/24  (client)
//! ```
//!
//! Every lab has its own prefix; stale namespaces with that prefix are
//! swept at creation, and everything is torn down on drop (processes in the
//! lab's namespaces are ended by PID, then the namespaces deleted).

use std::process::{Command, Output};

use anyhow::{Context, bail};

/// A host in the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// Short name (n1, n2, c1…).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the lab network.
    pub addr: String,
    /// Name of its veth end in the switch namespace.
    pub port: String,
}

/// A running lab. See the module documentation.
#[derive(Debug)]
pub struct Lab {
    /// Name prefix of every namespace and link.
    pub prefix: String,
    /// Third octet of the lab network 198.18.S.0/24.
    pub subnet: u8,
    /// The switch namespace.
    pub switch: String,
    /// The hosts.
    pub hosts: Vec<Host>,
}

fn run(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("run {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Moves the calling thread (only it) into network namespace `netns`:
/// sockets it opens and processes it starts from then on live there. For a
/// test that acts as a client inside the lab (a browser, say).
pub fn enter(netns: &str) -> anyhow::Result<()> {
    let f = std::fs::File::open(format!("/var/run/netns/{netns}"))
        .with_context(|| format!("open network namespace {netns}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("enter network namespace {netns}"))
}

/// Fails with a clear message unless this process may build labs.
pub fn require_root() -> anyhow::Result<()> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        bail!("the lab needs root (network namespaces, veth, bridges): run as root, e.g. `sudo`");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        bail!("the lab needs the `ip` command: apt-get install iproute2");
    }
    Ok(())
}

/// Namespaces whose names start with `prefix-`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

/// Ends every process in `ns` (by PID, as listed by `ip netns pids`) and
/// deletes it.
fn destroy_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                let _ = tandem::process::signal(pid, libc::SIGKILL);
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

impl Lab {
    /// Builds a lab with the given hosts (names like "n1", "c1"); node `nK`
    /// gets 198.18.S.(10+K), client `cK` 198.18.S.(99+K).
    pub fn new(prefix: &str, subnet: u8, hosts: &[&str]) -> anyhow::Result<Self> {
        require_root()?;
        if prefix.len() > 6 {
            bail!("lab prefix `{prefix}` is too long (at most 6 characters, for interface names)");
        }
        for ns in namespaces_with(prefix) {
            destroy_namespace(&ns);
        }
        // A run that died half-way may have left veth ends in the root
        // namespace (named PREFIX + host + i/s).
        if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split(':').nth(1).unwrap_or("").trim();
                let name = name.split('@').next().unwrap_or("");
                if name.starts_with(prefix) && name.len() > prefix.len() {
                    let _ = Command::new("ip").args(["link", "del", name]).output();
                }
            }
        }
        let switch = format!("{prefix}-sw");
        let mut lab = Self {
            prefix: prefix.to_string(),
            subnet,
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        run(&["ip", "netns", "add", &switch])?;
        run(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &switch, "link", "set", "br0", "up"])?;
        for h in hosts {
            let num: u8 = h[1..].parse().with_context(|| format!("host name `{h}`"))?;
            let octet = match h.as_bytes().first() {
                Some(b'n') => 10 + num,
                Some(b'c') => 99 + num,
                _ => bail!("host names start with n (node) or c (client): `{h}`"),
            };
            let ns = format!("{prefix}-{h}");
            let inner = format!("{prefix}{h}i");
            let port = format!("{prefix}{h}s");
            let addr = format!("198.18.{subnet}.{octet}");
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", &inner, "type", "veth", "peer", "name", &port,
            ])?;
            run(&["ip", "link", "set", &inner, "netns", &ns])?;
            run(&["ip", "link", "set", &port, "netns", &switch])?;
            run(&["ip", "-n", &ns, "link", "set", &inner, "name", "eth0"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", &switch, "link", "set", &port, "master", "br0"])?;
            run(&["ip", "-n", &switch, "link", "set", &port, "up"])?;
            lab.hosts.push(Host {
                name: (*h).to_string(),
                netns: ns,
                addr,
                port,
            });
        }
        Ok(lab)
    }

    /// Adds a second network: bridge br1 in the switch, and eth1 with
    /// 198.18.S2.(10+K)/24 on every node nK (a second heartbeat path).
    pub fn add_second_network(&self, subnet2: u8) -> anyhow::Result<()> {
        run(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "add",
            "br1",
            "type",
            "bridge",
        ])?;
        run(&["ip", "-n", &self.switch, "link", "set", "br1", "up"])?;
        for h in self.hosts.iter().filter(|h| h.name.starts_with('n')) {
            let num: u8 = h.name[1..].parse().context("host number")?;
            let inner = format!("{}{}j", self.prefix, h.name);
            let port = format!("{}{}t", self.prefix, h.name);
            run(&[
                "ip", "link", "add", &inner, "type", "veth", "peer", "name", &port,
            ])?;
            run(&["ip", "link", "set", &inner, "netns", &h.netns])?;
            run(&["ip", "link", "set", &port, "netns", &self.switch])?;
            run(&["ip", "-n", &h.netns, "link", "set", &inner, "name", "eth1"])?;
            let addr = format!("198.18.{subnet2}.{}/24", 10 + num);
            run(&["ip", "-n", &h.netns, "addr", "add", &addr, "dev", "eth1"])?;
            run(&["ip", "-n", &h.netns, "link", "set", "eth1", "up"])?;
            run(&[
                "ip",
                "-n",
                &self.switch,
                "link",
                "set",
                &port,
                "master",
                "br1",
            ])?;
            run(&["ip", "-n", &self.switch, "link", "set", &port, "up"])?;
        }
        Ok(())
    }

    /// Drops `percent` % of the packets in and out of host `name`'s
    /// interface `iface`, at random (nftables `numgen random`).
    pub fn lossy(&self, name: &str, iface: &str, percent: u32) -> anyhow::Result<()> {
        let h = self.host(name)?;
        let script = format!(
            "table inet labloss {{\n chain in {{ type filter hook input priority -50; policy accept; iifname \"{iface}\" numgen random mod 100 < {percent} counter drop; }}\n chain out {{ type filter hook output priority -50; policy accept; oifname \"{iface}\" numgen random mod 100 < {percent} counter drop; }}\n}}\n"
        );
        nft_in(&h.netns, &script, "the loss rules")
    }

    /// Packets dropped so far by [`Lab::lossy`] on host `name`.
    pub fn dropped(&self, name: &str) -> anyhow::Result<u64> {
        let h = self.host(name)?;
        let out = run(&[
            "ip", "netns", "exec", &h.netns, "nft", "list", "table", "inet", "labloss",
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split("packets ")
            .skip(1)
            .filter_map(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            .sum())
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> anyhow::Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .with_context(|| format!("no host `{name}` in lab {}", self.prefix))
    }

    /// Pulls (or plugs back) the cable of host `name`: its switch port goes
    /// down (up).
    pub fn cable(&self, name: &str, plugged: bool) -> anyhow::Result<()> {
        let h = self.host(name)?;
        let state = if plugged { "up" } else { "down" };
        run(&["ip", "-n", &self.switch, "link", "set", &h.port, state])?;
        Ok(())
    }

    /// Powers host `name` off: its cable is pulled and every process in its
    /// namespace is killed (by PID).
    pub fn power_off(&self, name: &str) -> anyhow::Result<()> {
        self.cable(name, false)?;
        let h = self.host(name)?;
        let out = Command::new("ip")
            .args(["netns", "pids", &h.netns])
            .output()?;
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                let _ = tandem::process::signal(pid, libc::SIGKILL);
            }
        }
        // A real power-off also loses the transmit queue. Without a carrier
        // the interface keeps the heartbeats it could not send, and would
        // deliver them (an old incarnation "back") when the cable returns:
        // bouncing the interface drops them.
        run(&["ip", "-n", &h.netns, "link", "set", "eth0", "down"])?;
        run(&["ip", "-n", &h.netns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// Removes every address but the lab one from host `name`'s eth0, as a
    /// reboot would (floating IPs do not survive a power cycle).
    pub fn reset_addresses(&self, name: &str) -> anyhow::Result<()> {
        let h = self.host(name)?;
        run(&["ip", "-n", &h.netns, "addr", "flush", "dev", "eth0"])?;
        run(&[
            "ip",
            "-n",
            &h.netns,
            "addr",
            "add",
            &format!("{}/24", h.addr),
            "dev",
            "eth0",
        ])?;
        Ok(())
    }

    /// Cuts (or, with `cut = false`, restores) all IP traffic between host
    /// `name` and the address `peer`, with nftables in `name`'s namespace:
    /// a partition between two hosts that both still reach the others.
    pub fn isolate_from(&self, name: &str, peer: &str, cut: bool) -> anyhow::Result<()> {
        let drop = (
            format!("ip saddr {peer} drop;"),
            format!("ip daddr {peer} drop;"),
        );
        self.drop_rules(
            name,
            "labcut",
            -60,
            cut.then_some(drop),
            "the partition rules",
        )
    }

    /// Drops (or, with `cut = false`, lets through again) every TCP
    /// segment to or from `port` in host `name`'s namespace, silently: a
    /// replication link cut while the heartbeats still flow.
    pub fn block_tcp_port(&self, name: &str, port: u16, cut: bool) -> anyhow::Result<()> {
        let both = format!("tcp dport {port} drop; tcp sport {port} drop;");
        let drop = (both.clone(), both);
        self.drop_rules(name, "labport", -50, cut.then_some(drop), "the port rules")
    }

    /// Installs nftables table `table` in host `name`'s namespace with
    /// `rules` (input, output) ahead of everything else at `priority`, or
    /// deletes the table when `rules` is `None`.
    fn drop_rules(
        &self,
        name: &str,
        table: &str,
        priority: i32,
        rules: Option<(String, String)>,
        what: &str,
    ) -> anyhow::Result<()> {
        let h = self.host(name)?;
        let script = match rules {
            Some((input, output)) => format!(
                "table inet {table} {{\n chain in {{ type filter hook input priority {priority}; policy accept; {input} }}\n chain out {{ type filter hook output priority {priority}; policy accept; {output} }}\n}}\n"
            ),
            None => format!("delete table inet {table}\n"),
        };
        nft_in(&h.netns, &script, what)
    }

    /// A command that runs inside host `name`'s namespace.
    pub fn command(&self, name: &str, program: &str) -> anyhow::Result<Command> {
        let h = self.host(name)?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &h.netns, program]);
        Ok(c)
    }
}

/// The head of a two-node lab configuration: nodes n1 and n2 on
/// 198.18.S.11/12, one unicast link, key file "authkey", initdead 1 s,
/// no real-time scheduling. Append `[[group]]` tables to it.
pub fn two_node_config(cluster: &str, subnet: u8) -> String {
    cluster_config(cluster, subnet, 2)
}

/// [`two_node_config`] with `n` nodes, n1… on 198.18.S.11….
pub fn cluster_config(cluster: &str, subnet: u8, n: usize) -> String {
    let mut s = format!(
        r#"cluster = "{cluster}"
key_file = "authkey"
realtime = false
[timing]
initdead = "1s"
[[link]]
name = "lan"
kind = "ucast"
"#
    );
    for i in 1..=n {
        s.push_str(&format!(
            "[[node]]\nname = \"n{i}\"\naddresses = {{ lan = \"198.18.{subnet}.{}\" }}\n",
            10 + i
        ));
    }
    s
}

/// [`two_node_config`] with one group `vip` holding one floating address
/// `address` (e.g. "fd00:18::200/64") on eth0.
pub fn vip_cluster_config(cluster: &str, subnet: u8, address: &str) -> String {
    format!(
        r#"{}[[group]]
name = "vip"
[[group.resource]]
name = "vip"
agent = "ipaddr"
params = {{ address = "{address}", interface = "eth0" }}
monitor = "1s"
"#,
        two_node_config(cluster, subnet)
    )
}

/// Runs an nftables script in namespace `netns`; `what` names it in errors.
fn nft_in(netns: &str, script: &str, what: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("run nft")?;
    if let Some(mut i) = child.stdin.take() {
        std::io::Write::write_all(&mut i, script.as_bytes())?;
    }
    if !child.wait()?.success() {
        bail!("nft refused {what}");
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            destroy_namespace(&h.netns);
        }
        destroy_namespace(&self.switch);
    }
}

/// Runs `f` on a thread inside network namespace `ns` with that
/// namespace's /sys, as `ip netns exec` gives a process (e.g. a native
/// agent, which works on the calling thread's namespaces as in the daemon).
pub fn run_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> anyhow::Result<T> {
        let fd = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("enter {path}"))?;
        // This thread's own mount namespace, with the sysfs of `ns`.
        use nix::mount::{MntFlags, MsFlags, mount, umount2};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare mounts")?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .context("make / a slave")?;
        umount2("/sys", MntFlags::MNT_DETACH).context("detach /sys")?;
        mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .context("mount the namespace's /sys")?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread in {ns} panicked"))?
}
