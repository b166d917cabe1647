//! The process agent: tandem itself runs and supervises a command, in its
//! own process group, and stops it with SIGTERM, then SIGKILL when the stop
//! timeout nears. A pid file (with the process start time, against pid
//! reuse) lets a restarted daemon find a process it started before.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tandem_core::OpResult;

use crate::exec::{kill_group, signal};

/// Supervises the commands of process resources.
#[derive(Debug)]
pub struct Processes {
    dir: PathBuf,
    node: String,
    children: Mutex<HashMap<String, Child>>,
}

fn start_time(pid: u32) -> Option<(String, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    Some(((*f.get(19)?).to_string(), state))
}

impl Processes {
    /// Keeps pid files and output logs in `dir`; commands see
    /// `TANDEM_NODE=node`.
    pub fn new(dir: PathBuf, node: String) -> Self {
        Self {
            dir,
            node,
            children: Mutex::new(HashMap::new()),
        }
    }

    fn pidfile(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.pid"))
    }

    /// Renames a pid file written under the key of earlier versions
    /// (`group.resource`, which could collide) to `key`, so a process
    /// started before an upgrade is still found, not started twice.
    pub fn adopt_legacy_key(&self, legacy: &str, key: &str) {
        let (old, new) = (self.pidfile(legacy), self.pidfile(key));
        if old.exists() && !new.exists() {
            let _ = std::fs::rename(old, new);
        }
    }

    /// The pid of `key`'s process if it runs (not a zombie, same start time).
    fn running(&self, key: &str) -> Option<u32> {
        if let Ok(mut ch) = self.children.lock()
            && let Some(c) = ch.get_mut(key)
            && let Ok(Some(_)) = c.try_wait()
        {
            ch.remove(key); // exited and reaped
            return None;
        }
        let text = std::fs::read_to_string(self.pidfile(key)).ok()?;
        let mut it = text.split_whitespace();
        let pid: u32 = it.next()?.parse().ok()?;
        let started = it.next()?.to_string();
        match start_time(pid) {
            Some((t, state)) if t == started && state != 'Z' && state != 'X' => Some(pid),
            _ => None,
        }
    }

    /// The pid of `key`'s process, if it runs (for the watcher).
    pub fn main_pid(&self, key: &str) -> Option<u32> {
        self.running(key)
    }

