//! Volumes in the cluster (issue 11). S1's and S3's users change nothing: Heartbeat's ha.cf,
//! authkeys and a haresources line `n1 drbddisk::r0
//! Filesystem::/dev/drbd0::DIR::ext4 IPaddr::VIP/24/eth0`, with the
//! workshop's DRBD resource file (protocol C, `meta-disk internal`, two
//! `on` sections, port 7788) in the sibling drbd.d, each node reading its
//! own copies at /etc/ha.d and /etc/drbd.d. `tandem daemon --heartbeat-dir
//! /etc/ha.d` runs the volume, `/dev/drbd0` and the real Filesystem agent;
//! a file written on n1 is on n2 after n1 is powered off. And a cable cut
//! with no witness, both sides writing: when the cable returns the cluster
//! stops the group on one side, and the volumes' split brain is resolved
//! by `after_sb_1pri = "discard-secondary"` (that side's changes go),
//! never merged. And `fencing = "resource-and-stonith"`: with the
//! replication link alone cut, the primary's writes freeze until the
//! cut-off copy is outdated (its heartbeats say so), then go on; no
//! failover, and n2 resyncs when the link returns. And S3's two volumes
//! (r0 protocol C for data, r1 protocol A for logs) in one group fail over
//! together. Needs root,
//! resource-agents, kmod, e2fsprogs, nftables.

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_lab::volume_cluster::{Mode, VolumeCluster, text};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

#[test]
fn heartbeat_and_drbd_files_run_unchanged_and_fail_over() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = VolumeCluster::new(Path::new(EXE), "tdhf", 83, Mode::Heartbeat).expect("lab");
    c.bring_up().expect("bring up");
    // `tandem status` shows the volume on both nodes (its copy of the
    // volume's state is up to 200 ms old).
    c.wait_status(
        0,
        &[
            "Volume r0: Primary UpToDate on n1",
            "Connected Established Secondary UpToDate",
        ],
        Duration::from_secs(5),
    )
    .expect("status");
    // The group runs on n1 with /dev/drbd0 mounted where haresources says.
    let d = c.dir.display().to_string();
    let o = c
        .in_volume_ns(
            0,
            &format!("grep -q ' {d}/data ext4 ' /proc/mounts; cat {d}/data/hello; echo written-on-n1 > {d}/data/note; sync"),
        )
        .expect("nsenter");
    assert!(
        o.status.success() && text(&o).contains("tandem"),
        "n1 does not have the volume mounted: {}\n{}",
        text(&o),
        c.log_tail(0)
    );
    assert!(
        std::fs::read_link("/dev/drbd0").is_ok(),
        "/dev/drbd0 must point at the primary's loop device"
    );
    c.power_off(0).expect("power off n1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = c
            .in_volume_ns(1, &format!("cat {d}/data/note"))
            .expect("nsenter");
        if o.status.success() && text(&o).contains("written-on-n1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 never mounted the volume with n1's file: {}\n{}",
            text(&o),
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.group_on(1), vec!["n2".to_string()]);
}

