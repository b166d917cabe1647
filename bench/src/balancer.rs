//! S2 benchmark (issue 16): the university's balancer group exactly as they
//! run it — `ocf:heartbeat:IPaddr` + Debian's `lsb:haproxy` +
//! `lsb:stunnel4`, monitors every second, default timings — under tandem,
//! with a client in c1 probing `http://VIP/` (through haproxy) and
//! `tcp://VIP:443` (stunnel) every 10 ms. Scenarios: operator move (n1 →
//! n2, then back), SIGKILL of haproxy, SIGKILL of stunnel, power-off of the
//! active node. Two configurations: tandem's defaults (native IPaddr,
//! main-process watch) and the shell agents forced with monitors only
//! (`native = false`, `watch = false`: how the same group ran before). For
//! each it prints min/median/max client outage and the median duration of
//! each agent operation from the daemons' logs (where the time goes), and
//! writes `bench/results/balancer.json`.
//!
//! Usage: `bench/run.sh balancer [--runs N]` (root; installs haproxy,
//! stunnel4, resource-agents if missing).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tandem::cli::probe::Sample;
use tandem_lab::balancer::{
    BalancerOptions, HAPROXY_PIDFILE, STUNNEL_PIDFILE, balancer, service_pid,
};
use tandem_lab::lab_cluster::{WebCluster, outage};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize)]
struct Scenario {
    config: String,
    scenario: String,
    outages_ms: Vec<f64>,
    min_ms: f64,
    median_ms: f64,
    max_ms: f64,
    dual_answers: usize,
}

#[derive(Debug, Serialize)]
struct Results {
    runs: usize,
    scenarios: Vec<Scenario>,
    /// Per configuration: median duration of each operation (ms), from
    /// the daemons' logs ("Started web/haproxy in 57 ms").
    operations_ms: BTreeMap<String, BTreeMap<String, f64>>,
}

/// The client's outage around a restart in place after `since`: from the
/// last answer before the first failure to the first answer after it (0
/// when no probe failed).
fn in_place(samples: &[Sample], since: f64) -> Option<f64> {
    let s: Vec<&Sample> = samples.iter().filter(|x| x.t_ms >= since).collect();
    let Some(fail) = s.iter().position(|x| x.answer.is_none()) else {
        return Some(0.0);
    };
    let before = s[..fail]
        .iter()
        .rev()
        .find(|x| x.answer.is_some())
        .map_or(since, |x| x.t_ms);
    let after = s[fail..].iter().find(|x| x.answer.is_some())?;
    Some(after.t_ms - before)
}

/// Waits until the latest `n` samples in `v` are all answers.
fn wait_answering(v: &tandem_lab::lab_cluster::Samples, n: usize) -> anyhow::Result<()> {
    tandem_lab::poll::until_some(WAIT, || {
        let v = v.lock().ok()?;
        (v.len() >= n && v[v.len() - n..].iter().all(|x| x.answer.is_some())).then_some(())
    })
    .context("the TLS port did not answer again")
}

fn sorted(v: &tandem_lab::lab_cluster::Samples) -> Vec<Sample> {
    let mut s = v.lock().map(|v| v.clone()).unwrap_or_default();
    s.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    s
}

fn summarise(config: &str, scenario: &str, outages_ms: Vec<f64>, dual_answers: usize) -> Scenario {
    let (min_ms, median_ms, max_ms) = common::min_median_max(&outages_ms);
    Scenario {
        config: config.into(),
        scenario: scenario.into(),
        outages_ms,
        min_ms,
        median_ms,
        max_ms,
        dual_answers,
    }
}

/// Median duration of each operation ("Started web/haproxy") in the logs.
fn operations(w: &WebCluster) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for n in &w.cluster.nodes {
        let text = std::fs::read_to_string(&n.log).unwrap_or_default();
        for l in text.lines() {
            let Some(rest) = l.split("INFO ").nth(1) else {
                continue;
            };
            let mut it = rest.split_whitespace();
            let (Some(verb), Some(what), Some("in"), Some(v), Some(unit)) =
                (it.next(), it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            if !matches!(verb, "Started" | "Stopped") || !what.starts_with("web/") {
                continue;
            }
            let Ok(x) = v.parse::<f64>() else { continue };
            let ms = if unit.starts_with("ms") {
                x
            } else {
                x * 1000.0
            };
            all.entry(format!("{} {what}", verb.to_lowercase()))
                .or_default()
                .push(ms);
        }
    }
    all.into_iter()
        .map(|(k, v)| (k, common::min_median_max(&v).1))
        .collect()
}

