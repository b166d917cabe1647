//! Two-node drills with an arbitrator (`tandem witness`, running in the
//! client's namespace c1): a split where both nodes still reach the
//! arbitrator leaves the group with its holder and the other node waits;
//! a holder cut off from everything stops when its vote lapses, and the
//! other node takes over. The client probes the VIP every 10 ms and must
//! never get answers from two nodes. Needs root, busybox and nftables.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tandem_lab::lab_cluster::{WebCluster, WebOptions, outage};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(15);

struct Arbitrator {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Arbitrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_log(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "never logged {needle:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cluster with the arbitrator on c1; returns once votes are open.
fn web(prefix: &str, subnet: u8) -> (WebCluster, Arbitrator) {
    let o = WebOptions {
        prefix: prefix.into(),
        subnet,
        extra_top: format!(
            "[witness]\nkind = \"arbiter\"\naddresses = [\"198.18.{subnet}.100\"]\nkey_file = \"arbiter.key\"\ntimeout = \"300ms\""
        ),
        ..WebOptions::default()
    };
    let mut w = WebCluster::new(EXE.as_ref(), &o).expect("lab (needs root and busybox)");
    let dir = w.cluster.dir().to_path_buf();
    tandem_config::keyfile::write_key(
        &dir.join("arbiter.key"),
        b"arbitrator-key-for-the-lab-drill",
    )
    .unwrap();
    std::fs::write(
        dir.join("witness.toml"),
        format!(
            "listen = \"198.18.{subnet}.100:7695\"\nvote = \"2s\"\nstate_file = \"witness.state\"\n[[cluster]]\nname = \"lab{subnet}\"\nkey_file = \"arbiter.key\"\n[[cluster]]\nname = \"another\"\nkey_file = \"arbiter.key\"\n"
        ),
    )
    .unwrap();
    let log = dir.join("witness.log");
    let child = w
        .lab
        .command("c1", EXE)
        .unwrap()
        .args(["witness", "--config"])
        .arg(dir.join("witness.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let arb = Arbitrator { child, log };
    wait_log(&arb.log, "votes open");
    w.start_all().unwrap();
    w.start_probe().unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
    (w, arb)
}

#[test]
fn a_split_where_both_reach_the_arbitrator_keeps_the_group_with_its_holder() {
    let (w, arb) = web("tarb", 73);
    let subnet = w.lab.subnet;
    let t0 = w.probe_now_ms();
    // n1 and n2 stop hearing each other; both still reach c1.
    w.lab
        .isolate_from("n1", &format!("198.18.{subnet}.12"), true)
        .unwrap();
    let s = w
        .cluster
        .wait_for(1, WAIT, "n2 refused the vote, waiting", |s| {
            s.membership
                .waiting
                .as_deref()
                .is_some_and(|x| x.contains("vote is not ours"))
        })
        .unwrap();
    assert_eq!(s.membership.groups[0].phase_here, "stopped", "{s:?}");
    wait_log(&arb.log, "n2 asked; n1 holds the vote");
    // Three vote periods: n1 renews, n2 keeps asking and keeps waiting.
    std::thread::sleep(Duration::from_secs(6));
    let st = w.cluster.status(1).unwrap();
    assert!(st.membership.waiting.is_some(), "n2 stopped waiting");
    assert_eq!(st.membership.groups[0].phase_here, "stopped", "{st:?}");
    let samples = w.samples();
    let during: Vec<_> = samples.iter().filter(|s| s.t_ms >= t0).collect();
    assert!(
        during.iter().all(|s| s.answer.as_deref() != Some("n2")),
        "n2 answered during the split"
    );
    let served = during
        .iter()
        .filter(|s| s.answer.as_deref() == Some("n1"))
        .count();
    assert!(
        served * 10 >= during.len() * 9,
        "n1 stopped serving during the split: {served} of {}",
        during.len()
    );
    // Healed: n2 rejoins and stops waiting; n1 keeps serving.
    w.lab
        .isolate_from("n1", &format!("198.18.{subnet}.12"), false)
        .unwrap();
    w.cluster
        .wait_for(1, WAIT, "n2 back, not waiting", |s| {
            s.membership.waiting.is_none() && s.membership.members.len() == 2
        })
        .unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
}

#[test]
fn a_holder_cut_off_from_everything_stops_and_the_peer_takes_over() {
    let (w, arb) = web("tar2", 74);
    let t0 = w.probe_now_ms();
    w.lab.cable("n1", false).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    wait_log(&arb.log, "vote given to n2");
    // n1 cannot reach the arbitrator: it waits and runs nothing.
    w.cluster
        .wait_for(0, WAIT, "n1 waiting, nothing active", |s| {
            s.membership.waiting.is_some() && s.membership.groups[0].active_on.is_empty()
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let o = outage(&w.samples(), t0, "n1", "n2").expect("a switch to n2");
    assert_eq!(o.dual_answers, 0, "{o:?}");
    eprintln!("outage {:.0} ms, {} errors", o.outage_ms, o.errors);
    // Back: n1 rejoins and takes its group back (auto-failback).
    w.lab.cable("n1", true).unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
}
