//! Instant detection of a dead service: the main process of each started
//! resource is watched through a pidfd (`pidfd_open(2)`, readable when the
//! process exits), so its death is reported within a millisecond instead
//! of at the next monitor. The periodic monitor stays as the backstop.
//!
//! Where the main PID comes from ([`MainPid`]): the process agent's own
//! child; a `pidfile` parameter (OCF or LSB); the `PIDFILE=` line of an LSB
//! init script (Debian's haproxy, apache2, nginx… scripts have one);
//! systemd's `MainPID` over D-Bus. Resources without one are monitored only.
//!
//! **A reload is not a death.** When a watched process exits, its source is
//! read again at once: if it now names another live process (haproxy's
//! `-sf` reload, a re-exec, systemd's new `MainPID`), that one is watched
//! instead and nothing is reported. Only when no live process takes its
//! place is the exit reported ([`Exited`]), which the brain treats as a
//! failed monitor. A stop unwatches the resource before it runs, so
//! tandem's own stops are never reported.

#![allow(unsafe_code)] // pidfd_open(2) has no wrapper in std or libc

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tandem_core::ResourceKey;

/// Where a resource's main process id is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MainPid {
    /// A process the process agent started (no reload: its exit is final).
    Child(u32),
    /// A pid file the service writes.
    Pidfile(PathBuf),
    /// A systemd unit's `MainPID`.
    Systemd(String),
}

/// Called with the resource and a sentence for the log when its main
/// process exited and none took its place.
pub type Exited = Arc<dyn Fn(ResourceKey, String) + Send + Sync>;

/// One watched process.
struct Watched {
    key: ResourceKey,
    source: MainPid,
    pid: u32,
    fd: OwnedFd,
}

enum Request {
    Watch(Watched),
    /// Not running yet as far as its source says (a daemon writes its pid
    /// file a moment after its init script returned): looked for again
    /// every 10 ms for [`PENDING_FOR`].
    Pending(ResourceKey, MainPid),
    Unwatch(ResourceKey),
}

/// How long after a main process exited its source is read again for a
/// process taking its place, before the exit counts as a death.
pub const RELOAD_GRACE: Duration = Duration::from_millis(30);

/// How long a main process not found at once is looked for.
const PENDING_FOR: Duration = Duration::from_secs(3);

/// Watches main processes on a thread of its own (`tandem-watch`).
pub struct Watcher {
    tx: Mutex<Sender<Request>>,
    waker: Arc<Waker>,
    watching: Watching,
}

/// The resources whose main process is watched now (the thread's view).
type Watching = Arc<Mutex<std::collections::HashSet<ResourceKey>>>;

const WAKE: Token = Token(0);

/// Opens a pidfd for `pid` (`None` if it does not exist).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits until process `pid` exits or `timeout` passes (returns at once
/// if it is gone). Woken by the exit itself, through a pidfd.
pub fn wait_exit(pid: u32, timeout: Duration) {
    let Some(fd) = pidfd_open(pid) else { return };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: polls one live pollfd; the fd outlives the call.
    let _ = unsafe { libc::poll(&raw mut p, 1, ms) };
}

/// Whether `pid` runs (exists and is neither a zombie nor dead).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()?
                .split_whitespace()
                .next()?
                .chars()
                .next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The pid a pid file names, if that process runs.
pub fn from_pidfile(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
    (pid > 1 && alive(pid)).then_some(pid)
}

/// The current main pid of `source`, if it runs.
pub fn resolve(source: &MainPid) -> Option<u32> {
    match source {
        MainPid::Child(pid) => alive(*pid).then_some(*pid),
        MainPid::Pidfile(path) => from_pidfile(path),
        MainPid::Systemd(unit) => {
            crate::systemd::main_pid(unit, Duration::from_secs(1)).filter(|p| alive(*p))
        }
    }
}

/// The `PIDFILE=` an init script sets, when it is a plain path, possibly
/// built from earlier plain assignments (Debian's haproxy script says
/// `BASENAME=haproxy` then `PIDFILE=/var/run/${BASENAME}.pid`). Pure; tested.
pub fn script_pidfile(script: &str) -> Option<PathBuf> {
    let mut vars: HashMap<&str, String> = HashMap::new();
    for l in script.lines() {
        let Some((name, v)) = l.trim().split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = v
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        let mut out = v.to_string();
        for (k, val) in &vars {
            out = out
                .replace(&format!("${{{k}}}"), val)
                .replace(&format!("${k}"), val);
        }
        if out.contains(['$', '`', ' ', '(']) {
            continue; // computed at run time: unknown here
        }
        if name == "PIDFILE" {
            return out.starts_with('/').then(|| PathBuf::from(out));
        }
        vars.insert(name, out);
    }
    None
}

