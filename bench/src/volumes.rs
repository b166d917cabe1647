//! Replicated-volume benchmark (issue 10), fio side by side in one run
//! (replication.md §5), every variant a file or device on the same disk:
//!
//! - `raw`: fio on a plain file (O_DIRECT);
//! - `loop`: a loop device (direct I/O) on a plain file;
//! - `qemu-nbd+nbdfuse+loop`: the userspace peer on the same path as
//!   tandem's FUSE export: qemu-nbd serving a file, nbdfuse exposing it,
//!   a loop device on that;
//! - `tandem standalone`: tandem's FUSE file through a loop device, the
//!   peer disconnected;
//! - `tandem A`, `B`, `C`: the same, replicating to a peer in another
//!   network namespace.
//!
//! Two jobs: sequential 1 MiB writes (throughput), and QD1 4 KiB random
//! writes each followed by fsync (the commit latency: write + flush,
//! median and p99). Then resync: time and bytes moved for the volume with
//! 1 % changed (bitmap) and with everything changed (full), against rsync
//! of the same file (`--inplace --no-whole-file`, local).
//!
//! Prints tables and writes `bench/results/volumes.json`; asserts nothing.
//! Usage: `bench/run.sh volumes [--seconds S] [--size-mib M]` (root;
//! installs fio, libnbd-bin, qemu-utils, rsync).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tandem_lab::netns::Lab;

const SUBNET: u8 = 72;

