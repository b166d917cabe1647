//! `tandem simulate`: what the cluster would do, step by step, if a node
//! failed, a cable were pulled, a node went to standby, a group were moved
//! or a resource failed. It runs the real sans-IO brain — one per node,
//! built from this configuration — in the deterministic simulator
//! (`tandem-sim`): the cluster is first brought to the state of a status
//! document (live, or saved with `tandem status --json`, so a bug report
//! can be replayed offline), then each hypothetical event is applied and
//! every decision the brains take is printed.

use std::fmt::Write as _;
use std::time::Duration;

use tandem_config::Config;
use tandem_control::Status;
use tandem_core::{Command, Event, Timestamp};
use tandem_sim::{Names, Sim};

/// One hypothetical event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The node loses power.
    Fail(String),
    /// The node's cable on the link (every link when `None`) is pulled.
    CutLink(String, Option<String>),
    /// The node goes to standby.
    Standby(String),
    /// The group is moved to the node.
    Move(String, String),
    /// The resource (`GROUP/RESOURCE`) dies where it runs.
    ResourceFails(String, String),
}

/// Which events are worth showing.
fn shown(e: &Event) -> bool {
    !matches!(
        e,
        Event::Rejected { .. }
            | Event::LinkUp { .. }
            | Event::Joined { .. }
            | Event::SettingsChanged { .. }
    )
}

