//! Lease benchmark (issue 17), in the lab, with a VIP-only group and a web
//! server running on both nodes all the time (as keepalived users run it),
//! and a client opening a new connection to the VIP every 10 ms (100 ms
//! timeout):
//!
//! 1. **Lease health**, for the default timings and the fast preset, in
//!    steady state and under `stress-ng` on every CPU: how often the active
//!    node's kernel lease element was missing when sampled (`nft list set`
//!    in its namespace, every 20 ms), self-inflicted releases ("past this
//!    node's lease" in its log) and failed client connections.
//! 2. **Power-off failover, tandem's fast preset against keepalived** with
//!    `advert_int 0.01` (VRRPv3, 100 adverts a second, the same heartbeat
//!    rate as keepalive 10 ms), in one run on the same lab: outage seen by
//!    the client, failed connections, answers from the old node after the
//!    new one.
//!
//! Prints tables and writes `bench/results/lease.json`; asserts nothing.
//! Usage: `bench/run.sh lease [--runs N] [--seconds S] [--only
//! health|health-fast|failover]` (root; installs keepalived and stress-ng).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tandem_lab::lab_cluster::{WebCluster, WebOptions, outage};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize)]
struct Health {
    timing: String,
    load: String,
    seconds: u64,
    /// Lease samples taken and found missing (tandem only).
    lease_samples: Option<usize>,
    lease_missing: Option<usize>,
    /// Releases after a "freeze" (tandem only).
    self_releases: Option<usize>,
    client_requests: usize,
    client_errors: usize,
    /// Answers from n2 while n1 was healthy: false failovers.
    answers_from_n2: usize,
}

/// What the client saw between `from` and `to` (probe clock, ms):
/// (requests, failed, answered by n2).
fn client_window(w: &WebCluster, from: f64, to: f64) -> (usize, usize, usize) {
    let window: Vec<_> = w
        .samples()
        .into_iter()
        .filter(|x| x.t_ms >= from && x.t_ms <= to)
        .collect();
    (
        window.len(),
        window.iter().filter(|x| x.answer.is_none()).count(),
        window
            .iter()
            .filter(|x| x.answer.as_deref() == Some("n2"))
            .count(),
    )
}

#[derive(Debug, Serialize)]
struct Failover {
    what: String,
    outages_ms: Vec<f64>,
    min_ms: f64,
    median_ms: f64,
    max_ms: f64,
    errors: usize,
    dual_answers: usize,
}

#[derive(Debug, Serialize)]
struct Results {
    health: Vec<Health>,
    failover: Vec<Failover>,
}

fn lab(exe: &Path, prefix: &str, subnet: u8, timing: &str) -> anyhow::Result<WebCluster> {
    let mut w = WebCluster::new(
        exe,
        &WebOptions {
            prefix: prefix.into(),
            subnet,
            timing: timing.into(),
            auto_failback: true,
            vip_only: true,
            ..WebOptions::default()
        },
    )?;
    w.start_servers()?;
    Ok(w)
}

/// Whether the lease set in `netns` holds an element right now.
fn lease_present(netns: &str, table: &str) -> anyhow::Result<bool> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "list", "set", "inet", table])
        .arg("leases")
        .output()
        .context("nft list set")?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("expires"))
}