#[derive(Debug, Serialize)]
struct Row {
    variant: String,
    seq_write_mib_s: f64,
    qd1_fsync_p50_us: f64,
    qd1_fsync_p99_us: f64,
    qd1_iops: f64,
    /// CPU time of the serving processes (both nodes' volume processes;
    /// qemu-nbd and nbdfuse) per MiB of the sequential job; none for the
    /// kernel-only rows.
    seq_cpu_ms_per_mib: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Resync {
    what: String,
    changed_mib: f64,
    seconds: f64,
    moved_kib: u64,
}

#[derive(Debug, Serialize)]
struct Results {
    seconds: u64,
    size_mib: u64,
    fio: Vec<Row>,
    resync: Vec<Resync>,
}

fn sh(cmd: &str) -> anyhow::Result<String> {
    let o = Command::new("sh").args(["-c", cmd]).output()?;
    if !o.status.success() {
        bail!("`{cmd}`: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Runs one fio job on `target`; returns its JSON.
fn fio(target: &str, job: &str, seconds: u64, size_mib: u64) -> anyhow::Result<serde_json::Value> {
    let args = match job {
        "seq" => "--rw=write --bs=1m --ioengine=psync --iodepth=1 --fsync=1",
        _ => "--rw=randwrite --bs=4k --ioengine=psync --iodepth=1 --fsync=1",
    };
    let cmd = format!(
        "fio --name={job} --filename={target} --size={}m --direct=1 --time_based --runtime={seconds} --ramp_time=1 --randrepeat=0 {args} --output-format=json",
        size_mib.min(512)
    );
    let out = sh(&cmd)?;
    let start = out.find('{').context("fio printed no JSON")?;
    Ok(serde_json::from_str(&out[start..])?)
}

/// CPU seconds (user and system, every thread) `pids` used so far.
fn cpu_seconds(pids: &[u32]) -> f64 {
    let tick = sh("getconf CLK_TCK")
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or(100.0);
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command's closing parenthesis: utime and
            // stime are the 12th and 13th.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / tick
}

/// fio's jobs on `target`; `pids` serve it (their CPU time is measured
/// during the sequential job, ramp included, at its average rate).
fn row(
    variant: &str,
    target: &str,
    seconds: u64,
    size_mib: u64,
    pids: &[u32],
) -> anyhow::Result<Row> {
    let (cpu0, t0) = (cpu_seconds(pids), Instant::now());
    let seq = fio(target, "seq", seconds, size_mib)?;
    let (cpu, wall) = (cpu_seconds(pids) - cpu0, t0.elapsed().as_secs_f64());
    let qd1 = fio(target, "qd1", seconds, size_mib)?;
    let w = &seq["jobs"][0]["write"];
    let mib_s = w["bw_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64;
    let q = &qd1["jobs"][0];
    // Per commit: the write's completion latency plus the fsync's.
    let pct = |v: &serde_json::Value, p: &str| v["percentile"][p].as_f64().unwrap_or(0.0) / 1000.0;
    let (w50, w99) = (
        pct(&q["write"]["clat_ns"], "50.000000"),
        pct(&q["write"]["clat_ns"], "99.000000"),
    );
    let (s50, s99) = (
        pct(&q["sync"]["lat_ns"], "50.000000"),
        pct(&q["sync"]["lat_ns"], "99.000000"),
    );
    let r = Row {
        variant: variant.to_string(),
        seq_write_mib_s: mib_s,
        seq_cpu_ms_per_mib: (!pids.is_empty() && mib_s > 0.0).then(|| cpu / wall / mib_s * 1000.0),
        qd1_fsync_p50_us: w50 + s50,
        qd1_fsync_p99_us: w99 + s99,
        qd1_iops: q["write"]["iops"].as_f64().unwrap_or(0.0),
    };
    println!(
        "{:<28} {:>10.1} {:>12.0} {:>12.0} {:>9.0} {:>11}",
        r.variant,
        r.seq_write_mib_s,
        r.qd1_fsync_p50_us,
        r.qd1_fsync_p99_us,
        r.qd1_iops,
        r.seq_cpu_ms_per_mib
            .map_or("-".to_string(), |c| format!("{c:.2}"))
    );
    Ok(r)
}

fn loop_on(file: &str) -> anyhow::Result<String> {
    sh(&format!(
        "losetup --find --show --direct-io=on --sector-size 4096 {file}"
    ))
}

/// A two-node tandem volume in the lab.
struct Cluster {
    lab: Lab,
    dir: PathBuf,
    exe: PathBuf,
}

impl Cluster {
    /// n1's disk in `dir`, n2's in `peer_dir` (the same, or a second
    /// device).
    fn new(
        exe: &Path,
        dir: &Path,
        peer_dir: &Path,
        size_mib: u64,
        protocol: &str,
        csums: bool,
    ) -> anyhow::Result<Self> {
        let lab = Lab::new("bvol", SUBNET, &["n1", "n2"])?;
        let key = dir.join("key");
        if !key.exists() {
            sh(&format!("{} keygen {}", exe.display(), key.display()))?;
        }
        for n in ["n1", "n2"] {
            let state = dir.join(format!("state-{n}"));
            std::fs::create_dir_all(&state)?;
            let disk = if n == "n1" { dir } else { peer_dir }.join(format!("{n}.img"));
            let _ = std::fs::remove_file(&disk);
            sh(&format!(
                "fallocate -l {}M {}",
                size_mib + 16,
                disk.display()
            ))?;
            std::fs::write(
                dir.join(format!("{n}.toml")),
                format!(
                    "state_dir = \"{s}\"\nsocket = \"{s}/ctl.sock\"\n{head}[[volume]]\nname = \"r0\"\nprotocol = \"{protocol}\"\ncsums = {csums}\nexport = \"{s}/export\"\n[volume.on.n1]\naddress = \"198.18.{SUBNET}.11\"\ndisk = \"{d}/n1.img\"\n[volume.on.n2]\naddress = \"198.18.{SUBNET}.12\"\ndisk = \"{p}/n2.img\"\n",
                    s = state.display(),
                    d = dir.display(),
                    p = peer_dir.display(),
                    head = tandem_lab::netns::two_node_config("bvol", SUBNET).replace(
                        "key_file = \"authkey\"",
                        &format!("key_file = \"{}\"", key.display())
                    ),
                ),
            )?;
        }
        Ok(Self {
            lab,
            dir: dir.to_path_buf(),
            exe: exe.to_path_buf(),
        })
    }

    fn vol(&self, n: &str, args: &str) -> anyhow::Result<String> {
        let h = self.lab.host(n)?;
        sh(&format!(
            "ip netns exec {} {} volume -c {}/{n}.toml --node {n} {args}",
            h.netns,
            self.exe.display(),
            self.dir.display()
        ))
    }

    fn status(&self, n: &str) -> serde_json::Value {
        self.vol(n, "status r0 --json")
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .map(|v| v[0].clone())
            .unwrap_or_default()
    }

    fn wait_in_sync(&self, n: &str, limit: Duration) -> anyhow::Result<Duration> {
        let t = Instant::now();
        loop {
            let s = self.status(n);
            if s["disk"] == "UpToDate"
                && s["peers"][0]["replication"] == "Established"
                && s["peers"][0]["out_of_sync_kib"] == 0
            {
                return Ok(t.elapsed());
            }
            if t.elapsed() > limit {
                bail!("{n} not in sync after {limit:?}: {s}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// losetup on n1's FUSE file, inside the volume process's mount
    /// namespace.
    fn loop_device(&self) -> anyhow::Result<String> {
        let pid = self.pid("n1")?;
        sh(&format!(
            "nsenter -t {pid} -m losetup --find --show --direct-io=on --sector-size 4096 {}/state-n1/export/r0",
            self.dir.display()
        ))
    }

    /// The volume process of node `n`.
    fn pid(&self, n: &str) -> anyhow::Result<u32> {
        // Anchored on the program, so the shell running pgrep (whose
        // command line holds the pattern too) never matches.
        let pid = sh(&format!(
            "pgrep -f '^[^ ]*tandem volume run r0 --config {}/{n}.toml' | head -1",
            self.dir.display()
        ))?;
        pid.parse()
            .with_context(|| format!("no volume process for {n} (pgrep said `{pid}`)"))
    }

    /// Both nodes' volume processes.
    fn pids(&self) -> anyhow::Result<Vec<u32>> {
        Ok(vec![self.pid("n1")?, self.pid("n2")?])
    }

    fn up(&self) -> anyhow::Result<()> {
        for n in ["n1", "n2"] {
            self.vol(n, "create-md --force r0")?;
            self.vol(n, "up r0")?;
        }
        std::thread::sleep(Duration::from_millis(300));
        self.vol("n1", "primary --force r0")?;
        self.wait_in_sync("n2", Duration::from_secs(600))?;
        Ok(())
    }

    fn down(&self) {
        for n in ["n1", "n2"] {
            let _ = self.vol(n, "secondary r0");
            let _ = self.vol(n, "down r0");
        }
    }
}

/// Prints one resync figure and keeps it for the results file.
fn record(
    out: &mut Vec<Resync>,
    tool: &str,
    what: &str,
    changed_mib: f64,
    took: Duration,
    moved_kib: u64,
) {
    println!(
        "{tool:<6} {what:<22} {:>8.2} s {:>10} KiB moved",
        took.as_secs_f64(),
        moved_kib
    );
    out.push(Resync {
        what: format!("{tool} {what}"),
        changed_mib,
        seconds: took.as_secs_f64(),
        moved_kib,
    });
}

/// fio on a plain file, a loop device on it, and qemu-nbd + nbdfuse + loop.
fn baseline_rows(
    d: &str,
    seconds: u64,
    size_mib: u64,
    fio_rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    // Plain file, loop on a plain file.
    sh(&format!("fallocate -l {size_mib}M {d}/plain.img"))?;
    fio_rows.push(row(
        "raw file",
        &format!("{d}/plain.img"),
        seconds,
        size_mib,
        &[],
    )?);
    let l = loop_on(&format!("{d}/plain.img"))?;
    fio_rows.push(row("loop on a file", &l, seconds, size_mib, &[])?);
    sh(&format!("losetup -d {l}"))?;
    // qemu-nbd + nbdfuse + loop.
    std::fs::create_dir_all(format!("{d}/nbdfuse"))?;
    let mut qemu: Child = Command::new("qemu-nbd")
        .args([
            "-f",
            "raw",
            "--cache=none",
            "--aio=native",
            "--discard=unmap",
            "-t",
            "-k",
        ])
        .arg(format!("{d}/q.sock"))
        .arg(format!("{d}/plain.img"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("qemu-nbd (apt-get install qemu-utils)")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&format!("{d}/q.sock")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut fuse: Child = Command::new("nbdfuse")
        .arg(format!("{d}/nbdfuse/disk"))
        .arg(format!("nbd+unix:///?socket={d}/q.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("nbdfuse (apt-get install libnbd-bin)")?;
    while !Path::new(&format!("{d}/nbdfuse/disk")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let l = loop_on(&format!("{d}/nbdfuse/disk"))?;
    fio_rows.push(row(
        "qemu-nbd+nbdfuse+loop",
        &l,
        seconds,
        size_mib,
        &[qemu.id(), fuse.id()],
    )?);
    let _ = sh(&format!("losetup -d {l}"));
    let _ = sh(&format!(
        "fusermount3 -u {d}/nbdfuse || umount -l {d}/nbdfuse"
    ));
    let _ = fuse.kill();
    let _ = qemu.kill();
    let _ = fuse.wait();
    let _ = qemu.wait();
    Ok(())
}

/// Resync of `c`'s volume (loop device `l` on n1): 1 % changed while n2 is
/// away (bitmap), then n2's copy thrown away (`invalidate`: full).
fn resync_rows(
    c: &Cluster,
    l: &str,
    size_mib: u64,
    resync: &mut Vec<Resync>,
) -> anyhow::Result<()> {
    // Resync: 1 % changed while n2 is away (bitmap), then n2's
    // copy thrown away (`invalidate`: full).
    for (what, mib) in [
        ("bitmap, 1 % changed", size_mib / 100),
        ("full (invalidate)", size_mib),
    ] {
        let before;
        let t0 = Instant::now();
        if mib < size_mib {
            c.vol("n1", "disconnect r0")?;
            sh(&format!(
                "dd if=/dev/urandom of={l} bs=1M count={mib} seek={} oflag=direct conv=notrunc status=none",
                size_mib / 4
            ))?;
            before = c.status("n1")["ns"].as_u64().unwrap_or(0);
            c.vol("n1", "connect r0")?;
        } else {
            before = c.status("n1")["ns"].as_u64().unwrap_or(0);
            c.vol("n2", "invalidate r0")?;
            // Until the resync is under way, "in sync" is stale.
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.status("n1")["peers"][0]["replication"] == "Established"
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        c.wait_in_sync("n1", Duration::from_secs(900))?;
        let took = t0.elapsed();
        let moved = c.status("n1")["ns"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before);
        record(resync, "tandem", what, mib as f64, took, moved);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut seconds = 10u64;
    let mut size_mib = 1024u64;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().context("--seconds N")?.parse()?,
            "--size-mib" => size_mib = args.next().context("--size-mib M")?.parse()?,
            "--only" => {
                only = Some(
                    args.next()
                        .context("--only standalone,C,B,A,C-peer-tmpfs,resync")?
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            other => bail!(
                "unknown argument {other}; usage: volumes [--seconds S] [--size-mib M] [--only standalone,C,B,A,C-peer-tmpfs,resync]"
            ),
        }
    }
    // `--only` runs the named tandem variants' fio jobs and nothing else,
    // and keeps the results file as it is (a partial run is for profiling).
    let full = only.is_none();
    let want = |v: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == v));
    // `--only resync`: the resync rows and rsync's, without fio.
    let want_resync = full || want("resync");
    tandem_lab::netns::require_root()?;
    let exe = common::tandem_exe()?;
    let dir = tempfile::Builder::new()
        .prefix("tandem-bvol")
        .tempdir_in("/var/tmp")?;
    let d = dir.path().display().to_string();
    println!(
        "fio, {seconds} s per job, on {d} ({})",
        sh(&format!("df -h --output=source,fstype {d} | tail -1")).unwrap_or_default()
    );
    println!(
        "{:<28} {:>10} {:>12} {:>12} {:>9} {:>11}",
        "variant", "seq MiB/s", "QD1 p50 µs", "QD1 p99 µs", "QD1 IOPS", "CPU ms/MiB"
    );
    let mut fio_rows = Vec::new();
    if full {
        baseline_rows(&d, seconds, size_mib, &mut fio_rows)?;
    }
    // tandem: standalone, then A, B, C.
    let mut resync = Vec::new();
    for protocol in ["C", "B", "A"] {
        let wanted = want(protocol) || (protocol == "C" && (want("standalone") || want_resync));
        if !wanted {
            continue;
        }
        let c = Cluster::new(&exe, dir.path(), dir.path(), size_mib, protocol, false)?;
        c.up()?;
        let l = c.loop_device()?;
        if protocol == "C" && want("standalone") {
            c.vol("n1", "disconnect r0")?;
            fio_rows.push(row("tandem standalone", &l, seconds, size_mib, &c.pids()?)?);
            c.vol("n1", "connect r0")?;
            c.wait_in_sync("n1", Duration::from_secs(600))?;
        }
        if want(protocol) {
            fio_rows.push(row(
                &format!("tandem protocol {protocol}"),
                &l,
                seconds,
                size_mib,
                &c.pids()?,
            )?);
        }
        if protocol == "C" && want_resync {
            resync_rows(&c, &l, size_mib, &mut resync)?;
        }
        let _ = sh(&format!("losetup -d {l}"));
        c.down();
        drop(c);
    }
    // Protocol C with the peer's copy on a second device: a tmpfs stands
    // in for it (faster than any disk, so an upper bound). On this VM both
    // nodes otherwise share one virtual disk, which writes and flushes
    // every replicated byte twice.
    if want("C-peer-tmpfs") {
        let peer = dir.path().join("peer");
        std::fs::create_dir_all(&peer)?;
        sh(&format!(
            "mount -t tmpfs -o size={}M tandem-bvol-peer {}",
            size_mib + 64,
            peer.display()
        ))?;
        let run = || -> anyhow::Result<Row> {
            let c = Cluster::new(&exe, dir.path(), &peer, size_mib, "C", false)?;
            c.up()?;
            let l = c.loop_device()?;
            let r = row("tandem C, peer on tmpfs", &l, seconds, size_mib, &c.pids()?);
            let _ = sh(&format!("losetup -d {l}"));
            c.down();
            r
        };
        let r = run();
        let _ = sh(&format!("umount {}", peer.display()));
        fio_rows.push(r?);
    }
    if !want_resync {
        return Ok(());
    }
    if !full {
        // rsync's rows copy the baseline rows' file.
        sh(&format!("fallocate -l {size_mib}M {d}/plain.img"))?;
    }
    // Checksum-based resync (`csums = true`): the same full resync of a
    // copy that is in fact identical moves digests, not data.
    {
        let c = Cluster::new(&exe, dir.path(), dir.path(), size_mib, "C", true)?;
        c.up()?;
        let before = c.status("n1")["ns"].as_u64().unwrap_or(0);
        let t0 = Instant::now();
        // n2 says Inconsistent from the command's answer on, until the
        // resync is done.
        c.vol("n2", "invalidate r0")?;
        c.wait_in_sync("n2", Duration::from_secs(900))?;
        let took = t0.elapsed();
        c.wait_in_sync("n1", Duration::from_secs(60))?;
        let moved = c.status("n1")["ns"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before);
        let what = "full, checksums (identical)";
        record(&mut resync, "tandem", what, 0.0, took, moved);
        c.down();
    }
    // rsync of the same sizes (local delta transfer).
    for (what, mib) in [("1 % changed", size_mib / 100), ("all changed", size_mib)] {
        sh(&format!("cp --sparse=never {d}/plain.img {d}/copy.img"))?;
        let seek = if mib < size_mib { size_mib / 4 } else { 0 };
        sh(&format!(
            "dd if=/dev/urandom of={d}/plain.img bs=1M count={mib} seek={seek} conv=notrunc status=none"
        ))?;
        let t = Instant::now();
        let stats = sh(&format!(
            "rsync --inplace --no-whole-file --ignore-times --stats {d}/plain.img {d}/copy.img"
        ))?;
        let took = t.elapsed();
        let literal = stats
            .lines()
            .find(|l| l.starts_with("Literal data"))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().split(' ').next().unwrap_or("0").replace(',', ""))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        record(&mut resync, "rsync", what, mib as f64, took, literal / 1024);
    }
    if !full {
        return Ok(());
    }
    let path = common::write_results(
        "volumes",
        &Results {
            seconds,
            size_mib,
            fio: fio_rows,
            resync,
        },
    )?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
