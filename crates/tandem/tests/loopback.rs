//! Real daemons on loopback addresses: status, death after SIGKILL, rejoin
//! after restart, rejection of forged and replayed packets, and the CLI's
//! refusals. Needs no root; each test uses its own 127.0.K.0/24 subnet.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_core::PeerState;
use tandem_lab::loopback_cluster::{LocalCluster, Options};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(10);

fn cluster(subnet: u8, phantoms: usize) -> LocalCluster {
    LocalCluster::new(
        EXE.as_ref(),
        &Options {
            subnet,
            port: 7694,
            phantom_nodes: phantoms,
            ..Options::default()
        },
    )
    .expect("cluster files")
}

fn members(n: usize) -> impl Fn(&tandem_control::Status) -> bool {
    move |s| s.membership.members.len() == n
}

#[test]
fn status_death_after_sigkill_and_rejoin() {
    let mut c = cluster(31, 0);
    c.start_all().unwrap();
    let s = c.wait_for(0, WAIT, "both members", members(2)).unwrap();
    assert_eq!(s.membership.local, "n1");
    let n2 = &s.membership.nodes[1];
    assert_eq!(n2.state, PeerState::Online);
    assert_eq!(n2.links[0].name, "lo");
    let first_incarnation = n2.incarnation.unwrap();

    // The CLI prints the same, as a table and as JSON.
    let out = Command::new(EXE)
        .args(["status", "--socket"])
        .arg(&c.nodes[0].socket)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Members: n1, n2"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("n2") && l.contains("online") && l.contains("lo up")),
        "{text}"
    );
    let out = Command::new(EXE)
        .args(["status", "--json", "--socket"])
        .arg(&c.nodes[0].socket)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["membership"]["nodes"][1]["state"], "online");
    assert_eq!(json["membership"]["nodes"][1]["links"][0]["state"], "up");

    // Crash n2: n1 declares it dead (deadtime is 500 ms by default).
    let killed = Instant::now();
    c.kill(1).unwrap();
    let s = c
        .wait_for(0, WAIT, "n2 dead", |s| {
            LocalCluster::state_of(s, "n2") == Some(PeerState::Dead)
        })
        .unwrap();
    let took = killed.elapsed();
    assert_eq!(s.membership.members, vec!["n1"]);
    assert_eq!(
        s.membership.nodes[1].links[0].state,
        tandem_core::LinkState::Dead
    );
    assert!(
        took >= Duration::from_millis(350),
        "declared dead too early: {took:?}"
    );
    c.wait_log(
        0,
        WAIT,
        &[
            "Link n2:lo up",
            "No heartbeat from n2 for",
            "Link n2:lo dead",
            "n2 is dead",
        ],
    )
    .unwrap();

    // Restart: n1 sees it back with a larger incarnation.
    c.start(1).unwrap();
    let s = c
        .wait_for(0, WAIT, "n2 back", |s| {
            LocalCluster::state_of(s, "n2") == Some(PeerState::Online)
        })
        .unwrap();
    assert!(s.membership.nodes[1].incarnation.unwrap() > first_incarnation);
    c.wait_log(0, WAIT, &["n2 is back"]).unwrap();

    // Clean stop: n1 learns at once that n2 left.
    c.stop(1, WAIT).unwrap();
    c.wait_for(0, Duration::from_millis(400), "n2 left", |s| {
        LocalCluster::state_of(s, "n2") == Some(PeerState::Left)
    })
    .unwrap();
}

