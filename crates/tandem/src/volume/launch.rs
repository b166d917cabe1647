//! Starting a volume's process (`tandem volume run`) in the background:
//! `tandem volume up` and the daemon both do it this way.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::control::{self, Command};

/// Where a volume process reads its configuration.
#[derive(Clone, Debug)]
pub enum Source {
    /// A tandem.toml.
    Config(std::path::PathBuf),
    /// A Heartbeat directory (with DRBD's files in the sibling drbd.d).
    HeartbeatDir(std::path::PathBuf),
}

/// Starts `tandem volume run NAME` for the configuration at `source` (node
/// `node`), logging to `STATE_DIR/volumes/NAME.log`, in a process group of
/// its own (a signal to the caller's group does not reach it), and waits up
/// to 10 s until its control socket answers.
pub fn launch(source: &Source, state_dir: &Path, node: &str, name: &str) -> anyhow::Result<Child> {
    let sock = control::socket_path(state_dir, name);
    let log = super::log_path(state_dir, name);
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("open {}", log.display()))?;
    let exe = std::env::current_exe().context("find the tandem executable")?;
    let mut child = std::process::Command::new(exe);
    child.args(["volume", "run", name]);
    match source {
        Source::Config(p) => child.arg("--config").arg(p),
        Source::HeartbeatDir(p) => child.arg("--heartbeat-dir").arg(p),
    };
    child
        .args(["--node", node])
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child.spawn().context("start the volume process")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if control::request(&sock, &Command::Status).is_ok() {
            return Ok(child);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let last: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "{name}: the volume process exited ({st}); last log lines:\n{}",
                last.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{name}: the volume process did not answer within 10 s; see {}",
        log.display()
    )
}
