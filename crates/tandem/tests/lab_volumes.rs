//! Replicated volumes on two namespaced nodes (issue 10): the workshop's
//! steps with the NBD export and qemu-io as the application — create-md,
//! up, primary --force (full sync), checksummed writes, a role switch and
//! the same data read on the other node; a cut link, writes, and a
//! bitmap-only resync (bytes counted, backing files identical); the
//! primary killed mid-write, the secondary promoted, and the old primary
//! resynced back; online verify finding a block corrupted behind its back,
//! then a checksum-based full resync that moves only that block.
//! NBD conformance with nbdinfo and nbdcopy. Three nodes, n1–n3
//! asynchronous (protocol A): ext4 written on n1, n3 cut off and resynced
//! by bitmap, the primary powered off mid-write and n2 promoted, n1 back
//! and resynced, ext4 read and fsck-clean on n3, every backing file
//! identical. Needs root, qemu-utils, libnbd-bin and e2fsprogs; fails with
//! a clear message otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tandem_lab::netns::Lab;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const SUBNET: u8 = 71;
const WAIT: Duration = Duration::from_secs(30);

struct Node {
    name: &'static str,
    config: PathBuf,
    disk: PathBuf,
    nbd: PathBuf,
    export: PathBuf,
}

struct Rig {
    lab: Lab,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
    /// Loop devices the drill made (detached at drop, if still there).
    loops: std::sync::Mutex<Vec<String>>,
    /// Where each node's file systems are mounted.
    mounts: Mounts,
    /// The drills run one at a time (see [`SERIAL`]).
    _one: std::sync::MutexGuard<'static, ()>,
}

