//! `tandem volume events NAME [--now] [--follow]`: the volume's state as a
//! stream of lines in the style of `drbdsetup events2`, so scripts written
//! for DRBD's event stream read it: `exists …` lines for the current state
//! (`--now`) ending with `exists -`, then, with `--follow`, a `change …`
//! line whenever the role, a disk, a connection or a replication state
//! changes, and the resync's progress every second while one runs.
//! Without either flag: the volume's recent event log, one line each.

use std::time::Duration;

use anyhow::bail;
use tandem_volumes::VolumeStatus;

use crate::volume::control::{self, Answer, Command};

use super::volume::Target;

/// The state of `st` as `events2` objects: (key, line body), the key
/// naming the object (resource, device, connection or peer-device).
fn objects(st: &VolumeStatus) -> Vec<(String, String)> {
    let name = &st.name;
    let mut out = vec![
        (
            "resource".to_string(),
            format!(
                "resource name:{name} role:{:?} suspended:{}",
                st.role,
                if st.suspended_for.is_empty() {
                    "no"
                } else {
                    "fencing"
                }
            ),
        ),
        (
            "device".to_string(),
            format!("device name:{name} volume:0 disk:{:?}", st.disk),
        ),
    ];
    for p in &st.peers {
        out.push((
            format!("connection {}", p.node),
            format!(
                "connection name:{name} conn-name:{} connection:{:?} role:{:?}",
                p.node, p.connection, p.role
            ),
        ));
        out.push((
            format!("peer-device {}", p.node),
            format!(
                "peer-device name:{name} conn-name:{} volume:0 replication:{:?} peer-disk:{:?} out-of-sync:{}",
                p.node, p.replication, p.peer_disk, p.out_of_sync_kib
            ),
        ));
    }
    out
}

/// The lines that take a reader from `prev` to `cur`: `exists` lines for
/// everything (and `exists -`) when there is no previous state, else a
/// `change` line per object that changed (pure; tested).
pub fn lines(prev: Option<&VolumeStatus>, cur: &VolumeStatus) -> Vec<String> {
    let now = objects(cur);
    let Some(prev) = prev else {
        let mut v: Vec<String> = now
            .into_iter()
            .map(|(_, l)| format!("exists {l}"))
            .collect();
        v.push("exists -".into());
        return v;
    };
    let before = objects(prev);
    let mut v = Vec::new();
    for (key, line) in &now {
        match before.iter().find(|(k, _)| k == key) {
            Some((_, old)) if old == line => {}
            Some(_) => v.push(format!("change {line}")),
            None => v.push(format!("create {line}")),
        }
    }
    for (key, line) in &before {
        if !now.iter().any(|(k, _)| k == key) {
            v.push(format!("destroy {line}"));
        }
    }
    v
}

fn status(t: &Target, name: &str) -> anyhow::Result<VolumeStatus> {
    match control::request(&t.socket(name), &Command::Status)? {
        Answer::Status { status, .. } => Ok(*status),
        Answer::Refused { message } => bail!("{message}"),
        _ => bail!("{name}: unexpected answer"),
    }
}

/// Runs `events`: see the module documentation.
pub fn events(t: &Target, name: &str, now: bool, follow: bool) -> anyhow::Result<()> {
    if !now && !follow {
        return super::volume::command(t, name, Command::Events);
    }
    t.volume(name)?;
    let mut prev = status(t, name)?;
    if now {
        for l in lines(None, &prev) {
            println!("{l}");
        }
    }
    if !follow {
        return Ok(());
    }
    let mut ticks = 0u32;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        ticks += 1;
        let cur = status(t, name)?;
        for l in lines(Some(&prev), &cur) {
            println!("{l}");
        }
        // A resync's progress, once a second (events2 --statistics).
        if ticks.is_multiple_of(10) {
            for p in cur.peers.iter().filter(|p| p.out_of_sync_kib > 0) {
                println!(
                    "change peer-device name:{name} conn-name:{} volume:0 done:{:.1} out-of-sync:{}{}",
                    p.node,
                    p.done,
                    p.out_of_sync_kib,
                    p.eta_seconds
                        .map(|s| format!(" eta:{s:.0}"))
                        .unwrap_or_default()
                );
            }
        }
        prev = cur;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_volumes::status::{Counters, PeerStatus};
    use tandem_volumes::{ConnState, DiskState, Protocol, ReplState, Role};

    fn st(role: Role, conn: ConnState, oos: u64) -> VolumeStatus {
        VolumeStatus {
            name: "r0".into(),
            role,
            disk: DiskState::UpToDate,
            peers: vec![PeerStatus {
                node: "n2".into(),
                connection: conn,
                replication: ReplState::Established,
                role: Role::Secondary,
                peer_disk: DiskState::UpToDate,
                done: 100.0,
                out_of_sync_kib: oos,
                resync_kib_s: None,
                eta_seconds: None,
                pending: 0,
                unacked: 0,
                protocol: Protocol::C,
            }],
            counters: Counters::default(),
            current: 0,
            size: 1 << 20,
            suspended_for: Vec::new(),
        }
    }

    #[test]
    fn the_state_then_only_what_changed_in_events2_form() {
        let a = st(Role::Secondary, ConnState::Connected, 0);
        assert_eq!(
            lines(None, &a),
            vec![
                "exists resource name:r0 role:Secondary suspended:no",
                "exists device name:r0 volume:0 disk:UpToDate",
                "exists connection name:r0 conn-name:n2 connection:Connected role:Secondary",
                "exists peer-device name:r0 conn-name:n2 volume:0 replication:Established peer-disk:UpToDate out-of-sync:0",
                "exists -",
            ]
        );
        assert!(lines(Some(&a), &a).is_empty());
        let b = st(Role::Primary, ConnState::Connecting, 64);
        assert_eq!(
            lines(Some(&a), &b),
            vec![
                "change resource name:r0 role:Primary suspended:no",
                "change connection name:r0 conn-name:n2 connection:Connecting role:Secondary",
                "change peer-device name:r0 conn-name:n2 volume:0 replication:Established peer-disk:UpToDate out-of-sync:64",
            ]
        );
    }
}
