//! Scenario S3 end to end (issue 11): Debian's PostgreSQL on a replicated
//! volume, run by tandem on two namespaced nodes. Group `db` = `volume:r0`
//! (promote) → the real `ocf:heartbeat:Filesystem` (ext4 on the loop
//! device the volume agent points `drbd0` at) → PostgreSQL → VIP. A client
//! in a third namespace inserts rows through the VIP and records every
//! acknowledged commit; the primary is powered off mid-load; the other
//! node takes over; every acknowledged row must be there. The old primary
//! returns, resyncs, and (auto_failback) takes the group back only once
//! its copy is UpToDate, with the data intact. Also: a frozen primary's
//! daemon: once the peer has promoted, the frozen side's export refuses
//! writes. Needs root, PostgreSQL (postgresql), psql, resource-agents and
//! kmod; fails with a clear message otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_lab::loopback_cluster::LocalCluster;
use tandem_lab::netns::Lab;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Debian's PostgreSQL server binaries (`/usr/lib/postgresql/N/bin`).
fn postgres_bin() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("postgres").exists())
    });
    found.expect("this test needs Debian's PostgreSQL server (apt-get install postgresql)")
}

struct Rig {
    lab: Lab,
    cluster: LocalCluster,
    vip: String,
    dir: PathBuf,
}

