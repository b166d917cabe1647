//! A volume's control socket (`STATE_DIR/volumes/NAME.sock`, root only):
//! one JSON request per connection, one JSON answer. `tandem volume
//! primary|secondary|connect|…` talk to it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_volumes::VolumeStatus;

use super::Input;
use super::inbox::Inbox;

/// An operator command for a running volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// `primary [--force]`.
    Primary {
        /// Make this copy the newest even if it is not up to date.
        force: bool,
        /// Set by the cluster's `volume:` agent: the end of the node's
        /// lease (CLOCK_MONOTONIC ns); writes stop when it lapses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<u64>,
    },
    /// `secondary`.
    Secondary,
    /// `connect [--discard-my-data] [PEER]`.
    Connect {
        /// Resolve a split brain with this node as the victim.
        discard_my_data: bool,
        /// One peer, or every peer.
        peer: Option<String>,
    },
    /// `disconnect [PEER]`.
    Disconnect {
        /// One peer, or every peer.
        peer: Option<String>,
    },
    /// `invalidate`.
    Invalidate,
    /// `invalidate-remote [PEER]`.
    InvalidateRemote {
        /// One peer, or every peer.
        peer: Option<String>,
    },
    /// The cluster declared `peer` dead: drop its connection now and keep
    /// trying to reconnect.
    Forget {
        /// The peer.
        peer: String,
    },
    /// `outdate`: mark this copy Outdated (a primary went on without it).
    Outdate,
    /// IO suspended for `peer` may go on: the cluster (or a `fence-peer`
    /// handler) confirmed it cannot be promoted with data missing.
    PeerFenced {
        /// The peer.
        peer: String,
        /// How that was confirmed.
        how: String,
    },
    /// `resume-io`: resume suspended IO without that confirmation.
    ResumeIo,
    /// The `before-resync-target` handler finished (`ok`: exit 0): the
    /// resync from `peer` may start, or the connection is dropped.
    ResyncTargetReady {
        /// The sync source.
        peer: String,
        /// The handler succeeded.
        ok: bool,
    },
    /// `verify [PEER]`.
    Verify {
        /// One peer, or every peer.
        peer: Option<String>,
    },
    /// `resize [--assume-clean]`: grow to what every node's backing disk
    /// holds now.
    Resize {
        /// The new area is identical everywhere: no resync.
        #[serde(default)]
        assume_clean: bool,
    },
    /// `status`.
    Status,
    /// `events`: the recent event lines.
    Events,
    /// `down`: stop the volume (refused while primary).
    Down,
}

/// Facts about the exports, for status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The FUSE file, if exported.
    pub device: Option<PathBuf>,
    /// Where NBD listens, if enabled.
    pub nbd: Option<String>,
}

/// The answer to a command.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Answer {
    /// Done; what changed.
    Done {
        /// In words.
        message: String,
    },
    /// Refused; why.
    Refused {
        /// In words.
        message: String,
    },
    /// The status.
    Status {
        /// The volume.
        status: Box<VolumeStatus>,
        /// Its exports.
        info: Info,
    },
    /// Recent events.
    Events {
        /// Lines, oldest first.
        lines: Vec<String>,
    },
}

/// The control socket of volume `name`.
pub fn socket_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("volumes").join(format!("{name}.sock"))
}

/// Serves the control socket: each request goes to the engine's inbox.
pub fn serve(path: &Path, inbox: Inbox) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    if UnixStream::connect(path).is_ok() {
        anyhow::bail!(
            "{} answers: this volume already runs here (`tandem volume down` first)",
            path.display()
        );
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("tandem-vol-control".into())
        .spawn(move || {
            for s in l.incoming().flatten() {
                let inbox = inbox.clone();
                let _ = std::thread::Builder::new()
                    .name("tandem-vol-ctl-conn".into())
                    .spawn(move || answer(s, &inbox));
            }
        })?;
    Ok(())
}

fn answer(s: UnixStream, inbox: &Inbox) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    if BufReader::new(&s)
        .take(1 << 16)
        .read_line(&mut line)
        .is_err()
    {
        return;
    }
    let reply = match serde_json::from_str::<Command>(&line) {
        Err(e) => Answer::Refused {
            message: format!("bad request: {e}"),
        },
        Ok(cmd) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let (wtx, wrx) = std::sync::mpsc::channel();
            let _ = inbox.send(Input::Control {
                cmd,
                reply: tx,
                written: wrx,
            });
            let a = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or(Answer::Refused {
                    message: "the volume did not answer in time".into(),
                });
            if let Ok(text) = serde_json::to_string(&a) {
                let _ = (&s).write_all(text.as_bytes());
                let _ = (&s).write_all(b"\n");
            }
            // The volume may exit now (after `down`): the answer is out.
            let _ = wtx.send(());
            return;
        }
    };
    if let Ok(text) = serde_json::to_string(&reply) {
        let _ = (&s).write_all(text.as_bytes());
        let _ = (&s).write_all(b"\n");
    }
}

use std::io::Read as _;

/// Sends `cmd` to the volume listening on `path`.
pub fn request(path: &Path, cmd: &Command) -> anyhow::Result<Answer> {
    let s = UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "volume is not up here ({}: {e}); start it with `tandem volume up`",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut text = serde_json::to_string(cmd)?;
    text.push('\n');
    (&s).write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    Ok(serde_json::from_str(&line)?)
}