/// A configured but unstarted node `x1` gives the test a real socket that
/// receives the daemons' genuine heartbeats; it replays one and forges
/// others with a wrong key.
#[test]
fn forged_and_replayed_packets_are_rejected_and_counted() {
    let mut c = cluster(32, 1);
    let spy = UdpSocket::bind("127.0.32.200:7694").unwrap();
    spy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.start_all().unwrap();
    c.wait_for(0, WAIT, "both members", members(2)).unwrap();

    // Capture one of n2's genuine heartbeats (sent to x1 as to any peer),
    // a fresh one: those queued since start-up may predate n1 (a packet n1
    // never saw would be accepted once, late, which is no replay).
    let mut buf = [0u8; 2048];
    spy.set_nonblocking(true).unwrap();
    while spy.recv_from(&mut buf).is_ok() {}
    spy.set_nonblocking(false).unwrap();
    let deadline = Instant::now() + WAIT;
    let captured = loop {
        let (n, from) = spy.recv_from(&mut buf).expect("heartbeats reach x1");
        if from.ip().to_string() == "127.0.32.12" {
            break buf[..n].to_vec();
        }
        assert!(Instant::now() < deadline, "no heartbeat from n2 captured");
    };
    // Let n1 process the original and newer heartbeats first, so that every
    // copy below is a replay of something it has seen.
    let seen = c.status(0).unwrap().membership.stats.accepted;
    let before = c
        .wait_for(0, WAIT, "newer heartbeats", |s| {
            s.membership.stats.accepted >= seen + 2
        })
        .unwrap()
        .membership
        .stats;
    for _ in 0..3 {
        spy.send_to(&captured, "127.0.32.11:7694").unwrap();
    }

    // Forge: a well-formed packet from "x1" signed with the wrong key, one
    // for another cluster, and garbage.
    let wrong = tandem_wire::Keyring::single(tandem_wire::Key::new(1, b"not the key").unwrap());
    let forged = tandem_wire::encode(
        &tandem_wire::Packet {
            kind: tandem_wire::PacketKind::Heartbeat,
            link: 0,
            cluster: tandem_wire::cluster_id("local32"),
            sender: 3,
            incarnation: 1,
            seq: 1,
            state: tandem_wire::NodeState::Online,
            view: vec![],
            config_digest: 0,
            groups: vec![],
            settings: None,
            echo: tandem_wire::Echo::None,
        },
        &wrong,
    );
    spy.send_to(&forged, "127.0.32.11:7694").unwrap();
    spy.send_to(b"GET / HTTP/1.0\r\n\r\n", "127.0.32.11:7694")
        .unwrap();

    let s = c
        .wait_for(0, WAIT, "rejections counted", |s| {
            let st = &s.membership.stats;
            st.replayed >= before.replayed + 3 && st.bad_mac >= 1 && st.bad_magic >= 1
        })
        .unwrap();
    // Nothing forged made x1 a member, and n2 stayed up.
    assert_eq!(s.membership.members, vec!["n1", "n2"]);
    assert_ne!(LocalCluster::state_of(&s, "x1"), Some(PeerState::Online));
    c.wait_log(
        0,
        WAIT,
        &[
            "Rejected datagram on lo: bad MAC",
            "Rejected datagram on lo: replayed or duplicate",
            "Rejected datagram on lo: not a tandem packet",
        ],
    )
    .unwrap();
}

#[test]
fn status_without_daemon_exits_3_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(EXE)
        .args(["status", "--socket"])
        .arg(dir.path().join("none.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no tandem daemon is running"), "{err}");
}

#[test]
fn config_check_reports_file_line_column() {
    let c = cluster(33, 0);
    let out = Command::new(EXE)
        .args(["config", "check"])
        .arg(&c.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK — cluster `local33`, 2 node(s)"));

    let bad = c.dir().join("bad.toml");
    let text = std::fs::read_to_string(&c.config)
        .unwrap()
        .replace("kind = \"ucast\"", "kind = \"serial\"");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(EXE)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:11:8: error: unknown link kind `serial`",
            bad.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: use \"ucast\", \"bcast\" or \"mcast\""),
        "{err}"
    );
}

