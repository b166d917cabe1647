//! Issue 12's adversarial drill for a minute, with figures: an attacker in
//! a third namespace (c2) on the S1 lab's heartbeat network sends captured
//! heartbeats (from before n1's restart and after), forgeries, malformed
//! datagrams and a flood of forgeries, all at once and as fast as its
//! threads can, while a client probes the VIP every 10 ms
//! (`tandem_lab::attacker::drill`). Prints the rates, what the client saw,
//! deaths, restarts, the daemons' worst timer lateness and the rejected
//! packets by reason; writes `bench/results/attack.json`.
//!
//! Usage: `bench/run.sh attack [--seconds N]` (root; default 60).

mod common;

use std::time::Duration;

use tandem_lab::attacker::drill;
use tandem_lab::lab_cluster::{WebCluster, WebOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let exe = common::tandem_exe()?;
    let mut w = WebCluster::new(
        &exe,
        &WebOptions {
            prefix: "tbatk".into(),
            subnet: 76,
            extra_hosts: vec!["c2".into()],
            ..WebOptions::default()
        },
    )?;
    w.start_all()?;
    w.start_probe()?;
    w.wait_served_by("n1", 5, Duration::from_secs(30))?;
    let r = drill(&mut w, 694, Duration::from_secs(seconds))?;
    println!(
        "attack for {:.0} s from c2 (datagrams/s, one thread each):",
        r.seconds
    );
    for (what, s) in [
        ("flood of forgeries to n1", r.flood),
        ("captured heartbeats again, to n1 and n2", r.replays),
        ("forgeries, to n1 and n2", r.forged),
        ("malformed datagrams, to n1 and n2", r.malformed),
    ] {
        println!("  {what}: {} in total, {:.0}/s", s.datagrams, s.rate());
    }
    println!(
        "client: {} requests, {} failed, {} answered by n2; deaths logged: {}; same daemons: {}",
        r.requests, r.failed, r.answers_from_n2, r.deaths_logged, r.same_processes
    );
    println!(
        "worst timer lateness over each daemon's life (ms): {:?}",
        r.lateness_ms
    );
    for (i, rej) in r.rejected.iter().enumerate() {
        println!("n{} rejected: {rej:?}", i + 1);
    }
    let path = common::write_results("attack", &r)?;
    println!("written to {}", path.display());
    Ok(())
}
