//! `tandem status`: asks the local daemon and prints what it sees.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use tandem_control::{ControlError, Request, Response, Status};
use tandem_core::PeerState;

/// Finds the control socket: `--socket`, else the configuration's, else the default.
pub fn socket_path(config: &Path, over: Option<&Path>) -> PathBuf {
    if let Some(s) = over {
        return s.to_path_buf();
    }
    tandem_config::load(config)
        .map(|l| l.config.socket)
        .unwrap_or_else(|_| PathBuf::from("/run/tandem/tandem.sock"))
}

/// Whether `e` means "no daemon is running".
pub fn is_not_running(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ControlError>(),
        Some(ControlError::NotRunning { .. })
    )
}

/// Fetches the status from the daemon at `socket`.
pub fn fetch(socket: &Path) -> anyhow::Result<Status> {
    match tandem_control::request(socket, &Request::Status, Duration::from_secs(5))? {
        Response::Status(s) => Ok(*s),
        Response::Error { message }
        | Response::Done { message }
        | Response::Refused { message, .. } => {
            bail!("the daemon answered: {message}")
        }
    }
}

/// `tandem status [--json]`.
pub fn run(config: &Path, socket: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let status = fetch(&socket_path(config, socket))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

fn ago(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms ago"),
        Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
    }
}

fn state_word(s: PeerState) -> &'static str {
    match s {
        PeerState::Pending => "pending",
        PeerState::Online => "online",
        PeerState::Late => "LATE",
        PeerState::Dead => "DEAD",
        PeerState::Left => "left",
    }
}

