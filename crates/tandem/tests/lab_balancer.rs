//! Issue 16 in the lab, with Debian's own agents: S2's group
//! (`ocf:heartbeat:IPaddr` + `lsb:haproxy` + `lsb:stunnel4`).
//!
//! - The native IPaddr/IPaddr2 path and the shell scripts, run on the same
//!   parameter sets, leave the same address on the interface, and the
//!   client's neighbour table is repointed by both.
//! - A SIGKILLed haproxy is restarted from its pidfd's exit report, long
//!   before its next monitor (checked from the daemon log's timestamps),
//!   and an `/etc/init.d/haproxy reload` (a new main PID) is not a death.
//!
//! Needs root, haproxy, stunnel4 and resource-agents; fails with a clear
//! message otherwise.
#![allow(clippy::unwrap_used)] // test code panics on failure by design

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

use tandem_core::{OpResult, ResourceState};
use tandem_lab::balancer::{BalancerOptions, HAPROXY_PIDFILE, balancer, on_node, service_pid};
use tandem_lab::netns::Lab;
use tandem_lab::poll::until_some as until;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(30);

/// Seconds since midnight (UTC) of a log line's RFC 3339 timestamp.
fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?;
    let t = t.trim_end_matches('Z');
    let mut it = t.split(':');
    let (h, m, s) = (it.next()?, it.next()?, it.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

fn now_of_day() -> f64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    (d.as_secs_f64()) % 86400.0
}

