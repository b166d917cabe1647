//! Heartbeat drop-in, end to end: the users' S1 and S4 files (lab
//! addresses and interface names substituted) run unchanged on namespaced
//! nodes, each with its own /etc/ha.d and /var/log (bind mounts in the
//! node's mount namespace), a real web server started by an init script
//! from /etc/ha.d/resource.d, and a client probing the VIP. Needs root and
//! busybox; fails with a clear message otherwise.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::cli::probe::Sample;
use tandem_lab::loopback_cluster::LocalCluster;
use tandem_lab::netns::Lab;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

/// An init script in Heartbeat R1 style ("running" / "not running").
const APACHE2: &str = r#"#!/bin/sh
PID=/var/log/apache2.pid
case "$1" in
start) busybox httpd -f -p 80 -h /etc/ha.d/www >/dev/null 2>&1 </dev/null & echo $! > $PID ;;
stop) [ -f $PID ] && kill $(cat $PID) 2>/dev/null; rm -f $PID ;;
status) if [ -f $PID ] && kill -0 $(cat $PID) 2>/dev/null; then echo "apache2 is running"; else echo "apache2 is not running"; exit 3; fi ;;
esac
exit 0
"#;

struct Node {
    name: String,
    dir: PathBuf,
}

/// Writes DIR/NODE/{ha.d/..., log/} for each node; `page` names the node.
fn node_dirs(
    root: &Path,
    nodes: &[(&str, &str)],
    hacf: &str,
    haresources: &str,
    script: &str,
) -> Vec<Node> {
    let mut out = Vec::new();
    for (name, page) in nodes {
        let d = root.join(name);
        let ha = d.join("ha.d");
        std::fs::create_dir_all(ha.join("resource.d")).unwrap();
        std::fs::create_dir_all(ha.join("www")).unwrap();
        std::fs::create_dir_all(d.join("log")).unwrap();
        std::fs::write(ha.join("ha.cf"), hacf).unwrap();
        std::fs::write(ha.join("haresources"), haresources).unwrap();
        std::fs::write(
            ha.join("authkeys"),
            "auth 1\n1 sha1 monClusterSecurise2025\n",
        )
        .unwrap();
        std::fs::set_permissions(ha.join("authkeys"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(ha.join("resource.d").join(script), APACHE2).unwrap();
        std::fs::set_permissions(
            ha.join("resource.d").join(script),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(ha.join("www/index.html"), format!("{page}\n")).unwrap();
        out.push(Node {
            name: (*name).to_string(),
            dir: d,
        });
    }
    out
}

/// Starts node `i` from /etc/ha.d, or from the native file that
/// `tandem import heartbeat` made of it (`native`).
fn start_mode(c: &mut LocalCluster, i: usize, n: &Node, native: Option<&Path>) {
    // /etc/ha.d and /var/log are this node's own, as on a real machine.
    std::fs::create_dir_all("/etc/ha.d").unwrap();
    let sock = c.nodes[i].socket.display().to_string();
    let state = n.dir.join("state").display().to_string();
    let source = match native {
        Some(p) => format!("--config {}", p.display()),
        None => "--heartbeat-dir /etc/ha.d".to_string(),
    };
    let script = format!(
        "mount --bind {d}/ha.d /etc/ha.d && mount --bind {d}/log /var/log && exec {EXE} daemon {source} --node {name} --socket {sock} --state-dir {state}",
        d = n.dir.display(),
        name = n.name
    );
    c.start_custom(i, &["sh".into(), "-c".into(), script])
        .unwrap();
}

/// A cluster running the two node directories on the lab's n1 and n2 (the
/// daemons read their own files, so the shared configuration is empty).
fn cluster(lab: &Lab, nodes: &[Node]) -> LocalCluster {
    let hosts = lab.hosts[..2]
        .iter()
        .zip(nodes)
        .map(|(h, n)| (n.name.clone(), h.addr.clone(), Some(h.netns.clone())))
        .collect();
    LocalCluster::from_config(EXE.as_ref(), "", hosts).unwrap()
}

fn start(c: &mut LocalCluster, i: usize, n: &Node) {
    start_mode(c, i, n, None);
}

fn probe(lab: &Lab, vip: &str) -> (std::process::Child, Arc<Mutex<Vec<Sample>>>) {
    let mut child = lab
        .command("c1", EXE)
        .unwrap()
        .args(["probe", &format!("http://{vip}/")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let s2 = samples.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(s) = serde_json::from_str::<Sample>(&line) {
                s2.lock().unwrap().push(s);
            }
        }
    });
    (child, samples)
}

fn wait_served(samples: &Arc<Mutex<Vec<Sample>>>, page: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut v = samples.lock().unwrap().clone();
        v.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        if v.len() >= 3
            && v[v.len() - 3..]
                .iter()
                .all(|s| s.answer.as_deref() == Some(page))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not served by {page} within {timeout:?}; last: {:?}",
            v.iter().rev().take(3).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_file(path: &Path, needles: &[&str], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} lacks {needles:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn s1_files_fail_over_and_back_with_heartbeat_log_lines() {
    let lab = Lab::new("tdhb", 68, &["n1", "n2", "c1"]).expect("lab (root needed)");
    let tmp = tempfile::tempdir().unwrap();
    // S1's files, with the lab's interface (eth0 for enp0s3) and addresses.
    let hacf = "keepalive 2\ndeadtime 10\ninitdead 15\nbcast eth0\nudpport 694\nlogfile /var/log/heartbeat.log\nnode srv\nnode srv-slave\nauto_failback on\n";
    let res = "srv 198.18.68.200/24/eth0 apache2\n";
    let nodes = node_dirs(
        tmp.path(),
        &[("srv", "Serveur Master"), ("srv-slave", "Serveur Slave")],
        hacf,
        res,
        "apache2",
    );
    let mut c = cluster(&lab, &nodes);
    start(&mut c, 0, &nodes[0]);
    start(&mut c, 1, &nodes[1]);
    let (mut probe_child, samples) = probe(&lab, "198.18.68.200");
    wait_served(&samples, "Serveur Master", Duration::from_secs(20));
    let show = Command::new("ip")
        .args(["-n", &lab.hosts[0].netns, "addr", "show", "eth0"])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout).to_string();
    assert!(
        show.contains("198.18.68.200/24") && show.contains("eth0:0"),
        "{show}"
    );
    let master_log = nodes[0].dir.join("log/heartbeat.log");
    wait_file(
        &master_log,
        &[
            "Link srv-slave:eth0 up",
            "Taking over resource group",
            "Starting",
            "apache2",
            "Acquisition completed",
        ],
        Duration::from_secs(10),
    );
    let st = Command::new(EXE)
        .args(["status", "--socket"])
        .arg(&c.nodes[1].socket)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&st.stdout).contains("Members: srv, srv-slave"));

    // Power off the master: the slave takes over within deadtime (10 s)
    // plus well under a second.
    let off = Instant::now();
    lab.power_off("n1").unwrap();
    c.forget(0);
    wait_served(&samples, "Serveur Slave", Duration::from_secs(20));
    let took = off.elapsed();
    assert!(
        took < Duration::from_secs(11) + Duration::from_millis(900),
        "took {took:?}"
    );
    let slave_log = nodes[1].dir.join("log/heartbeat.log");
    wait_file(
        &slave_log,
        &[
            "No heartbeat from srv for",
            "srv is dead",
            "Taking over resource group",
            "Acquisition completed",
        ],
        Duration::from_secs(5),
    );

    // The master returns: auto_failback on gives it the group back.
    lab.reset_addresses("n1").unwrap();
    lab.cable("n1", true).unwrap();
    start(&mut c, 0, &nodes[0]);
    wait_served(&samples, "Serveur Master", Duration::from_secs(30));
    wait_file(
        &slave_log,
        &["Releasing resource group", "Release completed"],
        Duration::from_secs(5),
    );

    // hb_standby equivalent on the master: the slave takes everything.
    let out = Command::new(EXE)
        .args(["release", "all", "--socket"])
        .arg(&c.nodes[0].socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_served(&samples, "Serveur Slave", Duration::from_secs(10));
    let _ = probe_child.kill();
    let _ = probe_child.wait();
}

#[test]
fn s4_unicast_honours_initdead_before_taking_over_alone() {
    let lab = Lab::new("tds4", 69, &["n1", "n2", "c1"]).expect("lab (root needed)");
    let tmp = tempfile::tempdir().unwrap();
    // S4's file with lab addresses; deadtime 30 / initdead 120 shortened to
    // 2 s / 6 s so the test shows initdead being honoured in seconds.
    let hacf = "use_logd on\nkeepalive 500ms\ndeadtime 2\nwarntime 1\ninitdead 6\nudpport 694\nucast eth0 198.18.69.11\nucast eth0 198.18.69.12\nauto_failback on\nnode SwapNginxActive\nnode SwapNginxPassive\n";
    let res = "SwapNginxActive 198.18.69.200/24/eth0 nginx\n";
    let nodes = node_dirs(
        tmp.path(),
        &[
            ("swapnginxactive", "active"),
            ("swapnginxpassive", "passive"),
        ],
        hacf,
        res,
        "nginx",
    );
    let mut c = cluster(&lab, &nodes);
    let t0 = Instant::now();
    start(&mut c, 0, &nodes[0]);
    // Alone, it waits initdead for its peer before running anything.
    let s = c
        .wait_for(0, Duration::from_secs(10), "status", |s| {
            s.membership.uptime_ms > 3000
        })
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(6));
    assert!(!s.membership.joined, "joined before initdead");
    assert!(
        s.membership.groups[0].active_on.is_empty(),
        "started before initdead"
    );
    let (mut probe_child, samples) = probe(&lab, "198.18.69.200");
    wait_served(&samples, "active", Duration::from_secs(15));
    assert!(
        t0.elapsed() >= Duration::from_secs(6),
        "served before initdead passed"
    );

    // The passive node joins; power off the active one: the passive takes over.
    start(&mut c, 1, &nodes[1]);
    c.wait_for(1, Duration::from_secs(10), "joined", |s| {
        s.membership.joined
    })
    .unwrap();
    lab.power_off("n1").unwrap();
    c.forget(0);
    wait_served(&samples, "passive", Duration::from_secs(10));
    let _ = probe_child.kill();
    let _ = probe_child.wait();
}

/// `tandem import heartbeat` of the S1 directory gives a native file that
/// `tandem config check` accepts and that behaves the same in the lab.
#[test]
fn s1_imported_native_file_behaves_the_same() {
    let lab = Lab::new("tdim", 70, &["n1", "n2", "c1"]).expect("lab (root needed)");
    let tmp = tempfile::tempdir().unwrap();
    let hacf = "keepalive 2\ndeadtime 10\ninitdead 15\nbcast eth0\nudpport 694\nlogfile /var/log/heartbeat.log\nnode srv\nnode srv-slave\nauto_failback on\n";
    let res = "srv 198.18.70.200/24/eth0 apache2\n";
    let nodes = node_dirs(
        tmp.path(),
        &[("srv", "Serveur Master"), ("srv-slave", "Serveur Slave")],
        hacf,
        res,
        "apache2",
    );
    let out = Command::new(EXE)
        .args(["import", "heartbeat"])
        .arg(nodes[0].dir.join("ha.d"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        toml.contains("# haresources line 1: srv 198.18.70.200/24/eth0 apache2"),
        "{toml}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`logfile`")
            || String::from_utf8_lossy(&out.stderr).contains("logfile")
    );
    let native = tmp.path().join("tandem.toml");
    std::fs::write(&native, &toml).unwrap();
    let check = Command::new(EXE)
        .args(["config", "check"])
        .arg(&native)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let mut c = cluster(&lab, &nodes);
    start_mode(&mut c, 0, &nodes[0], Some(&native));
    start_mode(&mut c, 1, &nodes[1], Some(&native));
    let (mut probe_child, samples) = probe(&lab, "198.18.70.200");
    wait_served(&samples, "Serveur Master", Duration::from_secs(20));
    let off = Instant::now();
    lab.power_off("n1").unwrap();
    c.forget(0);
    wait_served(&samples, "Serveur Slave", Duration::from_secs(20));
    assert!(off.elapsed() < Duration::from_millis(11_900));
    let _ = probe_child.kill();
    let _ = probe_child.wait();
}