/// Where each group runs in the simulation.
fn placement(sim: &Sim, cfg: &Config) -> String {
    let names: Vec<&str> = cfg.nodes.iter().map(|n| n.name.as_str()).collect();
    cfg.groups
        .iter()
        .enumerate()
        .map(|(g, gc)| {
            let on: Vec<&str> = sim
                .running_on(g, gc.resources.len().saturating_sub(1))
                .into_iter()
                .filter_map(|i| names.get(i).copied())
                .collect();
            if on.is_empty() {
                format!("{} nowhere", gc.name)
            } else if on.len() > 1 {
                format!(
                    "{} on {} (ACTIVE TWICE: give a two-node cluster a [witness], or add a node for quorum)",
                    gc.name,
                    on.join(" and ")
                )
            } else {
                format!("{} on {}", gc.name, on.join(" and "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn index(cfg: &Config, node: &str) -> Result<usize, String> {
    cfg.nodes
        .iter()
        .position(|n| n.name == node)
        .ok_or_else(|| {
            let all: Vec<&str> = cfg.nodes.iter().map(|n| n.name.as_str()).collect();
            format!("no node is called {node} (nodes: {})", all.join(", "))
        })
}

fn group_index(cfg: &Config, group: &str) -> Result<usize, String> {
    cfg.groups
        .iter()
        .position(|g| g.name == group)
        .ok_or_else(|| format!("no group is called {group}"))
}

/// Events of every node since `t0`, in time order, as lines.
fn happened(sim: &Sim, cfg: &Config, t0: Timestamp, out: &mut String) {
    let mut all: Vec<(Timestamp, usize, String)> = Vec::new();
    for i in 0..cfg.nodes.len() {
        for r in sim.events_of(i, t0) {
            if shown(&r.event) {
                all.push((r.at, r.node, r.event.to_string()));
            }
        }
    }
    all.sort_by_key(|a| (a.0, a.1));
    for (at, node, text) in all {
        let ms = at.as_nanos().saturating_sub(t0.as_nanos()) / 1_000_000;
        let _ = writeln!(out, "  +{:>6} ms  {}: {text}", ms, cfg.nodes[node].name);
    }
}

/// Replays `steps` on the cluster of `cfg` brought to the state of `st`.
pub fn simulate(cfg: &Config, st: &Status, steps: &[Step]) -> Result<String, String> {
    let m = &st.membership;
    let names = Names {
        nodes: cfg.nodes.iter().map(|n| n.name.clone()).collect(),
        links: cfg.links.iter().map(|l| l.label().to_string()).collect(),
    };
    let groups: Vec<_> = cfg.groups.iter().map(|g| cfg.group_spec(g)).collect();
    let mut sim = Sim::with_names(1, names, cfg.timing, &groups, cfg.quorum.clone());
    // Witnesses are taken as reachable by every node.
    sim.configure_witness(cfg.witness.is_some());
    // The state of the status document: who is down, in standby, moved.
    for n in &m.nodes {
        if !m.members.contains(&n.name) {
            sim.crash(index(cfg, &n.name)?);
        }
    }
    let settle = cfg.timing.initdead + cfg.timing.deadtime * 2 + Duration::from_secs(2);
    sim.run_for(settle);
    let local = index(cfg, &m.local)?;
    for n in &m.standby {
        let _ = sim.command(
            local,
            Command::Standby {
                node: n.clone(),
                on: true,
            },
        );
    }
    for g in &m.groups {
        if let Some(to) = &g.moved_to {
            let _ = sim.command(
                local,
                Command::Move {
                    group: g.name.clone(),
                    node: Some(to.clone()),
                    duration: None,
                },
            );
        }
    }
    sim.run_for(Duration::from_secs(2));
    let mut out = String::new();
    let now = placement(&sim, cfg);
    let _ = writeln!(
        out,
        "From {}'s view ({} of {} nodes up): {now}.",
        m.local,
        m.members.len(),
        m.nodes.len()
    );
    for g in &m.groups {
        let real = if g.active_on.is_empty() {
            format!("{} nowhere", g.name)
        } else {
            format!("{} on {}", g.name, g.active_on.join(" and "))
        };
        if !now.contains(&real) {
            let _ = writeln!(
                out,
                "(The status document says {real}: the simulation starts from a different placement.)"
            );
        }
    }
    for step in steps {
        let t0 = sim.now();
        let what = match step {
            Step::Fail(n) => {
                sim.crash(index(cfg, n)?);
                format!("--fail {n}: {n} loses power")
            }
            Step::CutLink(n, link) => {
                let i = index(cfg, n)?;
                let links: Vec<usize> = match link {
                    None => (0..cfg.links.len()).collect(),
                    Some(l) => vec![
                        cfg.links
                            .iter()
                            .position(|x| x.name == *l || x.label() == l)
                            .ok_or_else(|| format!("no link is called {l}"))?,
                    ],
                };
                for l in links {
                    sim.unplug(i, l, true);
                }
                format!(
                    "--cut-link {n}{}: its cable is pulled",
                    link.as_ref().map_or(String::new(), |l| format!(":{l}"))
                )
            }
            Step::Standby(n) => {
                let r = sim.command(
                    local,
                    Command::Standby {
                        node: n.clone(),
                        on: true,
                    },
                );
                format!(
                    "--standby {n}: {}",
                    r.unwrap_or_else(|e| format!("refused: {e}"))
                )
            }
            Step::Move(g, n) => {
                let r = sim.command(
                    local,
                    Command::Move {
                        group: g.clone(),
                        node: Some(n.clone()),
                        duration: None,
                    },
                );
                format!(
                    "--move {g}:{n}: {}",
                    r.unwrap_or_else(|e| format!("refused: {e}"))
                )
            }
            Step::ResourceFails(g, r) => {
                let gi = group_index(cfg, g)?;
                let ri = cfg.groups[gi]
                    .resources
                    .iter()
                    .position(|x| x.name == *r)
                    .ok_or_else(|| format!("group {g} has no resource {r}"))?;
                let on = sim.running_on(gi, ri);
                for i in &on {
                    sim.kill_resource(*i, gi, ri);
                }
                format!(
                    "--resource-fails {g}/{r}: it dies on {}",
                    if on.is_empty() {
                        "no node (it was not running)".to_string()
                    } else {
                        on.iter()
                            .map(|i| cfg.nodes[*i].name.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )
            }
        };
        let _ = writeln!(out, "\n{what}");
        sim.run_for(cfg.timing.deadtime * 2 + Duration::from_secs(3));
        happened(&sim, cfg, t0, &mut out);
        let _ = writeln!(out, "  then: {}", placement(&sim, cfg));
    }
    Ok(out)
}

/// The steps from the command line's options, applied in this order:
/// standby, move, cut-link, resource-fails, fail.
pub fn steps(
    standby: &[String],
    moves: &[String],
    cuts: &[String],
    fails_res: &[String],
    fails: &[String],
) -> Result<Vec<Step>, String> {
    let mut v: Vec<Step> = standby.iter().map(|n| Step::Standby(n.clone())).collect();
    for m in moves {
        let (g, n) = m
            .split_once(':')
            .ok_or_else(|| format!("--move {m}: write GROUP:NODE, e.g. web:n2"))?;
        v.push(Step::Move(g.into(), n.into()));
    }
    for c in cuts {
        v.push(match c.split_once(':') {
            Some((n, l)) => Step::CutLink(n.into(), Some(l.into())),
            None => Step::CutLink(c.clone(), None),
        });
    }
    for r in fails_res {
        let (g, x) = r
            .split_once('/')
            .ok_or_else(|| format!("--resource-fails {r}: write GROUP/RESOURCE, e.g. web/httpd"))?;
        v.push(Step::ResourceFails(g.into(), x.into()));
    }
    v.extend(fails.iter().map(|n| Step::Fail(n.clone())));
    if v.is_empty() {
        return Err("say what happens: --fail NODE, --cut-link NODE[:LINK], --standby NODE, --move GROUP:NODE or --resource-fails GROUP/RESOURCE".into());
    }
    Ok(v)
}