#[test]
fn a_killed_haproxy_is_restarted_at_once_and_a_reload_is_not_a_death() {
    // Monitors every 30 s: anything faster than that came from the watch.
    let mut w = balancer(
        EXE.as_ref(),
        &BalancerOptions {
            prefix: "tdbal".into(),
            subnet: 71,
            native: true,
            watch: true,
            monitor: "30s".into(),
        },
    )
    .expect("S2 lab (root, haproxy, stunnel4, resource-agents needed)");
    w.start_servers().unwrap();
    w.start_all().unwrap();
    w.start_probe().unwrap();
    w.wait_served_by("n1", 5, WAIT).unwrap();
    let all_started = |w: &tandem_lab::lab_cluster::WebCluster| {
        until(WAIT, || {
            let st = w.cluster.status(0).ok()?;
            st.membership.groups[0]
                .resources
                .iter()
                .all(|r| r.state == ResourceState::Started)
                .then_some(())
        })
        .expect("the group never ran completely on n1")
    };
    all_started(&w);
    let log = w.cluster.nodes[0].log.clone();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("web/vip: ocf:heartbeat:IPaddr runs natively"),
        "the native path was not taken: {text}"
    );

    // SIGKILL haproxy: the exit is seen at once, haproxy restarted in place.
    let pid = service_pid(&w, 0, HAPROXY_PIDFILE).unwrap();
    let killed_at = now_of_day();
    tandem::process::signal(pid, libc::SIGKILL).unwrap();
    let restarted = until(WAIT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        let failed = text
            .lines()
            .find(|l| l.contains("Monitor of web/haproxy failed"))?
            .to_string();
        let started = text
            .lines()
            .skip_while(|l| !l.contains("Monitor of web/haproxy failed"))
            .find(|l| l.contains("Started web/haproxy"))?
            .to_string();
        Some((failed, started))
    });
    let (failed, started) = restarted.unwrap_or_else(|| {
        panic!(
            "haproxy was not restarted; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert!(failed.contains("exited (seen at once)"), "{failed}");
    let (t_failed, t_started) = (log_time(&failed).unwrap(), log_time(&started).unwrap());
    println!(
        "kill → failure logged {:.0} ms, → haproxy started {:.0} ms",
        (t_failed - killed_at) * 1000.0,
        (t_started - killed_at) * 1000.0
    );
    // The next monitor was ≥ 25 s away; the restart came from the watch.
    assert!(
        t_started - killed_at < 5.0,
        "restarted {:.1} s after the kill: that was a monitor, not the watch",
        t_started - killed_at
    );
    w.wait_served_by("n1", 5, WAIT).unwrap();
    all_started(&w);
    let st = w.cluster.status(0).unwrap();
    let haproxy = &st.membership.groups[0].resources[1];
    assert_eq!(haproxy.fail_count, 1);

    // A reload: a new haproxy takes the pid file's place, the old one
    // exits. Not a death: the watch moves to the new process.
    let before = service_pid(&w, 0, HAPROXY_PIDFILE).unwrap();
    on_node(&w, 0, "/etc/init.d/haproxy reload").unwrap();
    let after = until(WAIT, || {
        let p = service_pid(&w, 0, HAPROXY_PIDFILE).ok()?;
        (p != before).then_some(p)
    })
    .expect("the reload did not change haproxy's main process");
    let noticed = until(WAIT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .find(|l| l.contains("took its place (a reload"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| {
        panic!(
            "the old haproxy's exit was never seen as a reload (new pid {after}); log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert!(noticed.contains("web/haproxy"), "{noticed}");
    let st = w.cluster.status(0).unwrap();
    let haproxy = &st.membership.groups[0].resources[1];
    assert_eq!(
        (haproxy.state, haproxy.fail_count),
        (ResourceState::Started, 1),
        "a reload counted as a failure"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("Monitor of web/haproxy failed").count(),
        1,
        "{text}"
    );
    w.wait_served_by("n1", 5, WAIT).unwrap();

    // Moved to n2 and straight back: n2's remaining gratuitous ARPs (five,
    // 200 ms apart) must stop with its address, or they point the client
    // back at n2 after n1 took over.
    w.tandem(0, &["move", "web", "n2"]).unwrap();
    w.wait_served_by("n2", 3, WAIT).unwrap();
    let back = w.probe_now_ms();
    w.tandem(1, &["move", "web", "--clear"]).unwrap();
    w.wait_served_by("n1", 3, WAIT).unwrap();
    until(WAIT, || (w.probe_now_ms() > back + 1500.0).then_some(()));
    let samples = w.samples();
    let first_n1 = samples
        .iter()
        .position(|x| x.t_ms > back && x.answer.as_deref() == Some("n1"))
        .unwrap();
    let lost: Vec<String> = samples[first_n1..]
        .iter()
        .filter(|x| x.t_ms < back + 1500.0 && x.answer.as_deref() != Some("n1"))
        .map(|x| {
            format!(
                "{:.0} ms: {:?}",
                x.t_ms - back,
                x.answer.as_ref().or(x.error.as_ref())
            )
        })
        .collect();
    assert!(lost.len() <= 2, "after n1 took the address back: {lost:?}");
}

/// `ip -o addr` lines of `ip` on `dev` in `ns`, without the lifetimes.
fn address_lines(ns: &str, ip: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!(" {ip}/")))
        .map(|l| {
            l.split("\\")
                .next()
                .unwrap_or("")
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The MAC address c1's neighbour table holds for `ip`, if any.
fn neighbour(ns: &str, ip: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "neigh", "show", ip])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = s.split_whitespace();
    it.position(|w| w == "lladdr")?;
    it.next().map(str::to_string)
}

/// Runs the agent script `kind` with `params` and `action` in `ns`.
fn script(ns: &str, kind: &str, params: &BTreeMap<String, String>, action: &str) -> i32 {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "env", "OCF_ROOT=/usr/lib/ocf"]);
    c.arg("OCF_RESOURCE_INSTANCE=cmp");
    for (k, v) in params {
        c.arg(format!("OCF_RESKEY_{k}={v}"));
    }
    c.arg(format!("/usr/lib/ocf/resource.d/heartbeat/{kind}"))
        .arg(action)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.status().unwrap().code().unwrap_or(-1)
}

fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    tandem_lab::netns::run_in(ns, f).unwrap()
}

#[test]
fn native_ipaddr_and_the_scripts_leave_the_same_address_and_repoint_the_client() {
    assert!(
        std::path::Path::new("/usr/lib/ocf/resource.d/heartbeat/IPaddr2").exists(),
        "this test needs Debian's resource-agents package (apt-get install resource-agents)"
    );
    let lab = Lab::new("tdnat", 72, &["n1", "c1"]).expect("lab (root needed)");
    let (n1, c1) = (lab.hosts[0].netns.clone(), lab.hosts[1].netns.clone());
    // Scripts keep their state here (systemd-tmpfiles makes it at boot).
    std::fs::create_dir_all("/run/resource-agents").unwrap();
    let n1_mac = {
        let out = Command::new("ip")
            .args(["-n", &n1, "-o", "link", "show", "eth0"])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let mut it = s.split_whitespace();
        it.position(|w| w == "link/ether").unwrap();
        it.next().unwrap().to_string()
    };
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("IPaddr2", vec![("cidr_netmask", "24"), ("nic", "eth0")]),
        (
            "IPaddr2",
            vec![("cidr_netmask", "24"), ("nic", "eth0"), ("iflabel", "vip")],
        ),
        ("IPaddr2", vec![]), // interface and prefix from the routing table
        (
            "IPaddr2",
            vec![("nic", "eth0:7"), ("cidr_netmask", "255.255.255.0")],
        ),
        ("IPaddr", vec![("cidr_netmask", "24"), ("nic", "eth0")]),
    ];
    for (n, (kind, extra)) in cases.iter().enumerate() {
        let ip = format!("198.18.72.{}", 201 + n);
        let mut params: BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        params.insert("ip".into(), ip.clone());
        let n1_for_route = n1.clone();
        let p2 = params.clone();
        let kind2 = kind.to_string();
        let f = in_netns(&n1_for_route, move || {
            tandem_config::native::ipaddr(
                &kind2,
                &p2,
                &tandem_config::legacy::find_interface,
                &mut BTreeMap::new(),
            )
        })
        .unwrap_or_else(|e| panic!("{kind} {params:?} does not run natively: {e}"));
        let poison = || {
            let st = Command::new("ip")
                .args([
                    "-n",
                    &c1,
                    "neigh",
                    "replace",
                    &ip,
                    "lladdr",
                    "02:00:00:00:00:99",
                    "dev",
                    "eth0",
                    "nud",
                    "stale",
                ])
                .status()
                .unwrap();
            assert!(st.success());
        };
        // The script.
        poison();
        assert_eq!(
            script(&n1, kind, &params, "start"),
            0,
            "{kind} {params:?} start"
        );
        assert_eq!(script(&n1, kind, &params, "monitor"), 0);
        let by_script = address_lines(&n1, &ip);
        until(Duration::from_secs(10), || {
            (neighbour(&c1, &ip).as_deref() == Some(n1_mac.as_str())).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{kind}: the script's ARP never reached the client: {:?}",
                neighbour(&c1, &ip)
            )
        });
        assert_eq!(script(&n1, kind, &params, "stop"), 0);
        assert_eq!(script(&n1, kind, &params, "monitor"), 7);
        assert!(address_lines(&n1, &ip).is_empty(), "the script left {ip}");
        // Natively.
        poison();
        let (fa, fb, fc, fd) = (f.clone(), f.clone(), f.clone(), f.clone());
        let t = Duration::from_secs(5);
        assert_eq!(
            in_netns(&n1, move || tandem_agents::ipaddr::start(&fa, t)),
            OpResult::Ok
        );
        assert_eq!(
            in_netns(&n1, move || tandem_agents::ipaddr::monitor(&fb, t)),
            OpResult::Ok
        );
        let native = address_lines(&n1, &ip);
        until(Duration::from_secs(10), || {
            (neighbour(&c1, &ip).as_deref() == Some(n1_mac.as_str())).then_some(())
        })
        .unwrap_or_else(|| panic!("{kind}: the native ARP never reached the client"));
        assert_eq!(
            in_netns(&n1, move || tandem_agents::ipaddr::stop(&fc, t)),
            OpResult::Ok
        );
        assert_eq!(
            in_netns(&n1, move || tandem_agents::ipaddr::monitor(&fd, t)),
            OpResult::NotRunning
        );
        assert!(
            address_lines(&n1, &ip).is_empty(),
            "the native path left {ip}"
        );
        assert_eq!(
            native, by_script,
            "{kind} {params:?}: native and script differ on the interface"
        );
        println!("{kind} {extra:?}: {native:?}");
    }
}
