//! The control socket between `tandem` commands and a running daemon.
//!
//! One JSON [`Request`] per line in, one JSON [`Response`] per line out, over
//! a Unix socket: mode 0600 (root only) unless groups are let in
//! ([`Access`]: an admin group may change things, a read group may read the
//! status, checked from the peer's kernel credentials). Each connection is
//! served on a thread of its own with a deadline, and only reads snapshots
//! the heartbeat thread publishes, so no request can delay a heartbeat and
//! no slow client delays another.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_core::MembershipStatus;

pub mod access;
pub use access::{Access, Rights};

/// Longest request or response line accepted.
const MAX_LINE: u64 = 4 << 20;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The cluster as this node sees it.
    Status,
    /// An operator command, handed to the brain as it is (validated once,
    /// there).
    Command(tandem_core::Command),
}

/// Facts about the daemon process itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Process id.
    pub pid: u32,
    /// tandem version.
    pub version: String,
    /// Configuration file in use.
    pub config: String,
    /// How the heartbeat thread is scheduled (real-time or not, and why).
    pub scheduling: String,
    /// Datagrams sent on the wire (one per destination), total.
    pub sent_datagrams: u64,
    /// Bytes sent on the wire, total.
    pub sent_bytes: u64,
    /// Sends that failed (e.g. a peer's host unreachable), total.
    pub send_errors: u64,
    /// Events delivered to `[[alert]]` programs, total.
    #[serde(default)]
    pub alerts_delivered: u64,
    /// Events given up on after every retry, total.
    #[serde(default)]
    pub alerts_failed: u64,
}

/// Everything `tandem status` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon.
    pub daemon: DaemonInfo,
    /// Membership as this node sees it.
    pub membership: MembershipStatus,
    /// This node's replicated volumes, each with its peers as it sees
    /// them (refreshed every 200 ms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<tandem_volumes::VolumeStatus>,
}

/// What the daemon answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// The answer to [`Request::Status`].
    Status(Box<Status>),
    /// A command was applied; what changed.
    Done {
        /// What changed, in words.
        message: String,
    },
    /// The cluster refused the command; nothing changed.
    Refused {
        /// Why, in words.
        message: String,
        /// A stable word for scripts (see [`refusal_kind`]).
        kind: String,
    },
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
}

/// The stable word for a refused command: `joining`, `shutting_down`,
/// `not_this_node`, `peer_reachable`, `not_waiting`, `no_other_node`, `unknown_group`,
/// `unknown_node` or `bad_selection`.
pub fn refusal_kind(e: &tandem_core::CommandError) -> &'static str {
    use tandem_core::CommandError as E;
    match e {
        E::Joining => "joining",
        E::ShuttingDown => "shutting_down",
        E::NotThisNode { .. } => "not_this_node",
        E::PeerReachable { .. } => "peer_reachable",
        E::NotWaiting => "not_waiting",
        E::NoOtherNode => "no_other_node",
        E::UnknownGroup { .. } => "unknown_group",
        E::UnknownNode { .. } => "unknown_node",
        E::BadSelection(_) => "bad_selection",
    }
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon listens on the socket.
    #[error(
        "no tandem daemon is running here (nothing listens on {path}); start one with `tandem daemon`, or point to its socket with --socket"
    )]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
    },
    /// The socket exists but this user may not use it.
    #[error(
        "permission denied on {path}: the control socket is root-only; run the command as root (e.g. with sudo)"
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// Another IO failure.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The peer sent something that is not a valid message.
    #[error("control socket {path}: invalid message: {detail}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// Sends one request to the daemon at `path` and waits (at most `timeout`)
/// for its answer.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ControlError::NotRunning {
                path: path.to_path_buf(),
            }
        }
        std::io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ControlError::Io {
            path: path.to_path_buf(),
            source,
        },
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_LINE))
        .read_line(&mut answer)
        .map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Who sent a request, from the socket's kernel credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The peer's user id, when the kernel told it.
    pub uid: Option<u32>,
}

impl Caller {
    /// `user alice (uid 1000)`, or `uid 1000` when /etc/passwd does not
    /// name it, for logs and the event history.
    pub fn describe(&self) -> String {
        let Some(uid) = self.uid else {
            return "an unknown local user".into();
        };
        let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid.to_string()).then(|| name.to_string())
            })
        });
        match name {
            Some(n) => format!("local user {n} (uid {uid})"),
            None => format!("local uid {uid}"),
        }
    }
}

/// Most connections served at once; more are told to retry.
const MAX_CLIENTS: usize = 16;

