//! CPU, IO and memory load from `stress-ng` on every CPU, for the drills
//! and benchmarks that must hold their timings under load. Test tooling:
//! never shipped.

use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// `stress-ng --cpu 2 --io 1 --vm 1 --vm-bytes 128M`, running until
/// dropped.
#[derive(Debug)]
pub struct Stress(Child);

impl Stress {
    /// Starts the load; `timeout` bounds it if this process dies first.
    pub fn start(timeout: std::time::Duration) -> anyhow::Result<Self> {
        Command::new("stress-ng")
            .args(["--cpu", "2", "--io", "1", "--vm", "1", "--vm-bytes", "128M"])
            .arg(format!("--timeout={}s", timeout.as_secs().max(1)))
            .arg("--quiet")
            .stdout(Stdio::null())
            .spawn()
            .map(Self)
            .context("run stress-ng (apt-get install stress-ng)")
    }
}

impl Drop for Stress {
    /// SIGTERM, not SIGKILL: stress-ng then stops its workers and waits
    /// for them. Killed outright, its orphaned workers kept loading the
    /// machine for seconds — into the next drill, which then failed over
    /// in its steady state (seen twice in a row).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}
