//! Network drills that must NOT cause a failover: 20 % packet loss on one
//! of two heartbeat links, and the only heartbeat link flapping (cable down
//! and up every half deadtime for a minute). Needs root and nftables.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::{Duration, Instant};

use tandem_core::PeerState;
use tandem_lab::loopback_cluster::LocalCluster;
use tandem_lab::netns::Lab;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(15);

fn addr(n: u8, s: u8, s2: Option<u8>) -> String {
    match s2 {
        Some(s2) => format!("{{ a = \"198.18.{s}.{n}\", b = \"198.18.{s2}.{n}\" }}"),
        None => format!("{{ a = \"198.18.{s}.{n}\" }}"),
    }
}

fn config(subnet: u8, second: Option<u8>) -> String {
    let timing = "";
    let mut links = String::from("[[link]]\nname = \"a\"\nkind = \"ucast\"\n");
    if second.is_some() {
        links.push_str("[[link]]\nname = \"b\"\nkind = \"ucast\"\n");
    }
    format!(
        "cluster = \"drill{subnet}\"\nkey_file = \"authkey\"\nrealtime = true\n[timing]\n{timing}\n{links}\n[[node]]\nname = \"n1\"\naddresses = {}\n[[node]]\nname = \"n2\"\naddresses = {}\n[[group]]\nname = \"app\"\nprefer = {{ n1 = 100 }}\n[[group.resource]]\nname = \"daemon\"\nagent = \"process\"\nparams = {{ command = \"exec sleep 100000\" }}\nmonitor = \"1s\"\n",
        addr(11, subnet, second),
        addr(12, subnet, second)
    )
}

fn start(lab: &Lab, text: &str) -> LocalCluster {
    let nodes = lab
        .hosts
        .iter()
        .map(|h| (h.name.clone(), h.addr.clone(), Some(h.netns.clone())))
        .collect();
    let mut c = LocalCluster::from_config(EXE.as_ref(), text, nodes).unwrap();
    c.start_all().unwrap();
    c.wait_for(1, WAIT, "app on n1", |s| {
        s.membership.groups[0].active_on == vec!["n1"]
    })
    .unwrap();
    c
}

fn assert_no_failover(c: &LocalCluster, what: &str) {
    let logs = || {
        (0..2)
            .map(|i| std::fs::read_to_string(&c.nodes[i].log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    for i in 0..2 {
        let s = c.status(i).unwrap();
        assert_eq!(
            s.membership.groups[0].active_on,
            vec!["n1"],
            "{what}: group moved\n{}",
            logs()
        );
        assert!(
            s.membership
                .nodes
                .iter()
                .all(|n| n.state != PeerState::Dead),
            "{what}: a node was declared dead"
        );
    }
    let log = std::fs::read_to_string(&c.nodes[1].log).unwrap();
    assert!(
        !log.contains("is dead") && !log.contains("Taking over"),
        "{what}:\n{log}"
    );
}

#[test]
fn twenty_percent_loss_on_one_of_two_links_causes_no_failover() {
    let lab = Lab::new("tdls", 76, &["n1", "n2"]).expect("lab (root needed)");
    lab.add_second_network(77).unwrap();
    let c = start(&lab, &config(76, Some(77)));
    lab.lossy("n1", "eth1", 20).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        assert_no_failover(&c, "20 % loss on eth1");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The loss was real: the rules dropped a fifth of the heartbeats.
    assert!(
        lab.dropped("n1").unwrap() > 50,
        "the loss rules dropped nothing"
    );
}

#[test]
fn a_link_flapping_every_half_deadtime_for_a_minute_causes_no_failover() {
    let lab = Lab::new("tdlf", 78, &["n1", "n2"]).expect("lab (root needed)");
    let c = start(&lab, &config(78, None));
    // The daemons lowered the ARP retransmit time of the heartbeat interface
    // (default timings: keepalive 100 ms, so 50 ms).
    for node in ["n1", "n2"] {
        let h = lab.hosts.iter().find(|h| h.name == node).unwrap();
        let read = |setting: &str| {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &h.netns, "cat"])
                .arg(format!("/proc/sys/net/ipv4/neigh/eth0/{setting}"))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            text.parse::<u64>()
                .unwrap_or_else(|_| panic!("{setting}: {text:?}"))
        };
        // Stored in jiffies: 50 ms may read back as 52.
        assert!((50..60).contains(&read("retrans_time_ms")), "{node}");
        assert_eq!(read("mcast_solicit"), 10, "{node}");
    }
    // Default deadtime 500 ms: the cable is down 250 ms, then up 250 ms.
    let half = Duration::from_millis(250);
    let until = Instant::now() + Duration::from_secs(60);
    let mut flaps = 0;
    while Instant::now() < until {
        lab.cable("n1", false).unwrap();
        std::thread::sleep(half);
        lab.cable("n1", true).unwrap();
        std::thread::sleep(half);
        flaps += 1;
        if flaps % 10 == 0 {
            assert_no_failover(&c, &format!("after {flaps} flaps"));
        }
    }
    assert!(flaps >= 100, "only {flaps} flaps in a minute");
    assert_no_failover(&c, "after a minute of flapping");
}