impl Rig {
    fn new(prefix: &str, subnet: u8) -> Self {
        for (tool, pkg) in [
            ("psql", "postgresql-client"),
            ("modprobe", "kmod"),
            ("losetup", "mount"),
            ("mkfs.ext4", "e2fsprogs"),
        ] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .is_ok_and(|o| o.status.success()),
                "this test needs {tool} (apt-get install {pkg})"
            );
        }
        assert!(
            Path::new("/usr/lib/ocf/resource.d/heartbeat/Filesystem").exists(),
            "this test needs ocf:heartbeat:Filesystem (apt-get install resource-agents)"
        );
        let pg = postgres_bin();
        let lab = Lab::new(prefix, subnet, &["n1", "n2", "c1"]).expect("lab (root needed)");
        let vip = format!("198.18.{subnet}.200");
        let nodes = lab
            .hosts
            .iter()
            .filter(|h| h.name.starts_with('n'))
            .map(|h| (h.name.clone(), h.addr.clone(), Some(h.netns.clone())))
            .collect();
        let cluster = LocalCluster::from_config(Path::new(EXE), "", nodes).expect("cluster");
        let dir = cluster.dir().to_path_buf();
        // PostgreSQL runs as `postgres`: it must reach the mount point.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        for n in ["n1", "n2"] {
            let f = std::fs::File::create(dir.join(format!("{n}.img"))).expect("disk");
            f.set_len(160 << 20).expect("size");
        }
        std::fs::create_dir_all(dir.join("data")).expect("mount point");
        let d = dir.display();
        // The lab's nodes share one PID space: the lock file's PID may
        // be the other node's postmaster (frozen side) or a zombie left
        // by a power-off (this sandbox's PID 1 may not reap), which
        // PostgreSQL takes for a live postmaster here. On separate
        // machines neither exists; a lock whose PID is not in this
        // node's network namespace is stale.
        let start_pg = format!(
            "P={d}/data/pg/postmaster.pid; p=$(head -1 $P 2>/dev/null); if [ -n \\\"$p\\\" ] && {{ grep -qs '^State:.*Z' /proc/$p/status || [ \\\"$(readlink /proc/$p/ns/net)\\\" != \\\"$(readlink /proc/self/ns/net)\\\" ]; }}; then rm -f $P; fi; exec setpriv --reuid=postgres --regid=postgres --init-groups {}/postgres -D {d}/data/pg -c listen_addresses=* -c unix_socket_directories= -c port=5432",
            pg.display()
        );
        let config = format!(
            r#"cluster = "pg{subnet}"
key_file = "authkey"
state_dir = "state"
realtime = true

[[link]]
name = "lan"
kind = "ucast"
interface = "eth0"

[[node]]
name = "n1"
addresses = {{ lan = "198.18.{subnet}.11" }}

[[node]]
name = "n2"
addresses = {{ lan = "198.18.{subnet}.12" }}

[[volume]]
name = "r0"
export = "{d}/export"
device = "{d}/drbd0"
[volume.on.n1]
address = "198.18.{subnet}.11"
disk = "{d}/n1.img"
[volume.on.n2]
address = "198.18.{subnet}.12"
disk = "{d}/n2.img"

[[group]]
name = "db"
prefer = {{ n1 = 200, n2 = 100 }}
auto_failback = true

[[group.resource]]
name = "r0"
agent = "volume:r0"
monitor = "2s"
timeout = "30s"

[[group.resource]]
name = "fs"
agent = "ocf:heartbeat:Filesystem"
params = {{ device = "{d}/drbd0", directory = "{d}/data", fstype = "ext4" }}
monitor = "10s"
timeout = "30s"

[[group.resource]]
name = "pg"
agent = "process"
params = {{ command = "{start_pg}" }}
check = {{ kind = "tcp", address = "127.0.0.1:5432", interval = "1s", timeout = "500ms" }}
monitor = "1s"
timeout = "30s"

[[group.resource]]
name = "vip"
agent = "ipaddr"
params = {{ address = "{vip}/24", interface = "eth0" }}
monitor = "1s"
"#,
        );
        std::fs::write(&cluster.config, config).expect("config");
        Self {
            lab,
            cluster,
            vip,
            dir,
        }
    }

    fn state(&self, i: usize) -> PathBuf {
        self.dir.join(format!("state-n{}", i + 1))
    }

    /// `tandem volume ARGS` for node `i` (its control socket is a file:
    /// no namespace needed).
    fn vol(&self, i: usize, args: &[&str]) -> Output {
        Command::new(EXE)
            .arg("volume")
            .arg("-c")
            .arg(&self.cluster.config)
            .args(["--node", &format!("n{}", i + 1)])
            .arg("--state-dir")
            .arg(self.state(i))
            .args(args)
            .output()
            .expect("tandem volume")
    }

    fn vol_ok(&self, i: usize, args: &[&str]) -> String {
        let o = self.vol(i, args);
        assert!(
            o.status.success(),
            "n{}: volume {args:?}: {}",
            i + 1,
            text(&o)
        );
        text(&o)
    }

    fn vstatus(&self, i: usize) -> serde_json::Value {
        let o = self.vol(i, &["status", "r0", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v.get(0).cloned())
            .unwrap_or_default()
    }

    fn wait_volume(
        &self,
        i: usize,
        what: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.vstatus(i);
            if f(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "n{}: {what} not reached within {timeout:?}: {s:#}\nlog:\n{}",
                i + 1,
                self.log_tail(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(&self.cluster.nodes[i].log).unwrap_or_default();
        let vlog =
            std::fs::read_to_string(self.state(i).join("volumes/r0.log")).unwrap_or_default();
        let tail = |t: &str| {
            t.lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!("daemon:\n{}\nvolume:\n{}", tail(&log), tail(&vlog))
    }

    fn tandem(&self, i: usize, args: &[&str]) -> String {
        let o = Command::new(EXE)
            .args(args)
            .arg("--socket")
            .arg(&self.cluster.nodes[i].socket)
            .output()
            .expect("tandem");
        assert!(o.status.success(), "tandem {args:?}: {}", text(&o));
        text(&o)
    }

    /// The pid of node `i`'s volume process (its mount namespace holds the
    /// FUSE export: `ip netns exec` gives each process tree its own).
    fn volume_pid(&self, i: usize) -> Option<String> {
        let o = Command::new("pgrep")
            .args([
                "-f",
                &format!(
                    "volume run r0 --config {} --node n{}",
                    self.cluster.config.display(),
                    i + 1
                ),
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .map(str::to_string)
    }

    /// A shell script run in the mount namespace of node `i`'s volume.
    fn in_volume_ns(&self, i: usize, script: &str) -> Output {
        let pid = self.volume_pid(i).expect("the volume process runs");
        Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", "sh", "-ec", script])
            .output()
            .expect("nsenter")
    }

    /// The FUSE connection of node `i`'s export (its number under
    /// /sys/fs/fuse/connections), if its volume runs.
    fn fuse_conn(&self, i: usize) -> Option<String> {
        let pid = self.volume_pid(i)?;
        let o = Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", "stat", "-c", "%d"])
            .arg(self.dir.join("export"))
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// Powers node `i` off. Its FUSE connection is aborted right after the
    /// kill, as a power-off ends it: otherwise the dying namespace's
    /// unmount of the ext4 above the loop device waits forever for writes
    /// through the export whose server is the dying process itself (a
    /// lab artefact: real nodes have no namespace to tear down).
    fn power_off(&mut self, i: usize) {
        let conn = self.fuse_conn(i);
        self.cluster.forget(i);
        self.lab
            .power_off(&format!("n{}", i + 1))
            .expect("power off");
        if let Some(c) = conn {
            abort_fuse(&c);
        }
    }

    /// psql through the VIP, from the client's namespace.
    fn psql(&self, sql: &str, timeout: Duration) -> Option<String> {
        let mut c = self.lab.command("c1", "timeout").expect("client");
        c.arg(format!("{}", timeout.as_secs_f64()))
            .args([
                "psql",
                "-h",
                &self.vip,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qAt",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGCONNECT_TIMEOUT", "1")
            .stdin(Stdio::null());
        let o = c.output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    fn group_on(&self, i: usize) -> Vec<String> {
        self.cluster
            .status(i)
            .ok()
            .and_then(|s| {
                s.membership
                    .groups
                    .iter()
                    .find(|g| g.name == "db")
                    .map(|g| g.active_on.clone())
            })
            .unwrap_or_default()
    }

    /// Sets up the volume, the filesystem and the database (both nodes in
    /// standby meanwhile), then lets the cluster run the group on n1.
    fn bring_up(&mut self) {
        for i in 0..2 {
            self.vol_ok(i, &["create-md", "r0"]);
        }
        self.cluster.start_all().expect("daemons");
        for i in 0..2 {
            self.cluster
                .wait_for(i, Duration::from_secs(20), "joined", |s| {
                    s.membership.joined && s.membership.members.len() == 2
                })
                .expect("daemon up");
        }
        for n in ["n1", "n2"] {
            self.tandem(0, &["standby", n]);
        }
        for i in 0..2 {
            self.wait_volume(i, "connected", Duration::from_secs(30), |s| {
                s["peers"][0]["connection"] == "Connected"
            });
        }
        self.cluster
            .wait_for(0, Duration::from_secs(10), "the group held back", |s| {
                s.membership.groups[0]
                    .data_hold_here
                    .as_deref()
                    .is_some_and(|h| h.contains("Inconsistent"))
            })
            .expect("a fresh copy must hold the group back");
        self.vol_ok(0, &["primary", "--force", "r0"]);
        self.wait_volume(1, "initial sync", Duration::from_secs(60), |s| {
            s["disk"] == "UpToDate"
        });
        let d = self.dir.display();
        let pg = postgres_bin();
        let o = self.in_volume_ns(
            0,
            &format!(
                "L=$(losetup -f --show --direct-io=on {d}/export/r0); mkfs.ext4 -q $L; mount $L {d}/data; \
                 mkdir {d}/data/pg; chown postgres:postgres {d}/data/pg; \
                 cd /; setpriv --reuid=postgres --regid=postgres --init-groups {pg}/initdb -D {d}/data/pg --auth=trust -U postgres >/dev/null; \
                 echo 'host all all 0.0.0.0/0 trust' >> {d}/data/pg/pg_hba.conf; umount {d}/data; losetup -d $L",
                pg = pg.display()
            ),
        );
        assert!(
            o.status.success(),
            "mkfs + initdb on the volume: {}",
            text(&o)
        );
        self.vol_ok(0, &["secondary", "r0"]);
        for n in ["n1", "n2"] {
            self.tandem(0, &["unstandby", n]);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .psql("create table t (v int primary key)", Duration::from_secs(3))
            .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "the database never answered through the VIP:\n{}",
                self.log_tail(0)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(self.group_on(0), vec!["n1".to_string()]);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Kill every process of the nodes (their mounts go with their
        // namespaces, their FUSE connections are aborted), then detach the
        // loop devices left on the dead exports (whose path then reads
        // "/r0", the mount being gone).
        for i in 0..2 {
            if self.cluster.pid(i).is_some() {
                self.power_off(i);
            }
        }
        let mine = self.dir.to_string_lossy().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let listed = Command::new("losetup")
                .args(["-n", "-l", "-O", "NAME,BACK-FILE"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            let ours: Vec<(String, String)> = listed
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    Some((f.next()?.to_string(), f.next()?.to_string()))
                })
                .filter(|(_, back)| back == "/r0" || back.starts_with(&mine))
                .collect();
            if ours.is_empty() || Instant::now() > deadline {
                break;
            }
            for (dev, _) in ours {
                let _ = Command::new("timeout")
                    .args(["5", "losetup", "-d", &dev])
                    .output();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(dir) = std::env::var_os("TANDEM_KEEP_LOGS") {
            let dir = PathBuf::from(dir).join(&self.lab.prefix);
            let _ = std::fs::create_dir_all(&dir);
            for (i, n) in self.cluster.nodes.iter().enumerate() {
                let _ = std::fs::copy(&n.log, dir.join(format!("{}.log", n.name)));
                let _ = std::fs::copy(
                    self.state(i).join("volumes/r0.log"),
                    dir.join(format!("{}-r0.log", n.name)),
                );
                let _ = std::fs::copy(
                    self.state(i).join("processes/db@pg.log"),
                    dir.join(format!("{}-pg.log", n.name)),
                );
            }
        }
    }
}

/// Aborts FUSE connection `conn` (mounting fusectl if needed).
fn abort_fuse(conn: &str) {
    let dir = Path::new("/sys/fs/fuse/connections");
    if !dir.join(conn).exists() {
        let _ = Command::new("mount")
            .args(["-t", "fusectl", "none"])
            .arg(dir)
            .output();
    }
    let _ = std::fs::write(dir.join(conn).join("abort"), "1");
}

/// What the client saw: (value, acknowledged?, when).
type Ledger = Arc<Mutex<Vec<(i64, bool, Instant)>>>;

/// Inserts rows 1, 2, … through the VIP, one connection per row, until
/// `stop`; records each insert and whether its commit was acknowledged.
fn client(rig: &Rig, stop: Arc<AtomicBool>) -> (Ledger, std::thread::JoinHandle<()>) {
    let ledger: Ledger = Arc::default();
    let (l, vip, ns) = (
        ledger.clone(),
        rig.vip.clone(),
        rig.lab.host("c1").expect("c1").netns.clone(),
    );
    let h = std::thread::spawn(move || {
        let mut v = 0i64;
        while !stop.load(Ordering::Relaxed) {
            v += 1;
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "timeout",
                    "3",
                    "psql",
                    "-h",
                    &vip,
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-qAt",
                    "-v",
                    "ON_ERROR_STOP=1",
                ])
                .args(["-c", &format!("insert into t values ({v}) returning v")])
                .env("PGCONNECT_TIMEOUT", "1")
                .stdin(Stdio::null())
                .output();
            let acked = o.is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == v.to_string()
            });
            if let Ok(mut l) = l.lock() {
                l.push((v, acked, Instant::now()));
            }
            if !acked {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    (ledger, h)
}

fn acked_after(l: &Ledger, t: Instant) -> usize {
    l.lock()
        .map(|l| l.iter().filter(|(_, a, at)| *a && *at > t).count())
        .unwrap_or(0)
}

/// The longest gap between consecutive acknowledged commits from the last
/// one before `t` on: what the client saw of a switch after `t`.
fn outage(l: &Ledger, t: Instant) -> Duration {
    let l = l.lock().expect("ledger");
    let acks: Vec<Instant> = l.iter().filter(|(_, a, _)| *a).map(|x| x.2).collect();
    let first = acks.iter().rposition(|a| *a <= t).unwrap_or(0);
    acks[first..]
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

/// Every acknowledged row is in the table; every row in it was sent.
fn check_rows(rig: &Rig, l: &Ledger, when: &str) -> usize {
    let rows = rig
        .psql("select v from t order by v", Duration::from_secs(5))
        .expect("select through the VIP");
    let present: std::collections::BTreeSet<i64> =
        rows.lines().filter_map(|x| x.parse().ok()).collect();
    let l = l.lock().expect("ledger");
    let lost: Vec<i64> = l
        .iter()
        .filter(|(v, a, _)| *a && !present.contains(v))
        .map(|x| x.0)
        .collect();
    assert!(lost.is_empty(), "{when}: acknowledged rows lost: {lost:?}");
    let sent: std::collections::BTreeSet<i64> = l.iter().map(|x| x.0).collect();
    let phantom: Vec<&i64> = present.iter().filter(|v| !sent.contains(v)).collect();
    assert!(phantom.is_empty(), "{when}: rows nobody sent: {phantom:?}");
    let acked = l.iter().filter(|x| x.1).count();
    let unacked_present = l
        .iter()
        .filter(|(v, a, _)| !*a && present.contains(v))
        .count();
    println!(
        "{when}: {} rows present, {acked} acknowledged (all present), {unacked_present} unacknowledged that committed anyway",
        present.len()
    );
    present.len()
}

/// The drills run one at a time: each runs two daemons, two volumes and
/// PostgreSQL, and a power-off's cleanup must not meet the other's mounts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn postgres_survives_power_off_and_fails_back_after_resync() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut rig = Rig::new("tdpg", 81);
    rig.bring_up();
    let stop = Arc::new(AtomicBool::new(false));
    let (ledger, h) = client(&rig, stop.clone());
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    while acked_after(&ledger, t0) < 40 {
        assert!(
            Instant::now() < deadline,
            "the client got no steady acknowledgements"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Power off the primary mid-load.
    let off = Instant::now();
    rig.power_off(0);
    let deadline = off + Duration::from_secs(60);
    while acked_after(&ledger, off) < 30 {
        assert!(
            Instant::now() < deadline,
            "n2 never took over:\n{}",
            rig.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let failover = outage(&ledger, off);
    assert_eq!(rig.group_on(1), vec!["n2".to_string()]);
    check_rows(&rig, &ledger, "after the power-off");
    // n1 returns: it resyncs, and only then takes the group back.
    let _ = rig.lab.reset_addresses("n1");
    rig.lab.cable("n1", true).expect("cable");
    let back = Instant::now();
    rig.cluster.start(0).expect("restart n1");
    let deadline = back + Duration::from_secs(90);
    loop {
        if rig.group_on(0).contains(&"n1".to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group never came back to n1:\n{}",
            rig.log_tail(0)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&rig.cluster.nodes[0].log).unwrap_or_default();
    assert!(
        log.contains("db: not startable here: volume r0"),
        "n1 must have held the group back while its copy was not UpToDate:\n{}",
        rig.log_tail(0)
    );
    let moved = Instant::now();
    let deadline = moved + Duration::from_secs(60);
    while acked_after(&ledger, moved) < 20 {
        assert!(
            Instant::now() < deadline,
            "no acknowledgement after the failback:\n{}",
            rig.log_tail(0)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = h.join();
    let failback = outage(&ledger, back);
    let rows = check_rows(&rig, &ledger, "after the failback");
    assert!(rows >= 90, "too few rows: {rows}");
    let figures = format!(
        "{{\"power_off_outage_ms\": {}, \"failback_outage_ms\": {}, \"rows\": {rows}}}",
        failover.as_millis(),
        failback.as_millis()
    );
    println!(
        "postgres drill: client outage on power-off {failover:?}, on failback (planned switchover) {failback:?}"
    );
    if let Some(out) = std::env::var_os("TANDEM_BENCH_OUT") {
        std::fs::write(out, figures).expect("write figures");
    }
}

#[test]
fn a_frozen_primary_stops_writing_before_its_peer_promotes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut rig = Rig::new("tdpf", 82);
    rig.bring_up();
    assert_eq!(
        rig.psql(
            "insert into t values (1) returning v",
            Duration::from_secs(3)
        )
        .as_deref(),
        Some("1")
    );
    // Freeze n1's daemon (not its volume process, nor PostgreSQL) well
    // past its lease: nothing renews the volume's lease any more.
    rig.cluster.signal(0, libc::SIGSTOP).expect("SIGSTOP n1");
    let frozen = Instant::now();
    let deadline = frozen + Duration::from_secs(60);
    while !(rig.group_on(1) == vec!["n2".to_string()]
        && rig
            .psql(
                "insert into t values (2) returning v",
                Duration::from_secs(3),
            )
            .as_deref()
            == Some("2"))
    {
        assert!(
            Instant::now() < deadline,
            "n2 never took over:\n{}",
            rig.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // n2 is primary now. The frozen side's export takes no write: the
    // application there gets an I/O error, not a silent acceptance.
    let d = rig.dir.display();
    let o = rig.in_volume_ns(
        0,
        &format!("dd if=/dev/zero of={d}/export/r0 bs=4096 count=1 seek=1000 oflag=direct conv=notrunc 2>&1"),
    );
    assert!(
        !o.status.success(),
        "a write on the frozen primary's export was accepted after n2 promoted: {}",
        text(&o)
    );
    let s = rig.vstatus(0);
    assert_eq!(
        s["role"], "Secondary",
        "n1's volume must have demoted itself: {s:#}"
    );
    let vlog = std::fs::read_to_string(rig.state(0).join("volumes/r0.log")).unwrap_or_default();
    assert!(vlog.contains("lost the cluster's lease"), "{vlog}");
    println!("frozen side refused the write: {}", text(&o).trim());
    // n1 wakes up: it releases what it ran, rejoins, and (auto_failback)
    // takes the group back with n2's rows.
    rig.cluster.signal(0, libc::SIGCONT).expect("SIGCONT n1");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(rig.group_on(0) == vec!["n1".to_string()]
        && rig
            .psql(
                "select count(*) from t where v in (1, 2)",
                Duration::from_secs(3),
            )
            .as_deref()
            == Some("2"))
    {
        assert!(
            Instant::now() < deadline,
            "n1 never took the group back with both rows:\n{}\n{}",
            rig.log_tail(0),
            rig.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