/// One drill at a time: each moves hundreds of MB through FUSE, loop and
/// both backing files on two vCPUs, and their timing-sensitive steps (a
/// cut link, a power-off mid-write) are steadier alone.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` with sh; its standard output, trimmed.
fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(o.status.success(), "`{cmd}`: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Rig {
    fn new() -> Self {
        Self::with(&["n1", "n2"], "tdvol", SUBNET, "")
    }

    /// Nodes `names` (n1…) in lab `prefix` on `subnet`, each holding a
    /// copy of volume r0 (64 MiB, NBD and FUSE exports, checksum resync);
    /// `extra` is appended to the volume's tables.
    fn with(names: &[&'static str], prefix: &str, subnet: u8, extra: &str) -> Self {
        assert!(
            Command::new("qemu-io").arg("--version").output().is_ok(),
            "this test needs qemu-io (apt-get install qemu-utils)"
        );
        assert!(
            Command::new("nbdinfo").arg("--version").output().is_ok(),
            "this test needs nbdinfo and nbdcopy (apt-get install libnbd-bin)"
        );
        let one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let lab = Lab::new(prefix, subnet, names).expect("lab (root needed)");
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("key");
        let out = Command::new(EXE)
            .arg("keygen")
            .arg(&key)
            .output()
            .expect("keygen");
        assert!(out.status.success(), "{}", text(&out));
        let mut on = String::new();
        for (i, name) in names.iter().enumerate() {
            on.push_str(&format!(
                "[volume.on.{name}]\naddress = \"198.18.{subnet}.{}\"\ndisk = \"{}\"\n",
                11 + i,
                dir.path().join(format!("{name}.img")).display()
            ));
        }
        let mut nodes = Vec::new();
        for name in names {
            let state = dir.path().join(format!("state-{name}"));
            std::fs::create_dir_all(&state).expect("state dir");
            let disk = dir.path().join(format!("{name}.img"));
            let f = std::fs::File::create(&disk).expect("disk");
            f.set_len(64 << 20).expect("size");
            let nbd = state.join("r0.nbd");
            let export = state.join("export");
            let config = dir.path().join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    "state_dir = \"{}\"\nsocket = \"{}\"\n{}[[volume]]\nname = \"r0\"\nnbd = \"unix:{}\"\nexport = \"{}\"\ncsums = true\n{on}{extra}",
                    state.display(),
                    state.join("ctl.sock").display(),
                    tandem_lab::netns::cluster_config("vol", subnet, names.len()).replace(
                        "key_file = \"authkey\"",
                        &format!("key_file = \"{}\"", key.display())
                    ),
                    nbd.display(),
                    export.display(),
                ),
            )
            .expect("config");
            nodes.push(Node {
                name,
                config,
                disk,
                nbd,
                export,
            });
        }
        Self {
            lab,
            nodes,
            _dir: dir,
            loops: std::sync::Mutex::new(Vec::new()),
            mounts: Mounts::new(names.len()),
            _one: one,
        }
    }

    /// `tandem volume ARGS` on node `i`, inside its namespace.
    fn vol(&self, i: usize, args: &[&str]) -> Output {
        let n = &self.nodes[i];
        let mut c = self.lab.command(n.name, EXE).expect("command");
        c.arg("volume")
            .arg("-c")
            .arg(&n.config)
            .args(["--node", n.name])
            .args(args);
        c.output().expect("run tandem volume")
    }

    /// ext4 made on node `i`'s loop device over its FUSE file, with a 6 MB
    /// random file; returns its sha256.
    fn ext4_with_a_file(&self, i: usize) -> String {
        let m = self.mountpoint();
        let dev = self.loop_device(i);
        self.on(i, &format!("mkfs.ext4 -q {dev} && mount {dev} {m}"));
        self.on(
            i,
            &format!("head -c 6000000 /dev/urandom > {m}/data && sync"),
        );
        let sum = self.on(i, &format!("sha256sum < {m}/data"));
        self.unmount(i, &m, &dev);
        sum
    }

    /// On node `i` (primary): fsck finds the ext4 clean and the file has
    /// checksum `sum`.
    #[track_caller]
    fn same_file(&self, i: usize, sum: &str) {
        let m = self.mountpoint();
        let dev = self.loop_device(i);
        self.on(i, &format!("fsck.ext4 -fn {dev} && mount {dev} {m}"));
        assert_eq!(
            self.on(i, &format!("sha256sum < {m}/data")),
            sum,
            "the file differs on n{}",
            i + 1
        );
        self.unmount(i, &m, &dev);
    }

    fn mountpoint(&self) -> String {
        let mnt = self._dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).expect("mountpoint");
        mnt.display().to_string()
    }

    /// Starts 64 writes of 256 KiB on node `i` (the primary) through its
    /// NBD export and powers the node off once they are arriving.
    fn power_off_mid_write(&self, i: usize) {
        let uri = format!("nbd+unix:///?socket={}", self.nodes[i].nbd.display());
        let mut writer = Command::new("qemu-io");
        writer.args(["-f", "raw", &uri]);
        for k in 0..64 {
            writer.args([
                "-c",
                &format!("write -P 0x{:02x} {}M 256k", 0x40 + k, 40 + k / 4),
            ]);
        }
        let written = self.status(i)["dw"].as_u64().unwrap_or(0);
        let child = writer.spawn().expect("qemu-io writer");
        self.wait(i, "writes arriving", |s| {
            s["dw"].as_u64().unwrap_or(0) > written
        });
        self.lab.power_off(self.nodes[i].name).expect("power off");
        let _ = child.wait_with_output();
    }

    /// `secondary` on node `i`, retried while the last writes of a client
    /// that just closed are still completing (what the refusal asks).
    #[track_caller]
    fn demote(&self, i: usize) {
        self.retried(i, "secondary", "still in flight");
    }

    /// `primary` on node `i`, retried while its copy is briefly not up to
    /// date: with three nodes, losing the primary makes the two
    /// secondaries reconnect and compare, and the one that missed the
    /// dead primary's last (unacknowledged) writes resyncs them first.
    #[track_caller]
    fn promote(&self, i: usize) {
        self.retried(i, "primary", "refusing to become primary");
    }

    /// `tandem volume ROLE r0` on node `i`, polled (with a deadline) while
    /// it is refused for the transient reason `while_says`.
    #[track_caller]
    fn retried(&self, i: usize, role: &str, while_says: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let o = self.vol(i, &[role, "r0"]);
            if o.status.success() {
                return;
            }
            assert!(
                text(&o).contains(while_says) && Instant::now() < deadline,
                "n{}: {role}: {}\nevents:\n{}",
                i + 1,
                text(&o),
                self.events(i)
            );
            eprintln!("n{}: {role} refused, retrying: {}", i + 1, text(&o).trim());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[track_caller]
    fn ok(&self, i: usize, args: &[&str]) -> String {
        let o = self.vol(i, args);
        assert!(
            o.status.success(),
            "n{}: tandem volume {args:?}: {}",
            i + 1,
            text(&o)
        );
        text(&o)
    }

    fn status(&self, i: usize) -> serde_json::Value {
        let o = self.vol(i, &["status", "r0", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v.get(0).cloned().unwrap_or_default()
    }

    /// Polls until node `i`'s status satisfies `f`.
    #[track_caller]
    fn wait(&self, i: usize, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.status(i);
            if f(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "n{}: {what} not reached within {WAIT:?}: {s:#}\nevents:\n{}",
                i + 1,
                text(&self.vol(i, &["events", "r0"]))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until node `i` is up to date and in sync with every peer.
    #[track_caller]
    fn in_sync(&self, i: usize) {
        self.in_sync_with(i, None);
    }

    /// Polls until node `i` is up to date and in sync with peer `only`
    /// (every peer if `None`).
    #[track_caller]
    fn in_sync_with(&self, i: usize, only: Option<&str>) {
        self.wait(i, "in sync", |s| {
            let peers = s["peers"].as_array().cloned().unwrap_or_default();
            s["disk"] == "UpToDate"
                && !peers.is_empty()
                && peers
                    .iter()
                    .filter(|p| only.is_none_or(|n| p["node"] == n))
                    .all(|p| {
                        p["replication"] == "Established"
                            && p["connection"] == "Connected"
                            && p["out_of_sync_kib"] == 0
                    })
        });
    }

    /// qemu-io commands against node `i`'s NBD export (read-only if they
    /// only read).
    fn qemu_io(&self, i: usize, cmds: &[&str]) -> String {
        let uri = format!("nbd+unix:///?socket={}", self.nodes[i].nbd.display());
        let mut c = Command::new("qemu-io");
        c.args(["-f", "raw", &uri]);
        // Only reads: opened read-only (a secondary's export is).
        if cmds.iter().all(|x| x.starts_with("read")) {
            c.arg("-r");
        }
        for x in cmds {
            c.args(["-c", x]);
        }
        let o = c.output().expect("qemu-io");
        let t = text(&o);
        assert!(
            o.status.success() && !t.contains("failed") && !t.contains("error"),
            "n{}: qemu-io {cmds:?}: {t}",
            i + 1
        );
        t
    }

    /// The pid of node `i`'s volume process.
    fn volume_pid(&self, i: usize) -> String {
        let n = &self.nodes[i];
        let pgrep = Command::new("pgrep")
            .args([
                "-f",
                &format!("volume run r0 --config {}", n.config.display()),
            ])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&pgrep.stdout)
            .split_whitespace()
            .next()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no volume process on n{}", i + 1))
    }

    /// Runs `cmd` with sh in node `i`'s mount namespace for file systems
    /// (see [`Mounts`]).
    fn on(&self, i: usize, cmd: &str) -> String {
        let pid = self.mounts.pid(i);
        let o = Command::new("nsenter")
            .args(["-t", &pid, "-m", "sh", "-c", cmd])
            .output()
            .expect("nsenter");
        assert!(o.status.success(), "n{}: `{cmd}`: {}", i + 1, text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// A loop device (direct I/O, 4 KiB sectors) on node `i`'s FUSE file,
    /// detached when the rig is dropped if the drill did not. The export
    /// is mounted in the volume process's mount namespace (`ip netns exec`
    /// gives each process its own), so losetup runs there.
    fn loop_device(&self, i: usize) -> String {
        let file = self.nodes[i].export.join("r0");
        let o = Command::new("nsenter")
            .args([
                "-t",
                &self.volume_pid(i),
                "-m",
                "losetup",
                "--find",
                "--show",
            ])
            .args(["--direct-io=on", "--sector-size", "4096"])
            .arg(&file)
            .output()
            .expect("losetup");
        assert!(o.status.success(), "losetup on n{}: {}", i + 1, text(&o));
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if let Ok(mut l) = self.loops.lock() {
            l.push(dev.clone());
        }
        dev
    }

    /// Unmounts `m` on node `i` and detaches loop device `dev`.
    fn unmount(&self, i: usize, m: &str, dev: &str) {
        self.on(i, &format!("umount {m} && losetup -d {dev}"));
        if let Ok(mut l) = self.loops.lock() {
            l.retain(|d| d != dev);
        }
    }

    /// The data regions of every backing disk are identical.
    #[track_caller]
    fn identical(&self) {
        let size = self.status(0)["size"].as_u64().expect("size");
        let read = |p: &Path| {
            let mut b = std::fs::read(p).expect("read disk");
            b.truncate(size as usize);
            b
        };
        let a = read(&self.nodes[0].disk);
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            let b = read(&n.disk);
            let differ: Vec<usize> = a
                .chunks(4096)
                .zip(b.chunks(4096))
                .enumerate()
                .filter(|(_, (x, y))| x != y)
                .map(|(k, _)| k)
                .collect();
            assert!(
                differ.is_empty(),
                "n1's and {}'s backing files differ in {} block(s) of 4 KiB, first {:?}\nn1 events:\n{}\n{} events:\n{}",
                n.name,
                differ.len(),
                &differ[..differ.len().min(12)],
                self.events(0),
                n.name,
                self.events(i)
            );
        }
    }

    fn events(&self, i: usize) -> String {
        text(&self.vol(i, &["events", "r0"]))
    }
}

/// A mount namespace per node for the drills' file systems, held by a
/// `sleep` (util-linux's `unshare` and `setpriv`). Mounted in the test's
/// own namespace, an ext4 would be copied
/// into every namespace another lab test's `ip netns exec` creates
/// meanwhile and live on there after `umount` here (its last superblock
/// writes arriving late, `e2fsck` finding the device in use). Mounted in
/// the volume process's namespace, a drill failing with the file system
/// still mounted would deadlock that process's exit: as the last member of
/// the namespace it unmounts the file system, whose final writes need its
/// own FUSE export. A namespace of its own is torn down first, at drop,
/// while the volume processes still serve.
struct Mounts(Vec<std::process::Child>);

impl Mounts {
    fn new(nodes: usize) -> Self {
        Self(
            (0..nodes)
                .map(|_| {
                    // Killed with the thread that made it, should the test
                    // die without dropping the rig.
                    Command::new("unshare")
                        .args(["--mount", "--propagation", "private"])
                        .args(["setpriv", "--pdeathsig", "KILL", "sleep", "infinity"])
                        .spawn()
                        .expect("unshare (util-linux)")
                })
                .collect(),
        )
    }

    fn pid(&self, i: usize) -> String {
        self.0[i].id().to_string()
    }

    /// Ends the namespaces (their file systems unmounted on the way).
    fn end(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.0.clear();
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        self.end();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // File systems a failed drill left mounted go first, while the
        // exports under them still answer.
        self.mounts.end();
        for i in 0..self.nodes.len() {
            let _ = self.vol(i, &["secondary", "r0"]);
            let _ = self.vol(i, &["down", "r0"]);
        }
        // A drill that failed half-way leaves its loop devices attached
        // (to a dead export once the volume process is gone).
        let loops = self.loops.lock().map(|l| l.clone()).unwrap_or_default();
        for dev in loops {
            let _ = Command::new("losetup").args(["-d", &dev]).output();
        }
    }
}

#[test]
fn the_workshop_steps_resync_and_verify_on_two_nodes() {
    let rig = Rig::new();
    for i in 0..2 {
        rig.ok(i, &["create-md", "r0"]);
    }
    // create-md refuses to overwrite without --force.
    let again = rig.vol(0, &["create-md", "r0"]);
    assert!(!again.status.success() && text(&again).contains("--force"));
    for i in 0..2 {
        rig.ok(i, &["up", "r0"]);
    }
    rig.wait(1, "connected", |s| {
        s["peers"][0]["connection"] == "Connected"
    });
    // The volume process's memory is locked (replication.md §3.4).
    let status = std::fs::read_to_string(format!("/proc/{}/status", rig.volume_pid(0)))
        .expect("volume process status");
    let locked_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    assert!(
        locked_kib > 0,
        "volume process memory not locked:\n{status}"
    );
    // A secondary that is not up to date refuses promotion without force.
    let refused = rig.vol(0, &["primary", "r0"]);
    assert!(!refused.status.success() && text(&refused).contains("--force"));
    rig.ok(0, &["primary", "--force", "r0"]);
    rig.in_sync(1);
    rig.in_sync(0);
    // The state as DRBD's events2 stream shows it, for existing scripts.
    let now = rig.ok(0, &["events", "r0", "--now"]);
    for line in [
        "exists resource name:r0 role:Primary suspended:no",
        "exists device name:r0 volume:0 disk:UpToDate",
        "exists connection name:r0 conn-name:n2 connection:Connected role:Secondary",
        "exists -",
    ] {
        assert!(now.lines().any(|l| l == line), "no `{line}` in:\n{now}");
    }

    // The workshop: ext4 on the primary's FUSE file through a loop
    // device, a file written, a role switch, fsck clean and the same file
    // on the other node.
    let sum = rig.ext4_with_a_file(0);
    rig.demote(0);
    rig.ok(1, &["primary", "r0"]);
    rig.same_file(1, &sum);
    rig.demote(1);
    rig.ok(0, &["primary", "r0"]);

    // NBD conformance with libnbd's tools: flags, sizes, read-only on the
    // secondary, and a copy in and out compared byte for byte.
    let uri = |i: usize| format!("nbd+unix:///?socket={}", rig.nodes[i].nbd.display());
    let info: serde_json::Value =
        serde_json::from_str(&sh(&format!("nbdinfo --json '{}'", uri(0)))).expect("nbdinfo json");
    let export = &info["exports"][0];
    assert_eq!(export["is_read_only"], false, "{info:#}");
    for can in [
        "can_flush",
        "can_fua",
        "can_multi_conn",
        "can_trim",
        "can_zero",
    ] {
        assert_eq!(export[can], true, "{can}: {info:#}");
    }
    assert_eq!(export["export-size"], rig.status(0)["size"], "{info:#}");
    let info2: serde_json::Value =
        serde_json::from_str(&sh(&format!("nbdinfo --json '{}'", uri(1)))).expect("nbdinfo json");
    assert_eq!(info2["exports"][0]["is_read_only"], true, "{info2:#}");
    let src = rig._dir.path().join("src.img");
    let s = src.display();
    sh(&format!("head -c 4194304 /dev/urandom > {s}"));
    sh(&format!("nbdcopy --flush {s} '{}'", uri(0)));
    sh(&format!(
        "nbdcopy '{}' - | head -c 4194304 | cmp - {s}",
        uri(0)
    ));
    sh(&format!(
        "nbdcopy '{}' - | head -c 4194304 | cmp - {s}",
        uri(1)
    ));

    // Checksummed writes on n1, then a role switch: n2 reads the same.
    rig.qemu_io(
        0,
        &[
            "write -P 0xa1 0 1M",
            "write -P 0xb2 8M 512k",
            "write -f -P 0xc3 20M 64k",
            "flush",
        ],
    );
    let secondary_write = Command::new("qemu-io")
        .args(["-f", "raw"])
        .arg(format!(
            "nbd+unix:///?socket={}",
            rig.nodes[1].nbd.display()
        ))
        .args(["-c", "write -P 0x11 0 4k"])
        .output()
        .expect("qemu-io");
    assert!(
        !secondary_write.status.success() || text(&secondary_write).contains("denied"),
        "a secondary's export accepted a write: {}",
        text(&secondary_write)
    );
    rig.demote(0);
    rig.ok(1, &["primary", "r0"]);
    rig.qemu_io(
        1,
        &[
            "read -P 0xa1 0 1M",
            "read -P 0xb2 8M 512k",
            "read -P 0xc3 20M 64k",
        ],
    );
    rig.identical();

    // Cut the link, write 3 MiB on the primary (n2), reconnect: only the
    // changed blocks move.
    rig.lab.cable("n1", false).expect("cut");
    rig.wait(1, "disconnected", |s| {
        s["peers"][0]["connection"] != "Connected"
    });
    rig.qemu_io(1, &["write -P 0xd4 30M 3M", "flush"]);
    rig.lab.cable("n1", true).expect("plug");
    rig.in_sync(1);
    rig.in_sync(0);
    let ev = rig.events(1);
    assert!(
        ev.contains("bitmap resync as source") && ev.contains("resync started, sending 3072 KiB"),
        "{ev}"
    );
    rig.identical();

    // Kill the primary (n2) mid-write; n1 takes over and writes; n2 comes
    // back and is resynced from n1.
    rig.power_off_mid_write(1);
    rig.wait(0, "n2 gone", |s| s["peers"][0]["connection"] != "Connected");
    rig.ok(0, &["primary", "r0"]);
    rig.qemu_io(0, &["write -P 0xe5 50M 1M", "flush"]);
    rig.lab.cable("n2", true).expect("plug");
    rig.ok(1, &["up", "r0"]);
    rig.in_sync(1);
    rig.in_sync(0);
    assert!(
        rig.events(1).contains("crashed while primary"),
        "{}",
        rig.events(1)
    );
    rig.qemu_io(0, &["read -P 0xe5 50M 1M", "read -P 0xd4 30M 3M"]);
    rig.identical();

    // Online verify finds a block changed behind the volume's back.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&rig.nodes[1].disk)
            .expect("open n2 disk");
        f.write_all_at(b"corrupt!", 12 << 20).expect("corrupt");
    }
    rig.ok(0, &["verify", "r0"]);
    let deadline = Instant::now() + WAIT;
    while !rig.events(0).contains("online verify finished") {
        assert!(
            Instant::now() < deadline,
            "verify did not finish: {}",
            rig.events(0)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        rig.events(0)
            .contains("online verify finished; 1 block(s) differed"),
        "{}",
        rig.events(0)
    );
    let s = rig.status(0);
    assert_eq!(s["peers"][0]["out_of_sync_kib"], 4, "{s:#}");

    // Checksum-based resync (`csums = true`): n2's copy invalidated, the
    // full resync moves only the corrupted block; the rest is found equal.
    rig.ok(1, &["invalidate", "r0"]);
    rig.in_sync(1);
    rig.in_sync(0);
    let size_kib = s["size"].as_u64().expect("size") / 1024;
    let want = format!(
        "resync finished, 4 KiB sent, {} KiB found equal by checksum",
        size_kib - 4
    );
    assert!(
        rig.events(0).contains(&want),
        "no `{want}` in:\n{}",
        rig.events(0)
    );
    rig.identical();
    // invalidate-remote from n1: n2's copy resynced in full from here,
    // every block found equal (one more such line than before).
    let want = format!("resync finished, 0 KiB sent, {size_kib} KiB found equal by checksum");
    let seen = rig.events(0).matches(&want).count();
    rig.ok(0, &["invalidate-remote", "r0"]);
    rig.in_sync(1);
    rig.in_sync(0);
    assert_eq!(
        rig.events(0).matches(&want).count(),
        seen + 1,
        "no new `{want}` in:\n{}",
        rig.events(0)
    );
    rig.identical();
}

#[test]
fn three_nodes_one_asynchronous_survive_a_cut_link_and_a_primary_power_off() {
    let conn = "[[volume.connection]]\nhosts = [\"n1\", \"n3\"]\nprotocol = \"A\"\n";
    let rig = Rig::with(&["n1", "n2", "n3"], "tdvo3", SUBNET + 10, conn);
    for i in 0..3 {
        rig.ok(i, &["create-md", "r0"]);
        rig.ok(i, &["up", "r0"]);
    }
    for i in 1..3 {
        rig.wait(i, "connected to n1", |s| {
            s["peers"][0]["connection"] == "Connected"
        });
    }
    rig.ok(0, &["primary", "--force", "r0"]);
    for i in 0..3 {
        rig.in_sync(i);
    }
    // Each connection with its own protocol.
    let s = rig.status(0);
    let proto = |s: &serde_json::Value, peer: &str| {
        s["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["node"] == peer))
            .map(|p| p["protocol"].clone())
            .unwrap_or_default()
    };
    assert_eq!(proto(&s, "n2"), "C", "{s:#}");
    assert_eq!(proto(&s, "n3"), "A", "{s:#}");
    assert_eq!(proto(&rig.status(2), "n2"), "C");

    // ext4 on n1, a file with its checksum.
    let sum = rig.ext4_with_a_file(0);

    // n3 cut off: n1 writes 3 MiB; back, n3 gets only those blocks, from
    // the primary (n2 decides nothing while the primary is there).
    rig.lab.cable("n3", false).expect("cut");
    rig.wait(0, "n3 gone", |s| s["peers"][1]["connection"] != "Connected");
    rig.qemu_io(0, &["write -P 0xd4 30M 3M", "flush"]);
    rig.lab.cable("n3", true).expect("plug");
    for i in 0..3 {
        rig.in_sync(i);
    }
    // A bitmap resync of the 3 MiB written, plus the few blocks n1 had
    // not yet seen acknowledged by n3 (protocol A) when the cable went.
    let ev = rig.events(0);
    let sent = ev
        .lines()
        .filter_map(|l| l.split("n3: resync started, sending ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse::<u64>().ok())
        .next_back();
    assert!(
        ev.contains("n3: connected, bitmap resync as source")
            && sent.is_some_and(|k| (3072..3072 + 256).contains(&k)),
        "{ev}"
    );
    rig.identical();

    // The primary powered off mid-write; n2 promoted; n3 follows n2.
    rig.power_off_mid_write(0);
    rig.wait(1, "n1 gone", |s| s["peers"][0]["connection"] != "Connected");
    rig.promote(1);
    rig.qemu_io(1, &["write -P 0xe5 50M 1M", "flush"]);
    rig.in_sync_with(2, Some("n2"));
    rig.qemu_io(2, &["read -P 0xe5 50M 1M", "read -P 0xd4 30M 3M"]);
    // n1 back: resynced from the new primary.
    rig.lab.cable("n1", true).expect("plug");
    rig.ok(0, &["up", "r0"]);
    for i in 0..3 {
        rig.in_sync(i);
    }
    assert!(
        rig.events(0).contains("crashed while primary"),
        "{}",
        rig.events(0)
    );
    rig.identical();

    // Role switch to n3 (the asynchronous one): fsck clean, same file.
    rig.demote(1);
    rig.promote(2);
    rig.same_file(2, &sum);
    // n1's connection to n3 was deferred (n2 was primary): it decided
    // afresh when n3 was promoted, so n1 may still be catching up.
    for i in 0..3 {
        rig.in_sync(i);
    }
    rig.identical();
}

/// `resize` (issue 10): ext4 mounted on the primary's loop device over its
/// FUSE file; both backing files grown from 64 to 128 MiB while it is
/// mounted; `tandem volume resize` run on the secondary grows both copies,
/// the new area is resynced from the primary, the loop device takes the
/// new size at once (`losetup -c`) and ext4 grows into space beyond the
/// old end (`resize2fs`); after
/// a role switch the other node reads both files. Refused, with the fix,
/// before the disks grew.
#[test]
fn resize_grows_both_copies_online_and_ext4_follows() {
    let rig = Rig::with(&["n1", "n2"], "tdvrz", 86, "");
    for i in 0..2 {
        rig.ok(i, &["create-md", "r0"]);
        rig.ok(i, &["up", "r0"]);
    }
    rig.wait(1, "connected", |s| {
        s["peers"][0]["connection"] == "Connected"
    });
    rig.ok(0, &["primary", "--force", "r0"]);
    rig.in_sync(0);
    rig.in_sync(1);
    let before = rig.status(0)["size"].as_u64().expect("size");
    let o = rig.vol(1, &["resize", "r0"]);
    assert!(
        !o.status.success() && text(&o).contains("grow the backing disk on every node first"),
        "resize before the disks grew: {}",
        text(&o)
    );
    let (m, dev) = (rig.mountpoint(), rig.loop_device(0));
    rig.on(0, &format!("mkfs.ext4 -q {dev} && mount {dev} {m}"));
    rig.on(0, &format!("head -c 6000000 /dev/urandom > {m}/a && sync"));
    for n in &rig.nodes {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&n.disk)
            .and_then(|f| f.set_len(128 << 20))
            .expect("grow the backing file");
    }
    let said = rig.ok(1, &["resize", "r0"]);
    assert!(
        said.contains("grown from 63.96 MiB") && said.contains("resynced from n1"),
        "{said}"
    );
    for i in 0..2 {
        rig.wait(i, "grown", |s| {
            s["size"].as_u64().unwrap_or(0) > before + (60 << 20)
        });
    }
    let after = rig.status(0)["size"].as_u64().expect("size");
    // The loop device takes the new size at once, ext4 mounted.
    rig.on(0, &format!("losetup -c {dev}"));
    assert_eq!(
        rig.on(0, &format!("blockdev --getsize64 {dev}")),
        after.to_string()
    );
    rig.in_sync(0);
    rig.in_sync(1);
    let events = rig.events(0);
    assert!(
        events.contains("is resynced from here to every peer")
            && events.contains("resync finished"),
        "{events}"
    );
    // The file system is grown unmounted: online resize2fs needs
    // CAP_SYS_RESOURCE, which this lab's containers lack. 90 MB more than
    // the old volume held lands beyond its old end.
    rig.on(
        0,
        &format!("umount {m} && e2fsck -fp {dev} && resize2fs {dev} && mount {dev} {m}"),
    );
    rig.on(0, &format!("head -c 90000000 /dev/urandom > {m}/b && sync"));
    let sums = rig.on(0, &format!("cd {m} && sha256sum a b"));
    // Held open (ext4 mounted on the loop device): not demoted, and told
    // who holds it (DRBD's "Device is held open by someone").
    let held = rig.vol(0, &["secondary", "r0"]);
    assert!(
        !held.status.success()
            && text(&held).contains("still open for writing")
            && text(&held).contains(&format!("{dev} attached to it")),
        "secondary while mounted: {}",
        text(&held)
    );
    assert_eq!(rig.status(0)["role"], "Primary");
    rig.unmount(0, &m, &dev);
    rig.in_sync(0);
    rig.identical();
    rig.demote(0);
    rig.ok(1, &["primary", "r0"]);
    let dev = rig.loop_device(1);
    rig.on(1, &format!("fsck.ext4 -fn {dev} && mount {dev} {m}"));
    assert_eq!(
        rig.on(1, &format!("cd {m} && sha256sum a b")),
        sums,
        "the files differ on n2"
    );
    rig.unmount(1, &m, &dev);
}
