//! Two namespaced nodes running a replicated volume under tandem, with a
//! client namespace: the rig of the volume drills (`lab_postgres`,
//! `lab_drbd_files`) and of `tandem-demo --volume`.
//!
//! Two ways to configure it, as users do: a native `tandem.toml` whose
//! group `db` is `volume:r0` → the real `ocf:heartbeat:Filesystem` → (with
//! PostgreSQL) Debian's `postgres` → VIP (or, S3's two volumes, r0 with
//! protocol C for data and r1 with protocol A for logs mounted at
//! DIR/logs, both in the group); or Heartbeat's own files
//! (ha.cf, haresources `n1 drbddisk::r0 Filesystem::/dev/drbd0::DIR::ext4
//! IPaddr::VIP`, authkeys) with the DRBD resource file in the sibling
//! `drbd.d`, each node reading its own copies at /etc/ha.d and /etc/drbd.d
//! (bind-mounted in its private mount namespace).
//!
//! The lab's nodes share one kernel, so two things real machines never see
//! are handled here: a powered-off node's FUSE connection is aborted (its
//! namespace's unmount would otherwise wait for its own dead export), and
//! PostgreSQL's lock file may name the other node's (or a zombie's) PID.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod bring_up;
mod files;

use crate::loopback_cluster::LocalCluster;
use crate::netns::Lab;

/// stdout and stderr of a command, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// How the cluster is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A tandem.toml; `postgres`: the group runs PostgreSQL.
    Native {
        /// Run PostgreSQL on the volume.
        postgres: bool,
    },
    /// Heartbeat's files and a DRBD resource file, unchanged in form.
    Heartbeat,
    /// A tandem.toml with two volumes in the group: r0 (protocol C) for
    /// data, r1 (protocol A) for logs.
    TwoVolumes,
}

/// The rig. See the module documentation.
pub struct VolumeCluster {
    /// The namespaces (n1, n2, c1).
    pub lab: Lab,
    /// The daemons.
    pub cluster: LocalCluster,
    /// The floating address.
    pub vip: String,
    /// The temporary directory (disks, configuration, logs, mount point).
    pub dir: PathBuf,
    /// How it is configured.
    pub mode: Mode,
    exe: PathBuf,
}

fn require(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    for (tool, pkg) in tools {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            bail!("the volume drills need {tool} (apt-get install {pkg})");
        }
    }
    if !Path::new("/usr/lib/ocf/resource.d/heartbeat/Filesystem").exists() {
        bail!("the volume drills need ocf:heartbeat:Filesystem (apt-get install resource-agents)");
    }
    Ok(())
}

