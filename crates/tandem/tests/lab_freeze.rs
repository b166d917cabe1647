//! The freeze drill: the active daemon is stopped (SIGSTOP) for three
//! deadtimes, then resumed. Its kernel lease silences its VIP while it is
//! frozen, the peer takes over, and on resuming it releases everything
//! first: the client settles on the peer at once and never hears the old
//! node again. Needs root, busybox and nftables.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::process::Command;
use std::time::Duration;

use tandem::labcluster::{WebCluster, WebOptions, outage};

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
