//! `tandem-demo`: the S1 story, live, in a lab of network namespaces on this
//! machine: two nodes, a floating IP and a web server whose page names the
//! node; a client probes the VIP every 10 ms while the active node is
//! powered off, comes back (failback), and an operator moves the group.
//! Prints a timeline with the outage the client saw at each step, and tears
//! everything down, also on Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;

use tandem_lab::lab_cluster::{Outage, WebCluster, WebOptions, outage};

struct Timeline {
    t0: Instant,
}

impl Timeline {
    fn say(&self, msg: &str) {
        println!("[{:>7.3} s] {msg}", self.t0.elapsed().as_secs_f64());
    }
}

fn describe(o: &Outage) -> String {
    format!(
        "outage {:.0} ms (last answer from the old node to first from the new), {} failed probe(s), {} answer(s) from the old node afterwards",
        o.outage_ms, o.errors, o.dual_answers
    )
}

/// The live demo of tandem, in network namespaces on this machine (root):
/// two nodes, a floating IP and a web server; a client probes the VIP every
/// 10 ms while the active node is powered off, comes back, and is moved
/// away; prints the outage at each step. Everything is torn down at the
/// end, also on Ctrl-C.
#[derive(clap::Parser, Debug)]
#[command(version)]
struct Args {
    /// Membership-only demo on loopback addresses (no root needed).
    #[arg(long)]
    loopback: bool,
    /// Scenario S3 instead: PostgreSQL on a replicated volume keeps every
    /// committed row across a power-off and a failback (needs postgresql,
    /// resource-agents and kmod).
    #[arg(long, conflicts_with = "loopback")]
    volume: bool,
    /// Keep the lab running at the end (for the web console) until Ctrl-C.
    #[arg(long)]
    hold: bool,
    /// The tandem executable to run (default: `tandem` beside this program).
    #[arg(long)]
    tandem: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let exe = match args.tandem {
        Some(p) => p,
        None => std::env::current_exe()
            .context("find this program")?
            .with_file_name("tandem"),
    };
    anyhow::ensure!(
        exe.is_file(),
        "no tandem executable at {}; build it (cargo build --release -p tandem) or pass --tandem PATH",
        exe.display()
    );
    if args.loopback {
        return tandem_lab::demo_loopback::run(&exe);
    }
    if args.volume {
        tandem_lab::netns::require_root()
            .context("the volume demo builds network namespaces; run it as root")?;
        return tandem_lab::demo_volume::run(&exe);
    }
    run(&exe, args.hold)
}

/// Runs the lab demo with the tandem executable `exe`.
fn run(exe: &std::path::Path, hold: bool) -> anyhow::Result<()> {
    tandem_lab::netns::require_root().context(
        "the demo builds network namespaces; run it as root (or `tandem-demo --loopback` for the membership-only demo)",
    )?;
    let abort = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, abort.clone()).context("install Ctrl-C handler")?;
    }
    let tl = Timeline { t0: Instant::now() };
    let mut w = WebCluster::new(
        exe,
        &WebOptions {
            extra_top: "[http]\nlisten = \"0.0.0.0:7080\"\n".into(),
            ..WebOptions::default()
        },
    )?;
    w.abort = Some(abort.clone());
    w.cluster.abort = Some(abort);
    tl.say(&format!(
        "lab built: n1 {}, n2 {}, client c1 {}, floating IP {} (namespaces {}-*)",
        w.lab.hosts[0].addr, w.lab.hosts[1].addr, w.lab.hosts[2].addr, w.vip, w.lab.prefix
    ));
    println!(
        "            group `web`: vip {}/24 (eth0:0), then busybox httpd serving a page with the node's name;\n            prefers n1 (200) over n2 (100), auto_failback on, default timings (deadtime 500 ms)",
        w.vip
    );
    w.start_all()?;
    let mut consoles = Vec::new();
    for (i, h) in w.lab.hosts.iter().take(2).enumerate() {
        let target = format!("{}:7080", h.addr).parse()?;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 7080 + i as u16));
        match tandem_lab::forward::forward(listen, &w.lab.hosts[2].netns, target) {
            Ok(a) => consoles.push(format!("http://{a}/ ({})", h.name)),
            Err(e) => println!("            (no console forward for {}: {e:#})", h.name),
        }
    }
    if !consoles.is_empty() {
        tl.say(&format!(
            "web console (live, each node's own view; /metrics and /api/v1/status beside it): {}",
            consoles.join(", ")
        ));
    }
    w.start_probe()?;
    let wait = Duration::from_secs(20);
    w.wait_served_by("n1", 5, wait)?;
    tl.say("n1 serves the VIP; the client probes http://VIP/ every 10 ms (100 ms timeout)");
    println!("\n{}", w.tandem(0, &["status"])?);

    let mut results = Vec::new();
    let t = w.probe_now_ms();
    w.power_off(0)?;
    tl.say("power-off of n1: every process in its namespace killed, cable pulled");
    w.wait_served_by("n2", 5, wait)?;
    let o = outage(&w.samples(), t, "n1", "n2").context("no switch seen")?;
    tl.say(&format!("the client is served by n2: {}", describe(&o)));
    results.push(("power-off of n1 (failover)", o));
    println!("\n{}", w.tandem(1, &["status"])?);

    let t = w.probe_now_ms();
    w.power_on(0)?;
    tl.say("n1 powered back on (cable in, daemon started)");
    w.wait_served_by("n1", 5, wait)?;
    w.cluster
        .wait_for(0, wait, "n1 joined", |s| s.membership.joined)?;
    let o = outage(&w.samples(), t, "n2", "n1").context("no switch seen")?;
    tl.say(&format!("failback: n1 serves again: {}", describe(&o)));
    results.push(("n1 returns (failback)", o));

    let t = w.probe_now_ms();
    let said = w.tandem(0, &["move", "web", "n2"])?;
    tl.say(&format!("operator: `tandem move web n2` → {said}"));
    w.wait_served_by("n2", 5, wait)?;
    let o = outage(&w.samples(), t, "n1", "n2").context("no switch seen")?;
    tl.say(&format!("n2 serves: {}", describe(&o)));
    results.push(("operator move to n2", o));

    println!(
        "\n{:<28} {:>10} {:>8} {:>12}",
        "step", "outage ms", "errors", "dual answers"
    );
    for (name, o) in &results {
        println!(
            "{name:<28} {:>10.0} {:>8} {:>12}",
            o.outage_ms, o.errors, o.dual_answers
        );
    }
    println!(
        "\nn2's log:\n{}",
        std::fs::read_to_string(&w.cluster.nodes[1].log).unwrap_or_default()
    );
    if std::env::var_os("TANDEM_DEMO_LOGS").is_some() {
        println!(
            "\nn1's log:\n{}",
            std::fs::read_to_string(&w.cluster.nodes[0].log).unwrap_or_default()
        );
    }
    if hold {
        tl.say("holding the lab for the console; Ctrl-C tears it down");
        while !w
            .abort
            .as_ref()
            .is_some_and(|a| a.load(std::sync::atomic::Ordering::Relaxed))
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(w);
    tl.say("lab torn down");
    Ok(())
}
