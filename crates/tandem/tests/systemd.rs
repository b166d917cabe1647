//! The daemon under systemd's `Type=notify`, with a socket standing in for
//! `NOTIFY_SOCKET`: `READY=1` once joined, `STATUS=` lines, `WATCHDOG=1`
//! only while the heartbeat thread runs (none while the process is
//! stopped), `STOPPING=1` on SIGTERM. Also `--version`, completions and man
//! pages from the command-line definitions. Needs no root.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tandem_lab::loopback_cluster::{LocalCluster, Options};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

/// Messages received on `sock` until `until` says stop or `limit` passes.
fn receive(
    sock: &UnixDatagram,
    limit: Duration,
    mut until: impl FnMut(&str) -> bool,
) -> Vec<(Instant, String)> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        sock.set_read_timeout(Some(
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        let done = until(&msg);
        got.push((Instant::now(), msg));
        if done {
            break;
        }
    }
    got
}

#[test]
fn notify_ready_watchdog_and_stopping() {
    let c = LocalCluster::new(
        EXE.as_ref(),
        &Options {
            nodes: 1,
            subnet: 37,
            port: 7694,
            ..Options::default()
        },
    )
    .unwrap();
    let path = c.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut daemon = Command::new(EXE)
        .args(["daemon", "--node", "n1", "--config"])
        .arg(&c.config)
        .arg("--socket")
        .arg(c.dir().join("n1.sock"))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    // READY once joined, with a status line.
    let got = receive(&sock, Duration::from_secs(15), |m| m.contains("READY=1"));
    let ready = got
        .iter()
        .find(|(_, m)| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1: {got:?}"));
    assert!(
        ready
            .1
            .contains("STATUS=n1 of cluster local37: 1/1 nodes online"),
        "{got:?}"
    );
    // WATCHDOG=1 about every 200 ms (half of WATCHDOG_USEC).
    let got = receive(&sock, Duration::from_millis(1500), |_| false);
    let pings: Vec<_> = got
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .collect();
    assert!(
        (4..=9).contains(&pings.len()),
        "{} pings in 1.5 s: {got:?}",
        pings.len()
    );
    // A stopped daemon (its heartbeat thread not running) sends none. Once
    // the kernel says it is stopped, what it sent before is drained first
    // (a ping sent just before the signal may still be queued).
    assert_eq!(signal(pid, libc::SIGSTOP), 0);
    tandem_lab::poll::until(Duration::from_secs(5), "the daemon to stop", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    });
    let _ = receive(&sock, Duration::from_millis(50), |_| false);
    let got = receive(&sock, Duration::from_millis(1000), |_| false);
    assert!(
        got.iter().all(|(_, m)| !m.contains("WATCHDOG=1")),
        "pings while stopped: {got:?}"
    );
    assert_eq!(signal(pid, libc::SIGCONT), 0);
    let got = receive(&sock, Duration::from_secs(2), |m| m.contains("WATCHDOG=1"));
    assert!(
        got.iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "no ping after SIGCONT: {got:?}"
    );
    // SIGTERM: STOPPING=1, then a clean exit.
    assert_eq!(signal(pid, libc::SIGTERM), 0);
    let got = receive(&sock, Duration::from_secs(5), |m| m.contains("STOPPING=1"));
    assert!(
        got.iter().any(|(_, m)| m.contains("STOPPING=1")),
        "no STOPPING=1: {got:?}"
    );
    assert!(daemon.wait().unwrap().success());
}

/// Sends `sig` to `pid` through the `kill` command (no unsafe code here).
fn signal(pid: u32, sig: libc::c_int) -> i32 {
    let name = match sig {
        libc::SIGSTOP => "STOP",
        libc::SIGCONT => "CONT",
        _ => "TERM",
    };
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_or(1, |s| s.code().unwrap_or(1))
}

#[test]
fn version_names_the_wire_protocol_and_docs_come_from_the_cli() {
    let out = Command::new(EXE).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with("tandem 0.") && v.contains("wire protocol 2"),
        "{v}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(EXE)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("standby") && text.contains("force-primary"),
            "{shell}: {text}"
        );
    }
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(EXE).arg("man").arg(d.path()).output().unwrap();
    assert!(out.status.success());
    for page in [
        "tandem.8",
        "tandem-daemon.8",
        "tandem-move.8",
        "tandem-witness.8",
    ] {
        let text =
            std::fs::read_to_string(d.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is not roff"
        );
    }
    assert!(
        !d.path().join("tandem-man.8").exists(),
        "the hidden man command got a page"
    );
}
