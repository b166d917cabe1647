//! Real OCF resource agents from Debian's resource-agents package
//! (`ocf:heartbeat:IPaddr2` and `ocf:heartbeat:Dummy`) run by a daemon in a
//! lab namespace: start, monitor and stop with the standard environment.
//! Needs root and resource-agents; fails with a clear message otherwise.

use std::process::Command;
use std::time::Duration;

use tandem_core::ResourceState;
use tandem_lab::loopback_cluster::LocalCluster;
use tandem_lab::netns::Lab;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn ocf_ipaddr2_and_dummy_start_monitor_and_stop() {
    assert!(
        std::path::Path::new("/usr/lib/ocf/resource.d/heartbeat/IPaddr2").exists(),
        "this test needs Debian's resource-agents package (apt-get install resource-agents)"
    );
    let lab = Lab::new("tdocf", 67, &["n1", "n2"]).expect("lab (root needed)");
    let state = tempfile::tempdir().unwrap();
    let dummy_state = state.path().join("dummy.state");
    let text = format!(
        r#"{}[[group]]
name = "db"
[[group.resource]]
name = "ip"
agent = "ocf:heartbeat:IPaddr2"
params = {{ ip = "198.18.67.201", cidr_netmask = 24, nic = "eth0" }}
monitor = "1s"
[[group.resource]]
name = "dummy"
agent = "ocf:heartbeat:Dummy"
params = {{ state = "{}" }}
monitor = "1s"
"#,
        tandem_lab::netns::two_node_config("ocf", 67),
        dummy_state.display()
    );
    let h = &lab.hosts[0];
    // Only n1 runs: n2 is declared dead after initdead and n1 starts the group.
    let mut c = LocalCluster::from_config(
        EXE.as_ref(),
        &text,
        vec![(h.name.clone(), h.addr.clone(), Some(h.netns.clone()))],
    )
    .unwrap();
    c.start(0).unwrap();
    let s = c
        .wait_for(0, WAIT, "db started", |s| {
            s.membership.groups[0]
                .resources
                .iter()
                .all(|r| r.state == ResourceState::Started)
        })
        .unwrap();
    assert_eq!(s.membership.groups[0].active_on, vec!["n1"]);
    let show = |ns: &str| {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-n", ns, "addr", "show", "eth0"])
                .output()
                .unwrap()
                .stdout,
        )
        .to_string()
    };
    assert!(
        show(&h.netns).contains("198.18.67.201/24"),
        "{}",
        show(&h.netns)
    );
    assert!(dummy_state.exists(), "Dummy did not create its state file");
    // Timeouts not configured come from the agent's meta-data; the
    // configured monitor interval (1 s) wins over its 10 s.
    c.wait_log(
        0,
        WAIT,
        &["db/dummy: timings from ocf:heartbeat:Dummy meta-data where not configured: start 20.0 s, stop 20.0 s, monitor every 1.0 s (timeout 20.0 s)"],
    )
    .unwrap();

    // Monitors keep passing for a few intervals.
    std::thread::sleep(Duration::from_millis(2500));
    let s = c.status(0).unwrap();
    assert!(
        s.membership.groups[0]
            .resources
            .iter()
            .all(|r| r.fail_count == 0),
        "{:?}",
        s.membership.groups
    );

    // The Dummy "service" dies: the monitor (exit 7) notices, it restarts.
    std::fs::remove_file(&dummy_state).unwrap();
    c.wait_for(0, WAIT, "dummy restarted", |s| {
        let r = &s.membership.groups[0].resources[1];
        r.fail_count == 1 && r.state == ResourceState::Started
    })
    .unwrap();
    assert!(dummy_state.exists());

    // A clean stop releases everything through the agents' stop actions.
    c.stop(0, WAIT).unwrap();
    assert!(
        !show(&h.netns).contains("198.18.67.201"),
        "{}",
        show(&h.netns)
    );
    assert!(!dummy_state.exists());
}

/// An IPv6 floating address: added without duplicate address detection,
/// announced with unsolicited neighbour advertisements, removed on stop.
#[test]
fn ipv6_floating_address_is_added_announced_and_removed() {
    let lab = Lab::new("tdv6", 79, &["n1", "n2"]).expect("lab (root needed)");
    let text = &tandem_lab::netns::vip_cluster_config("v6", 79, "fd00:18::200/64");
    let h = &lab.hosts[0];
    let mut c = LocalCluster::from_config(
        EXE.as_ref(),
        text,
        vec![(h.name.clone(), h.addr.clone(), Some(h.netns.clone()))],
    )
    .unwrap();
    c.start(0).unwrap();
    c.wait_for(0, WAIT, "vip6 started", |s| {
        s.membership.groups[0].resources[0].state == ResourceState::Started
    })
    .unwrap();
    let show = || {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-n", &h.netns, "-6", "addr", "show", "eth0"])
                .output()
                .unwrap()
                .stdout,
        )
        .to_string()
    };
    assert!(show().contains("fd00:18::200/64"), "{}", show());
    let line = show()
        .lines()
        .find(|l| l.contains("fd00:18::200"))
        .unwrap()
        .to_string();
    assert!(
        !line.contains("tentative") && line.contains("nodad"),
        "{line}"
    );
    // Monitors (which re-announce) keep passing; no announcement failed.
    std::thread::sleep(Duration::from_millis(1500));
    let s = c.status(0).unwrap();
    assert_eq!(s.membership.groups[0].resources[0].fail_count, 0);
    let log = std::fs::read_to_string(&c.nodes[0].log).unwrap();
    assert!(!log.contains("announcing"), "{log}");
    c.stop(0, WAIT).unwrap();
    assert!(!show().contains("fd00:18::200"), "{}", show());
}
