//! `tandem-demo --volume`: scenario S3 live. Debian's PostgreSQL on a
//! replicated volume run by tandem on two namespaced nodes; a client
//! inserts rows through the VIP; the primary is powered off mid-load; the
//! other node takes over with every acknowledged row; the old primary
//! returns, resyncs, and takes the database back once its copy is current.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::volume_cluster::{Mode, VolumeCluster};

fn say(t0: Instant, msg: &str) {
    println!("[{:>7.3} s] {msg}", t0.elapsed().as_secs_f64());
}

/// Runs the demo with the tandem executable `exe`.
pub fn run(exe: &std::path::Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    say(
        t0,
        "building two nodes and a client in network namespaces; a 160 MiB volume r0 on each node",
    );
    let mut c = VolumeCluster::new(exe, "tdemv", 86, Mode::Native { postgres: true })?;
    say(
        t0,
        "create-md, initial sync, ext4 and initdb on the volume; then the cluster starts r0 -> ext4 -> PostgreSQL -> VIP on n1",
    );
    c.bring_up()?;
    say(
        t0,
        &format!("PostgreSQL answers on {} (n1 primary, n2 in sync)", c.vip),
    );
    // A client inserting rows, one connection each, counting acknowledged
    // commits.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicI64::new(0));
    let last = Arc::new(AtomicI64::new(0));
    let (ns, vip) = (c.lab.host("c1")?.netns.clone(), c.vip.clone());
    let client = {
        let (stop, acked, last) = (stop.clone(), acked.clone(), last.clone());
        std::thread::spawn(move || {
            let mut v = 0i64;
            while !stop.load(Ordering::Relaxed) {
                v += 1;
                let ok = std::process::Command::new("ip")
                    .args([
                        "netns", "exec", &ns, "timeout", "3", "psql", "-h", &vip, "-U", "postgres",
                        "-qAt", "-c",
                    ])
                    .arg(format!("insert into t values ({v}) returning v"))
                    .env("PGCONNECT_TIMEOUT", "1")
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    acked.fetch_add(1, Ordering::Relaxed);
                    last.store(v, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    let wait_acks = |n: i64, what: &str| -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let from = acked.load(Ordering::Relaxed);
        while acked.load(Ordering::Relaxed) < from + n {
            if Instant::now() > deadline {
                bail!("{what}: no acknowledged insert for 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    wait_acks(30, "client")?;
    say(
        t0,
        &format!(
            "client: {} rows committed so far; powering n1 off now",
            acked.load(Ordering::Relaxed)
        ),
    );
    c.power_off(0)?;
    let off = Instant::now();
    wait_acks(1, "failover")?;
    say(
        t0,
        &format!(
            "n2 took over: first commit {} ms after the power-off",
            off.elapsed().as_millis()
        ),
    );
    wait_acks(20, "on n2")?;
    say(
        t0,
        "n1 is powered back on: it resyncs from n2 and waits until its copy is UpToDate",
    );
    c.power_on(0)?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while c.group_on(0) != ["n1"] {
        if Instant::now() > deadline {
            bail!("the database never came back to n1:\n{}", c.log_tail(0));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_acks(20, "after the failback")?;
    say(t0, "auto_failback: the database runs on n1 again");
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    let n = acked.load(Ordering::Relaxed);
    let rows = c
        .psql("select count(*) from t", Duration::from_secs(5))
        .context("count the rows")?;
    let rows: i64 = rows.parse().unwrap_or(-1);
    say(
        t0,
        &format!(
            "{n} commits acknowledged to the client, {rows} rows in the table: {}",
            if rows >= n { "none lost" } else { "ROWS LOST" }
        ),
    );
    if rows < n {
        bail!("acknowledged rows lost");
    }
    say(t0, "tearing the lab down");
    Ok(())
}
