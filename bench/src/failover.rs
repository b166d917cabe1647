//! Failover benchmark in the lab: a client probes the VIP every 10 ms
//! (100 ms timeout) while n1 is powered off, its daemon is SIGKILLed, or an
//! operator moves the group; for each scenario and timing set it records
//! the outage (last answer from the old node to first answer from the new
//! one), client errors, answers from the old node after the new one
//! answered ("dual answers"), and the heartbeat thread's worst timer
//! lateness. Prints min/median/max and writes `bench/results/failover.json`.
//!
//! Usage: `bench/run.sh failover [--runs N] [--only default|fast|drills]`
//! (root). `--only` runs one part and still writes the results file.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tandem_lab::lab_cluster::{Outage, WebCluster, WebOptions, outage};

#[derive(Debug, Serialize)]
struct Run {
    outage_ms: f64,
    errors: usize,
    dual_answers: usize,
    worst_lateness_ms: f64,
}

#[derive(Debug, Serialize)]
struct Scenario {
    timing: String,
    scenario: String,
    runs: Vec<Run>,
    min_ms: f64,
    median_ms: f64,
    max_ms: f64,
    total_dual_answers: usize,
    total_errors: usize,
}

const WAIT: Duration = Duration::from_secs(20);

fn lateness(w: &WebCluster) -> f64 {
    (0..2)
        .filter_map(|i| w.cluster.status(i).ok())
        .map(|s| s.membership.stats.max_timer_lateness_us as f64 / 1000.0)
        .fold(0.0, f64::max)
}

fn summarise(timing: &str, scenario: &str, runs: Vec<Run>) -> Scenario {
    let v: Vec<f64> = runs.iter().map(|r| r.outage_ms).collect();
    let (min_ms, median_ms, max_ms) = common::min_median_max(&v);
    Scenario {
        timing: timing.into(),
        scenario: scenario.into(),
        min_ms,
        median_ms,
        max_ms,
        total_dual_answers: runs.iter().map(|r| r.dual_answers).sum(),
        total_errors: runs.iter().map(|r| r.errors).sum(),
        runs,
    }
}

fn record(w: &WebCluster, o: Outage) -> Run {
    Run {
        outage_ms: o.outage_ms,
        errors: o.errors,
        dual_answers: o.dual_answers,
        worst_lateness_ms: lateness(w),
    }
}

fn measure(w: &WebCluster, since: f64, old: &str, new: &str) -> anyhow::Result<Outage> {
    w.wait_served_by(new, 5, WAIT)?;
    // Let any late answers from the old node show up before counting.
    std::thread::sleep(Duration::from_millis(300));
    outage(&w.samples(), since, old, new).context("no switch seen by the client")
}

fn bench(
    exe: &Path,
    name: &str,
    timing: &str,
    runs: usize,
    subnet: u8,
) -> anyhow::Result<Vec<Scenario>> {
    let mut w = WebCluster::new(
        exe,
        &WebOptions {
            prefix: "tbfo".into(),
            subnet,
            timing: timing.into(),
            ..WebOptions::default()
        },
    )?;
    w.start_all()?;
    w.start_probe()?;
    w.wait_served_by("n1", 5, WAIT)?;
    let (mut off, mut kill, mut mv) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        eprintln!("  {name}: run {}/{runs}", run + 1);
        // Power-off of the active node, then its return (failback).
        let t = w.probe_now_ms();
        w.power_off(0)?;
        off.push(record(&w, measure(&w, t, "n1", "n2")?));
        w.power_on(0)?;
        w.wait_served_by("n1", 5, WAIT)?;
        w.cluster
            .wait_for(0, WAIT, "n1 joined", |s| s.membership.joined)?;
        // SIGKILL of the active daemon only: its VIP and web server stay.
        let t = w.probe_now_ms();
        w.cluster.kill(0)?;
        kill.push(record(&w, measure(&w, t, "n1", "n2")?));
        w.cluster.start(0)?;
        w.wait_served_by("n1", 5, WAIT)?;
        w.cluster
            .wait_for(0, WAIT, "n1 joined", |s| s.membership.joined)?;
        // Operator move and back.
        let t = w.probe_now_ms();
        w.tandem(0, &["move", "web", "n2"])?;
        mv.push(record(&w, measure(&w, t, "n1", "n2")?));
        w.tandem(0, &["move", "web", "--clear"])?;
        w.wait_served_by("n1", 5, WAIT)?;
    }
    Ok(vec![
        summarise(name, "power-off", off),
        summarise(name, "daemon SIGKILL", kill),
        summarise(name, "operator move", mv),
    ])
}

