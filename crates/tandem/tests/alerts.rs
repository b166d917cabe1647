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

use tandem_lab::loopback_cluster::{LocalCluster, WebPair};
use tandem_lab::poll;

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
    let (sendmail, mail) = (d.join("sendmail"), d.join("mail.log"));
    script(
        &sendmail,
        &format!(
            "cat >> {m}\necho \"sendmail $*\" >> {m}",
            m = mail.display()
        ),
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
    let extra = format!(
        r#"[[alert]]
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

[[alert]]
mail_to = "ops@example.com"
subject = "web"
groups = ["web"]
sendmail = "{sendmail}"
"#,
        sendmail = sendmail.display(),
        hang = hang.display(),
        rec = rec.display(),
        d = d.display(),
        pm = pm_out.display()
    );
    let mut c = WebPair {
        name: "alert".into(),
        subnet: s,
        command: "exec sleep 1000066".into(),
        resource_extra: "monitor = \"200ms\"".into(),
        extra,
        ..WebPair::default()
    }
    .build(EXE.as_ref())
    .unwrap();
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
    poll::until(WAIT, "web on n1", || on(&c, "n1"));

    // Failover: n1 killed. The hanging agent is still on its first event,
    // and the cluster did not wait for it.
    c.kill(0).unwrap();
    poll::until(WAIT, "web on n2", || on(&c, "n2"));
    assert!(
        d.join("hang-started-n2").exists(),
        "the hanging agent was never run"
    );
    // Failback: n1 back; then a move; then a monitor failure on n2.
    c.start(0).unwrap();
    poll::until(WAIT, "web back on n1", || on(&c, "n1"));
    assert!(
        Command::new(EXE)
            .args(["move", "web", "n2", "--socket"])
            .arg(&c.nodes[1].socket)
            .status()
            .unwrap()
            .success()
    );
    poll::until(WAIT, "web moved to n2", || on(&c, "n2"));
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
    poll::until(WAIT, "the monitor failure alerted", || {
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
    // CRM_alert_timestamp in Pacemaker's default format, HH:MM:SS.uuuuuu.
    assert!(
        got.iter()
            .all(|l| l.split('|').nth(9).is_some_and(|t| t.len() == 15
                && t.as_bytes()[2] == b':'
                && t.as_bytes()[5] == b':'
                && t.as_bytes()[8] == b'.')),
        "{}",
        got.join("\n")
    );
    // Pacemaker's sample agent, unchanged, understood the same events.
    poll::until(WAIT, "Pacemaker's sample wrote the monitor failure", || {
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
    // Heartbeat's MailTo, through the same path: one mail per takeover and
    // release, through `sendmail -t`.
    poll::until(WAIT, "the failover mail", || {
        std::fs::read_to_string(&mail)
            .unwrap_or_default()
            .contains("Subject: web: Taking over resource group web (failover: n1 is dead) on n2")
    });
    let m = std::fs::read_to_string(&mail).unwrap();
    assert!(
        m.contains("To: ops@example.com") && m.contains("sendmail -t"),
        "{m}"
    );
    assert!(
        m.contains("Subject: web: Releasing resource group web"),
        "{m}"
    );
    assert!(
        !m.contains("Acquisition completed"),
        "mail for more than takeovers and releases: {m}"
    );
    // The hanging agent delivered nothing yet, and the cluster went on.
    let st = c.status(1).unwrap();
    assert_eq!(st.daemon.alerts_failed, 0);
    assert!(st.daemon.alerts_delivered >= got.len() as u64);
}

/// At least once across a crash: events queued behind a hanging delivery
/// when the daemon is killed are delivered, marked replayed, when it
/// starts again, before its new events.
#[test]
fn undelivered_alerts_survive_a_daemon_crash() {
    let s = 70;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (rec, flag, hanging) = (d.join("record.sh"), d.join("hold"), d.join("hanging"));
    script(
        &rec,
        &format!(
            "if [ -e {flag} ]; then touch {hanging}; exec sleep 1000070; fi\n\
             echo \"$TANDEM_ALERT_INCARNATION|$CRM_alert_node_sequence|${{TANDEM_ALERT_REPLAYED:-0}}|$TANDEM_ALERT_TEXT\" >> \"$CRM_alert_recipient\"",
            flag = flag.display(),
            hanging = hanging.display()
        ),
    );
    let text = format!(
        "cluster = \"spool{s}\"\nkey_file = \"authkey\"\nstate_dir = \"state\"\nrealtime = false\n[timing]\ninitdead = \"1s\"\n\
         [[link]]\nname = \"lo\"\nkind = \"ucast\"\nport = 7694\n[[node]]\nname = \"n1\"\naddresses = {{ lo = \"127.0.{s}.11\" }}\n\
         [[group]]\nname = \"web\"\n[[group.resource]]\nname = \"daemon\"\nagent = \"process\"\nparams = {{ command = \"exec sleep 1000071\" }}\n\
         [[alert]]\nprogram = \"{}\"\nrecipient = \"{}\"\nkinds = [\"group\", \"resource\"]\ntimeout = \"60s\"\n",
        rec.display(),
        d.join("record.log").display()
    );
    let mut c = LocalCluster::from_config(
        EXE.as_ref(),
        &text,
        vec![("n1".into(), format!("127.0.{s}.11"), None)],
    )
    .unwrap();
    std::fs::write(&flag, "").unwrap();
    c.start(0).unwrap();
    // The first delivery hangs; the group's other events queue behind it.
    poll::until(WAIT, "the group started, its alerts queued", || {
        hanging.exists()
            && c.status(0)
                .is_ok_and(|st| st.membership.groups[0].phase_here == "started")
    });
    let first = c.status(0).unwrap().membership.incarnation;
    c.kill(0).unwrap();
    let _ = Command::new("pkill").args(["-f", "sleep 1000070"]).status();
    std::fs::remove_file(&flag).unwrap();
    assert!(
        lines(&d.join("record.log")).is_empty(),
        "delivered while held"
    );
    c.start(0).unwrap();
    // A new event after the restart: standby releases the group.
    poll::until(WAIT, "the restarted daemon joined", || {
        c.status(0).is_ok_and(|st| st.membership.joined)
    });
    assert!(
        Command::new(EXE)
            .args(["standby", "n1", "--socket"])
            .arg(&c.nodes[0].socket)
            .status()
            .unwrap()
            .success()
    );
    let end = Instant::now() + WAIT;
    loop {
        let l = lines(&d.join("record.log"));
        let ok = l
            .iter()
            .any(|x| x.starts_with(&format!("{first}|")) && x.contains("|1|Acquisition completed"))
            && l.iter().any(|x| {
                !x.starts_with(&format!("{first}|")) && x.contains("Releasing resource group web")
            });
        if ok {
            break;
        }
        assert!(
            Instant::now() < end,
            "no replay: record {l:#?}\nqueue {:?}\ndone {:?}\nlog {}",
            std::fs::read_to_string(c.dir().join("state-n1/alerts/0.queue")),
            std::fs::read_to_string(c.dir().join("state-n1/alerts/0.done")),
            std::fs::read_to_string(&c.nodes[0].log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let l = lines(&d.join("record.log"));
    let old: Vec<&String> = l
        .iter()
        .filter(|x| x.starts_with(&format!("{first}|")))
        .collect();
    assert!(
        old.iter().all(|x| x.split('|').nth(2) == Some("1")),
        "old events not marked replayed: {l:#?}"
    );
    assert!(
        old.iter()
            .any(|x| x.contains("Taking over resource group web")),
        "the held event was lost: {l:#?}"
    );
    let first_new = l
        .iter()
        .position(|x| !x.starts_with(&format!("{first}|")))
        .unwrap();
    assert!(
        l[..first_new].len() == old.len(),
        "replayed events came after new ones: {l:#?}"
    );
}
