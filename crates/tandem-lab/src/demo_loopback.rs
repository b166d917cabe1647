//! `tandem-demo --loopback`: a throw-away two-node cluster on loopback that shows
//! failure detection end to end, with timings.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use tandem_core::PeerState;

use crate::loopback_cluster::{LocalCluster, Options};

fn step(t0: Instant, msg: &str) {
    println!("[{:>7.3} s] {msg}", t0.elapsed().as_secs_f64());
}

/// Runs the demo; everything started is stopped on return, error or Ctrl-C.
pub fn run(exe: &std::path::Path) -> anyhow::Result<()> {
    let abort = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, abort.clone()).context("install Ctrl-C handler")?;
    }
    let mut c = LocalCluster::new(exe, &Options::default())?;
    c.abort = Some(abort);
    let t0 = Instant::now();
    println!(
        "tandem demo: two daemons on loopback (n1 = {}, n2 = {}), default timings.\nFiles, logs and sockets: {}\n",
        c.nodes[0].addr,
        c.nodes[1].addr,
        c.dir().display()
    );
    c.start_all()?;
    step(t0, "started n1 and n2");
    let wait = Duration::from_secs(10);
    let both = |s: &tandem_control::Status| s.membership.members.len() == 2;
    c.wait_for(0, wait, "n1 to see n2", both)?;
    let s = c.wait_for(1, wait, "n2 to see n1", both)?;
    step(t0, "n1 and n2 see each other. `tandem status` on n2:");
    println!("\n{}", tandem::cli::status::render(&s));

    let killed = Instant::now();
    c.kill(1)?;
    step(t0, "n2 killed with SIGKILL (a crash: no goodbye)");
    let s = c.wait_for(0, wait, "n1 to declare n2 dead", |s| {
        LocalCluster::state_of(s, "n2") == Some(PeerState::Dead)
    })?;
    step(
        t0,
        &format!(
            "n1 declared n2 dead {} ms after the kill (deadtime 500 ms). `tandem status` on n1:",
            killed.elapsed().as_millis()
        ),
    );
    println!("\n{}", tandem::cli::status::render(&s));

    let back = Instant::now();
    c.start(1)?;
    c.wait_for(0, wait, "n2 back", |s| {
        LocalCluster::state_of(s, "n2") == Some(PeerState::Online)
    })?;
    step(
        t0,
        &format!(
            "n2 restarted; n1 saw it back {} ms later, with a new incarnation",
            back.elapsed().as_millis()
        ),
    );

    let leaving = Instant::now();
    c.stop(1, wait)?;
    c.wait_for(0, wait, "n1 to see n2 leave", |s| {
        LocalCluster::state_of(s, "n2") == Some(PeerState::Left)
    })?;
    step(
        t0,
        &format!(
            "n2 stopped cleanly (SIGTERM); n1 knew {} ms later, without waiting for deadtime",
            leaving.elapsed().as_millis()
        ),
    );
    c.stop(0, wait)?;
    let log = std::fs::read_to_string(&c.nodes[0].log).unwrap_or_default();
    println!("\nn1's log:\n{log}");
    step(t0, "demo finished; everything stopped and removed");
    Ok(())
}
