//! DRBD-style handlers (`[volume.handlers]`): programs run on volume
//! events with DRBD's environment, so existing notify scripts
//! (`notify-split-brain.sh`, snapshot scripts…) keep working. Each runs on
//! a thread of its own, through `sh -c`, with a 60 s limit. The resync
//! waits for `before-resync-target` (a snapshot of the target's data
//! before any block changes, as DRBD's snapshot scripts take): exit 0
//! starts it, anything else drops the connection. A `fence-peer` handler's exit code
//! means what it means to DRBD: 3 (peer Inconsistent), 4 (peer Outdated)
//! or 7 (peer powered off) confirm the peer is fenced, and IO suspended
//! for it (`fencing = resource-and-stonith`) goes on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tandem_agents::exec::{Exit, run};
use tandem_volumes::{Role, VolumeEvent};

/// A volume's handlers and the facts their environment carries.
pub struct Handlers {
    volume: String,
    commands: BTreeMap<String, String>,
    /// Peer name → its replication address.
    peers: BTreeMap<String, SocketAddr>,
    /// `N` of a `/dev/drbdN` device, for `DRBD_MINOR`.
    minor: Option<String>,
    /// The volume's control socket (a `fence-peer` handler's verdict goes
    /// there).
    control: std::path::PathBuf,
}

/// How long a handler may run.
const LIMIT: Duration = Duration::from_secs(60);

/// What a finished handler tells the volume, as DRBD reads its exit:
/// `before-resync-target` starts the resync on 0 and drops the connection
/// otherwise; `fence-peer` exiting 3 (peer Inconsistent), 4 (peer
/// Outdated) or 7 (peer fenced) releases IO suspended for that peer.
fn verdict(handler: &str, peer: String, exit: &Exit) -> Option<super::control::Command> {
    use super::control::Command;
    match (handler, exit) {
        ("before-resync-target", e) => Some(Command::ResyncTargetReady {
            peer,
            ok: matches!(e, Exit::Code(0, _)),
        }),
        ("fence-peer", Exit::Code(c @ (3 | 4 | 7), _)) => Some(Command::PeerFenced {
            peer,
            how: format!("the fence-peer handler exited {c}"),
        }),
        _ => None,
    }
}

impl Handlers {
    /// The handlers of volume `v` on node `local`, whose control socket is
    /// `control`.
    pub fn new(v: &tandem_config::Volume, local: &str, control: std::path::PathBuf) -> Self {
        let minor = v
            .node(local)
            .and_then(|(_, n)| n.device.as_ref())
            .and_then(|d| d.to_str())
            .and_then(|d| d.strip_prefix("/dev/drbd"))
            .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string);
        Self {
            volume: v.name.clone(),
            commands: v.handlers.clone(),
            peers: v
                .nodes
                .iter()
                .filter(|n| n.name != local)
                .map(|n| (n.name.clone(), n.address))
                .collect(),
            minor,
            control,
        }
    }

    /// Runs the handlers `event` calls (on a node in `role`), if any are
    /// configured.
    pub fn on_event(&self, event: &VolumeEvent, role: Role) {
        let (names, peer) = event.handlers(role);
        for name in names {
            let Some(cmd) = self.commands.get(name) else {
                continue;
            };
            let env = self.environment(name, peer, event);
            let (cmd, handler, volume) = (cmd.clone(), name.to_string(), self.volume.clone());
            let report = peer.map(|p| (p.to_string(), self.control.clone()));
            let spawned = std::thread::Builder::new()
                .name("tandem-vol-handler".into())
                .spawn(move || {
                    let exit = run("sh", &["-c", &cmd], &env, LIMIT);
                    let outcome = match &exit {
                        Exit::Code(0, _) => "exited 0".to_string(),
                        Exit::Code(c, out) => format!("exited {c}: {}", out.trim()),
                        Exit::Signal(s) => format!("killed by signal {s}"),
                        Exit::TimedOut => format!("killed after {} s", LIMIT.as_secs()),
                        Exit::SpawnFailed(e) => e.clone(),
                    };
                    tracing::info!(target: "tandem::volume", "{volume}: handler {handler} ({cmd}) {outcome}");
                    let Some((peer, control)) = report else { return };
                    if let Some(verdict) = verdict(&handler, peer, &exit)
                        && let Err(e) = super::control::request(&control, &verdict)
                    {
                        tracing::warn!(target: "tandem::volume", "{volume}: the {handler} handler's verdict did not reach the volume: {e:#}");
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("{}: handler {name} not run: {e}", self.volume);
            }
        }
    }

    /// DRBD's handler environment, plus tandem's own.
    fn environment(
        &self,
        handler: &str,
        peer: Option<&str>,
        event: &VolumeEvent,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("DRBD_RESOURCE".into(), self.volume.clone());
        env.insert("DRBD_VOLUME".into(), "0".into());
        if let Some(m) = &self.minor {
            env.insert("DRBD_MINOR".into(), m.clone());
        }
        let names: Vec<&str> = self.peers.keys().map(String::as_str).collect();
        env.insert("DRBD_PEERS".into(), names.join(" "));
        if let Some(p) = peer {
            env.insert("DRBD_PEER".into(), p.to_string());
            if let Some(a) = self.peers.get(p) {
                env.insert("DRBD_PEER_ADDRESS".into(), a.ip().to_string());
                env.insert(
                    "DRBD_PEER_AF".into(),
                    if a.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
                );
            }
        }
        env.insert("TANDEM_VOLUME".into(), self.volume.clone());
        env.insert("TANDEM_HANDLER".into(), handler.to_string());
        env.insert("TANDEM_EVENT".into(), event.to_string());
        env
    }
}

#[cfg(test)]
mod tests {
    use super::{Exit, verdict};
    use crate::volume::control::Command;

    #[test]
    fn handler_exits_read_as_drbd_reads_them() {
        let code = |c| Exit::Code(c, String::new());
        let p = || "n2".to_string();
        assert_eq!(
            verdict("before-resync-target", p(), &code(0)),
            Some(Command::ResyncTargetReady {
                peer: p(),
                ok: true
            })
        );
        for failed in [
            code(1),
            Exit::TimedOut,
            Exit::Signal(9),
            Exit::SpawnFailed("x".into()),
        ] {
            assert_eq!(
                verdict("before-resync-target", p(), &failed),
                Some(Command::ResyncTargetReady {
                    peer: p(),
                    ok: false
                })
            );
        }
        for c in [3, 4, 7] {
            assert!(
                matches!(verdict("fence-peer", p(), &code(c)), Some(Command::PeerFenced { peer, .. }) if peer == "n2"),
                "{c}"
            );
        }
        for c in [0, 1, 5, 6] {
            assert_eq!(verdict("fence-peer", p(), &code(c)), None, "{c}");
        }
        assert_eq!(verdict("split-brain", p(), &code(0)), None);
    }
}
