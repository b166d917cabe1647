//! Fencing: before anything starts in place of a dead node, a fence agent
//! powers it off. Standard `fence_*` programs from Debian's fence-agents
//! (or any script following their convention) read `key=value` lines on
//! stdin — `action=off`, `plug=NODE`, and the configured parameters — and
//! exit 0 on success. Runs on threads of its own.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::Instant;

use tandem_config::Fencing;

use super::inbox::{Inbox, Input};

/// Why fencing a node failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    /// `[fencing]` is not configured.
    #[error("no fence agent configured")]
    NotConfigured,
    /// The agent could not be started.
    #[error("cannot run {agent}: {reason}")]
    Spawn {
        /// The agent.
        agent: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The agent did not finish within `[fencing] timeout`.
    #[error("{0} timed out")]
    Timeout(PathBuf),
    /// Waiting for the agent failed.
    #[error("waiting for {agent}: {reason}")]
    Wait {
        /// The agent.
        agent: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The agent exited with an error (its stderr, clipped, follows).
    #[error("{agent} exited {status}{stderr}")]
    Failed {
        /// The agent.
        agent: PathBuf,
        /// How it exited.
        status: String,
        /// `: ` and what it printed on stderr, or nothing.
        stderr: String,
    },
    /// The fence worker thread is gone.
    #[error("the fence worker is not running")]
    WorkerGone,
}

/// Runs fence requests, one at a time, on a long-lived worker thread
/// (`tandem-fence`), and reports each outcome to the node loop.
pub struct Fencer {
    requests: Option<Sender<(u64, String)>>,
    inbox: Inbox,
}

impl Fencer {
    /// A fencer for `cfg` (none: every request fails) reporting to `inbox`.
    pub fn new(cfg: Option<Fencing>, inbox: Inbox) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<(u64, String)>();
        let report = inbox.clone();
        let spawned = std::thread::Builder::new()
            .name("tandem-fence".into())
            .spawn(move || {
                for (id, node) in rx {
                    let result = match &cfg {
                        None => Err(FenceError::NotConfigured),
                        Some(c) => run(c, &node),
                    };
                    match &result {
                        Ok(()) => tracing::info!("fence agent succeeded: {node} is off"),
                        Err(e) => tracing::warn!("fencing {node} failed: {e}"),
                    }
                    report.send(Input::Fenced { id, result });
                }
            });
        if let Err(e) = &spawned {
            tracing::error!("cannot start the fence worker: {e}; fencing will fail");
        }
        Self {
            requests: spawned.ok().map(|_| tx),
            inbox,
        }
    }

    /// Fences `node`, reporting under `id`.
    pub fn fence(&self, id: u64, node: String) {
        let queued = self
            .requests
            .as_ref()
            .is_some_and(|tx| tx.send((id, node)).is_ok());
        if !queued {
            self.inbox.send(Input::Fenced {
                id,
                result: Err(FenceError::WorkerGone),
            });
        }
    }
}

/// How much of a fence agent's stderr is kept for the error message.
const STDERR_KEPT: usize = 4096;

/// Reads `from` to its end on a thread of its own, keeping at most `keep`
/// bytes: a verbose agent never blocks on a full pipe, and its output never
/// grows without bound.
fn drain(
    mut from: impl std::io::Read + Send + 'static,
    keep: usize,
) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("tandem-fence-out".into())
        .spawn(move || {
            let (mut kept, mut buf) = (Vec::new(), [0u8; 8192]);
            loop {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = keep.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(kept);
        });
    rx
}

fn run(c: &Fencing, node: &str) -> Result<(), FenceError> {
    let mut input = format!("action={}\nplug={node}\nport={node}\n", c.action);
    for (k, v) in &c.params {
        input.push_str(&format!("{k}={v}\n"));
    }
    // A clean environment: the daemon's own variables are none of the
    // agent's business.
    let mut cmd = Command::new(&c.agent);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = tandem_agents::exec::spawn(&mut cmd).map_err(|e| FenceError::Spawn {
        agent: c.agent.clone(),
        reason: e.to_string(),
    })?;
    let _stdout = child.stdout.take().map(|o| drain(o, 0));
    let stderr = child.stderr.take().map(|e| drain(e, STDERR_KEPT));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    let deadline = Instant::now() + c.timeout;
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) if Instant::now() > deadline => {
                break Err(FenceError::Timeout(c.agent.clone()));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => {
                break Err(FenceError::Wait {
                    agent: c.agent.clone(),
                    reason: e.to_string(),
                });
            }
        }
    };
    // Whatever the agent left running in its group (holding the pipes open)
    // goes with it.
    tandem_agents::exec::kill_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
    let st = outcome?;
    if st.success() {
        return Ok(());
    }
    let out = stderr
        .and_then(|rx| rx.recv_timeout(std::time::Duration::from_millis(200)).ok())
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let clipped = if out.len() >= STDERR_KEPT {
        " (clipped)"
    } else {
        ""
    };
    Err(FenceError::Failed {
        agent: c.agent.clone(),
        status: st.to_string(),
        stderr: if out.is_empty() {
            String::new()
        } else {
            format!(": {out}{clipped}")
        },
    })
}

use std::os::unix::process::CommandExt as _;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn agent(dir: &std::path::Path, body: &str) -> tandem_config::Fencing {
        let path = dir.join("fence_test");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write agent");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        tandem_config::Fencing {
            agent: path,
            params: Default::default(),
            action: "off".into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Issue 12, finding 5: output was read only after exit, so an agent
    /// writing more than a pipe holds blocked until its timeout, forever.
    #[test]
    fn a_verbose_agent_neither_blocks_nor_floods_the_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let loud =
            "head -c 1000000 /dev/zero | tr '\\0' x; head -c 1000000 /dev/zero | tr '\\0' y >&2";
        let t = std::time::Instant::now();
        assert_eq!(
            super::run(&agent(dir.path(), &format!("{loud}; exit 0")), "n1"),
            Ok(())
        );
        let err = super::run(&agent(dir.path(), &format!("{loud}; exit 1")), "n1")
            .unwrap_err()
            .to_string();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(
            err.contains("exited") && err.contains("(clipped)"),
            "{}",
            &err[..80]
        );
        assert!(err.len() < super::STDERR_KEPT + 200, "{}", err.len());
    }

    /// The agent gets its stdin convention and a clean environment.
    #[test]
    fn the_agent_sees_its_request_and_no_daemon_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let got = super::run(
            &agent(
                dir.path(),
                "read a; read p; [ \"$a\" = action=off ] && [ \"$p\" = plug=n2 ] && [ -z \"$HOME\" ] || { env >&2; exit 1; }",
            ),
            "n2",
        );
        assert_eq!(got, Ok(()));
    }
}
