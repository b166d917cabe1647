//! `[[alert]]` with real daemons on loopback through a drill: n1 killed
//! (failover), n1 back (failback), a move, a monitor failure. A recording
//! agent (failing its first try of every fifth event, so retries are used)
//! writes what it receives; order, sequence numbers and Pacemaker's
//! variables are checked; Pacemaker's own `alert_file.sh.sample` runs as a
//! second agent; a third agent hangs on every event, and the cluster does
//! not wait for it. Needs no root (Pacemaker's sample comes from Debian's
//! pacemaker-common, which scripts/test.sh installs).
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_lab::loopback_cluster::LocalCluster;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(20);
const SAMPLE: &str = "/usr/share/pacemaker/alerts/alert_file.sh.sample";

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_drill_is_alerted_in_order_with_pacemakers_variables() {
    assert!(
        Path::new(SAMPLE).exists(),
        "{SAMPLE} is missing: apt-get install pacemaker-common (scripts/test.sh does)"
    );
    let s = 66;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (rec, hang, pm_out) = (
        d.join("record.sh"),
        d.join("hang.sh"),
        d.join("pacemaker.log"),
    );
    script(
        &rec,
        &format!(
            "if [ $((CRM_alert_node_sequence % 5)) = 0 ] && [ ! -e {d}/tried-$CRM_alert_node_sequence ]; then touch {d}/tried-$CRM_alert_node_sequence; exit 1; fi\n\
             echo \"$CRM_alert_node_sequence|$CRM_alert_kind|$CRM_alert_node|$CRM_alert_desc|$CRM_alert_task|$CRM_alert_rsc|$CRM_alert_rc|$TANDEM_ALERT_KIND|$TANDEM_ALERT_LOCAL_NODE|$CRM_alert_timestamp|$TANDEM_ALERT_TEXT\" >> \"$CRM_alert_recipient\"",
            d = d.display()
        ),
    );
    script(
        &hang,
        &format!(
            "touch {}/hang-started-$TANDEM_ALERT_LOCAL_NODE\nexec sleep 1000",
            d.display()
        ),
    );
    let text = format!(
        r#"cluster = "alert{s}"
key_file = "authkey"
state_dir = "state"
realtime = false

[[link]]
name = "lo"
kind = "ucast"
port = 7694

[[node]]
name = "n1"
addresses = {{ lo = "127.0.{s}.11" }}

[[node]]
name = "n2"
addresses = {{ lo = "127.0.{s}.12" }}

[[group]]
name = "web"
prefer = {{ n1 = 200, n2 = 100 }}

[[group.resource]]
name = "daemon"
agent = "process"
params = {{ command = "exec sleep 1000066" }}
monitor = "200ms"

[[alert]]
program = "{hang}"
timeout = "30s"
retries = 0

[[alert]]
program = "{rec}"
recipient = "{d}/record.log"

[[alert]]
program = "{SAMPLE}"
recipient = "{pm}"
kinds = ["node", "resource", "fencing"]
"#,
        hang = hang.display(),
        rec = rec.display(),
        d = d.display(),
        pm = pm_out.display()
    );
    // Each node records to its own file.
    let nodes = vec![
        ("n1".to_string(), format!("127.0.{s}.11"), None),
        ("n2".to_string(), format!("127.0.{s}.12"), None),
    ];
    let mut c = LocalCluster::from_config(EXE.as_ref(), &text, nodes).unwrap();
    // Both nodes record to one file; n2's lines are checked.
    let record = d.join("record.log");
    let n2_lines = || -> Vec<String> {
        lines(&record)
            .into_iter()
            .filter(|l| l.split('|').nth(8) == Some("n2"))
            .collect()
    };
    c.start_all().unwrap();
    // As n2 sees it: web runs on `node` (and is started, when that is n2).
    let on = |c: &LocalCluster, node: &str| {
        c.status(1).is_ok_and(|st| {
            let g = &st.membership.groups[0];
            g.active_on == [node] && (node != "n2" || g.phase_here == "started")
        })
    };
    wait_for("web on n1", || on(&c, "n1"));

    // Failover: n1 killed. The hanging agent is still on its first event,
    // and the cluster did not wait for it.
    c.kill(0).unwrap();
    wait_for("web on n2", || on(&c, "n2"));
    assert!(
        d.join("hang-started-n2").exists(),
        "the hanging agent was never run"
    );
    // Failback: n1 back; then a move; then a monitor failure on n2.
    c.start(0).unwrap();
    wait_for("web back on n1", || on(&c, "n1"));
    assert!(
        Command::new(EXE)
            .args(["move", "web", "n2", "--socket"])
            .arg(&c.nodes[1].socket)
            .status()
            .unwrap()
            .success()
    );
    wait_for("web moved to n2", || on(&c, "n2"));
    let pid = Command::new("pgrep")
        .args(["-n", "-f", "^sleep 1000066$"])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    assert!(!pid.is_empty(), "the service process was not found");
    assert!(
        Command::new("kill")
            .arg("-9")
            .arg(&pid)
            .status()
            .unwrap()
            .success()
    );
    wait_for("the monitor failure alerted", || {
        n2_lines().iter().any(|l| l.contains("|monitor|daemon|7|"))
    });

    let got = n2_lines();
    let seqs: Vec<u64> = got
        .iter()
        .map(|l| l.split('|').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seqs:?}"
    );
    assert!(
        seqs.iter().any(|s| s % 5 == 0),
        "no retried event delivered: {seqs:?}"
    );
    assert!(
        seqs.iter()
            .filter(|s| *s % 5 == 0)
            .all(|s| d.join(format!("tried-{s}")).exists())
    );
    let has = |want: &[&str]| {
        got.iter().any(|l| {
            let f: Vec<&str> = l.split('|').collect();
            want.iter().all(|w| f.contains(w) || l.contains(w))
        })
    };
    assert!(
        has(&["node", "n1", "lost"]),
        "no 'n1 lost':\n{}",
        got.join("\n")
    );
    assert!(
        has(&["node", "n1", "member"]),
        "no 'n1 member':\n{}",
        got.join("\n")
    );
    assert!(
        has(&["resource", "start", "daemon", "0"]),
        "no start of daemon:\n{}",
        got.join("\n")
    );
    assert!(
        has(&["Taking over resource group web (failover: n1 is dead)"]),
        "{}",
        got.join("\n")
    );
    assert!(
        has(&["Taking over resource group web (move: an operator moved it here)"]),
        "{}",
        got.join("\n")
    );
    assert!(
        has(&["resource", "monitor", "daemon", "7"]),
        "{}",
        got.join("\n")
    );
    assert!(got.iter().all(|l| l.split('|').nth(8) == Some("n2")));
    // Pacemaker's sample agent, unchanged, understood the same events.
    wait_for("Pacemaker's sample wrote the monitor failure", || {
        lines(&pm_out)
            .iter()
            .any(|l| l.contains("Resource operation 'monitor (1000)' for 'daemon' on 'n2'"))
    });
    let pm = lines(&pm_out);
    assert!(
        pm.iter().any(|l| l.ends_with("Node 'n1' is now 'lost'")),
        "{}",
        pm.join("\n")
    );
    assert!(
        pm.iter()
            .any(|l| l.ends_with("Resource operation 'start' for 'daemon' on 'n2': ok")),
        "{}",
        pm.join("\n")
    );
    // The hanging agent delivered nothing yet, and the cluster went on.
    let st = c.status(1).unwrap();
    assert_eq!(st.daemon.alerts_failed, 0);
    assert!(st.daemon.alerts_delivered >= got.len() as u64);
}