/// Once n1 has rejoined, moves the group back to it (no auto-failback in
/// the drills) and clears the move.
fn back_to_n1(w: &WebCluster) -> anyhow::Result<()> {
    w.cluster.wait_for(0, WAIT, "n1 joined", |s| {
        s.membership.joined && s.membership.members.len() == 2
    })?;
    w.tandem(1, &["move", "web", "n1"])?;
    w.wait_served_by("n1", 5, WAIT)?;
    w.tandem(1, &["move", "web", "--clear"])?;
    Ok(())
}

/// Pulls n1's cable until n2 serves, plus a second; puts it back and
/// measures the switch.
fn cable_pull(w: &WebCluster) -> anyhow::Result<Run> {
    let t = w.probe_now_ms();
    w.lab.cable("n1", false)?;
    w.wait_served_by("n2", 5, WAIT)?;
    std::thread::sleep(Duration::from_millis(1000));
    w.lab.cable("n1", true)?;
    std::thread::sleep(Duration::from_millis(1500));
    Ok(record(w, measure(w, t, "n1", "n2")?))
}

/// Split-brain drills, with a witness (the client, c1) and without auto-failback
/// so the group must settle on the survivor at once: the active daemon
/// frozen (SIGSTOP) for three deadtimes, and n1's cable pulled for the same
/// time. Between runs the group is moved back to n1.
fn drills(exe: &Path, runs: usize, subnet: u8) -> anyhow::Result<Vec<Scenario>> {
    let mut w = WebCluster::new(
        exe,
        &WebOptions {
            prefix: "tbdr".into(),
            subnet,
            auto_failback: false,
            extra_top: format!(
                "[witness]\naddresses = [\"198.18.{subnet}.100\"]\nkind = \"icmp\"\ntimeout = \"300ms\""
            ),
            ..WebOptions::default()
        },
    )?;
    w.start_all()?;
    w.start_probe()?;
    w.wait_served_by("n1", 5, WAIT)?;
    let (mut freeze, mut cable) = (Vec::new(), Vec::new());
    for run in 0..runs {
        eprintln!("  drills: run {}/{runs}", run + 1);
        let t = w.probe_now_ms();
        w.cluster.signal(0, libc::SIGSTOP)?;
        w.wait_served_by("n2", 5, WAIT)?;
        std::thread::sleep(Duration::from_millis(1000));
        w.cluster.signal(0, libc::SIGCONT)?;
        std::thread::sleep(Duration::from_millis(1500));
        freeze.push(record(&w, measure(&w, t, "n1", "n2")?));
        back_to_n1(&w)?;

        cable.push(cable_pull(&w)?);
        back_to_n1(&w)?;
    }
    Ok(vec![
        summarise("drills (witness, no auto-failback)", "freeze 1.5 s", freeze),
        summarise(
            "drills (witness, no auto-failback)",
            "cable pull 1.5 s",
            cable,
        ),
    ])
}

