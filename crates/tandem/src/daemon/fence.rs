//! Fencing: before anything starts in place of a dead node, a fence agent
//! powers it off. Standard `fence_*` programs from Debian's fence-agents
//! (or any script following their convention) read `key=value` lines on
//! stdin — `action=off`, `plug=NODE`, and the configured parameters — and
//! exit 0 on success. Runs on threads of its own.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use tandem_config::Fencing;

/// Runs fence requests and reports (request id, outcome).
pub struct Fencer {
    cfg: Option<Fencing>,
    results: Sender<(u64, Result<(), String>)>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Fencer {
    /// A fencer for `cfg` (none: every request fails).
    pub fn new(
        cfg: Option<Fencing>,
        results: Sender<(u64, Result<(), String>)>,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            cfg,
            results,
            wake: Arc::from(wake),
        }
    }

    /// Fences `node`, reporting under `id`.
    pub fn fence(&self, id: u64, node: String) {
        let (cfg, tx, wake) = (self.cfg.clone(), self.results.clone(), self.wake.clone());
        std::thread::spawn(move || {
            let r = match cfg {
                None => Err("no fence agent configured".to_string()),
                Some(c) => run(&c, &node),
            };
            match &r {
                Ok(()) => tracing::info!("fence agent {}: {node} is off", cfg_name(&r)),
                Err(e) => tracing::warn!("fencing {node} failed: {e}"),
            }
            let _ = tx.send((id, r));
            wake();
        });
    }
}

fn cfg_name(_: &Result<(), String>) -> &'static str {
    "succeeded"
}

fn run(c: &Fencing, node: &str) -> Result<(), String> {
    let mut input = format!("action={}\nplug={node}\nport={node}\n", c.action);
    for (k, v) in &c.params {
        input.push_str(&format!("{k}={v}\n"));
    }
    let mut child = Command::new(&c.agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", c.agent.display()))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    let deadline = Instant::now() + c.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => {
                let out = child
                    .wait_with_output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "{} exited {st}{}",
                    c.agent.display(),
                    if out.is_empty() {
                        String::new()
                    } else {
                        format!(": {out}")
                    }
                ));
            }
            Ok(None) if Instant::now() > deadline => {
                tandem_agents::exec::kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                return Err(format!("{} timed out", c.agent.display()));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

use std::os::unix::process::CommandExt as _;
