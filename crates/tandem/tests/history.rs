//! The event history: kept on disk across a daemon restart, served at
//! `/api/v1/history`, and merged by `tandem history` into one timeline of a
//! failover drill across both nodes, in order; a node that cannot be
//! reached is named and the rest still shown. Needs no root.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::process::Command;
use std::time::Duration;

use tandem_lab::loopback_cluster::{LocalCluster, WebPair};
use tandem_lab::poll;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(15);

fn history(c: &LocalCluster, local: &str, args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(EXE)
        .arg("history")
        .arg("--json")
        .arg("--config")
        .arg(&c.config)
        .args(["--local", local, "--state-dir"])
        .arg(c.dir().join(format!("state-{local}")))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn texts(v: &serde_json::Value) -> Vec<(String, String)> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap().to_string(),
                e["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_failover_timeline_across_nodes_and_restarts() {
    let s = 67;
    let mut c = WebPair {
        name: "hist".into(),
        subnet: s,
        command: "exec sleep 1000067".into(),
        extra: format!(
            "[http]\nlisten = \"0.0.0.0:7080\"\non = {{ n1 = \"127.0.{s}.11:7080\", n2 = \"127.0.{s}.12:7080\" }}\n"
        ),
        ..WebPair::default()
    }
    .build(EXE.as_ref())
    .unwrap();
    c.start_all().unwrap();
    let active = |c: &LocalCluster, node: &str| {
        c.status(1).is_ok_and(|st| {
            st.membership.groups[0].active_on == [node]
                && (node != "n2" || st.membership.groups[0].phase_here == "started")
        })
    };
    poll::until(WAIT, "web on n1", || active(&c, "n1"));
    // An operator command, recorded with who asked.
    assert!(
        Command::new(EXE)
            .args(["cleanup", "web", "--socket"])
            .arg(&c.nodes[0].socket)
            .status()
            .unwrap()
            .success()
    );
    // n2 restarts (its history must survive), then n1 is killed: failover.
    c.stop(1, Duration::from_secs(10)).unwrap();
    c.start(1).unwrap();
    poll::until(WAIT, "n2 back", || active(&c, "n1"));
    c.kill(0).unwrap();
    poll::until(WAIT, "web on n2", || active(&c, "n2"));
    // n1 comes back (its history, kept on disk, with it): failback.
    c.start(0).unwrap();
    poll::until(WAIT, "web back on n1", || active(&c, "n1"));

    let (v, _) = history(&c, "n2", &[]);
    let t = texts(&v);
    let pos = |node: &str, prefix: &str| {
        t.iter()
            .position(|(n, x)| n == node && x.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {node}: {prefix}… in {t:#?}"))
    };
    // Before n2's restart, from both nodes; then the failover, in order.
    let first_start = pos("n1", "Started web/daemon");
    let cleanup = pos("n1", "Operator local ");
    assert!(t[cleanup].1.contains(": cleanup web: "), "{}", t[cleanup].1);
    let n2_left = pos("n1", "n2 left the cluster");
    let dead = pos("n2", "n1 is dead");
    let takeover = pos(
        "n2",
        "Taking over resource group web (failover: n1 is dead)",
    );
    let started = t
        .iter()
        .rposition(|(n, x)| n == "n2" && x.starts_with("Started web/daemon"))
        .unwrap();
    assert!(
        first_start < n2_left && n2_left < dead && dead < takeover && takeover < started,
        "out of order: {t:#?}"
    );
    let times: Vec<u64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not sorted by time");
    assert!(
        v["unreachable"].as_array().unwrap().is_empty(),
        "{}",
        v["unreachable"]
    );
    let back = t
        .iter()
        .rposition(|(n, x)| {
            n == "n2" && x.starts_with("Releasing resource group web (n1 is preferred)")
        })
        .unwrap_or_else(|| panic!("no failback in {t:#?}"));
    assert!(started < back, "the failback is not after the failover");
    // n1 down again: named as unreachable; its own files still read when
    // asked as n1.
    c.kill(0).unwrap();
    poll::until(WAIT, "n1's API gone", || {
        std::net::TcpStream::connect(format!("127.0.{s}.11:7080")).is_err()
    });
    let (v, _) = history(&c, "n2", &[]);
    assert!(
        v["unreachable"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u.as_str().unwrap().starts_with("n1 (")),
        "{}",
        v["unreachable"]
    );
    let (v1, _) = history(&c, "n1", &["--group", "web"]);
    let t1 = texts(&v1);
    assert!(
        t1.iter()
            .any(|(n, x)| n == "n1" && x.starts_with("Started web/daemon")),
        "{t1:#?}"
    );
    assert!(
        t1.iter().all(|(_, x)| !x.starts_with("Link ")),
        "the group filter let a link event through"
    );
    // --since keeps only recent events.
    let (recent, _) = history(&c, "n2", &["--since", "1ms"]);
    assert!(texts(&recent).len() < t.len());
}
