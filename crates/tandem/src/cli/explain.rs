//! `tandem explain GROUP`: why a group runs where it runs, or why it does
//! not run, in plain sentences — each node's score (preference plus
//! stickiness), who may run it and why not (standby, dead, banned after
//! failures, data not ready), an operator move, auto-failback, quorum,
//! witness, lease and a blocked stop. The choice is recomputed with the
//! brain's own placement function ([`tandem_core::place`]) on the same
//! facts, from this node's status document; a pure function of it, so it is
//! tested with golden files.

use std::fmt::Write as _;

use tandem_config::Config;
use tandem_control::Status;
use tandem_core::{Candidate, NodeId, PeerState, place};

/// The explanation of `group`, or why there is none.
pub fn explain(cfg: &Config, st: &Status, group: &str) -> Result<String, String> {
    let m = &st.membership;
    let Some(gc) = cfg.groups.iter().find(|g| g.name == group) else {
        let names: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
        return Err(format!(
            "no group is called {group} (groups: {})",
            names.join(", ")
        ));
    };
    let Some(gs) = m.groups.iter().find(|g| g.name == group) else {
        return Err(format!(
            "the daemon does not report group {group}: its configuration differs from this file"
        ));
    };
    let spec = cfg.group_spec(gc);
    let id = |name: &str| {
        cfg.nodes
            .iter()
            .position(|n| n.name == name)
            .and_then(|i| u16::try_from(i + 1).ok())
            .map(NodeId)
    };
    let mut out = String::new();
    let w = &mut out;
    match gs.active_on.as_slice() {
        [] => {
            let _ = writeln!(w, "{group} runs nowhere (as {} sees it).", m.local);
        }
        [one] => {
            let _ = writeln!(w, "{group} runs on {one} (as {} sees it).", m.local);
        }
        many => {
            let _ = writeln!(
                w,
                "{group} is active on {} at once (as {} sees it): this must not last; see below.",
                many.join(" and "),
                m.local
            );
        }
    }

    // Each node: may it run the group, and its score.
    let _ = writeln!(w, "\nNodes:");
    let mut candidates = Vec::new();
    for n in &cfg.nodes {
        let Some(node) = id(&n.name) else { continue };
        let ns = m.nodes.iter().find(|x| x.name == n.name);
        let state = ns.map_or(PeerState::Pending, |x| x.state);
        let member = m.members.contains(&n.name);
        let standby = m.standby.contains(&n.name);
        let banned = gs.banned_on.contains(&n.name);
        let active = gs.active_on.contains(&n.name);
        let base = spec
            .rules
            .scores
            .iter()
            .find(|(x, _)| *x == node)
            .map_or(0, |(_, s)| *s);
        let sticky = if active { spec.rules.stickiness } else { 0 };
        let mut why_not = Vec::new();
        if !member {
            why_not.push(format!("it is {}", format!("{state:?}").to_lowercase()));
        }
        if standby {
            why_not.push("it is in standby".to_string());
        }
        if banned {
            let here = n.name == m.local;
            let fails: Vec<String> = gs
                .resources
                .iter()
                .filter(|r| here && r.fail_count > 0)
                .map(|r| {
                    format!(
                        "{} failed {} time(s){}",
                        r.name,
                        r.fail_count,
                        r.last_error
                            .as_ref()
                            .map_or(String::new(), |e| format!(" ({e})"))
                    )
                })
                .collect();
            if fails.is_empty() {
                why_not.push(format!("it is banned (failures at migration_threshold {}, or its data is not ready there)", spec.migration_threshold));
            } else {
                why_not.push(format!("it is banned: {} (migration_threshold {}; `tandem cleanup {group}` after fixing it)", fails.join(", "), spec.migration_threshold));
            }
        }
        let eligible = member && !standby;
        let score = if sticky != 0 {
            format!(
                "score {base} + {sticky} stickiness (it runs there) = {}",
                i64::from(base) + i64::from(sticky)
            )
        } else {
            format!("score {base}")
        };
        let can = if eligible && !banned {
            "may run it".to_string()
        } else {
            format!("may not run it: {}", why_not.join("; "))
        };
        let _ = writeln!(w, "  {}: {score}; {can}.", n.name);
        candidates.push(Candidate {
            node,
            eligible,
            banned,
            active,
        });
    }

    // The choice, with the brain's placement.
    let moved = gs.moved_to.as_deref().and_then(id);
    let choice = place(&spec.rules, &candidates, moved);
    let name = |n: NodeId| {
        cfg.nodes
            .get(usize::from(n.0).saturating_sub(1))
            .map_or("?", |x| x.name.as_str())
    };
    let _ = writeln!(w, "\nPlacement:");
    match (choice, &gs.moved_to) {
        (Some(c), Some(to)) if name(c) == to => {
            let _ = writeln!(
                w,
                "  An operator moved it to {to}; the move is in force (`tandem move {group} --clear` removes it)."
            );
        }
        (_, Some(to)) => {
            let _ = writeln!(
                w,
                "  An operator moved it to {to}, but {to} may not run it now; the move waits."
            );
        }
        _ => {}
    }
    match choice {
        None => {
            let _ = writeln!(w, "  No node may run it: see the reasons above.");
        }
        Some(c) if gs.moved_to.is_none() => {
            let runs_there = gs.active_on.iter().any(|a| a == name(c));
            let held = m.waiting.is_some() || m.quorum.as_ref().is_some_and(|q| !q.quorate);
            if held {
                let _ = writeln!(
                    w,
                    "  {} would be chosen, but {} may not run groups now (see below).",
                    name(c),
                    m.local
                );
            } else if !spec.rules.auto_failback && runs_there {
                let _ = writeln!(
                    w,
                    "  auto_failback is off: it stays on {} where it runs, whatever the scores.",
                    name(c)
                );
            } else {
                let _ = writeln!(
                    w,
                    "  {} has the highest score among the nodes that may run it.",
                    name(c)
                );
            }
        }
        Some(_) => {}
    }
    if let Some(t) = &gs.target
        && choice.is_some_and(|c| name(c) != t)
    {
        let _ = writeln!(
            w,
            "  (The brain's current target is {t}; the facts above changed since, or differ on another node.)"
        );
    }

    // What can keep it from running anywhere, or from moving.
    let mut notes = Vec::new();
    if let Some(b) = &gs.blocked_on {
        notes.push(format!("A stop failed on {b}: {group} is blocked there and nothing moves it until an operator fixes the cause and runs `tandem cleanup {group}`."));
    }
    if let Some(q) = &m.quorum {
        if q.quorate {
            notes.push(format!(
                "Quorum: {} of {} votes (need {}); this partition may run groups.",
                q.present, q.total, q.needed
            ));
        } else {
            let policy = format!("{:?}", q.no_quorum).to_lowercase();
            notes.push(format!("NO QUORUM: {} of {} votes (need {}); no_quorum = {policy}: groups do not run here.", q.present, q.total, q.needed));
        }
    }
    if let Some(why) = &m.waiting {
        notes.push(format!("{} waits before running groups alone: {why}. (`tandem force-primary {}` if you know the other node is off.)", m.local, m.local));
    }
    if let Some(hold) = &gs.data_hold_here {
        notes.push(format!("Data: {} may not run it: {hold}.", m.local));
    }
    match m.lease_ms {
        Some(ms) if gs.active_on.contains(&m.local) => notes.push(format!(
            "Lease: {} holds its lease for {ms} ms more; it renews it while its peers hear it.",
            m.local
        )),
        _ => {}
    }
    if !m.joined {
        notes.push(format!("{} is still joining the cluster: it runs nothing until every peer is heard or initdead passes.", m.local));
    }
    if !notes.is_empty() {
        let _ = writeln!(w, "\nAlso:");
        for n in notes {
            let _ = writeln!(w, "  {n}");
        }
    }
    Ok(out)
}
