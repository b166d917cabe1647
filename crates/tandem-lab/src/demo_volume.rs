//! `tandem-demo --volume`: scenario S3 live. Debian's PostgreSQL on a
//! replicated volume run by tandem on two namespaced nodes; a client
//! inserts rows through the VIP; the primary is powered off mid-load; the
//! other node takes over with every acknowledged row; the old primary
//! returns, resyncs, and takes the database back once its copy is current.

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
    // A client inserting rows, one connection each.
    let mut client = c.insert_client(Duration::from_millis(300))?;
    let wait_acks = |n: usize, what: &str| -> anyhow::Result<()> {
        client
            .wait_acked(Instant::now(), n, Duration::from_secs(60))
            .with_context(|| what.to_string())
    };
    let acked = |cl: &crate::pg_client::InsertClient| cl.acked_after(t0);
    wait_acks(30, "client")?;
    say(
        t0,
        &format!(
            "client: {} rows committed so far; powering n1 off now",
            acked(&client)
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
    client.stop();
    let n = i64::try_from(acked(&client)).unwrap_or(i64::MAX);
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
