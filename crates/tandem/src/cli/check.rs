//! `tandem check`: a Nagios/Icinga plugin built into the binary, following
//! the Monitoring Plugins guidelines: one line `TANDEM STATE - summary |
//! perfdata`, then one line per problem, and the exit code 0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN. The verdict is a pure function of the status
//! document ([`evaluate`]), so it is tested state by state.

use std::fmt::Write as _;

use tandem_control::Status;
use tandem_core::{LinkState, PeerState};
use tandem_volumes::ReplState;

/// Thresholds, from the command line.
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// A resource's fail count at or above this warns.
    pub fail_count: u32,
    /// A member silent on every link for longer than this (ms) warns.
    pub late_ms: u64,
    /// Only this node's own conditions (its state, standby, links to it).
    pub node: Option<String>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            fail_count: 1,
            late_ms: 300,
            node: None,
        }
    }
}

/// Plugin states, in increasing severity (the exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// 0.
    Ok = 0,
    /// 1.
    Warning = 1,
    /// 2.
    Critical = 2,
    /// 3: the check could not be made.
    Unknown = 3,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// The verdict: state, the plugin's output lines.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Worst state found.
    pub state: State,
    /// First line (with perfdata) and one line per problem.
    pub text: String,
}

/// The UNKNOWN verdict for a check that could not be made.
pub fn unknown(why: &str) -> Verdict {
    Verdict {
        state: State::Unknown,
        text: format!("TANDEM UNKNOWN - {why}"),
    }
}

/// Judges `s` against `t`.
pub fn evaluate(s: &Status, t: &Thresholds) -> Verdict {
    let m = &s.membership;
    let mut problems: Vec<(State, String)> = Vec::new();
    let mut say = |st: State, msg: String| problems.push((st, msg));
    let concerns = |node: &str| t.node.as_deref().is_none_or(|n| n == node);

    if !m.joined {
        say(
            State::Warning,
            format!("{} is still joining the cluster", m.local),
        );
    }
    if let Some(q) = &m.quorum
        && !q.quorate
    {
        say(
            State::Critical,
            format!(
                "no quorum: {} of {} votes (need {})",
                q.present, q.total, q.needed
            ),
        );
    }
    if let Some(w) = &m.waiting {
        say(State::Critical, format!("{} waits: {w}", m.local));
    }
    for n in m.nodes.iter().filter(|n| concerns(&n.name)) {
        match n.state {
            PeerState::Dead => say(State::Critical, format!("node {} is dead", n.name)),
            PeerState::Late => say(State::Warning, format!("node {} is late", n.name)),
            PeerState::Pending if m.joined => {
                say(State::Critical, format!("node {} was never heard", n.name))
            }
            _ => {}
        }
        if m.standby.contains(&n.name) {
            say(State::Warning, format!("node {} is in standby", n.name));
        }
        if n.local || !n.state.is_member() {
            continue;
        }
        let up = n.links.iter().filter(|l| l.state == LinkState::Up).count();
        for l in n.links.iter().filter(|l| l.state == LinkState::Dead) {
            let st = if up == 0 {
                State::Critical
            } else {
                State::Warning
            };
            say(st, format!("link {}:{} is dead", n.name, l.name));
        }
        if n.links.len() > 1 && up == 1 {
            say(State::Warning, format!("only one link left to {}", n.name));
        }
        if let Some(ms) = n.last_heard_ms
            && ms > t.late_ms
        {
            say(
                State::Warning,
                format!(
                    "{} last heard {ms} ms ago (threshold {} ms)",
                    n.name, t.late_ms
                ),
            );
        }
    }
    let mut started = 0;
    for g in &m.groups {
        if g.blocked_on.is_some() {
            say(
                State::Critical,
                format!(
                    "group {} is blocked on {} (a stop failed; fix it, then `tandem cleanup {}`)",
                    g.name,
                    g.blocked_on.as_deref().unwrap_or("?"),
                    g.name
                ),
            );
        } else if g.active_on.is_empty() {
            say(State::Critical, format!("group {} runs nowhere", g.name));
        } else if g.active_on.len() > 1 {
            say(
                State::Critical,
                format!(
                    "group {} is active on {}",
                    g.name,
                    g.active_on.join(" and ")
                ),
            );
        } else {
            started += 1;
        }
        if let Some(to) = &g.moved_to {
            say(
                State::Warning,
                format!(
                    "group {} has a move to {to} in force (`tandem move {} --clear`)",
                    g.name, g.name
                ),
            );
        }
        for r in &g.resources {
            if r.state == tandem_core::ResourceState::Failed {
                say(
                    State::Critical,
                    format!("resource {}/{} failed on {}", g.name, r.name, m.local),
                );
            }
            if r.fail_count >= t.fail_count {
                say(
                    State::Warning,
                    format!(
                        "resource {}/{} has {} failure(s) on {}",
                        g.name, r.name, r.fail_count, m.local
                    ),
                );
            }
        }
    }
    let mut out_of_sync = 0u64;
    for v in &s.volumes {
        for p in &v.peers {
            out_of_sync += p.out_of_sync_kib;
            if p.out_of_sync_kib > 0
                || matches!(p.replication, ReplState::SyncSource | ReplState::SyncTarget)
            {
                say(
                    State::Warning,
                    format!(
                        "volume {} is out of sync with {} ({} KiB, {:.1}% done)",
                        v.name, p.node, p.out_of_sync_kib, p.done
                    ),
                );
            }
        }
    }

    let online = m.nodes.iter().filter(|n| n.state.is_member()).count();
    let state = problems.iter().map(|p| p.0).max().unwrap_or(State::Ok);
    let mut text = format!(
        "TANDEM {} - {online}/{} nodes online, {started}/{} groups started",
        state.word(),
        m.nodes.len(),
        m.groups.len()
    );
    if let Some(first) = problems
        .iter()
        .filter(|p| p.0 == state)
        .map(|p| &p.1)
        .next()
    {
        let _ = write!(text, ": {first}");
    }
    let fails: u32 = m
        .groups
        .iter()
        .flat_map(|g| &g.resources)
        .map(|r| r.fail_count)
        .sum();
    let _ = write!(
        text,
        " | nodes_online={online};;;0;{} groups_started={started};;;0;{} resource_failures={fails};{};;0; out_of_sync={}KB;;;0;",
        m.nodes.len(),
        m.groups.len(),
        t.fail_count,
        out_of_sync
    );
    for (st, msg) in &problems {
        let _ = write!(text, "\n{}: {msg}", st.word());
    }
    Verdict { state, text }
}