impl VolumeCluster {
    /// Builds the lab (`prefix`, 198.18.`subnet`.0/24) and writes the
    /// configuration; starts nothing.
    pub fn new(exe: &Path, prefix: &str, subnet: u8, mode: Mode) -> anyhow::Result<Self> {
        require(&[
            ("modprobe", "kmod"),
            ("losetup", "mount"),
            ("mkfs.ext4", "e2fsprogs"),
            ("nsenter", "util-linux"),
        ])?;
        if mode == (Mode::Native { postgres: true }) {
            require(&[("psql", "postgresql-client")])?;
            crate::pg_client::postgres_bin()?;
        }
        let lab = Lab::new(prefix, subnet, &["n1", "n2", "c1"])?;
        let vip = format!("198.18.{subnet}.200");
        let nodes = lab
            .hosts
            .iter()
            .filter(|h| h.name.starts_with('n'))
            .map(|h| (h.name.clone(), h.addr.clone(), Some(h.netns.clone())))
            .collect();
        let cluster = LocalCluster::from_config(exe, "", nodes)?;
        let dir = cluster.dir().to_path_buf();
        // PostgreSQL runs as `postgres`: it must reach the mount point.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        for n in ["n1", "n2"] {
            let f = std::fs::File::create(dir.join(format!("{n}.img")))?;
            f.set_len(160 << 20)?;
        }
        std::fs::create_dir_all(dir.join("data"))?;
        if mode == Mode::TwoVolumes {
            for n in ["n1", "n2"] {
                let f = std::fs::File::create(dir.join(format!("{n}-r1.img")))?;
                f.set_len(64 << 20)?;
            }
            std::fs::create_dir_all(dir.join("logs"))?;
        }
        let me = Self {
            lab,
            cluster,
            vip,
            dir,
            mode,
            exe: exe.to_path_buf(),
        };
        match mode {
            Mode::Native { postgres } => me.write_native(subnet, postgres)?,
            Mode::Heartbeat => me.write_heartbeat(subnet)?,
            Mode::TwoVolumes => {
                me.write_native(subnet, false)?;
                me.add_log_volume(subnet)?;
            }
        }
        Ok(me)
    }

    /// Node `i`'s state directory.
    pub fn state(&self, i: usize) -> PathBuf {
        self.dir.join(format!("state-n{}", i + 1))
    }

    /// Starts (or restarts) node `i`'s daemon.
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        match self.mode {
            Mode::Native { .. } | Mode::TwoVolumes => self.cluster.start(i),
            Mode::Heartbeat => {
                let n = format!("n{}", i + 1);
                let nd = self.dir.join(&n);
                let script = format!(
                    "mount --bind {ha} /etc/ha.d && mount --bind {drbd} /etc/drbd.d && exec {exe} daemon --heartbeat-dir /etc/ha.d --node {n} --socket {sock} --state-dir {state}",
                    ha = nd.join("ha.d").display(),
                    drbd = nd.join("drbd.d").display(),
                    exe = self.exe.display(),
                    sock = self.cluster.nodes[i].socket.display(),
                    state = self.state(i).display(),
                );
                self.cluster
                    .start_custom(i, &["sh".into(), "-c".into(), script])
            }
        }
    }

    /// `tandem volume ARGS` for node `i` (its control socket is a file: no
    /// namespace needed, except to read Heartbeat's files).
    pub fn vol(&self, i: usize, args: &[&str]) -> anyhow::Result<Output> {
        let n = format!("n{}", i + 1);
        let mut c = match self.mode {
            Mode::Native { .. } | Mode::TwoVolumes => {
                let mut c = Command::new(&self.exe);
                c.arg("volume").arg("-c").arg(&self.cluster.config);
                c
            }
            Mode::Heartbeat => {
                let mut c = Command::new(&self.exe);
                c.arg("volume")
                    .arg("--heartbeat-dir")
                    .arg(self.dir.join(&n).join("ha.d"));
                c
            }
        };
        c.args(["--node", &n])
            .arg("--state-dir")
            .arg(self.state(i))
            .args(args);
        Ok(c.output()?)
    }

    /// [`Self::vol`], which must succeed; its output.
    pub fn vol_ok(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let o = self.vol(i, args)?;
        if !o.status.success() {
            bail!("n{}: tandem volume {args:?}: {}", i + 1, text(&o));
        }
        Ok(text(&o))
    }

    /// The volumes of the group, in order.
    pub fn volume_names(&self) -> &'static [&'static str] {
        if self.mode == Mode::TwoVolumes {
            &["r0", "r1"]
        } else {
            &["r0"]
        }
    }

    /// Node `i`'s status of volume r0 (JSON; null when it does not answer).
    pub fn vstatus(&self, i: usize) -> serde_json::Value {
        self.vstatus_of(i, "r0")
    }

    /// Node `i`'s status of volume `name` (JSON; null when it does not
    /// answer).
    pub fn vstatus_of(&self, i: usize, name: &str) -> serde_json::Value {
        self.vol(i, &["status", name, "--json"])
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v.get(0).cloned())
            .unwrap_or_default()
    }

    /// Polls node `i`'s status of volume r0 until `f` holds.
    pub fn wait_volume(
        &self,
        i: usize,
        what: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<()> {
        self.wait_volume_of(i, "r0", what, timeout, f)
    }

    /// Polls node `i`'s status of volume `name` until `f` holds.
    pub fn wait_volume_of(
        &self,
        i: usize,
        name: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.vstatus_of(i, name);
            if f(&s) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "n{}: {what} not reached within {timeout:?}: {s:#}\n{}",
                    i + 1,
                    self.log_tail(i)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of node `i`'s daemon and volume logs.
    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(&self.cluster.nodes[i].log).unwrap_or_default();
        let vlog =
            std::fs::read_to_string(self.state(i).join("volumes/r0.log")).unwrap_or_default();
        let tail = |t: &str| {
            let lines: Vec<&str> = t.lines().rev().take(40).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        format!(
            "n{} daemon:\n{}\nvolume:\n{}",
            i + 1,
            tail(&log),
            tail(&vlog)
        )
    }

    /// `tandem ARGS` against node `i`'s daemon.
    pub fn tandem(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let o = Command::new(&self.exe)
            .args(args)
            .arg("--socket")
            .arg(&self.cluster.nodes[i].socket)
            .output()?;
        if !o.status.success() {
            bail!("tandem {args:?}: {}", text(&o));
        }
        Ok(text(&o))
    }

    /// Polls `tandem status` on node `i` until it shows every line of
    /// `want` (the daemon's copy of the volumes' state is up to 200 ms
    /// old); the status, or an error with the last one.
    pub fn wait_status(
        &self,
        i: usize,
        want: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.tandem(i, &["status"])?;
            if want.iter().all(|w| st.contains(w)) {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!("n{}: status never showed {want:?}:\n{st}", i + 1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of node `i`'s volume process (its mount namespace, the
    /// daemon's, holds the FUSE export and the mounted filesystem).
    pub fn volume_pid(&self, i: usize) -> Option<String> {
        let o = Command::new("pgrep")
            .args([
                "-f",
                &format!(
                    "volume run r0 .*--node n{} --state-dir {}",
                    i + 1,
                    self.state(i).display()
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
    pub fn in_volume_ns(&self, i: usize, script: &str) -> anyhow::Result<Output> {
        let pid = self
            .volume_pid(i)
            .with_context(|| format!("n{}: no volume process", i + 1))?;
        Ok(Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", "sh", "-ec", script])
            .output()?)
    }

    /// The FUSE connection of node `i`'s export of volume `name` (its
    /// number under /sys/fs/fuse/connections), if its volume runs.
    fn fuse_conn(&self, i: usize, name: &str) -> Option<String> {
        let pid = self.volume_pid(i)?;
        let export = match (self.mode, name) {
            (Mode::TwoVolumes, "r1") => self.dir.join("export1"),
            (Mode::Native { .. } | Mode::TwoVolumes, _) => self.dir.join("export"),
            (Mode::Heartbeat, _) => PathBuf::from("/run/tandem/export"),
        };
        let o = Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", "stat", "-c", "%d"])
            .arg(export)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// The exported file of volume r0, as seen in a node's mount
    /// namespace.
    pub fn export_file(&self) -> PathBuf {
        self.export_file_of("r0")
    }

    /// The exported file of volume `name`.
    pub fn export_file_of(&self, name: &str) -> PathBuf {
        match (self.mode, name) {
            (Mode::TwoVolumes, "r1") => self.dir.join("export1/r1"),
            (Mode::Native { .. } | Mode::TwoVolumes, _) => self.dir.join("export/r0"),
            (Mode::Heartbeat, _) => PathBuf::from("/run/tandem/export/r0"),
        }
    }

    /// Powers node `i` off. Its FUSE connection is aborted right after the
    /// kill, as a power-off ends it (see the module documentation).
    pub fn power_off(&mut self, i: usize) -> anyhow::Result<()> {
        let conns: Vec<String> = self
            .volume_names()
            .iter()
            .filter_map(|v| self.fuse_conn(i, v))
            .collect();
        self.cluster.forget(i);
        self.lab.power_off(&format!("n{}", i + 1))?;
        for c in conns {
            abort_fuse(&c);
        }
        Ok(())
    }

    /// Runs a script in node `i`'s volume mount namespace; fails unless it
    /// succeeds.
    pub fn sh(&self, i: usize, script: &str) -> anyhow::Result<String> {
        let o = self.in_volume_ns(i, script)?;
        if !o.status.success() {
            bail!("n{}: {script}: {}", i + 1, text(&o));
        }
        Ok(text(&o))
    }

    /// Powers node `i` back on: addresses reset, cable in, daemon started.
    pub fn power_on(&mut self, i: usize) -> anyhow::Result<()> {
        let n = format!("n{}", i + 1);
        self.lab.reset_addresses(&n)?;
        self.lab.cable(&n, true)?;
        self.start(i)
    }

    /// Where the group `db` is active, as node `i` sees it.
    pub fn group_on(&self, i: usize) -> Vec<String> {
        self.cluster
            .status(i)
            .ok()
            .and_then(|s| s.membership.groups.first().map(|g| g.active_on.clone()))
            .unwrap_or_default()
    }

    /// Whether every resource of group `db` runs on node `i`.
    pub fn started_on(&self, i: usize) -> bool {
        self.cluster.status(i).ok().is_some_and(|s| {
            s.membership
                .groups
                .first()
                .is_some_and(|g| g.phase_here == "started")
        })
    }

    /// psql through the VIP, from the client's namespace; its output when
    /// it succeeded.
    pub fn psql(&self, sql: &str, timeout: Duration) -> Option<String> {
        let ns = &self.lab.host("c1").ok()?.netns;
        crate::pg_client::run_psql(ns, &self.vip, sql, timeout)
    }

    /// Starts a client in c1 inserting rows 1, 2, … into table `t` through
    /// the VIP, one connection per row, each attempt killed after
    /// `attempt`.
    pub fn insert_client(
        &self,
        attempt: Duration,
    ) -> anyhow::Result<crate::pg_client::InsertClient> {
        let ns = self.lab.host("c1")?.netns.clone();
        Ok(crate::pg_client::InsertClient::start(
            ns,
            self.vip.clone(),
            attempt,
        ))
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

impl Drop for VolumeCluster {
    fn drop(&mut self) {
        // Kill every process of the nodes (their mounts go with their
        // namespaces, their FUSE connections are aborted), then detach the
        // loop devices left on the dead exports (whose path then reads
        // "/r0" or "/r1", the mount being gone).
        for i in 0..2 {
            if self.cluster.pid(i).is_some() {
                let _ = self.power_off(i);
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
            let ours: Vec<String> = listed
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (dev, back) = (f.next()?, f.next()?);
                    (back == "/r0"
                        || back == "/r1"
                        || back.starts_with(&mine)
                        || back == "/run/tandem/export/r0")
                        .then(|| dev.to_string())
                })
                .collect();
            if ours.is_empty() || Instant::now() > deadline {
                break;
            }
            for dev in ours {
                let _ = Command::new("timeout")
                    .args(["5", "losetup", "-d", &dev])
                    .output();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.mode == Mode::Heartbeat {
            // The primary's /dev/drbd0 (a symlink to its loop device).
            if std::fs::read_link("/dev/drbd0").is_ok() {
                let _ = std::fs::remove_file("/dev/drbd0");
            }
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
