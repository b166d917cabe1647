//! `tandem check` against real daemons on loopback, in each state it
//! reports: OK; WARNING for a node in standby, a move in force, failures;
//! CRITICAL for a dead node and a group that runs nowhere; UNKNOWN without
//! a daemon. The output is parsed as Nagios plugin output (status line,
//! perfdata by the plugin guidelines' grammar). Needs no root.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_lab::loopback_cluster::{LocalCluster, WebPair};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

fn cluster(s: u8, command: &str) -> LocalCluster {
    WebPair {
        name: "chk".into(),
        subnet: s,
        command: command.into(),
        group_extra: "migration_threshold = 1".into(),
        ..WebPair::default()
    }
    .build(EXE.as_ref())
    .unwrap()
}

/// A parsed plugin answer.
#[derive(Debug)]
struct Answer {
    code: i32,
    state: String,
    summary: String,
    perf: BTreeMap<String, (f64, Vec<String>)>,
    details: Vec<String>,
}

/// Parses plugin output: `SERVICE STATE - text | 'label'=value[UOM];warn;crit;min;max …`
/// then detail lines.
fn parse(code: i32, out: &str) -> Answer {
    let mut lines = out.lines();
    let first = lines.next().unwrap_or("");
    let (text, perf) = first.split_once(" | ").unwrap_or((first, ""));
    let rest = text
        .strip_prefix("TANDEM ")
        .unwrap_or_else(|| panic!("no service name: {first}"));
    let (state, summary) = rest
        .split_once(" - ")
        .unwrap_or_else(|| panic!("no ' - ': {first}"));
    let mut map = BTreeMap::new();
    for item in perf.split_whitespace() {
        let (label, v) = item
            .split_once('=')
            .unwrap_or_else(|| panic!("bad perfdata {item}"));
        let mut parts = v.split(';');
        let value = parts.next().unwrap();
        let num: String = value
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
            .collect();
        let uom = &value[num.len()..];
        assert!(
            ["", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"].contains(&uom),
            "bad unit {uom} in {item}"
        );
        let rest: Vec<String> = parts.map(str::to_string).collect();
        assert!(rest.len() <= 4, "too many fields in {item}");
        for r in &rest {
            assert!(
                r.is_empty() || r.parse::<f64>().is_ok(),
                "bad threshold/min/max {r} in {item}"
            );
        }
        map.insert(
            label.trim_matches('\'').to_string(),
            (num.parse().unwrap(), rest),
        );
    }
    Answer {
        code,
        state: state.to_string(),
        summary: summary.to_string(),
        perf: map,
        details: lines.map(str::to_string).collect(),
    }
}

fn check(c: &LocalCluster, i: usize, extra: &[&str]) -> Answer {
    let out = Command::new(EXE)
        .arg("check")
        .arg("--socket")
        .arg(&c.nodes[i].socket)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let a = parse(out.status.code().unwrap_or(-1), &text);
    let expected = match a.state.as_str() {
        "OK" => 0,
        "WARNING" => 1,
        "CRITICAL" => 2,
        "UNKNOWN" => 3,
        s => panic!("state {s}"),
    };
    assert_eq!(
        a.code, expected,
        "exit code does not match the state: {text}"
    );
    a
}

fn until(c: &LocalCluster, i: usize, state: &str, what: &str) -> Answer {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let a = check(c, i, &[]);
        if a.state == state
            && (a.summary.contains(what) || a.details.iter().any(|d| d.contains(what)))
        {
            return a;
        }
        assert!(Instant::now() < end, "no {state} with {what:?}; last {a:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_state_with_its_exit_code_and_perfdata() {
    let mut c = cluster(64, "sleep 1000000");
    // No daemon: UNKNOWN, with the reason.
    let a = check(&c, 0, &[]);
    assert_eq!(a.state, "UNKNOWN");
    assert!(a.summary.contains("no tandem daemon is running"), "{a:?}");
    c.start_all().unwrap();
    let a = until(&c, 0, "OK", "2/2 nodes online, 1/1 groups started");
    assert_eq!(a.perf["nodes_online"].0, 2.0);
    assert_eq!(
        a.perf["groups_started"],
        (
            1.0,
            vec![String::new(), String::new(), "0".into(), "1".into()]
        )
    );
    assert!(a.details.is_empty(), "{a:?}");
    // `tandem explain` on the same live cluster.
    let out = Command::new(EXE)
        .args(["explain", "web", "--config"])
        .arg(&c.config)
        .arg("--socket")
        .arg(&c.nodes[0].socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("web runs on n1 (as n1 sees it)."),
        "{text}"
    );
    assert!(
        text.contains("n1 has the highest score among the nodes that may run it."),
        "{text}"
    );

    // A node in standby: WARNING.
    assert!(
        Command::new(EXE)
            .args(["standby", "n2", "--socket"])
            .arg(&c.nodes[0].socket)
            .status()
            .unwrap()
            .success()
    );
    until(&c, 0, "WARNING", "node n2 is in standby");
    assert!(
        Command::new(EXE)
            .args(["unstandby", "n2", "--socket"])
            .arg(&c.nodes[0].socket)
            .status()
            .unwrap()
            .success()
    );
    until(&c, 0, "OK", "2/2 nodes online");
    // A move in force: WARNING, naming how to clear it.
    assert!(
        Command::new(EXE)
            .args(["move", "web", "n2", "--socket"])
            .arg(&c.nodes[0].socket)
            .status()
            .unwrap()
            .success()
    );
    let a = until(&c, 0, "WARNING", "move to n2 in force");
    assert!(a.summary.contains("tandem move web --clear"), "{a:?}");
    assert!(
        Command::new(EXE)
            .args(["move", "web", "--clear", "--socket"])
            .arg(&c.nodes[0].socket)
            .status()
            .unwrap()
            .success()
    );
    until(&c, 0, "OK", "2/2 nodes online");

    // n2 killed: CRITICAL from n1, and n1-only checks stay OK.
    c.kill(1).unwrap();
    let a = until(&c, 0, "CRITICAL", "node n2 is dead");
    assert_eq!(a.perf["nodes_online"].0, 1.0);
    assert_eq!(check(&c, 0, &["--node", "n1"]).state, "OK");
}

#[test]
fn a_group_that_runs_nowhere_is_critical_and_failures_warn() {
    // The service cannot start anywhere: it exits at once.
    let mut c = cluster(65, "exit 1");
    c.start_all().unwrap();
    let a = until(&c, 0, "CRITICAL", "group web runs nowhere");
    assert!(
        a.details
            .iter()
            .any(|d| d.starts_with("WARNING: resource web/daemon has")),
        "{a:?}"
    );
    assert!(a.perf["resource_failures"].0 >= 1.0, "{a:?}");
    assert_eq!(a.perf["groups_started"].0, 0.0);
}
