//! The freeze drills. The active daemon is stopped (SIGSTOP) for three
//! deadtimes, then resumed. Its kernel lease silences its VIP while it is
//! frozen, the peer takes over, and on resuming it releases everything
//! first: the client settles on the peer at once and never hears the old
//! node again. An IPv6 VIP goes silent the same way (ping and neighbour
//! discovery from another host fail while the daemon is frozen). Needs
//! root, busybox and nftables.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::process::Command;
use std::time::Duration;

use tandem_lab::lab_cluster::{WebCluster, WebOptions, outage};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(15);

#[test]
fn a_frozen_active_daemon_goes_silent_and_releases_on_resume() {
    assert!(
        Command::new("nft").arg("--version").output().is_ok(),
        "this drill needs nftables (apt-get install nftables)"
    );
    let o = WebOptions {
        prefix: "tfrz".into(),
        subnet: 73,
        auto_failback: false,
        ..WebOptions::default()
    };
    let mut w = WebCluster::new(EXE.as_ref(), &o).expect("lab (needs root and busybox)");
    w.start_all().unwrap();
    w.start_probe().unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();

    let t = w.probe_now_ms();
    w.cluster.signal(0, libc::SIGSTOP).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    // Three deadtimes frozen in all.
    std::thread::sleep(Duration::from_millis(1000));
    w.cluster.signal(0, libc::SIGCONT).unwrap();
    w.cluster
        .wait_log(
            0,
            WAIT,
            &[
                "past this node's lease",
                "Releasing resource group web (lease lost while this daemon was frozen)",
                "Release completed",
            ],
        )
        .unwrap();
    // Let the client run a while after the thaw, then check it settled at once.
    std::thread::sleep(Duration::from_millis(1000));
    w.wait_served_by("n2", 50, Duration::from_secs(2)).unwrap();
    // Once n2 answered, n1 never answers again (requests stamped within
    // 50 ms of each other may be scheduled out of order on a busy machine).
    let samples = w.samples();
    let o = outage(&samples, t, "n1", "n2").unwrap();
    let late_n1 = samples
        .iter()
        .filter(|x| x.t_ms > o.first_new_ms + 50.0)
        .filter(|x| x.answer.as_deref() == Some("n1"))
        .count();
    assert_eq!(
        late_n1, 0,
        "the frozen node answered again after the takeover: {o:?}"
    );
    let show = Command::new("ip")
        .args(["-n", &w.lab.hosts[0].netns, "addr", "show", "eth0"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&show.stdout).contains(&w.vip),
        "the thawed node kept its VIP"
    );
}

/// Whether `from`'s namespace gets an answer to one ping of `to` within 300 ms.
fn pings(netns: &str, to: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", netns, "ping", "-6", "-n", "-q", "-c", "1", "-W", "0.3", to,
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `pred` every 20 ms for up to `within`.
fn eventually(within: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn an_ipv6_vip_goes_silent_by_itself_while_its_daemon_is_frozen() {
    let lab = tandem_lab::netns::Lab::new("tfr6", 75, &["n1", "n2"]).expect("lab (root needed)");
    let text = &tandem_lab::netns::vip_cluster_config("v6lease", 75, "fd00:75::200/64");
    let (n1, n2) = (&lab.hosts[0], &lab.hosts[1]);
    // Only n1 runs a daemon; n2 is the client, on the same IPv6 prefix.
    let ok = Command::new("ip")
        .args([
            "-n",
            &n2.netns,
            "addr",
            "add",
            "fd00:75::12/64",
            "dev",
            "eth0",
            "nodad",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut c = tandem_lab::loopback_cluster::LocalCluster::from_config(
        EXE.as_ref(),
        text,
        vec![(n1.name.clone(), n1.addr.clone(), Some(n1.netns.clone()))],
    )
    .unwrap();
    c.start(0).unwrap();
    c.wait_log(0, WAIT, &["kernel leases on 1 floating address"])
        .unwrap();
    c.wait_for(0, WAIT, "vip6 started", |s| {
        s.membership.groups[0].active_on == vec!["n1"]
    })
    .unwrap();
    assert!(
        eventually(WAIT, || pings(&n2.netns, "fd00:75::200")),
        "the IPv6 VIP never answered"
    );
    // Frozen: the lease (150 ms with the default timings) runs out and the
    // kernel stops answering on the VIP, the daemon cannot help it.
    c.signal(0, libc::SIGSTOP).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || !pings(&n2.netns, "fd00:75::200")),
        "the frozen node's IPv6 VIP kept answering"
    );
    // Neighbour discovery for it fails too: the advertisement would leave
    // from the VIP, and the lease rule drops it.
    let _ = Command::new("ip")
        .args(["-n", &n2.netns, "-6", "neigh", "flush", "dev", "eth0"])
        .status();
    assert!(!pings(&n2.netns, "fd00:75::200"));
    let neigh = Command::new("ip")
        .args(["-n", &n2.netns, "-6", "neigh", "show", "fd00:75::200"])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_string();
    assert!(
        !neigh.contains("REACHABLE") && !neigh.contains("STALE"),
        "n2 resolved the frozen node's VIP: {neigh}"
    );
    // Thawed: the daemon releases (lease lost), then, alone, takes the
    // group again under a new lease, and the VIP answers again.
    c.signal(0, libc::SIGCONT).unwrap();
    c.wait_log(0, WAIT, &["lease lost while this daemon was frozen"])
        .unwrap();
    assert!(
        eventually(WAIT, || pings(&n2.netns, "fd00:75::200")),
        "the IPv6 VIP did not come back after the thaw"
    );
}