/// Binds the control socket at `path` (replacing a stale socket, never any
/// other file) and serves requests with `handler`, each connection on a
/// thread of its own with a deadline, checked against `access` from the
/// peer's kernel credentials. The socket is mode 0600 (root only), or 0666
/// when `access` lets groups in; its mode is set before it appears at
/// `path`.
pub fn serve<H>(
    path: &Path,
    access: Access,
    handler: H,
) -> Result<std::thread::JoinHandle<()>, ControlError>
where
    H: Fn(Request, &Caller) -> Response + Send + Sync + 'static,
{
    use std::os::unix::fs::FileTypeExt;
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ControlError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket; refusing to delete it (move it away, or set `socket =` in tandem.toml)",
                ),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another tandem daemon is already listening here",
                ),
            });
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    // Bound under a private name, given its mode, then renamed into place:
    // nobody can connect to it at `path` before the mode is right.
    let name = path
        .file_name()
        .map_or_else(|| "tandem.sock".into(), |n| n.to_string_lossy().to_string());
    let staging = dir.join(format!(".{name}.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).map_err(io)?;
    let mode = if access.is_open() { 0o666 } else { 0o600 };
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    std::fs::rename(&staging, path).map_err(io)?;
    let handler = std::sync::Arc::new(handler);
    let access = std::sync::Arc::new(access);
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("tandem-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                // A slow or silent client must not hold its thread forever.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                use std::sync::atomic::Ordering::SeqCst;
                if busy.fetch_add(1, SeqCst) >= MAX_CLIENTS {
                    busy.fetch_sub(1, SeqCst);
                    let _ = reply(
                        &stream,
                        &Response::Error {
                            message: "the daemon is busy with other commands; try again".into(),
                        },
                    );
                    continue;
                }
                let (handler, access, done) = (handler.clone(), access.clone(), busy.clone());
                let spawned = std::thread::Builder::new()
                    .name("tandem-control-conn".into())
                    .spawn(move || {
                        let _ = answer(&stream, &access, &*handler);
                        done.fetch_sub(1, SeqCst);
                    });
                if spawned.is_err() {
                    busy.fetch_sub(1, SeqCst);
                }
            }
        })
        .map_err(io)
}

fn reply(stream: &UnixStream, response: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_string(response)
        .unwrap_or_else(|e| format!("{{\"response\":\"error\",\"message\":\"{e}\"}}"));
    out.push('\n');
    let mut w = stream;
    w.write_all(out.as_bytes())
}

fn answer<H: Fn(Request, &Caller) -> Response>(
    stream: &UnixStream,
    access: &Access,
    handler: &H,
) -> std::io::Result<()> {
    let (rights, caller) = match access::peer(stream) {
        Ok((uid, groups)) => (access.rights(uid, &groups), Caller { uid: Some(uid) }),
        Err(_) => (access::Rights::None, Caller { uid: None }),
    };
    let mut reader = BufReader::new(stream.take(MAX_LINE));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => match access.refusal(&req, rights) {
            Some(message) => Response::Error { message },
            None => handler(req, &caller),
        },
        Err(e) => Response::Error {
            message: format!("invalid request: {e}"),
        },
    };
    reply(stream, &response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/t.sock");
        let t = Duration::from_secs(5);
        let e = request(&path, &Request::Status, t).unwrap_err();
        assert!(matches!(e, ControlError::NotRunning { .. }), "{e}");
        assert!(e.to_string().contains("start one with `tandem daemon`"));

        serve(&path, Access::default(), |_, _| Response::Error {
            message: "hello".into(),
        })
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            request(&path, &Request::Status, t).unwrap(),
            Response::Error {
                message: "hello".into()
            }
        );
        // A second daemon on the same socket is refused.
        let again = serve(&path, Access::default(), |_, _| Response::Error {
            message: String::new(),
        });
        assert!(again.unwrap_err().to_string().contains("already listening"));

        // Garbage gets an error answer, and the server keeps serving.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{not json\n").unwrap();
        let mut buf = String::new();
        BufReader::new(&s).read_line(&mut buf).unwrap();
        assert!(buf.contains("invalid request"), "{buf}");
        assert!(request(&path, &Request::Status, t).is_ok());
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        serve(&path, Access::default(), |_, _| Response::Error {
            message: "x".into(),
        })
        .unwrap();
        assert!(request(&path, &Request::Status, Duration::from_secs(5)).is_ok());
    }

    /// Issue 12, finding 9: any file at the socket path was deleted.
    #[test]
    fn a_file_that_is_not_a_socket_is_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sock");
        std::fs::write(&path, "precious").unwrap();
        let e = serve(&path, Access::default(), |_, _| Response::Error {
            message: "x".into(),
        })
        .unwrap_err();
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    /// One client that connects and says nothing does not delay others.
    #[test]
    fn a_silent_client_does_not_delay_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sock");
        serve(&path, Access::default(), |_, _| Response::Error {
            message: "ok".into(),
        })
        .unwrap();
        let _silent = UnixStream::connect(&path).unwrap();
        let t = std::time::Instant::now();
        assert!(request(&path, &Request::Status, Duration::from_secs(5)).is_ok());
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
    }
}
