//! The S3 benchmark: the outage a PostgreSQL client sees (longest gap
//! between acknowledged commits, one connection per insert) when the
//! primary is powered off, when it returns and takes the database back
//! (auto_failback, a planned switchover), and on an operator's move.
//! `bench/run.sh postgres [--runs N]`; writes bench/results/postgres.json.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tandem_lab::volume_cluster::{Mode, VolumeCluster};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
    let mut client = c.insert_client(Duration::from_millis(200))?;
    let wait = |t: Instant, n: usize| client.wait_acked(t, n, Duration::from_secs(90));
    wait(Instant::now(), 30)?;
    let off = Instant::now();
    c.power_off(0)?;
    wait(off, 20)?;
    let power_off_ms = ms(client.longest_gap(off));
    let back = Instant::now();
    c.power_on(0)?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while c.group_on(0) != ["n1"] {
        if Instant::now() > deadline {
            bail!("no failback:\n{}", c.log_tail(0));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait(Instant::now(), 20)?;
    let failback_ms = ms(client.longest_gap(back));
    let moved = Instant::now();
    c.tandem(0, &["move", "db", "n2"])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.group_on(0) != ["n2"] {
        if Instant::now() > deadline {
            bail!("the move did not happen:\n{}", c.log_tail(1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait(Instant::now(), 20)?;
    let move_ms = ms(client.longest_gap(moved));
    client.stop();
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
