//! Two-node drills with a witness (scenario S5), in the lab: the client
//! namespace c1 doubles as the always-on witness (ICMP). Needs root,
//! busybox and ping; fails with a clear message otherwise.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::process::Command;
use std::time::Duration;

use tandem_core::PeerState;
use tandem_lab::lab_cluster::{WebCluster, WebOptions, outage};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(15);

fn web(prefix: &str, subnet: u8) -> WebCluster {
    let o = WebOptions {
        prefix: prefix.into(),
        subnet,
        extra_top: format!(
            "[witness]\naddresses = [\"198.18.{subnet}.100\"]\nkind = \"icmp\"\ntimeout = \"300ms\""
        ),
        ..WebOptions::default()
    };
    let mut w = WebCluster::new(EXE.as_ref(), &o).expect("lab (needs root and busybox)");
    w.start_all().unwrap();
    w.start_probe().unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
    w
}

/// The client's view of the switch from `old` to `new` since `since`: no
/// answer from `old` after `new` answered; the outage is printed.
fn no_dual_answers(w: &WebCluster, since: f64, old: &str, new: &str) {
    std::thread::sleep(Duration::from_millis(300));
    let o = outage(&w.samples(), since, old, new).expect("a switch seen by the client");
    assert_eq!(o.dual_answers, 0, "{old} answered after {new}: {o:?}");
    eprintln!("outage {:.0} ms, {} client errors", o.outage_ms, o.errors);
}

fn holds_vip(w: &WebCluster, i: usize) -> bool {
    let out = Command::new("ip")
        .args(["-n", &w.lab.hosts[i].netns, "addr", "show", "eth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&w.vip)
}

#[test]
fn the_side_that_reaches_the_witness_takes_over_the_other_waits() {
    let w = web("twit", 71);
    // n1's cable is pulled: it reaches neither n2 nor the witness.
    let t = w.probe_now_ms();
    w.lab.cable("n1", false).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    no_dual_answers(&w, t, "n1", "n2");
    let s = w
        .cluster
        .wait_for(0, WAIT, "n1 waiting", |s| {
            s.membership
                .waiting
                .as_deref()
                .is_some_and(|x| x.contains("witness unreachable"))
                && s.membership.groups[0].active_on.is_empty()
        })
        .unwrap();
    assert!(s.membership.waiting.unwrap().contains("force-primary"));
    assert!(!holds_vip(&w, 0), "the cut-off node kept its VIP");
    w.cluster
        .wait_log(0, WAIT, &["Witness unreachable: this node WAITS"])
        .unwrap();
    w.cluster.wait_log(1, WAIT, &["Witness reached"]).unwrap();
    let st = w.tandem(0, &["status"]).unwrap();
    assert!(st.contains("THIS NODE WAITS"), "{st}");
    // The cable is back: n1 rejoins, waits no more, and takes its group back.
    w.lab.cable("n1", true).unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
}

#[test]
fn witness_down_and_link_cut_both_wait_until_force_primary() {
    let w = web("twi2", 72);
    // Refused while the peer is reachable.
    let e = w
        .tandem(1, &["force-primary", "n2"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("reachable"), "{e}");
    // The witness goes away, then n1 is cut off: nobody reaches the witness.
    let t = w.probe_now_ms();
    w.lab.cable("c1", false).unwrap();
    w.lab.cable("n1", false).unwrap();
    w.cluster
        .wait_for(1, WAIT, "n2 sees n1 dead and waits", |s| {
            tandem_lab::loopback_cluster::LocalCluster::state_of(s, "n1") == Some(PeerState::Dead)
                && s.membership.waiting.is_some()
        })
        .unwrap();
    w.cluster
        .wait_for(0, WAIT, "n1 waits and stopped", |s| {
            s.membership.waiting.is_some() && s.membership.groups[0].active_on.is_empty()
        })
        .unwrap();
    assert!(
        !holds_vip(&w, 0) && !holds_vip(&w, 1),
        "someone kept or took the VIP"
    );
    // The operator checked that n1 is gone and picks n2.
    let said = w.tandem(1, &["force-primary", "n2"]).unwrap();
    assert!(said.contains("forced"), "{said}");
    w.cluster
        .wait_for(1, WAIT, "n2 runs the group", |s| {
            s.membership.groups[0].active_on == vec!["n2"]
                && s.membership.groups[0]
                    .resources
                    .iter()
                    .all(|r| r.state == tandem_core::ResourceState::Started)
        })
        .unwrap();
    assert!(holds_vip(&w, 1));
    w.lab.cable("c1", true).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    no_dual_answers(&w, t, "n1", "n2");
}