#[test]
fn daemon_refuses_bad_key_permissions_and_invalid_config() {
    let c = cluster(34, 0);
    std::fs::set_permissions(&c.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(EXE)
        .args(["daemon", "--node", "n1", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad permissions on key file") && err.contains("chmod 600"),
        "{err}"
    );

    std::fs::set_permissions(&c.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(EXE)
        .args(["daemon", "--node", "nobody", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node `nobody` is not in") && err.contains("nodes: n1, n2"),
        "{err}"
    );

    std::fs::write(&c.config, "cluster = 5\n").unwrap();
    let out = Command::new(EXE)
        .args(["daemon", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tandem.toml:1:11: error: invalid type"),
        "{err}"
    );
}

#[test]
fn import_heartbeat_s4_and_refuse_crc_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("ha.cf"),
        "use_logd on\nkeepalive 2\ndeadtime 30\nwarntime 10\ninitdead 120\nudpport 694\nucast enp0s8 192.168.56.101\nucast enp0s8 192.168.56.102\nauto_failback on\nnode SwapNginxActive\nnode SwapNginxPassive\n",
    )
    .unwrap();
    std::fs::write(
        d.join("haresources"),
        "SwapNginxActive 192.168.56.200/24/enp0s8 nginx\n",
    )
    .unwrap();
    std::fs::write(d.join("authkeys"), "auth 1\n1 crc\n").unwrap();
    std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(EXE)
        .args(["import", "heartbeat"])
        .arg(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        toml.contains("peers = [\"192.168.56.101\", \"192.168.56.102\"]"),
        "{toml}"
    );
    assert!(
        toml.contains("initdead = \"120000ms\"  # ha.cf line 5"),
        "{toml}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`use_logd` is ignored"), "{err}");
    assert!(err.contains("NOT authenticated"), "{err}");
    let native = d.join("tandem.toml");
    std::fs::write(&native, &toml).unwrap();
    let check = Command::new(EXE)
        .args(["config", "check"])
        .arg(&native)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // crc authenticates nothing: the daemon refuses it unless told otherwise.
    let out = Command::new(EXE)
        .args(["daemon", "--node", "swapnginxactive", "--heartbeat-dir"])
        .arg(d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-insecure-crc"), "{err}");
    // A key file readable by others is refused too, with the fix.
    std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(EXE)
        .args(["import", "heartbeat"])
        .arg(d)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

/// Issue 12, finding 4: the receive loop drained its socket without limit,
/// so a flood of junk (no key needed) could starve timers and heartbeats.
/// Two threads blast junk at n1 as fast as they can for 5 s: n1's timers
/// stay on time and n2 never declares it dead. (On loopback the flood and the heartbeats share the kernel's
/// per-CPU backlog, so a flood the receiver cannot keep up with also drops
/// n1's own heartbeats on their way to n2: this test stays at a rate the
/// receiver keeps up with, and checks nothing regresses there.)
#[test]
fn a_flood_of_junk_delays_no_heartbeat() {
    let mut c = LocalCluster::new(
        EXE.as_ref(),
        &Options {
            subnet: 35,
            port: 7694,
            realtime: true,
            ..Options::default()
        },
    )
    .expect("cluster files");
    c.start_all().unwrap();
    c.wait_for(1, WAIT, "both members", members(2)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let blasters: Vec<_> = (0..2)
        .map(|k| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let s = UdpSocket::bind(format!("127.0.35.{}:0", 200 + k)).unwrap();
                // Junk that fails the first checks: no key is needed to
                // send it, and a socket can be flooded with it.
                let mut junk = [0u8; 200];
                junk[..4].copy_from_slice(b"TNDM");
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    junk[8] = junk[8].wrapping_add(1);
                    if s.send_to(&junk, "127.0.35.11:7694").is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    // A stall of the whole virtual machine delays every timer alike; the
    // probe (SCHED_FIFO 99) tells it apart from the daemon's own lateness.
    let probe = tandem_lab::stall::Probe::start(Duration::from_millis(10));
    let end = Instant::now() + Duration::from_secs(5);
    let mut worst = Duration::ZERO;
    while Instant::now() < end {
        let s = c.status(1).unwrap();
        let n1 = s.membership.nodes.iter().find(|n| n.name == "n1").unwrap();
        assert!(n1.state.is_member(), "n2 declared n1 dead during the flood");
        if let Some(ms) = n1.last_heard_ms {
            worst = worst.max(Duration::from_millis(ms));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (realtime, stalls) = probe.stop();
    let stall = stalls.iter().map(|s| s.gap).max().unwrap_or_default();
    let sent: u64 = blasters.into_iter().map(|b| b.join().unwrap()).sum();
    let s = c.status(0).unwrap();
    let rejected = s.membership.stats.rejected();
    let lateness = s.membership.stats.max_timer_lateness_us;
    eprintln!(
        "flood: {sent} datagrams sent in 5 s ({} per second), {rejected} rejected by n1; n1's heartbeats at most {worst:?} apart as n2 saw them; n1's worst timer lateness {lateness} µs",
        sent / 5
    );
    assert!(rejected > 10_000, "the flood did not reach n1: {rejected}");
    // What the daemon controls: its timers stay on time (heartbeats every
    // 100 ms), unless the machine itself stalled as long (CI saw 50.2 ms
    // once). How far apart n2 heard them also depends on the kernel's
    // loopback backlog, which the flood shares with them: reported only.
    let explained =
        realtime && stall + Duration::from_millis(10) >= Duration::from_micros(lateness);
    assert!(
        lateness < 50_000 || explained,
        "n1's heartbeat thread was {lateness} µs late under the flood; the machine's longest stall {stall:?} (probe real-time: {realtime})"
    );
}

/// Runs `tandem ARGS --socket SOCKET` as uid 65534 with primary group `gid`
/// and the supplementary `groups`, through setpriv; returns (success,
/// stdout + stderr).
fn as_user(gid: u32, groups: &str, socket: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", &format!("--regid={gid}")]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={groups}"));
    }
    let out = cmd
        .arg(EXE)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("setpriv (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Issue 12, finding 9: local access is decided from the peer's kernel
/// credentials. With `read_group = "nogroup"` and `admin_group = "staff"`:
/// an unprivileged user in neither group gets nothing, one in the read
/// group gets `status` only, one in the admin group may change things.
/// Needs root (setpriv).
#[test]
fn local_users_get_what_their_group_allows_and_no_more() {
    let mut c = cluster(36, 0);
    let mut text = std::fs::read_to_string(&c.config).unwrap();
    text.push_str("\n[control]\nadmin_group = \"staff\"\nread_group = \"nogroup\"\n");
    std::fs::write(&c.config, text).unwrap();
    // The socket lives in the cluster's folder: let others reach it.
    std::fs::set_permissions(c.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    c.start_all().unwrap();
    c.wait_for(0, WAIT, "both members", members(2)).unwrap();
    let socket = c.nodes[0].socket.clone();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o666,
        "groups are let in: the kernel credentials decide"
    );

    // In no allowed group (gid 1, daemon): nothing.
    let (ok, out) = as_user(1, "", &socket, &["status"]);
    assert!(!ok && out.contains("permission denied"), "{out}");
    assert!(out.contains("group `nogroup` for `tandem status`"), "{out}");
    // The read group: status, but no change.
    let (ok, out) = as_user(65534, "", &socket, &["status"]);
    assert!(ok && out.contains("Members: n1, n2"), "{out}");
    for change in [
        vec!["standby", "n2"],
        vec!["cleanup", "web"],
        vec!["move", "web", "n2"],
        vec!["force-primary", "n1"],
    ] {
        let (ok, out) = as_user(65534, "", &socket, &change);
        assert!(!ok, "{change:?} allowed to the read group: {out}");
        assert!(
            out.contains("permission denied") && out.contains("group `staff`"),
            "{change:?}: {out}"
        );
    }
    // The admin group may change things (standby, then back).
    let (ok, out) = as_user(65534, "50", &socket, &["standby", "n2"]);
    assert!(ok, "{out}");
    let (ok, out) = as_user(65534, "50", &socket, &["unstandby", "n2"]);
    assert!(ok, "{out}");
}

/// Issue 12, finding 15: logrotate renames ha.cf's `logfile`; SIGHUP makes
/// the daemon reopen it by name (the package's postrotate sends it), so
/// lines go to the new file, not the renamed one.
#[test]
fn sighup_reopens_the_logfile_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("ha-log");
    std::fs::write(
        d.join("ha.cf"),
        format!(
            "keepalive 1\ndeadtime 10\ninitdead 10\nudpport 7791\nucast lo 127.0.0.1\nlogfile {}\nnode n1\nnode n2\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::write(d.join("haresources"), "").unwrap();
    std::fs::write(
        d.join("authkeys"),
        "auth 1\n1 sha1 a-long-enough-test-secret\n",
    )
    .unwrap();
    std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut daemon = Command::new(EXE)
        .args(["daemon", "--node", "n1", "--heartbeat-dir"])
        .arg(d)
        .arg("--socket")
        .arg(d.join("n1.sock"))
        .arg("--state-dir")
        .arg(d.join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    tandem_lab::poll::until(
        Duration::from_secs(20),
        "the daemon's start in ha-log",
        || read(&log).contains("started (incarnation"),
    );
    std::fs::rename(&log, d.join("ha-log.1")).unwrap();
    tandem::process::signal(daemon.id(), libc::SIGHUP).unwrap();
    tandem_lab::poll::until(Duration::from_secs(10), "a new ha-log after SIGHUP", || {
        read(&log).contains("SIGHUP: log file")
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        !read(&d.join("ha-log.1")).contains("SIGHUP"),
        "the renamed file got the new lines"
    );
    assert!(read(&d.join("ha-log.1")).contains("started (incarnation"));
}
