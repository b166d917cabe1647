//! Heartbeat benchmark: for clusters of 2, 8 and 32 real daemons on
//! loopback, measures packets and bytes per second per node, daemon CPU
//! time per hour of idle cluster, and the heartbeat thread's worst timer
//! lateness while `stress-ng` loads every CPU (with and without real-time
//! scheduling). Prints a table and writes `bench/results/heartbeat.json`.
//!
//! Usage: `bench/run.sh heartbeat [--seconds N]` (as root for real-time).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tandem_lab::loopback_cluster::{LocalCluster, Options};

#[derive(Debug, Serialize)]
struct Idle {
    nodes: usize,
    seconds: f64,
    sent_packets_per_s_per_node: f64,
    sent_bytes_per_s_per_node: f64,
    received_packets_per_s_per_node: f64,
    received_bytes_per_s_per_node: f64,
    cpu_seconds_per_hour_per_node: f64,
}

#[derive(Debug, Serialize)]
struct Stress {
    nodes: usize,
    realtime: bool,
    scheduling: String,
    seconds: f64,
    stressor: String,
    worst_timer_lateness_ms: f64,
    stalls: u64,
    false_deaths: usize,
    late_warnings: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    default_timing: String,
    idle: Vec<Idle>,
    stress: Vec<Stress>,
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().context("stat format")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn start(
    exe: &std::path::Path,
    nodes: usize,
    subnet: u8,
    realtime: bool,
) -> anyhow::Result<LocalCluster> {
    let mut c = LocalCluster::new(
        exe,
        &Options {
            nodes,
            subnet,
            port: 7794,
            realtime,
            ..Options::default()
        },
    )?;
    c.start_all()?;
    for i in 0..nodes {
        c.wait_for(i, Duration::from_secs(30), "all members", |s| {
            s.membership.members.len() == nodes
        })?;
    }
    Ok(c)
}

fn idle(exe: &std::path::Path, nodes: usize, secs: u64) -> anyhow::Result<Idle> {
    let c = start(exe, nodes, 100 + nodes as u8, false)?;
    let before: Vec<_> = (0..nodes).map(|i| c.status(i)).collect::<Result<_, _>>()?;
    let ticks0: Vec<u64> = (0..nodes)
        .map(|i| cpu_ticks(c.pid(i).unwrap_or(0)))
        .collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let dt = t0.elapsed().as_secs_f64();
    let after: Vec<_> = (0..nodes).map(|i| c.status(i)).collect::<Result<_, _>>()?;
    let ticks1: Vec<u64> = (0..nodes)
        .map(|i| cpu_ticks(c.pid(i).unwrap_or(0)))
        .collect::<Result<_, _>>()?;
    let n = nodes as f64;
    let sum = |f: &dyn Fn(&tandem_control::Status) -> u64| -> f64 {
        after
            .iter()
            .zip(&before)
            .map(|(a, b)| (f(a) - f(b)) as f64)
            .sum::<f64>()
            / n
            / dt
    };
    let ticks: f64 = ticks1
        .iter()
        .zip(&ticks0)
        .map(|(a, b)| (a - b) as f64)
        .sum::<f64>()
        / n;
    Ok(Idle {
        nodes,
        seconds: dt,
        sent_packets_per_s_per_node: sum(&|s| s.daemon.sent_datagrams),
        sent_bytes_per_s_per_node: sum(&|s| s.daemon.sent_bytes),
        received_packets_per_s_per_node: sum(&|s| s.membership.stats.accepted),
        received_bytes_per_s_per_node: sum(&|s| s.membership.stats.accepted_bytes),
        // Clock ticks are 1/100 s on Linux.
        cpu_seconds_per_hour_per_node: ticks / 100.0 / dt * 3600.0,
    })
}

fn stress(
    exe: &std::path::Path,
    nodes: usize,
    realtime: bool,
    secs: u64,
) -> anyhow::Result<Stress> {
    let c = start(exe, nodes, 150 + nodes as u8 + u8::from(realtime), realtime)?;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let args = [
        format!("--cpu={cpus}"),
        format!("--io={cpus}"),
        format!("--timeout={secs}s"),
        "--quiet".into(),
    ];
    let mut s = Command::new("stress-ng")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("run stress-ng (apt-get install stress-ng)")?;
    let status = s.wait()?;
    if !status.success() {
        bail!("stress-ng failed: {status}");
    }
    let mut worst = 0u64;
    let mut stalls = 0;
    let mut scheduling = String::new();
    let mut deaths = 0;
    let mut lates = 0;
    for i in 0..nodes {
        let st = c.status(i)?;
        worst = worst.max(st.membership.stats.max_timer_lateness_us);
        stalls += st.membership.stats.stalls;
        scheduling = st.daemon.scheduling.clone();
        let log = std::fs::read_to_string(&c.nodes[i].log).unwrap_or_default();
        deaths += log.matches(" is dead").count();
        lates += log.matches("No heartbeat from").count();
    }
    Ok(Stress {
        nodes,
        realtime,
        scheduling,
        seconds: secs as f64,
        stressor: format!("stress-ng {}", args.join(" ")),
        worst_timer_lateness_ms: worst as f64 / 1000.0,
        stalls,
        false_deaths: deaths,
        late_warnings: lates,
    })
}

fn main() -> anyhow::Result<()> {
    let mut secs = 10;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => secs = args.next().context("--seconds N")?.parse()?,
            other => bail!("unknown argument {other}; usage: heartbeat [--seconds N]"),
        }
    }
    let exe = common::tandem_exe()?;
    let mut report = Report {
        machine: format!(
            "{} CPUs, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        ),
        default_timing: "keepalive 100 ms, warntime 300 ms, deadtime 500 ms".into(),
        idle: Vec::new(),
        stress: Vec::new(),
    };
    println!("idle cluster, {secs} s per size:");
    println!(
        "{:>5}  {:>12} {:>12} {:>12} {:>12} {:>14}",
        "nodes", "sent pkt/s", "sent B/s", "recv pkt/s", "recv B/s", "CPU s/hour"
    );
    for n in [2, 8, 32] {
        let r = idle(&exe, n, secs)?;
        println!(
            "{:>5}  {:>12.1} {:>12.0} {:>12.1} {:>12.0} {:>14.1}",
            r.nodes,
            r.sent_packets_per_s_per_node,
            r.sent_bytes_per_s_per_node,
            r.received_packets_per_s_per_node,
            r.received_bytes_per_s_per_node,
            r.cpu_seconds_per_hour_per_node
        );
        report.idle.push(r);
    }
    println!("\nunder stress-ng (every CPU busy with compute and IO), {secs} s per run:");
    println!(
        "{:>5}  {:>9}  {:>18}  {:>6}  {:>6}  {:>5}",
        "nodes", "realtime", "worst lateness ms", "stalls", "deaths", "lates"
    );
    for n in [2, 8, 32] {
        for rt in [false, true] {
            let r = stress(&exe, n, rt, secs)?;
            println!(
                "{:>5}  {:>9}  {:>18.2}  {:>6}  {:>6}  {:>5}   ({})",
                r.nodes,
                r.realtime,
                r.worst_timer_lateness_ms,
                r.stalls,
                r.false_deaths,
                r.late_warnings,
                r.scheduling
            );
            report.stress.push(r);
        }
    }
    let path = common::write_results("heartbeat", &report)?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