impl Watcher {
    /// Starts the watcher thread; `exited` is called from it.
    pub fn start(exited: Exited) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (tx, rx) = std::sync::mpsc::channel();
        let watching = Watching::default();
        let w = watching.clone();
        std::thread::Builder::new()
            .name("tandem-watch".into())
            .spawn(move || run(poll, &rx, &exited, &w))?;
        Ok(Self {
            tx: Mutex::new(tx),
            waker,
            watching,
        })
    }

    fn send(&self, r: Request) {
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(r);
        }
        let _ = self.waker.wake();
    }

    /// Watches `key`'s main process from `source` (called after a start or
    /// a monitor found it running; a process already watched stays so).
    /// Returns the pid watched, if one runs.
    pub fn watch(&self, key: &ResourceKey, source: MainPid) -> Option<u32> {
        let Some((pid, fd)) = resolve(&source).and_then(|p| Some((p, pidfd_open(p)?))) else {
            self.send(Request::Pending(key.clone(), source));
            return None;
        };
        self.send(Request::Watch(Watched {
            key: key.clone(),
            source,
            pid,
            fd,
        }));
        Some(pid)
    }

    /// Whether the main process of `key` is watched now.
    pub fn is_watching(&self, key: &ResourceKey) -> bool {
        self.watching.lock().is_ok_and(|w| w.contains(key))
    }

    /// Stops watching `key` (before a stop: tandem's own stops are not
    /// deaths). Takes effect before any exit seen after it returns.
    pub fn unwatch(&self, key: &ResourceKey) {
        self.send(Request::Unwatch(key.clone()));
    }
}

