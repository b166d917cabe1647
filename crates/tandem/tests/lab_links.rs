//! Broadcast and multicast links between real daemons in network
//! namespaces (the lab). Needs root: fails with a clear message otherwise.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::{Duration, Instant};

use tandem_core::{LinkState, PeerState};
use tandem_lab::loopback_cluster::LocalCluster;
use tandem_lab::netns::Lab;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(10);

fn config(subnet: u8) -> String {
    format!(
        r#"cluster = "lab{subnet}"
key_file = "authkey"
state_dir = "state"
realtime = false

[[link]]
name = "b"
kind = "bcast"
interface = "eth0"

[[link]]
name = "m"
kind = "mcast"
interface = "eth0"
group = "239.192.0.7"
port = 695

[[node]]
name = "n1"
addresses = {{ m = "198.18.{subnet}.11" }}

[[node]]
name = "n2"
addresses = {{ m = "198.18.{subnet}.12" }}
"#
    )
}

#[test]
fn broadcast_and_multicast_links_carry_heartbeats_and_a_pulled_cable_kills() {
    let lab = Lab::new("tdbm", 41, &["n1", "n2"]).expect("lab (root needed)");
    let nodes = lab
        .hosts
        .iter()
        .map(|h| (h.name.clone(), h.addr.clone(), Some(h.netns.clone())))
        .collect();
    let mut c = LocalCluster::from_config(EXE.as_ref(), &config(41), nodes).unwrap();
    c.start_all().unwrap();
    let both_links_up = |s: &tandem_control::Status| {
        s.membership.nodes[1].state == PeerState::Online
            && s.membership.nodes[1].links.len() == 2
            && s.membership.nodes[1]
                .links
                .iter()
                .all(|l| l.state == LinkState::Up)
    };
    let s = c
        .wait_for(0, WAIT, "n2 on bcast and mcast", both_links_up)
        .unwrap();
    assert_eq!(s.membership.members, vec!["n1", "n2"]);
    let s2 = c
        .wait_for(1, WAIT, "n1 on both links", |s| {
            s.membership.nodes[0]
                .links
                .iter()
                .all(|l| l.state == LinkState::Up)
        })
        .unwrap();
    assert_eq!(s2.membership.stats.bad_mac, 0);
    // Our own broadcasts come back to us; they are recognised, not rejected.
    assert_eq!(
        s2.membership.stats.rejected(),
        0,
        "{:?}",
        s2.membership.stats
    );

    // Pull n2's cable: n1 declares it dead, and both links dead.
    let pulled = Instant::now();
    lab.cable("n2", false).unwrap();
    let s = c
        .wait_for(0, WAIT, "n2 dead", |s| {
            LocalCluster::state_of(s, "n2") == Some(PeerState::Dead)
        })
        .unwrap();
    assert!(pulled.elapsed() >= Duration::from_millis(350));
    assert!(
        s.membership.nodes[1]
            .links
            .iter()
            .all(|l| l.state == LinkState::Dead)
    );
    lab.cable("n2", true).unwrap();
    c.wait_for(0, WAIT, "n2 back", |s| {
        LocalCluster::state_of(s, "n2") == Some(PeerState::Online)
    })
    .unwrap();
    c.wait_log(
        0,
        WAIT,
        &[
            "Link n2:eth0/b up",
            "Link n2:eth0/m up",
            "Link n2:eth0/b dead",
            "n2 is dead",
            "n2 is back",
        ],
    )
    .unwrap();
}
