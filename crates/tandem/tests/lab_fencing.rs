//! Fencing drill: a fence agent following the fence-agents stdin
//! convention (key=value lines, action=off, plug=NODE) is called before the
//! survivor takes over; while it fails, nothing starts. Needs root and
//! busybox.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tandem_lab::lab_cluster::{WebCluster, WebOptions, outage};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(15);

#[test]
fn the_dead_node_is_fenced_before_takeover_and_nothing_starts_while_fencing_fails() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("fence.log");
    let fail = dir.path().join("fail");
    let agent = dir.path().join("fence_test");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\n# reads key=value lines like the fence_* agents\nwhile IFS= read -r line; do echo \"$line\" >> {r}; done\necho --- >> {r}\n[ -e {f} ] && {{ echo 'power switch unreachable' >&2; exit 1; }}\nexit 0\n",
            r = record.display(),
            f = fail.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&fail, "").unwrap();
    let o = WebOptions {
        prefix: "tfen".into(),
        subnet: 74,
        extra_top: format!(
            "[fencing]\nagent = \"{}\"\nparams = {{ ip = \"198.18.74.250\", username = \"admin\" }}\ntimeout = \"5s\"",
            agent.display()
        ),
        ..WebOptions::default()
    };
    let mut w = WebCluster::new(EXE.as_ref(), &o).expect("lab (needs root and busybox)");
    w.start_all().unwrap();
    w.start_probe().unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();

    let t = w.probe_now_ms();
    w.power_off(0).unwrap();
    // Fencing fails: n2 waits, retries, and starts nothing.
    w.cluster
        .wait_log(
            1,
            WAIT,
            &["Fencing n1 FAILED (", "power switch unreachable"],
        )
        .unwrap();
    let s = w.cluster.status(1).unwrap();
    assert!(
        s.membership.groups[0].active_on.is_empty(),
        "started before fencing succeeded"
    );
    assert!(s.membership.waiting.unwrap().contains("fenced"));
    assert!(s.membership.fencing.iter().any(|f| !f.ok && f.node == "n1"));
    // The power switch answers again: fencing succeeds, then n2 takes over.
    std::fs::remove_file(&fail).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let o = outage(&w.samples(), t, "n1", "n2").expect("a switch seen by the client");
    assert_eq!(o.dual_answers, 0, "{o:?}");
    eprintln!(
        "outage {:.0} ms (fencing failed first), {} client errors",
        o.outage_ms, o.errors
    );
    let log = w
        .cluster
        .wait_log(1, WAIT, &["n1 fenced", "Taking over resource group web"])
        .unwrap();
    assert!(
        log.find("n1 fenced").unwrap() < log.find("Taking over resource group web").unwrap(),
        "took over before fencing"
    );
    let stdin = std::fs::read_to_string(&record).unwrap();
    for line in [
        "action=off",
        "plug=n1",
        "ip=198.18.74.250",
        "username=admin",
    ] {
        assert!(stdin.lines().any(|l| l == line), "agent got:\n{stdin}");
    }
    let st = w.tandem(1, &["status", "--json"]).unwrap();
    assert!(st.contains("\"fencing\""), "{st}");
}
