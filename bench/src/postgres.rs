//! The S3 benchmark: the outage a PostgreSQL client sees (longest gap
//! between acknowledged commits, one connection per insert) when the
//! primary is powered off, when it returns and takes the database back
//! (auto_failback, a planned switchover), and on an operator's move.
//! `bench/run.sh postgres [--runs N]`; writes bench/results/postgres.json.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tandem_lab::volume_cluster::{Mode, VolumeCluster};

/// Inserts rows through the VIP until stopped; the times of acknowledged
/// commits.
fn client(c: &VolumeCluster, stop: Arc<AtomicBool>) -> anyhow::Result<Arc<Mutex<Vec<Instant>>>> {
    let acks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let (ns, vip, out) = (c.lab.host("c1")?.netns.clone(), c.vip.clone(), acks.clone());
    std::thread::spawn(move || {
        let mut v = 0i64;
        while !stop.load(Ordering::Relaxed) {
            v += 1;
            let ok = std::process::Command::new("ip")
                .args([
                    "netns", "exec", &ns, "timeout", "0.2", "psql", "-h", &vip, "-U", "postgres",
                    "-qAt", "-c",
                ])
                .arg(format!("insert into t values ({v})"))
                .env("PGCONNECT_TIMEOUT", "1")
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                if let Ok(mut a) = out.lock() {
                    a.push(Instant::now());
                }
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    Ok(acks)
}

fn wait_acks(acks: &Mutex<Vec<Instant>>, after: Instant, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = acks
            .lock()
            .map(|a| a.iter().filter(|t| **t > after).count())
            .unwrap_or(0);
        if got >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no {n} acknowledged commits within 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The longest gap between consecutive commits from the last one before
/// `t` on, in milliseconds.
fn gap(acks: &Mutex<Vec<Instant>>, t: Instant) -> f64 {
    let a = acks.lock().map(|a| a.clone()).unwrap_or_default();
    let first = a.iter().rposition(|x| *x <= t).unwrap_or(0);
    a[first..]
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max)
}

#[derive(serde::Serialize)]
struct Run {
    power_off_ms: f64,
    failback_ms: f64,
    move_ms: f64,
}

fn one(exe: &std::path::Path) -> anyhow::Result<Run> {
    let mut c = VolumeCluster::new(exe, "tdbpg", 87, Mode::Native { postgres: true })?;
    c.bring_up()?;
    let stop = Arc::new(AtomicBool::new(false));
    let acks = client(&c, stop.clone())?;
    wait_acks(&acks, Instant::now(), 30)?;
    let off = Instant::now();
    c.power_off(0)?;
    wait_acks(&acks, off, 20)?;
    let power_off_ms = gap(&acks, off);
    let back = Instant::now();
    c.power_on(0)?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while c.group_on(0) != ["n1"] {
        if Instant::now() > deadline {
            bail!("no failback:\n{}", c.log_tail(0));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_acks(&acks, Instant::now(), 20)?;
    let failback_ms = gap(&acks, back);
    let moved = Instant::now();
    c.tandem(0, &["move", "db", "n2"])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.group_on(0) != ["n2"] {
        if Instant::now() > deadline {
            bail!("the move did not happen:\n{}", c.log_tail(1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_acks(&acks, Instant::now(), 20)?;
    let move_ms = gap(&acks, moved);
    stop.store(true, Ordering::Relaxed);
    Ok(Run {
        power_off_ms,
        failback_ms,
        move_ms,
    })
}

fn main() -> anyhow::Result<()> {
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            other => bail!("unknown argument {other}; usage: postgres [--runs N]"),
        }
    }
    let exe = common::tandem_exe()?;
    let mut all = Vec::new();
    for i in 0..runs {
        let r = one(&exe)?;
        println!(
            "run {}: power-off {:.0} ms, failback {:.0} ms, move {:.0} ms",
            i + 1,
            r.power_off_ms,
            r.failback_ms,
            r.move_ms
        );
        all.push(r);
    }
    println!(
        "\nPostgreSQL client outage (longest gap between acknowledged commits), {runs} runs: min / median / max"
    );
    for (name, v) in [
        (
            "primary powered off",
            all.iter().map(|r| r.power_off_ms).collect::<Vec<_>>(),
        ),
        (
            "old primary back, auto_failback",
            all.iter().map(|r| r.failback_ms).collect(),
        ),
        ("tandem move db n2", all.iter().map(|r| r.move_ms).collect()),
    ] {
        let (lo, med, hi) = common::min_median_max(&v);
        println!("  {name:34} {lo:6.0} / {med:6.0} / {hi:6.0} ms");
    }
    let path = common::write_results("postgres", &all)?;
    println!("written to {}", path.display());
    Ok(())
}
