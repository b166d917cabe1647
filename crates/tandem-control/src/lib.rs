//! The control socket between `tandem` commands and a running daemon.
//!
//! One JSON [`Request`] per line in, one JSON [`Response`] per line out, over
//! a Unix socket created with mode 0600 (root-only when the daemon runs as
//! root). The server runs on its own thread and only reads snapshots the
//! heartbeat thread publishes, so no request can delay a heartbeat.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_core::MembershipStatus;

/// Longest request or response line accepted.
const MAX_LINE: u64 = 4 << 20;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The cluster as this node sees it.
    Status,
    /// Prefer `node` for `group` (for `for_ms` milliseconds, or until
    /// cleared); `node: None` clears the preference.
    Move {
        /// Group name.
        group: String,
        /// Node name, or none to clear.
        node: Option<String>,
        /// Duration of the preference in milliseconds.
        for_ms: Option<u64>,
    },
    /// Put a node in standby (`on`) or take it out.
    Standby {
        /// Node name.
        node: String,
        /// Standby on or off.
        on: bool,
    },
    /// Reset a group's fail counts and blocked state on every node.
    Cleanup {
        /// Group name.
        group: String,
    },
    /// Two-node cluster without a reachable witness: let this node act alone.
    ForcePrimary {
        /// Must be the node the daemon runs on.
        node: String,
    },
    /// Move groups to this node (`take`) or away from it, Heartbeat style.
    TakeOver {
        /// True: take over; false: release.
        take: bool,
        /// `all`, `local` (groups preferring this node) or `foreign`.
        which: String,
    },
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
}

/// Everything `tandem status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon.
    pub daemon: DaemonInfo,
    /// Membership as this node sees it.
    pub membership: MembershipStatus,
}

/// What the daemon answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// The answer to [`Request::Status`].
    Status(Box<Status>),
    /// A command was applied; what changed.
    Done {
        /// What changed, in words.
        message: String,
    },
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
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

/// Binds the control socket at `path` (replacing a stale one) with mode 0600
/// and serves requests with `handler` on a thread of its own.
pub fn serve<H>(path: &Path, handler: H) -> Result<std::thread::JoinHandle<()>, ControlError>
where
    H: Fn(Request) -> Response + Send + 'static,
{
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if path.exists() {
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
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    std::thread::Builder::new()
        .name("tandem-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                // A slow or silent client must not hold the socket forever.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = answer(stream, &handler);
            }
        })
        .map_err(io)
}

fn answer<H: Fn(Request) -> Response>(stream: UnixStream, handler: &H) -> std::io::Result<()> {
    let mut reader = BufReader::new((&stream).take(MAX_LINE));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handler(req),
        Err(e) => Response::Error {
            message: format!("invalid request: {e}"),
        },
    };
    let mut out = serde_json::to_string(&response)
        .unwrap_or_else(|e| format!("{{\"response\":\"error\",\"message\":\"{e}\"}}"));
    out.push('\n');
    (&stream).write_all(out.as_bytes())
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

        serve(&path, |_| Response::Error {
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
        let again = serve(&path, |_| Response::Error {
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
        serve(&path, |_| Response::Error {
            message: "x".into(),
        })
        .unwrap();
        assert!(request(&path, &Request::Status, Duration::from_secs(5)).is_ok());
    }
}