fn run(mut poll: Poll, rx: &Receiver<Request>, exited: &Exited, watching: &Watching) {
    let mut watched: HashMap<Token, Watched> = HashMap::new();
    let mut next = 1usize;
    let mut events = Events::with_capacity(64);
    let mut add = |poll: &Poll, watched: &mut HashMap<Token, Watched>, w: Watched| {
        next += 1;
        let t = Token(next);
        match poll
            .registry()
            .register(&mut SourceFd(&w.fd.as_raw_fd()), t, Interest::READABLE)
        {
            Ok(()) => {
                if let Ok(mut set) = watching.lock() {
                    set.insert(w.key.clone());
                }
                watched.insert(t, w);
            }
            Err(e) => tracing::warn!("cannot watch {} (pid {}): {e}", w.key, w.pid),
        }
    };
    let remove = |poll: &Poll, watched: &mut HashMap<Token, Watched>, t: Token| {
        let w = watched.remove(&t)?;
        let _ = poll.registry().deregister(&mut SourceFd(&w.fd.as_raw_fd()));
        if let Ok(mut set) = watching.lock() {
            set.remove(&w.key);
        }
        Some(w)
    };
    let mut pending: Vec<(ResourceKey, MainPid, std::time::Instant)> = Vec::new();
    // Exited, nothing in its place yet: (the watch, when it counts as dead).
    let mut confirming: Vec<(Watched, std::time::Instant)> = Vec::new();
    loop {
        let timeout = if !confirming.is_empty() {
            Some(Duration::from_millis(2))
        } else {
            (!pending.is_empty()).then_some(Duration::from_millis(10))
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::warn!("main-process watcher stopped: {e}");
                return;
            }
            continue;
        }
        // Requests first, so an unwatch sent before a stop wins over the
        // exit that stop causes.
        loop {
            match rx.try_recv() {
                Ok(Request::Pending(k, source)) => {
                    pending.retain(|(p, _, _)| *p != k);
                    if !watched.values().any(|w| w.key == k) {
                        pending.push((k, source, std::time::Instant::now() + PENDING_FOR));
                    }
                }
                Ok(Request::Watch(w)) => {
                    pending.retain(|(p, _, _)| *p != w.key);
                    let old = watched
                        .iter()
                        .find(|(_, o)| o.key == w.key)
                        .map(|(t, o)| (*t, o.pid));
                    match old {
                        Some((_, pid)) if pid == w.pid => {}
                        Some((t, _)) => {
                            remove(&poll, &mut watched, t);
                            add(&poll, &mut watched, w);
                        }
                        None => add(&poll, &mut watched, w),
                    }
                }
                Ok(Request::Unwatch(k)) => {
                    pending.retain(|(p, _, _)| *p != k);
                    confirming.retain(|(w, _)| w.key != k);
                    let ts: Vec<Token> = watched
                        .iter()
                        .filter(|(_, w)| w.key == k)
                        .map(|(t, _)| *t)
                        .collect();
                    for t in ts {
                        remove(&poll, &mut watched, t);
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let ready: Vec<Token> = events.iter().map(mio::event::Event::token).collect();
        for t in ready {
            if t == WAKE {
                continue;
            }
            // Unwatched meanwhile (a stop): not ours to report.
            let Some(w) = remove(&poll, &mut watched, t) else {
                continue;
            };
            // A pid file may be rewritten a moment after the old process
            // left (haproxy's `-sf` reload): its source is looked at again
            // for [`RELOAD_GRACE`] before the exit counts as a death. A
            // child of the process agent has no one to take its place.
            let grace = match w.source {
                MainPid::Child(_) => Duration::ZERO,
                _ => RELOAD_GRACE,
            };
            confirming.push((w, std::time::Instant::now() + grace));
        }
        let now = std::time::Instant::now();
        for (w, until) in std::mem::take(&mut confirming) {
            match resolve(&w.source).filter(|pid| *pid != w.pid) {
                Some(pid) if let Some(fd) = pidfd_open(pid) => {
                    tracing::info!(
                        "{}: main process {} exited and {pid} took its place (a reload or re-exec, not a failure); watching {pid}",
                        w.key,
                        w.pid
                    );
                    add(&poll, &mut watched, Watched { pid, fd, ..w });
                }
                _ if now < until => confirming.push((w, until)),
                _ => exited(
                    w.key,
                    format!("its main process {} exited (seen at once)", w.pid),
                ),
            }
        }
        pending.retain(|(k, source, until)| {
            match resolve(source).and_then(|pid| Some((pid, pidfd_open(pid)?))) {
                Some((pid, fd)) => {
                    let w = Watched {
                        key: k.clone(),
                        source: source.clone(),
                        pid,
                        fd,
                    };
                    add(&poll, &mut watched, w);
                    false
                }
                None => now < *until, // then the monitors alone
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_init_scripts_pidfile_is_found_when_it_is_a_plain_path() {
        let s =
            "#!/bin/sh\nPATH=/sbin\nPIDFILE=/run/haproxy.pid\nCONFIG=/etc/haproxy/haproxy.cfg\n";
        assert_eq!(script_pidfile(s), Some(PathBuf::from("/run/haproxy.pid")));
        assert_eq!(
            script_pidfile("PIDFILE=\"/var/run/x.pid\" # ours\n"),
            Some(PathBuf::from("/var/run/x.pid"))
        );
        assert_eq!(script_pidfile("PIDFILE=$RUN/x.pid\n"), None);
        assert_eq!(
            script_pidfile("BASENAME=haproxy\nPIDFILE=/var/run/${BASENAME}.pid\n"),
            Some(PathBuf::from("/var/run/haproxy.pid"))
        );
        assert_eq!(script_pidfile("PIDFILE=x.pid\n"), None);
        assert_eq!(script_pidfile("echo hi\n"), None);
    }

    fn key() -> ResourceKey {
        ResourceKey {
            group: "g".into(),
            resource: "r".into(),
        }
    }

    fn spawn_sleep() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }

    #[test]
    fn an_exit_is_reported_at_once_and_an_unwatched_one_is_not() {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Watcher::start(Arc::new(move |k, why| {
            let _ = tx.send((k, why));
        }))
        .unwrap();
        let mut c = spawn_sleep();
        let pid = c.id();
        assert_eq!(w.watch(&key(), MainPid::Child(pid)), Some(pid));
        c.kill().unwrap();
        let (k, why) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(k, key());
        assert!(why.contains(&pid.to_string()), "{why}");
        c.wait().unwrap();
        // Unwatched before the kill: nothing reported.
        let mut c = spawn_sleep();
        w.watch(&key(), MainPid::Child(c.id())).unwrap();
        w.unwatch(&key());
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn a_pid_file_written_after_the_start_is_still_watched() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("late.pid");
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Watcher::start(Arc::new(move |k, why| {
            let _ = tx.send((k, why));
        }))
        .unwrap();
        assert_eq!(w.watch(&key(), MainPid::Pidfile(pidfile.clone())), None);
        let mut c = spawn_sleep();
        std::fs::write(&pidfile, format!("{}\n", c.id())).unwrap();
        // Found by the watcher's retries: its exit is then reported.
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !w.is_watching(&key()) {
            assert!(
                std::time::Instant::now() < end,
                "the late pid file was never found"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        c.kill().unwrap();
        let (_, why) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(why.contains(&c.id().to_string()), "{why}");
        c.wait().unwrap();
    }

    /// A reload: a new process, the old one exits; the new pid reaches the
    /// pid file before the exit, or (`late`) a few milliseconds after it,
    /// as CI once saw haproxy's reload do. Neither is a death; the new
    /// process's exit is.
    fn reload(late: bool) {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("svc.pid");
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Watcher::start(Arc::new(move |k, why| {
            let _ = tx.send((k, why));
        }))
        .unwrap();
        let mut old = spawn_sleep();
        std::fs::write(&pidfile, format!("{}\n", old.id())).unwrap();
        w.watch(&key(), MainPid::Pidfile(pidfile.clone())).unwrap();
        let mut new = spawn_sleep();
        if !late {
            std::fs::write(&pidfile, format!("{}\n", new.id())).unwrap();
        }
        old.kill().unwrap();
        old.wait().unwrap();
        if late {
            std::thread::sleep(Duration::from_millis(5));
            std::fs::write(&pidfile, format!("{}\n", new.id())).unwrap();
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "a reload (late pid file: {late}) was reported as a death"
        );
        new.kill().unwrap();
        let (_, why) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(why.contains(&new.id().to_string()), "{why}");
        new.wait().unwrap();
    }

    #[test]
    fn a_process_taking_the_pidfiles_place_is_a_reload_not_a_death() {
        reload(false);
    }

    #[test]
    fn a_pid_file_rewritten_just_after_the_old_process_left_is_a_reload() {
        reload(true);
    }
}
