//! Running agent programs: own process group, clean environment, a
//! deadline, and the whole group killed when the deadline passes.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How an agent program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code; the last lines of its output follow.
    Code(i32, String),
    /// It was killed by a signal (not by us).
    Signal(i32),
    /// It outlived its deadline and was killed with its process group.
    TimedOut,
    /// It could not be started.
    SpawnFailed(String),
}

/// Most output kept from an agent, for error messages.
const OUTPUT_CAP: u64 = 4096;

/// Runs `program args` with exactly `env` (plus PATH), in a new process
/// group, waiting at most `timeout`.
pub fn run(
    program: &str,
    args: &[&str],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Exit {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => return Exit::SpawnFailed(format!("cannot run {program}: {e}")),
    };
    // Drain output on helper threads so a chatty agent cannot block on a
    // full pipe; keep only the tail. A daemon started by the agent may keep
    // the pipes open forever, so output is awaited only briefly.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let readers = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    ];
    for r in readers.into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.take(1 << 20).read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => break None,
            // Woken by the exit itself (pidfd), not by a polling tick.
            Ok(None) => crate::watch::wait_exit(
                child.id(),
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            ),
            Err(_) => break None,
        }
    };
    let Some(status) = status else {
        kill_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
        return Exit::TimedOut;
    };
    // Output is complete when both pipes close, at once for most agents.
    // A process the agent left behind (IPaddr's background send_arp, a
    // daemon that kept its stdio) holds them open: then only a short grace,
    // longer after a failure, whose message is worth waiting for.
    let grace = if status.success() {
        Duration::from_millis(10)
    } else {
        Duration::from_millis(200)
    };
    let mut text = Vec::new();
    let until = Instant::now() + grace;
    while let Ok(b) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        text.extend(b);
    }
    let start = text.len().saturating_sub(OUTPUT_CAP as usize);
    let tail = String::from_utf8_lossy(&text[start..]).trim().to_string();
    match status.code() {
        Some(c) => Exit::Code(c, tail),
        None => Exit::Signal(std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)),
    }
}

/// Sends `sig` to the process group led by `pid`.
#[allow(unsafe_code)]
pub fn kill_group(pid: u32, sig: libc::c_int) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // it reads no memory of ours.
        unsafe {
            libc::kill(-p, sig);
        }
    }
}

/// Sends `sig` to the single process `pid`; false if it does not exist.
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and reads no memory of ours.
    unsafe { libc::kill(p, sig) == 0 }
}

/// Spawns `cmd`, retrying for up to 200 ms while it fails with ETXTBSY:
/// the program's file is open for writing somewhere (being replaced by an
/// upgrade, or a fork elsewhere in this process holds a descriptor for a
/// moment). It passes.
pub fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_output_and_timeouts() {
        let env = BTreeMap::from([("X".to_string(), "42".to_string())]);
        assert_eq!(
            run(
                "sh",
                &["-c", "echo $X; exit 7"],
                &env,
                Duration::from_secs(5)
            ),
            Exit::Code(7, "42".into())
        );
        let t = Instant::now();
        // A hung agent with a background child: both die at the deadline.
        let exit = run(
            "sh",
            &["-c", "sleep 30 & sleep 30"],
            &env,
            Duration::from_millis(200),
        );
        assert_eq!(exit, Exit::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            run("/nonexistent/agent", &[], &env, Duration::from_secs(1)),
            Exit::SpawnFailed(_)
        ));
    }
}