fn bench(
    exe: &Path,
    config: &str,
    native: bool,
    runs: usize,
    subnet: u8,
) -> anyhow::Result<(Vec<Scenario>, BTreeMap<String, f64>)> {
    let mut w = balancer(
        exe,
        &BalancerOptions {
            prefix: "tbs2".into(),
            subnet,
            native,
            watch: native,
            monitor: "1s".into(),
        },
    )?;
    w.start_servers()?;
    w.start_all()?;
    w.start_probe()?;
    let tls = w.start_extra_probe(&format!("tcp://{}:443", w.vip))?;
    w.wait_served_by("n1", 5, WAIT)?;
    wait_answering(&tls, 5)?;
    let (mut mv, mut hk, mut sk, mut off) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut dual = [0usize; 2];
    for run in 0..runs {
        eprintln!("  {config}: run {}/{runs}", run + 1);
        // Operator move to n2 and back: two switchovers.
        for (from, to, via) in [("n1", "n2", 0), ("n2", "n1", 1)] {
            let t = w.probe_now_ms();
            if to == "n2" {
                w.tandem(via, &["move", "web", "n2"])?;
            } else {
                w.tandem(via, &["move", "web", "--clear"])?;
            }
            w.wait_served_by(to, 5, WAIT)?;
            wait_answering(&tls, 5)?;
            std::thread::sleep(Duration::from_millis(300)); // late answers
            let o = outage(&w.samples(), t, from, to).context("no switch seen")?;
            dual[0] += o.dual_answers;
            mv.push(o.outage_ms);
        }
        // haproxy killed on the active node: restarted in place.
        let t = w.probe_now_ms();
        tandem::process::signal(service_pid(&w, 0, HAPROXY_PIDFILE)?, libc::SIGKILL)?;
        tandem_lab::poll::until_some(WAIT, || {
            let s = w.samples();
            (s.iter().any(|x| x.t_ms > t && x.answer.is_none())
                && s.len() >= 5
                && s[s.len() - 5..]
                    .iter()
                    .all(|x| x.answer.as_deref() == Some("n1")))
            .then_some(())
        })
        .context("haproxy never came back")?;
        hk.push(in_place(&w.samples(), t).context("no answer after the kill")?);
        // stunnel killed: the TLS port's outage.
        let t = w.probe_now_ms();
        tandem::process::signal(service_pid(&w, 0, STUNNEL_PIDFILE)?, libc::SIGKILL)?;
        tandem_lab::poll::until_some(WAIT, || {
            let s = sorted(&tls);
            (s.iter().any(|x| x.t_ms > t && x.answer.is_none())
                && s.len() >= 5
                && s[s.len() - 5..].iter().all(|x| x.answer.is_some()))
            .then_some(())
        })
        .context("stunnel never came back")?;
        sk.push(in_place(&sorted(&tls), t).context("no TLS answer after the kill")?);
        // Power-off of the active node; it returns and the group fails back.
        let t = w.probe_now_ms();
        w.power_off(0)?;
        w.wait_served_by("n2", 5, WAIT)?;
        std::thread::sleep(Duration::from_millis(300));
        let o = outage(&w.samples(), t, "n1", "n2").context("no failover seen")?;
        dual[1] += o.dual_answers;
        off.push(o.outage_ms);
        w.power_on(0)?;
        w.wait_served_by("n1", 5, WAIT)?;
        wait_answering(&tls, 5)?;
    }
    let ops = operations(&w);
    Ok((
        vec![
            summarise(config, "operator move", mv, dual[0]),
            summarise(config, "haproxy SIGKILL (HTTP)", hk, 0),
            summarise(config, "stunnel SIGKILL (TLS port)", sk, 0),
            summarise(config, "power-off", off, dual[1]),
        ],
        ops,
    ))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let exe = common::tandem_exe()?;
    let mut scenarios = Vec::new();
    let mut operations_ms = BTreeMap::new();
    for (i, (config, native)) in [
        ("tandem defaults (native IPaddr, watch)", true),
        (
            "shell agents, monitors only (native = false, watch = false)",
            false,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, ops) = bench(&exe, config, native, runs, 74 + u8::try_from(i)?)?;
        scenarios.extend(s);
        operations_ms.insert(config.to_string(), ops);
    }
    println!("\n| configuration | scenario | min | median | max | dual answers |");
    println!("|---|---|---|---|---|---|");
    for s in &scenarios {
        println!(
            "| {} | {} | {:.0} ms | **{:.0} ms** | {:.0} ms | {} |",
            s.config, s.scenario, s.min_ms, s.median_ms, s.max_ms, s.dual_answers
        );
    }
    for (config, ops) in &operations_ms {
        println!("\n{config}: median operation times");
        for (op, ms) in ops {
            println!("  {op}: {ms:.1} ms");
        }
    }
    let path = common::write_results(
        "balancer",
        &Results {
            runs,
            scenarios,
            operations_ms,
        },
    )?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