fn health(
    exe: &Path,
    name: &str,
    timing: &str,
    subnet: u8,
    seconds: u64,
) -> anyhow::Result<Vec<Health>> {
    let mut w = lab(exe, "tblh", subnet, timing)?;
    w.start_all()?;
    w.start_probe()?;
    w.wait_served_by("n1", 5, WAIT)?;
    for i in 0..2 {
        w.cluster
            .wait_for(i, WAIT, "both members", |s| s.membership.members.len() == 2)?;
    }
    let table = format!("tandem_lab{subnet}");
    let netns = w.lab.hosts[0].netns.clone();
    let mut out = Vec::new();
    for load in ["idle", "stress-ng --cpu 2 --io 1 --vm 1"] {
        let s = if load == "idle" {
            None
        } else {
            Some(tandem_lab::stress::Stress::start(Duration::from_secs(
                seconds + 60,
            ))?)
        };
        let log_before = std::fs::read_to_string(&w.cluster.nodes[0].log)?
            .matches("past this node's lease")
            .count();
        let from = w.probe_now_ms();
        let end = Instant::now() + Duration::from_secs(seconds);
        let (mut samples, mut missing) = (0, 0);
        // Sampling back to back would keep a CPU busy spawning `nft`, and
        // starve the web server and the client of their share: one sample
        // every 20 ms.
        while Instant::now() < end {
            samples += 1;
            if !lease_present(&netns, &table)? {
                missing += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(s);
        let to = w.probe_now_ms() - 150.0;
        let (requests, errors, from_n2) = client_window(&w, from, to);
        let first: Vec<String> = w
            .samples()
            .into_iter()
            .filter(|x| x.t_ms >= from && x.t_ms <= to && x.answer.is_none())
            .take(5)
            .map(|x| format!("{:.0} ms: {}", x.t_ms, x.error.unwrap_or_default()))
            .collect();
        if !first.is_empty() {
            eprintln!("  {name}, {load}: first failed requests: {first:?}");
        }
        let releases = std::fs::read_to_string(&w.cluster.nodes[0].log)?
            .matches("past this node's lease")
            .count()
            - log_before;
        eprintln!("  {name}, {load}: {missing}/{samples} samples without a lease");
        out.push(Health {
            timing: name.into(),
            load: load.into(),
            seconds,
            lease_samples: Some(samples),
            lease_missing: Some(missing),
            self_releases: Some(releases),
            client_requests: requests,
            client_errors: errors,
            answers_from_n2: from_n2,
        });
    }
    Ok(out)
}

fn summary(what: &str, runs: Vec<tandem_lab::lab_cluster::Outage>) -> Failover {
    let mut v: Vec<f64> = runs.iter().map(|o| o.outage_ms).collect();
    let (min_ms, median_ms, max_ms) = common::min_median_max(&v);
    v.sort_by(f64::total_cmp);
    Failover {
        what: what.into(),
        min_ms,
        median_ms,
        max_ms,
        errors: runs.iter().map(|o| o.errors).sum(),
        dual_answers: runs.iter().map(|o| o.dual_answers).sum(),
        outages_ms: v,
    }
}

fn measure(w: &WebCluster, since: f64) -> anyhow::Result<tandem_lab::lab_cluster::Outage> {
    w.wait_served_by("n2", 5, WAIT)?;
    std::thread::sleep(Duration::from_millis(300));
    outage(&w.samples(), since, "n1", "n2").context("no switch seen by the client")
}

fn tandem_failover(exe: &Path, subnet: u8, runs: usize) -> anyhow::Result<Failover> {
    let mut w = lab(exe, "tblt", subnet, "preset = \"fast\"")?;
    w.start_all()?;
    w.start_probe()?;
    w.wait_served_by("n1", 5, WAIT)?;
    let mut v = Vec::new();
    for run in 0..runs {
        eprintln!("  tandem fast preset: power-off {}/{runs}", run + 1);
        w.cluster
            .wait_for(0, WAIT, "n1 joined", |s| s.membership.members.len() == 2)?;
        let t = w.probe_now_ms();
        w.power_off(0)?;
        v.push(measure(&w, t)?);
        w.power_on(0)?;
        w.wait_served_by("n1", 5, WAIT)?;
    }
    Ok(summary(
        "tandem, preset fast (keepalive 10 ms, deadtime 25 ms), kernel leases on",
        v,
    ))
}

/// keepalived on node `i` of `w`'s lab: VRRPv3, advert_int 0.01, n1
/// preferred (priority 200, preempting), the VIP on eth0, real-time
/// scheduling (`max_auto_priority`), as at its fastest.
fn keepalived(w: &WebCluster, dir: &Path, i: usize, subnet: u8) -> anyhow::Result<Child> {
    let name = format!("n{}", i + 1);
    let conf = dir.join(format!("keepalived-{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version 3\n  vrrp_garp_master_delay 0\n  max_auto_priority\n}}\n\
vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 0.01\n  virtual_ipaddress {{\n    198.18.{subnet}.200/24 dev eth0\n  }}\n}}\n",
            prio = if i == 0 { 200 } else { 100 }
        ),
    )?;
    let pid = |what: &str| dir.join(format!("{what}-{name}.pid"));
    // A power-off leaves the pid files behind: keepalived would refuse to
    // start ("daemon is already running").
    let _ = std::fs::remove_file(pid("keepalived"));
    let _ = std::fs::remove_file(pid("vrrp"));
    w.lab
        .command(&name, "keepalived")?
        .args(["--dont-fork", "--log-console", "--vrrp", "--use-file"])
        .arg(&conf)
        .arg("--pid")
        .arg(pid("keepalived"))
        .arg("--vrrp_pid")
        .arg(pid("vrrp"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            dir.join(format!("keepalived-{name}.log")),
        )?)
        .spawn()
        .context("start keepalived (apt-get install keepalived)")
}

/// keepalived's steady state, idle and under stress-ng: failed requests
/// and answers from the backup (false failovers).
fn keepalived_health(exe: &Path, subnet: u8, seconds: u64) -> anyhow::Result<Vec<Health>> {
    let mut w = lab(exe, "tblq", subnet, "")?;
    let dir = w.cluster.dir().to_path_buf();
    let mut kids = vec![
        keepalived(&w, &dir, 0, subnet)?,
        keepalived(&w, &dir, 1, subnet)?,
    ];
    let result = (|| -> anyhow::Result<Vec<Health>> {
        w.start_probe()?;
        w.wait_served_by("n1", 50, WAIT)?;
        let mut out = Vec::new();
        for load in ["idle", "stress-ng --cpu 2 --io 1 --vm 1"] {
            let s = if load == "idle" {
                None
            } else {
                Some(tandem_lab::stress::Stress::start(Duration::from_secs(
                    seconds + 60,
                ))?)
            };
            let from = w.probe_now_ms();
            std::thread::sleep(Duration::from_secs(seconds));
            drop(s);
            let (requests, errors, from_n2) = client_window(&w, from, w.probe_now_ms() - 150.0);
            eprintln!("  keepalived, {load}: {errors} failed, {from_n2} from n2");
            out.push(Health {
                timing: "keepalived advert_int 0.01".into(),
                load: load.into(),
                seconds,
                lease_samples: None,
                lease_missing: None,
                self_releases: None,
                client_requests: requests,
                client_errors: errors,
                answers_from_n2: from_n2,
            });
            // Back to n1 before the next window.
            w.wait_served_by("n1", 50, WAIT)?;
        }
        Ok(out)
    })();
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    result
}

fn keepalived_failover(exe: &Path, subnet: u8, runs: usize) -> anyhow::Result<Failover> {
    let mut w = lab(exe, "tblk", subnet, "")?;
    let dir = w.cluster.dir().to_path_buf();
    let mut kids = vec![
        keepalived(&w, &dir, 0, subnet)?,
        keepalived(&w, &dir, 1, subnet)?,
    ];
    let result = (|| -> anyhow::Result<Failover> {
        w.start_probe()?;
        w.wait_served_by("n1", 5, WAIT)?;
        let mut v = Vec::new();
        for run in 0..runs {
            eprintln!("  keepalived advert_int 0.01: power-off {}/{runs}", run + 1);
            std::thread::sleep(Duration::from_millis(500));
            let t = w.probe_now_ms();
            w.lab.power_off("n1")?;
            v.push(measure(&w, t)?);
            // Back on: no VIP (a reboot), cable in, keepalived started.
            let _ = kids[0].wait();
            w.lab.reset_addresses("n1")?;
            w.lab.cable("n1", true)?;
            w.start_server(0)?;
            kids[0] = keepalived(&w, &dir, 0, subnet)?;
            w.wait_served_by("n1", 5, WAIT)?;
        }
        Ok(summary(
            "keepalived 2.2, VRRPv3 advert_int 0.01 (n1 priority 200, n2 100)",
            v,
        ))
    })();
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    if result.is_err() {
        // Keep keepalived's own logs for a post-mortem.
        let keep = std::env::temp_dir().join("tandem-bench-keepalived");
        let _ = std::fs::create_dir_all(&keep);
        for n in ["n1", "n2"] {
            let f = format!("keepalived-{n}.log");
            let _ = std::fs::copy(dir.join(&f), keep.join(&f));
        }
        eprintln!("keepalived's logs kept in {}", keep.display());
    }
    // The web servers (and the probe) go with the lab.
    drop(w);
    result
}

fn main() -> anyhow::Result<()> {
    let (mut runs, mut seconds) = (10usize, 30u64);
    let mut only: Option<String> = None;
    let usage = "usage: lease [--runs N] [--seconds S] [--only health|health-fast|failover]";
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--seconds" => seconds = args.next().context("--seconds S")?.parse()?,
            "--only" => {
                let part = args.next().context("--only health|health-fast|failover")?;
                if !["health", "failover", "health-fast"].contains(&part.as_str()) {
                    bail!("--only {part}: {usage}");
                }
                only = Some(part);
            }
            other => bail!("unknown argument {other}; {usage}"),
        }
    }
    let exe = common::tandem_exe()?;
    let wanted = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let mut health_rows = Vec::new();
    if only.as_deref() == Some("health-fast") {
        health_rows = health(
            &exe,
            "fast preset (10 / 25 ms)",
            "preset = \"fast\"",
            81,
            seconds,
        )?;
    }
    if wanted("health") {
        eprintln!("lease health");
        health_rows = health(&exe, "default (100 / 500 ms)", "", 80, seconds)?;
        health_rows.extend(health(
            &exe,
            "fast preset (10 / 25 ms)",
            "preset = \"fast\"",
            81,
            seconds,
        )?);
        health_rows.extend(keepalived_health(&exe, 84, seconds)?);
    }
    let mut failover = Vec::new();
    if wanted("failover") {
        eprintln!("power-off failover");
        failover.push(tandem_failover(&exe, 82, runs)?);
        failover.push(keepalived_failover(&exe, 83, runs)?);
    }
    let opt = |v: Option<usize>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    println!(
        "{:<28} {:<34} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "timings", "load", "samples", "no lease", "releases", "requests", "errors", "from n2"
    );
    for h in &health_rows {
        println!(
            "{:<28} {:<34} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            h.timing,
            h.load,
            opt(h.lease_samples),
            opt(h.lease_missing),
            opt(h.self_releases),
            h.client_requests,
            h.client_errors,
            h.answers_from_n2
        );
    }
    println!(
        "\n{:<72} {:>7} {:>7} {:>7} {:>7} {:>5}",
        "power-off of the active node", "min ms", "median", "max ms", "errors", "dual"
    );
    for f in &failover {
        println!(
            "{:<72} {:>7.0} {:>7.0} {:>7.0} {:>7} {:>5}",
            f.what, f.min_ms, f.median_ms, f.max_ms, f.errors, f.dual_answers
        );
    }
    if let [t, k] = failover.as_slice()
        && k.median_ms > 0.0
    {
        println!(
            "\ntandem's median is {:.2} x keepalived's (goal: at most 0.8)",
            t.median_ms / k.median_ms
        );
    }
    let all = Results {
        health: health_rows,
        failover,
    };
    let path = common::write_results("lease", &all)?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