/// One test at a time: each runs two daemons and two volumes.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_cable_cut_with_both_sides_writing_is_resolved_by_the_policy() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = VolumeCluster::new(Path::new(EXE), "tdsb", 84, Mode::Native { postgres: false })
        .expect("lab");
    c.bring_up().expect("bring up");
    let d = c.dir.display().to_string();
    // Only on the mounted volume (the bare mount point is the host's).
    let on_fs = |cmd: &str| format!("grep -q ' {d}/data ext4 ' /proc/mounts; {cmd}");
    c.sh(0, &on_fs(&format!("echo before > {d}/data/a; sync")))
        .expect("write a");
    // Cut n1 off. Without a witness both sides now believe they are the
    // survivor (the two-node split brain a witness prevents): n1 goes on
    // writing, n2 takes over and writes too.
    c.lab.cable("n1", false).expect("cut");
    c.sh(0, &on_fs(&format!("echo n1-alone > {d}/data/cut; sync")))
        .expect("n1 writes after the cut");
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.group_on(1) != ["n2"] {
        assert!(
            Instant::now() < deadline,
            "n2 never took over:\n{}",
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .sh(1, &on_fs(&format!("echo n2-alone > {d}/data/b; sync")))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "n2 cannot write:\n{}",
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The cable returns: one split brain, resolved by the policy.
    c.lab.cable("n1", true).expect("plug");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s0 = c.vstatus(0);
        let s1 = c.vstatus(1);
        let synced = |s: &serde_json::Value| {
            s["disk"] == "UpToDate"
                && s["peers"][0]["replication"] == "Established"
                && s["peers"][0]["out_of_sync_kib"] == 0
        };
        if synced(&s0) && synced(&s1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never back in sync: {s0:#} {s1:#}\n{}\n{}",
            c.log_tail(0),
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The cluster stopped the group on one side, whose volume became
    // secondary: the policy discards that side's changes.
    let discarded = |i: usize| {
        std::fs::read_to_string(c.state(i).join("volumes/r0.log"))
            .unwrap_or_default()
            .contains(
                "split brain resolved by after-sb-1pri discard-secondary: this node's changes",
            )
    };
    let (lost, kept) = match (discarded(0), discarded(1)) {
        (true, false) => ("cut", "b"),
        (false, true) => ("b", "cut"),
        other => panic!(
            "exactly one side must have been discarded by the policy: {other:?}\n{}\n{}",
            c.log_tail(0),
            c.log_tail(1)
        ),
    };
    // Both sides ran the DRBD-style handler, with DRBD's environment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = std::fs::read_to_string(c.dir.join("handlers.log")).unwrap_or_default();
        if h.contains("initial-split-brain r0 n2 198.18.84.12")
            && h.contains("initial-split-brain r0 n1 198.18.84.11")
        {
            break;
        }
        assert!(Instant::now() < deadline, "handlers not run: {h:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Wherever the group runs now, it has the kept side's data and none
    // of the discarded side's: never a merge.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let on = c.group_on(0);
        if on.len() == 1 {
            let i = if on[0] == "n1" { 0 } else { 1 };
            if let Ok(out) = c.sh(
                i,
                &on_fs(&format!(
                    "cat {d}/data/a {d}/data/{kept}; test ! -e {d}/data/{lost} && echo gone"
                )),
            ) {
                assert!(
                    out.contains("before") && out.contains("alone") && out.contains("gone"),
                    "{out}"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle:\n{}\n{}",
            c.log_tail(0),
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn resource_and_stonith_freezes_the_primary_until_the_cut_off_copy_is_outdated() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = VolumeCluster::new(Path::new(EXE), "tdrs", 85, Mode::Native { postgres: false })
        .expect("lab");
    let cfg = std::fs::read_to_string(&c.cluster.config).expect("config");
    let cfg = cfg.replacen(
        "after_sb_1pri = \"discard-secondary\"\n",
        "after_sb_1pri = \"discard-secondary\"\nfencing = \"resource-and-stonith\"\n",
        1,
    );
    // A snapshot script's stand-in: the resync must wait for it.
    let d = c.dir.display().to_string();
    let cfg = cfg.replacen(
        "[volume.handlers]\n",
        &format!("[volume.handlers]\n\"before-resync-target\" = \"sleep 1; date -u +%H:%M:%S.%N > {d}/snapshot-$DRBD_PEER\"\n"),
        1,
    );
    assert!(cfg.contains("resource-and-stonith") && cfg.contains("snapshot-"));
    std::fs::write(&c.cluster.config, cfg).expect("config");
    c.bring_up().expect("bring up");
    let on_fs = |cmd: &str| format!("grep -q ' {d}/data ext4 ' /proc/mounts; {cmd}");
    c.sh(0, &on_fs(&format!("echo before > {d}/data/a; sync")))
        .expect("write a");
    // The replication link alone is cut (the heartbeats still flow): n1
    // notices after 1.5 s of silence, freezes its IO, and n2 — still a
    // member, seeing n1 run the group without it — outdates its copy
    // after the grace; its heartbeats say so and n1's IO goes on.
    c.lab
        .block_tcp_port("n1", 7789, true)
        .expect("cut the replication port");
    let start = Instant::now();
    let writer = {
        let script = on_fs(&format!(
            "dd if=/dev/urandom of={d}/data/during bs=4k count=4 oflag=direct conv=fsync 2>/dev/null; echo during-done"
        ));
        let pid = c.volume_pid(0).expect("n1's volume process");
        std::thread::spawn(move || {
            let o = std::process::Command::new("nsenter")
                .args(["-t", &pid, "-m", "--", "sh", "-ec", &script])
                .output()
                .expect("nsenter");
            (start.elapsed(), text(&o))
        })
    };
    // While suspended, both the volume's status and the daemon's (its
    // watcher's copy, up to 200 ms old) say so.
    let (mut saw_suspended, mut daemon_said) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !writer.is_finished() {
        let s = c.vstatus(0);
        if s["suspended_for"][0] == "n2" {
            saw_suspended = true;
            let st = c.tandem(0, &["status"]).unwrap_or_default();
            daemon_said |= st.contains("IO SUSPENDED until n2 is outdated or fenced");
        }
        assert!(
            Instant::now() < deadline,
            "the write never finished: {s:#}\n{}\n{}",
            c.log_tail(0),
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (took, out) = writer.join().expect("writer");
    assert!(daemon_said, "`tandem status` never showed the suspension");
    assert!(out.contains("during-done"), "{out}");
    assert!(
        saw_suspended,
        "n1's status never said suspended_for n2 (the write took {took:?}): {:#}\n{}\n{}",
        c.vstatus(0),
        std::fs::read_to_string(c.state(0).join("volumes/r0.log")).unwrap_or_default(),
        c.log_tail(0)
    );
    let log0 = std::fs::read_to_string(c.state(0).join("volumes/r0.log")).unwrap_or_default();
    for want in ["IO suspended", "as its heartbeats say", "IO resumed"] {
        assert!(
            log0.contains(want),
            "no `{want}` in n1's volume log:\n{log0}"
        );
    }
    assert_eq!(c.vstatus(1)["disk"], "Outdated", "{:#}", c.vstatus(1));
    eprintln!(
        "a write across the replication cut took {took:?} (a silent link found in 1.5 s, then the grace)"
    );
    // No failover meanwhile; the link returns and n2 resyncs from n1.
    assert_eq!(c.group_on(0), vec!["n1".to_string()]);
    c.lab
        .block_tcp_port("n1", 7789, false)
        .expect("restore the port");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s1 = c.vstatus(1);
        if s1["disk"] == "UpToDate"
            && s1["peers"][0]["replication"] == "Established"
            && c.vstatus(0)["suspended_for"]
                .as_array()
                .is_some_and(Vec::is_empty)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 never resynced: {s1:#}\n{}",
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // n2's resync began only once its before-resync-target handler ended
    // (bring_up's initial sync ran it too: the last run is this one).
    let ended = std::fs::read_to_string(c.dir.join("snapshot-n1")).unwrap_or_default();
    let ended = tandem_lab::stall::log_second_of_day(&format!("2026-01-01T{}", ended.trim()));
    let log1 = std::fs::read_to_string(c.state(1).join("volumes/r0.log")).unwrap_or_default();
    let started = log1
        .lines()
        .rev()
        .filter(|l| l.contains("resync started, receiving"))
        .find_map(tandem_lab::stall::log_second_of_day);
    assert!(log1.contains("before-resync-target runs first"), "{log1}");
    match (ended, started) {
        (Some(e), Some(s)) => assert!(
            s >= e,
            "the resync started at {s} before the handler ended at {e}"
        ),
        other => panic!("handler end / resync start not found: {other:?}\n{log1}"),
    }
}

#[test]
fn two_volumes_with_different_protocols_fail_over_together() {
    // S3's layout: r0 synchronous (protocol C) for the data, r1
    // asynchronous (protocol A) for the logs, one group.
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = VolumeCluster::new(Path::new(EXE), "tdtv", 88, Mode::TwoVolumes).expect("lab");
    c.bring_up().expect("bring up");
    for (v, protocol) in [("r0", "C"), ("r1", "A")] {
        let s = c.vstatus_of(0, v);
        assert!(
            s["role"] == "Primary" && s["peers"][0]["protocol"] == protocol,
            "{v}: {s:#}"
        );
    }
    // `tandem status` shows both (its copy of the volumes' state is up
    // to 200 ms old).
    c.wait_status(
        0,
        &[
            "Volume r0: Primary UpToDate on n1",
            "Volume r1: Primary UpToDate on n1",
        ],
        Duration::from_secs(5),
    )
    .expect("status");
    let d = c.dir.display().to_string();
    c.sh(
        0,
        &format!(
            "grep -q ' {d}/data ext4 ' /proc/mounts; grep -q ' {d}/logs ext4 ' /proc/mounts; echo row > {d}/data/row; echo line > {d}/logs/line; sync"
        ),
    )
    .expect("write on both volumes");
    c.power_off(0).expect("power off n1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = c
            .in_volume_ns(1, &format!("cat {d}/data/row {d}/logs/line"))
            .expect("nsenter");
        if o.status.success() && text(&o).contains("row") && text(&o).contains("line") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 never mounted both volumes with n1's files: {}\n{}",
            text(&o),
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.group_on(1), vec!["n2".to_string()]);
    for v in ["r0", "r1"] {
        assert_eq!(c.vstatus_of(1, v)["role"], "Primary", "{v}");
    }
}
