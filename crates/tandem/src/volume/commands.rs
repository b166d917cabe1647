//! Operator commands arriving on the volume's control socket.

use std::sync::mpsc::Sender;

use super::{Runner, control};

impl Runner {
    /// Answers a control command; an `outdate` is answered only once the
    /// metadata saying Outdated is on disk (the peer that asked promotes on
    /// the strength of it: a crash in between must not leave this copy
    /// UpToDate on disk).
    pub(super) fn answer_control(&mut self, cmd: control::Command, reply: Sender<control::Answer>) {
        match cmd {
            control::Command::Resize { assume_clean } => {
                return self.resize_command(assume_clean, reply);
            }
            control::Command::Secondary => return self.demote_command(reply),
            _ => {}
        }
        let durable_first = matches!(cmd, control::Command::Outdate);
        let answer = self.command(cmd);
        if durable_first
            && matches!(answer, control::Answer::Done { .. })
            && !self.vol.meta_settled()
        {
            self.parked.push((reply, answer));
        } else {
            let _ = reply.send(answer);
        }
    }

    /// Sends the parked answers once every metadata write is done; if the
    /// disk failed meanwhile, they say so instead.
    pub(super) fn release_parked(&mut self) {
        if self.parked.is_empty() || !self.vol.meta_settled() {
            return;
        }
        let failed = self.vol.disk() == tandem_volumes::DiskState::Diskless;
        for (reply, answer) in self.parked.drain(..) {
            let _ = reply.send(if failed {
                control::Answer::Refused {
                    message: "the metadata write failed: the disk is detached (Diskless)".into(),
                }
            } else {
                answer
            });
        }
    }

    /// Applies an operator command.
    pub(super) fn command(&mut self, cmd: control::Command) -> control::Answer {
        use control::{Answer, Command};
        let now = self.now();
        let peers: Vec<String> = self.vol.peer_names().map(str::to_string).collect();
        let pick = |p: &Option<String>| -> Vec<String> {
            p.as_ref()
                .map_or_else(|| peers.clone(), |p| vec![p.clone()])
        };
        let done = |m: &str| Answer::Done {
            message: m.to_string(),
        };
        let refused = |e: &dyn std::fmt::Display| Answer::Refused {
            message: e.to_string(),
        };
        let name = self.vol.name().to_string();
        match cmd {
            Command::Primary { force, lease } => match self.vol.promote(now, force) {
                Ok(()) if lease.is_some() => {
                    self.managed = true;
                    self.lapse_reported = false;
                    if let Some(l) = lease {
                        self.lease_until = self.lease_until.max(l);
                    }
                    done(&format!(
                        "{name}: primary (writes accepted while this node holds the cluster's lease)"
                    ))
                }
                Ok(()) if force => done(&format!(
                    "{name}: primary (forced: this copy is now the newest; peers resync from it)"
                )),
                Ok(()) => done(&format!("{name}: primary")),
                Err(e) => refused(&e),
            },
            Command::Secondary => match self.vol.demote(now) {
                Ok(()) => {
                    self.managed = false;
                    done(&format!("{name}: secondary"))
                }
                Err(e) => refused(&e),
            },
            Command::Connect {
                discard_my_data,
                peer,
            } => {
                for p in pick(&peer) {
                    if discard_my_data && let Err(e) = self.vol.discard_my_data(&p) {
                        return refused(&e);
                    }
                    if let Err(e) = self.vol.connect(&p) {
                        return refused(&e);
                    }
                }
                done(&if discard_my_data {
                    format!(
                        "{name}: connecting; on a split brain this node's changes since the split are discarded"
                    )
                } else {
                    format!("{name}: connecting")
                })
            }
            Command::Disconnect { peer } => {
                for p in pick(&peer) {
                    if let Err(e) = self.vol.disconnect(&p) {
                        return refused(&e);
                    }
                }
                done(&format!(
                    "{name}: disconnected (StandAlone until `connect`)"
                ))
            }
            Command::Invalidate => match self.vol.invalidate() {
                Ok(()) => done(&format!(
                    "{name}: local copy discarded; a full resync from a peer follows at the next connection"
                )),
                Err(e) => refused(&e),
            },
            Command::InvalidateRemote { peer } => {
                for p in pick(&peer) {
                    if let Err(e) = self.vol.invalidate_remote(now, &p) {
                        return refused(&e);
                    }
                }
                done(&format!(
                    "{name}: the peer's copy is discarded; a full resync to it from this copy follows"
                ))
            }
            Command::Verify { peer } => {
                for p in pick(&peer) {
                    if let Err(e) = self.vol.verify(now, &p) {
                        return refused(&e);
                    }
                }
                done(&format!(
                    "{name}: online verify started (see `tandem volume events`)"
                ))
            }
            Command::Forget { peer } => match self.vol.forget(now, &peer) {
                Ok(()) => done(&format!(
                    "{name}: connection to {peer} dropped (the cluster declared it dead); reconnecting"
                )),
                Err(e) => refused(&e),
            },
            Command::Outdate => match self.vol.outdate(now) {
                Ok(()) => done(&format!("{name}: this copy is Outdated until it resyncs")),
                Err(e) => refused(&e),
            },
            Command::PeerFenced { peer, how } => match self.vol.peer_fenced(now, &peer, &how) {
                Ok(true) => done(&format!("{name}: {peer} fenced ({how})")),
                Ok(false) => done(&format!("{name}: IO was not waiting for {peer}")),
                Err(e) => refused(&e),
            },
            Command::ResyncTargetReady { peer, ok } => {
                match self.vol.resync_target_ready(now, &peer, ok) {
                    Ok(true) if ok => done(&format!("{name}: resync from {peer} starts")),
                    Ok(true) => done(&format!("{name}: resync from {peer} refused; disconnected")),
                    Ok(false) => done(&format!("{name}: no resync from {peer} was waiting")),
                    Err(e) => refused(&e),
                }
            }
            Command::ResumeIo => {
                if self.vol.resume_io(now) {
                    done(&format!(
                        "{name}: IO resumed without the peers' fencing confirmed (a peer promoted meanwhile would lack what this node writes now)"
                    ))
                } else {
                    done(&format!("{name}: IO was not suspended"))
                }
            }
            Command::Status => Answer::Status {
                status: Box::new(self.status()),
                info: self.info.clone(),
            },
            Command::Events => Answer::Events {
                lines: self.events.clone(),
            },
            // Answered once this node's outcome is known (`answer_control`).
            Command::Resize { .. } => refused(&"resize is answered by `resize_command`"),
            Command::Down => {
                if self.vol.role() == tandem_volumes::Role::Primary {
                    return refused(&format!(
                        "{name} is primary here; run `tandem volume secondary {name}` first"
                    ));
                }
                self.stop = true;
                done(&format!("{name}: down"))
            }
        }
    }
}