/// The human-readable table.
pub fn render(s: &Status) -> String {
    let m = &s.membership;
    let mut out = String::new();
    let up = Duration::from_millis(m.uptime_ms);
    let _ = writeln!(
        out,
        "Cluster {} — seen from {} (incarnation {}, up {})",
        m.cluster,
        m.local,
        m.incarnation,
        tandem_core::time::human(up)
    );
    let _ = writeln!(out, "Members: {}", m.members.join(", "));
    if let Some(q) = &m.quorum {
        let _ = writeln!(
            out,
            "Quorum: {} ({} of {} votes present, {} needed; without quorum: {})",
            if q.quorate { "yes" } else { "NO" },
            q.present,
            q.total,
            q.needed,
            format!("{:?}", q.no_quorum).to_lowercase()
        );
    }
    let _ = writeln!(out);
    let width = m
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:width$}  {:8} {:>18}  {:12}  LINKS",
        "NODE", "STATE", "INCARNATION", "LAST HEARD"
    );
    for n in &m.nodes {
        let inc = n.incarnation.map_or("-".into(), |i| i.to_string());
        let heard = if n.local {
            "(this node)".into()
        } else {
            ago(n.last_heard_ms)
        };
        let links: Vec<String> = n
            .links
            .iter()
            .map(|l| {
                let st = match l.state {
                    tandem_core::LinkState::Up => "up",
                    tandem_core::LinkState::Dead => "DEAD",
                    tandem_core::LinkState::Unknown => "unknown",
                };
                format!("{} {st}", l.name)
            })
            .collect();
        let mut extra = String::new();
        if n.config_mismatch {
            extra.push_str("  (different configuration!)");
        }
        let _ = writeln!(
            out,
            "{:width$}  {:8} {:>18}  {:12}  {}{extra}",
            n.name,
            state_word(n.state),
            inc,
            heard,
            links.join(", ")
        );
    }
    if let Some(l) = m.lease_ms {
        let _ = writeln!(
            out,
            "Lease: {l} ms left (renewed continuously; enforced by the kernel)"
        );
    }
    if let Some(w) = &m.waiting {
        let _ = writeln!(out, "THIS NODE WAITS: {w}");
    }
    for f in &m.fencing {
        let _ = writeln!(
            out,
            "Fencing: {} {} at {:.1} s ({})",
            f.node,
            if f.ok { "fenced" } else { "FAILED" },
            f.uptime_ms as f64 / 1000.0,
            f.detail
        );
    }
    if !m.standby.is_empty() {
        let _ = writeln!(out, "Standby: {}", m.standby.join(", "));
    }
    for g in &m.groups {
        let _ = writeln!(out);
        let place = if g.active_on.is_empty() {
            "stopped".to_string()
        } else {
            format!("active on {}", g.active_on.join(", "))
        };
        let mut notes = Vec::new();
        if let Some(t) = &g.target {
            if !g.active_on.contains(t) || g.active_on.len() > 1 {
                notes.push(format!("going to {t}"));
            }
        } else {
            notes.push("no node can run it".into());
        }
        if let Some(b) = &g.blocked_on {
            notes.push(format!(
                "BLOCKED on {b}: a stop failed; check it, then `tandem cleanup {}`",
                g.name
            ));
        }
        if let Some(m) = &g.moved_to {
            notes.push(format!("moved to {m} by an operator"));
        }
        if !g.banned_on.is_empty() {
            notes.push(format!(
                "banned on {} (failures, or its data not ready there)",
                g.banned_on.join(", ")
            ));
        }
        if let Some(h) = &g.data_hold_here {
            notes.push(format!("not startable on {}: {h}", m.local));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" — {}", notes.join("; "))
        };
        let _ = writeln!(out, "Group {}: {place}{notes}", g.name);
        for r in &g.resources {
            let mut line = format!(
                "  {:12} {:9}",
                r.name,
                format!("{:?}", r.state).to_lowercase()
            );
            if r.fail_count > 0 {
                line.push_str(&format!(" failures {}", r.fail_count));
            }
            if let Some(e) = &r.last_error {
                line.push_str(&format!(" ({e})"));
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    render_volumes(&mut out, s);
    let st = &m.stats;
    let _ = writeln!(out);
    let mut rejected = Vec::new();
    for (name, v) in [
        ("bad MAC", st.bad_mac),
        ("replayed", st.replayed),
        ("stale", st.stale),
        ("future incarnation", st.future_incarnation),
        ("wrong cluster", st.wrong_cluster),
        ("unknown sender", st.unknown_sender),
        ("unknown key", st.unknown_key),
        ("truncated", st.truncated),
        ("oversized", st.oversized),
        ("not tandem", st.bad_magic),
        ("bad version", st.unsupported_version),
        ("malformed", st.malformed),
        ("wrong link", st.wrong_link),
    ] {
        if v > 0 {
            rejected.push(format!("{name} {v}"));
        }
    }
    let _ = writeln!(
        out,
        "Packets: {} sent, {} accepted, {} rejected{}",
        st.sent,
        st.accepted,
        st.rejected(),
        if rejected.is_empty() {
            String::new()
        } else {
            format!(" ({})", rejected.join(", "))
        }
    );
    let _ = writeln!(
        out,
        "Heartbeat thread: {}; worst timer lateness {:.1} ms; {} stall(s)",
        s.daemon.scheduling,
        st.max_timer_lateness_us as f64 / 1000.0,
        st.stalls
    );
    out
}

/// Each volume: role and disk here, then each peer's connection,
/// replication, role and disk, with the resync's progress.
fn render_volumes(out: &mut String, s: &Status) {
    for v in &s.volumes {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Volume {}: {:?} {:?} on {}",
            v.name, v.role, v.disk, s.membership.local
        );
        if !v.suspended_for.is_empty() {
            let _ = writeln!(
                out,
                "  IO SUSPENDED until {} is outdated or fenced (fencing resource-and-stonith; `tandem volume resume-io {}` forces)",
                v.suspended_for.join(", "),
                v.name
            );
        }
        for p in &v.peers {
            let mut line = format!(
                "  {:12} {:?} {:?} {:?} {:?}",
                p.node, p.connection, p.replication, p.role, p.peer_disk
            );
            if p.out_of_sync_kib > 0 {
                line.push_str(&format!(
                    " — {:.1} % in sync, {} KiB to go",
                    p.done, p.out_of_sync_kib
                ));
                if let Some(eta) = p.eta_seconds {
                    line.push_str(&format!(", about {eta:.0} s left"));
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
}