    /// Starts `command` for resource `key` unless it already runs.
    pub fn start(&self, key: &str, command: &str) -> OpResult {
        if self.running(key).is_some() {
            return OpResult::Ok;
        }
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            return OpResult::Failed(format!("cannot create {}: {e}", self.dir.display()));
        }
        let log = match std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{key}.log")))
        {
            Ok(f) => f,
            Err(e) => return OpResult::Failed(format!("cannot open the output log: {e}")),
        };
        let err = match log.try_clone() {
            Ok(f) => f,
            Err(e) => return OpResult::Failed(e.to_string()),
        };
        // A clean environment, as a service manager gives its services:
        // the daemon's own variables are none of the command's business.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("TANDEM_NODE", &self.node)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => return OpResult::Failed(format!("cannot run `{command}`: {e}")),
        };
        let pid = child.id();
        let Some((t, _)) = start_time(pid) else {
            return OpResult::Failed(format!("`{command}` exited at once"));
        };
        if let Err(e) = std::fs::write(self.pidfile(key), format!("{pid} {t}\n")) {
            kill_group(pid, libc::SIGKILL);
            return OpResult::Failed(format!("cannot write the pid file: {e}"));
        }
        if let Ok(mut ch) = self.children.lock() {
            ch.insert(key.to_string(), child);
        }
        OpResult::Ok
    }

    /// Stops `key`'s process group: `signal` (SIGTERM unless the resource
    /// says `stop_signal`), then SIGKILL shortly before `timeout`.
    pub fn stop(&self, key: &str, timeout: Duration, signal: libc::c_int) -> OpResult {
        let Some(pid) = self.running(key) else {
            let _ = std::fs::remove_file(self.pidfile(key));
            return OpResult::Ok;
        };
        kill_group(pid, signal);
        let start = Instant::now();
        let grace = timeout
            .saturating_sub(timeout / 5)
            .max(Duration::from_millis(50));
        while self.running(key).is_some() {
            if start.elapsed() >= grace {
                kill_group(pid, libc::SIGKILL);
            }
            if start.elapsed() >= timeout {
                return OpResult::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = std::fs::remove_file(self.pidfile(key));
        OpResult::Ok
    }

    /// Whether `key`'s process runs.
    pub fn monitor(&self, key: &str) -> OpResult {
        match self.running(key) {
            Some(pid) if signal(pid, 0) => OpResult::Ok,
            _ => OpResult::NotRunning,
        }
    }
}

/// The signal named by a `stop_signal` parameter (`TERM`, `INT`, `QUIT`,
/// `HUP`, `USR1`, `USR2`, with or without `SIG`).
pub fn stop_signal(name: &str) -> Option<libc::c_int> {
    Some(match name.trim_start_matches("SIG") {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, finding 15: pid files were keyed `group.resource`, so
    /// `a.b`/`c` and `a`/`b.c` shared one. The key is `group@resource` now,
    /// and a process started under the old key is still found after an
    /// upgrade.
    #[test]
    fn a_process_started_under_the_old_key_is_found_after_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let old = Processes::new(dir.path().into(), "n1".into());
        assert_eq!(old.start("web.httpd", "exec sleep 30"), OpResult::Ok);
        let new = Processes::new(dir.path().into(), "n1".into());
        new.adopt_legacy_key("web.httpd", "web@httpd");
        assert_eq!(new.monitor("web@httpd"), OpResult::Ok);
        assert_eq!(new.monitor("web.httpd"), OpResult::NotRunning);
        assert_eq!(
            new.stop("web@httpd", Duration::from_secs(5), libc::SIGTERM),
            OpResult::Ok
        );
    }

    #[test]
    fn start_monitor_stop_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = Processes::new(dir.path().into(), "n1".into());
        assert_eq!(p.monitor("g.r"), OpResult::NotRunning);
        // The daemon's environment (here the test's: cargo sets
        // CARGO_MANIFEST_DIR) does not reach the command.
        assert_eq!(
            p.start(
                "g.r",
                "echo $TANDEM_NODE${CARGO_MANIFEST_DIR:+ leaked}; exec sleep 30"
            ),
            OpResult::Ok
        );
        assert_eq!(p.monitor("g.r"), OpResult::Ok);
        // A new daemon (empty child table) finds it by its pid file.
        let q = Processes::new(dir.path().into(), "n1".into());
        assert_eq!(q.monitor("g.r"), OpResult::Ok);
        assert_eq!(
            q.start("g.r", "sleep 30"),
            OpResult::Ok,
            "not started twice"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let log = loop {
            let log = std::fs::read_to_string(dir.path().join("g.r.log")).unwrap_or_default();
            if !log.is_empty() || Instant::now() > deadline {
                break log;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(log.trim(), "n1");
        assert_eq!(
            p.stop("g.r", Duration::from_secs(5), libc::SIGTERM),
            OpResult::Ok
        );
        assert_eq!(q.monitor("g.r"), OpResult::NotRunning);
        assert_eq!(
            p.stop("g.r", Duration::from_secs(5), libc::SIGTERM),
            OpResult::Ok,
            "stop is idempotent"
        );
    }

    #[test]
    fn a_process_that_ignores_sigterm_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let p = Processes::new(dir.path().into(), "n1".into());
        assert_eq!(
            p.start("t", "trap '' TERM; while :; do sleep 0.05; done"),
            OpResult::Ok
        );
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        assert_eq!(
            p.stop("t", Duration::from_millis(500), libc::SIGTERM),
            OpResult::Ok
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(p.monitor("t"), OpResult::NotRunning);
    }

    #[test]
    fn a_crashed_process_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let p = Processes::new(dir.path().into(), "n1".into());
        assert_eq!(p.start("c", "exit 3"), OpResult::Ok);
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.monitor("c") == OpResult::Ok {
            assert!(
                Instant::now() < deadline,
                "exited process still reported running"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
