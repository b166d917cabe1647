//! The S1 story end to end in the lab: real namespaces, a real floating IP
//! with gratuitous ARP, a real web server (busybox httpd) whose page names
//! the node, and a client probing the VIP every 10 ms. Needs root and
//! busybox; fails with a clear message otherwise.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::process::Command;
use std::time::Duration;

use tandem_lab::lab_cluster::{WebCluster, WebOptions, outage};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(15);

fn web(prefix: &str, subnet: u8, f: impl FnOnce(&mut WebOptions)) -> WebCluster {
    let mut o = WebOptions {
        prefix: prefix.into(),
        subnet,
        ..WebOptions::default()
    };
    f(&mut o);
    let mut w = WebCluster::new(EXE.as_ref(), &o).expect("lab (needs root and busybox)");
    w.start_all().unwrap();
    w.start_probe().unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
    w
}

fn addr_show(w: &WebCluster, i: usize) -> String {
    let out = Command::new("ip")
        .args(["-n", &w.lab.hosts[i].netns, "addr", "show", "eth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn power_off_fails_over_and_the_master_takes_it_back() {
    let mut w = web("tdfo", 61, |_| {});
    assert!(addr_show(&w, 0).contains(&format!("{}/24", w.vip)));
    assert!(addr_show(&w, 0).contains("eth0:0"), "{}", addr_show(&w, 0));
    assert!(!addr_show(&w, 1).contains(&w.vip));

    let t = w.probe_now_ms();
    w.power_off(0).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    let o = outage(&w.samples(), t, "n1", "n2").unwrap();
    assert!(o.outage_ms < 2000.0, "{o:?}");
    assert!(addr_show(&w, 1).contains("eth0:0"));
    w.cluster
        .wait_log(
            1,
            WAIT,
            &[
                "n1 is dead",
                "Taking over resource group web",
                "Starting web/vip",
                "Acquisition completed",
            ],
        )
        .unwrap();

    // The master returns (auto_failback on): it takes the group back.
    let t = w.probe_now_ms();
    w.power_on(0).unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
    let o = outage(&w.samples(), t, "n2", "n1").unwrap();
    assert_eq!(o.dual_answers, 0, "{o:?}");
    assert!(!addr_show(&w, 1).contains(&w.vip), "n2 still holds the VIP");
    w.cluster
        .wait_log(1, WAIT, &["Releasing resource group web (n1 is preferred)"])
        .unwrap();
}

#[test]
fn without_auto_failback_the_group_stays_on_the_survivor() {
    let mut w = web("tdnf", 62, |o| o.auto_failback = false);
    w.power_off(0).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    w.power_on(0).unwrap();
    w.cluster
        .wait_for(0, WAIT, "n1 sees n2", |s| s.membership.members.len() == 2)
        .unwrap();
    // Give failback every chance to (wrongly) happen, then check.
    std::thread::sleep(Duration::from_secs(2));
    w.wait_served_by("n2", 50, Duration::from_secs(1)).unwrap();
    assert!(!addr_show(&w, 0).contains(&w.vip));
}

#[test]
fn move_standby_and_clean_stop_switch_over() {
    let mut w = web("tdmv", 63, |_| {});
    let said = w.tandem(0, &["move", "web", "n2"]).unwrap();
    assert!(said.contains("web moves to n2"), "{said}");
    let t = w.probe_now_ms();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    let o = outage(&w.samples(), t - 50.0, "n1", "n2").unwrap();
    assert_eq!(o.dual_answers, 0, "{o:?}");
    let st = w.tandem(1, &["status"]).unwrap();
    assert!(
        st.contains("Group web: active on n2 — moved to n2 by an operator"),
        "{st}"
    );

    w.tandem(1, &["move", "web", "--clear"]).unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();

    w.tandem(1, &["standby", "n1"]).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    w.tandem(0, &["unstandby", "n1"]).unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();

    // Stopping the active daemon cleanly moves the group first.
    w.cluster.stop(0, WAIT).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    assert!(
        !addr_show(&w, 0).contains(&w.vip),
        "the stopped node kept the VIP"
    );
    w.cluster
        .wait_log(
            0,
            WAIT,
            &[
                "Releasing resource group web (shutting down)",
                "left the cluster",
            ],
        )
        .unwrap();

    // Unknown names are refused with the list of valid ones.
    let e = w.tandem(1, &["move", "web", "n7"]).unwrap_err().to_string();
    assert!(e.contains("no node `n7` (nodes: n1, n2)"), "{e}");
}

fn web_pid(w: &WebCluster, i: usize) -> Option<u32> {
    let f = w
        .cluster
        .dir()
        .join(format!("state-n{}", i + 1))
        .join("processes/web@httpd.pid");
    std::fs::read_to_string(f)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_killed_web_server_restarts_in_place_then_moves_at_the_threshold() {
    let w = web("tdks", 64, |o| {
        o.group_extra = "migration_threshold = 2".into()
    });
    let pid = web_pid(&w, 0).unwrap();
    tandem::process::signal(pid, libc::SIGKILL).unwrap();
    w.cluster
        .wait_for(0, WAIT, "a new web server on n1", |s| {
            s.membership.groups[0].resources[1].fail_count == 1
                && s.membership.groups[0].resources[1].state == tandem_core::ResourceState::Started
        })
        .unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
    assert_ne!(web_pid(&w, 0), Some(pid));

    tandem::process::signal(web_pid(&w, 0).unwrap(), libc::SIGKILL).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
    let st = w.tandem(1, &["status"]).unwrap();
    assert!(st.contains("banned on n1"), "{st}");
    w.tandem(1, &["cleanup", "web"]).unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
}

#[test]
fn a_failed_stop_blocks_the_group_instead_of_running_it_twice() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("fail-stop");
    let script = dir.path().join("guard");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nS={d}/running-$(cat /proc/sys/kernel/hostname)\ncase \"$1\" in\n start) touch {d}/on-$$; echo > $S;;\n stop) [ -e {f} ] && exit 1; rm -f $S;;\n status) [ -e $S ] && exit 0; exit 3;;\nesac\n",
            d = dir.path().display(),
            f = flag.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let extra = format!(
        "[[group.resource]]\nname = \"guard\"\nagent = \"lsb:{}\"\nmonitor = 0\nstop_timeout = \"2s\"\n",
        script.display()
    );
    let w = web("tdbl", 65, |o| o.extra_resources = extra);
    std::fs::write(&flag, "").unwrap();
    w.tandem(0, &["move", "web", "n2"]).unwrap();
    w.cluster
        .wait_for(1, WAIT, "web blocked on n1", |s| {
            s.membership.groups[0].blocked_on.as_deref() == Some("n1")
        })
        .unwrap();
    // Not running twice: n1 keeps serving, n2 never started anything.
    std::thread::sleep(Duration::from_millis(500));
    w.wait_served_by("n1", 20, Duration::from_secs(1)).unwrap();
    assert!(!addr_show(&w, 1).contains(&w.vip));
    let st = w.tandem(1, &["status"]).unwrap();
    assert!(st.contains("BLOCKED on n1"), "{st}");
    w.cluster
        .wait_log(0, WAIT, &["Stop of web/guard failed", "BLOCKED"])
        .unwrap();

    // The operator fixes the cause and clears it: the move completes.
    std::fs::remove_file(&flag).unwrap();
    w.tandem(1, &["cleanup", "web"]).unwrap();
    w.wait_served_by("n2", 5, WAIT).unwrap();
}

#[test]
fn twenty_moves_in_a_row_end_with_exactly_one_node_serving() {
    let w = web("td20", 66, |_| {});
    let mut marks = Vec::new();
    for k in 0..20 {
        let (from, to) = if k % 2 == 0 {
            ("n1", "n2")
        } else {
            ("n2", "n1")
        };
        marks.push((w.probe_now_ms(), from, to));
        w.tandem(k % 2, &["move", "web", to]).unwrap();
        w.wait_served_by(to, 3, WAIT).unwrap();
    }
    // After each move, once the new node answered, the old one never
    // answers again (a request stamped up to 50 ms before a later one may
    // be scheduled after it on this busy machine: that much is tolerated).
    let samples = w.samples();
    for (k, (t, from, to)) in marks.iter().enumerate() {
        let end = marks.get(k + 1).map_or(f64::MAX, |m| m.0);
        let first_new = samples
            .iter()
            .filter(|x| x.t_ms >= *t && x.t_ms < end)
            .find(|x| x.answer.as_deref() == Some(*to))
            .map(|x| x.t_ms)
            .unwrap_or_else(|| panic!("move {k}: {to} never answered"));
        let late_old = samples
            .iter()
            .filter(|x| x.t_ms > first_new + 50.0 && x.t_ms < end)
            .filter(|x| x.answer.as_deref() == Some(*from))
            .count();
        assert_eq!(
            late_old, 0,
            "move {k}: {from} answered after {to} had taken over"
        );
    }
    let holders = (0..2)
        .filter(|&i| addr_show(&w, i).contains(&w.vip))
        .count();
    assert_eq!(holders, 1);
    assert!(
        web_pid(&w, 0).is_some() != web_pid(&w, 1).is_some(),
        "web server on both or neither"
    );
}