/// Drills with the arbitrator (`tandem witness` in c1), no auto-failback:
/// a split between n1 and n2 while both reach it (the group must stay on
/// n1: the figure is the longest gap in n1's answers, the dual column
/// counts answers from n2), and n1's cable pulled for 1.5 s (outage until
/// n2 serves). Between runs the group is moved back to n1.
fn arbiter_drills(exe: &Path, runs: usize, subnet: u8) -> anyhow::Result<Vec<Scenario>> {
    let mut w = WebCluster::new(
        exe,
        &WebOptions {
            prefix: "tbar".into(),
            subnet,
            auto_failback: false,
            extra_top: format!(
                "[witness]\nkind = \"arbiter\"\naddresses = [\"198.18.{subnet}.100\"]\nkey_file = \"arbiter.key\"\ntimeout = \"300ms\""
            ),
            ..WebOptions::default()
        },
    )?;
    let dir = w.cluster.dir().to_path_buf();
    tandem_config::keyfile::write_key(
        &dir.join("arbiter.key"),
        b"bench-arbitrator-key-0123456789",
    )?;
    std::fs::write(
        dir.join("witness.toml"),
        format!(
            "listen = \"198.18.{subnet}.100:7695\"\nvote = \"2s\"\nstate_file = \"witness.state\"\n[[cluster]]\nname = \"lab{subnet}\"\nkey_file = \"arbiter.key\"\n"
        ),
    )?;
    let log = dir.join("witness.log");
    let mut arbiter = w
        .lab
        .command("c1", &exe.to_string_lossy())?
        .args(["witness", "--config"])
        .arg(dir.join("witness.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let result = (|| -> anyhow::Result<Vec<Scenario>> {
        let deadline = std::time::Instant::now() + WAIT;
        while !std::fs::read_to_string(&log)?.contains("votes open") {
            if std::time::Instant::now() > deadline {
                bail!("the arbitrator never opened its votes");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        w.start_all()?;
        w.start_probe()?;
        w.wait_served_by("n1", 5, WAIT)?;
        let n2_addr = format!("198.18.{subnet}.12");
        let (mut split, mut cable) = (Vec::new(), Vec::new());
        for run in 0..runs {
            eprintln!("  arbitrator drills: run {}/{runs}", run + 1);
            let t = w.probe_now_ms();
            w.lab.isolate_from("n1", &n2_addr, true)?;
            std::thread::sleep(Duration::from_millis(3000));
            w.lab.isolate_from("n1", &n2_addr, false)?;
            let end = w.probe_now_ms();
            let window: Vec<_> = w
                .samples()
                .into_iter()
                .filter(|x| x.t_ms >= t && x.t_ms <= end)
                .collect();
            let mut gap: f64 = 0.0;
            let mut last = t;
            for x in window.iter().filter(|x| x.answer.as_deref() == Some("n1")) {
                gap = gap.max(x.t_ms - last);
                last = x.t_ms;
            }
            gap = gap.max(end - last);
            split.push(Run {
                outage_ms: gap,
                errors: window.iter().filter(|x| x.error.is_some()).count(),
                dual_answers: window
                    .iter()
                    .filter(|x| x.answer.as_deref() == Some("n2"))
                    .count(),
                worst_lateness_ms: lateness(&w),
            });
            w.cluster.wait_for(1, WAIT, "n2 back", |s| {
                s.membership.members.len() == 2 && s.membership.waiting.is_none()
            })?;

            cable.push(cable_pull(&w)?);
            back_to_n1(&w)?;
        }
        Ok(vec![
            summarise(
                "drills (arbitrator, no auto-failback)",
                "split, both reach it",
                split,
            ),
            summarise(
                "drills (arbitrator, no auto-failback)",
                "cable pull 1.5 s",
                cable,
            ),
        ])
    })();
    let _ = arbiter.kill();
    let _ = arbiter.wait();
    result
}

fn main() -> anyhow::Result<()> {
    let mut runs = 10;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--only" => {
                let part = args.next().context("--only default|fast|drills")?;
                if !["default", "fast", "drills"].contains(&part.as_str()) {
                    bail!("--only {part}: choose default, fast or drills");
                }
                only = Some(part);
            }
            other => bail!(
                "unknown argument {other}; usage: failover [--runs N] [--only default|fast|drills]"
            ),
        }
    }
    let wanted = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let exe = common::tandem_exe()?;
    let sets = [
        ("default", "default (keepalive 100 ms, deadtime 500 ms)", ""),
        (
            "fast",
            "fast preset (keepalive 10 ms, warntime 23 ms, deadtime 25 ms)",
            "preset = \"fast\"",
        ),
    ];
    let mut all = Vec::new();
    for (i, (part, name, timing)) in sets.iter().enumerate() {
        if wanted(part) {
            eprintln!("timing set: {name}");
            all.extend(bench(&exe, name, timing, runs, 70 + i as u8)?);
        }
    }
    if wanted("drills") {
        eprintln!("drills");
        all.extend(drills(&exe, runs, 75)?);
        eprintln!("arbitrator drills");
        all.extend(arbiter_drills(&exe, runs, 76)?);
    }
    println!(
        "{:<55} {:<16} {:>8} {:>8} {:>8} {:>7} {:>5} {:>12}",
        "timings", "scenario", "min ms", "median", "max ms", "errors", "dual", "lateness ms"
    );
    for s in &all {
        let late = s
            .runs
            .iter()
            .map(|r| r.worst_lateness_ms)
            .fold(0.0, f64::max);
        println!(
            "{:<55} {:<16} {:>8.0} {:>8.0} {:>8.0} {:>7} {:>5} {:>12.1}",
            s.timing,
            s.scenario,
            s.min_ms,
            s.median_ms,
            s.max_ms,
            s.total_errors,
            s.total_dual_answers,
            late
        );
    }
    let path = common::write_results("failover", &all)?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
