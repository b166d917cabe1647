//! The S2 deployment in the lab: the university's balancer group exactly as
//! they run it — `ocf:heartbeat:IPaddr` (the VIP), `lsb:haproxy` and
//! `lsb:stunnel4` from Debian's packages, monitors every second, unicast
//! heartbeats, default timings. Each node runs in its own mount and PID
//! namespaces (a fresh /run for the init scripts' pid files, and a PID 1
//! that reaps orphans at once, as systemd does on a real machine); its
//! portal backend is a busybox web server on 127.0.0.1:8080 whose page
//! names the node. Used by the issue-16 lab test and the S2 benchmark.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::lab_cluster::{WebCluster, WebOptions};

/// Options of [`balancer`].
#[derive(Debug, Clone)]
pub struct BalancerOptions {
    /// Lab prefix (unique per concurrent lab; at most 6 characters).
    pub prefix: String,
    /// Third octet of 198.18.S.0/24.
    pub subnet: u8,
    /// `native = …` for the IPaddr resource (false: the shell script).
    pub native: bool,
    /// `watch = …` for haproxy and stunnel (false: monitors only).
    pub watch: bool,
    /// Monitor interval of haproxy and stunnel (the users': "1s").
    pub monitor: String,
}

/// haproxy's pid file (Debian's init script).
pub const HAPROXY_PIDFILE: &str = "/run/haproxy.pid";
/// stunnel's pid file (set in the lab's stunnel configuration).
pub const STUNNEL_PIDFILE: &str = "/run/stunnel4/portal.pid";

fn need(path: &str, package: &str) -> anyhow::Result<()> {
    if !Path::new(path).exists() {
        bail!("the S2 lab needs {path}: apt-get install {package}");
    }
    Ok(())
}

/// Builds the S2 lab (nothing started: call `start_servers`, `start_all`,
/// `start_probe` on the result).
pub fn balancer(exe: &Path, o: &BalancerOptions) -> anyhow::Result<WebCluster> {
    need("/etc/init.d/haproxy", "haproxy")?;
    need("/etc/init.d/stunnel4", "stunnel4")?;
    need(
        "/usr/lib/ocf/resource.d/heartbeat/IPaddr",
        "resource-agents",
    )?;
    let (watch, monitor) = (o.watch, &o.monitor);
    let w = WebCluster::new(
        exe,
        &WebOptions {
            prefix: o.prefix.clone(),
            subnet: o.subnet,
            vip_only: true,
            server_listen: "127.0.0.1:8080".into(),
            vip_resource: Some(format!(
                r#"agent = "ocf:heartbeat:IPaddr"
params = {{ ip = "{{vip}}", cidr_netmask = "24", nic = "eth0" }}
monitor = "1s"
native = {}"#,
                o.native
            )),
            extra_resources: format!(
                r#"
[[group.resource]]
name = "haproxy"
agent = "lsb:haproxy"
monitor = "{monitor}"
watch = {watch}

[[group.resource]]
name = "stunnel"
agent = "lsb:stunnel4"
params = {{ pidfile = "{STUNNEL_PIDFILE}" }}
monitor = "{monitor}"
watch = {watch}
"#
            ),
            node_prelude: Some(
                "mount -t tmpfs tmpfs /run\n\
                 mkdir -p /run/haproxy /run/resource-agents /run/stunnel4 /run/lock\n\
                 mount --bind {dir}/haproxy.cfg /etc/haproxy/haproxy.cfg\n\
                 mount --bind {dir}/stunnel /etc/stunnel"
                    .into(),
            ),
            ..WebOptions::default()
        },
    )?;
    let dir = w.cluster.dir().to_path_buf();
    let vip = &w.vip;
    std::fs::write(
        dir.join("haproxy.cfg"),
        format!(
            "global\n    maxconn 2000\n\
             defaults\n    mode http\n    option forwardfor\n    retries 3\n    option redispatch\n    \
             timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend portal\n    bind {vip}:80\n    default_backend portal\n\
             backend portal\n    balance roundrobin\n    cookie JSESSIONID prefix\n    \
             server local 127.0.0.1:8080 weight 256 cookie a check inter 5000 rise 1 fall 3\n    \
             server maintenance 127.0.0.1:8081 backup\n"
        ),
    )?;
    let tls = dir.join("stunnel");
    std::fs::create_dir_all(&tls)?;
    let (cert, key) = crate::poll::self_signed(&tls, vip)?;
    std::fs::write(
        tls.join("portal.conf"),
        format!(
            "pid = {STUNNEL_PIDFILE}\n[portal]\naccept = {vip}:443\nconnect = {vip}:80\ncert = /etc/stunnel/{}\nkey = /etc/stunnel/{}\n",
            file_name(&cert),
            file_name(&key)
        ),
    )?;
    Ok(w)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// The host PID of node `i`'s PID 1 (the shell the daemon runs under).
fn node_init(w: &WebCluster, i: usize) -> anyhow::Result<u32> {
    let outer = w.cluster.pid(i).context("node not running")?;
    let children = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))?;
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("node {i} has no PID 1 yet"))
}

/// The host PID of the process whose pid (in node `i`'s PID namespace) is
/// in `pidfile` (a path in the node's own /run).
pub fn service_pid(w: &WebCluster, i: usize, pidfile: &str) -> anyhow::Result<u32> {
    let init = node_init(w, i)?;
    let text = std::fs::read_to_string(format!("/proc/{init}/root{pidfile}"))
        .with_context(|| format!("read {pidfile} on node {i}"))?;
    let inner: u32 = text.trim().parse().context("pid file")?;
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid"))?;
    let out = Command::new("ip")
        .args(["netns", "pids", &w.lab.hosts[i].netns])
        .output()?;
    for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if std::fs::read_link(format!("/proc/{p}/ns/pid"))
            .ok()
            .as_ref()
            != Some(&ns)
        {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let last = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last());
        if last == Some(inner.to_string().as_str()) {
            return p.parse().context("pid");
        }
    }
    bail!("no process {inner} (from {pidfile}) in node {i}'s namespaces")
}

/// Runs `command` (a shell line) inside node `i`'s namespaces, as an
/// administrator on that node would (e.g. `/etc/init.d/haproxy reload`).
pub fn on_node(w: &WebCluster, i: usize, command: &str) -> anyhow::Result<String> {
    let init = node_init(w, i)?;
    let out = Command::new("nsenter")
        .args(["--target", &init.to_string(), "--mount", "--pid", "--net"])
        .args(["sh", "-c", command])
        .output()?;
    if !out.status.success() {
        bail!(
            "`{command}` on node {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}
