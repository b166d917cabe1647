//! Under systemd the daemon logs to the journal with structured fields.
//! Here a socket stands in for the journal's (bound over
//! /run/systemd/journal in a private mount namespace, so the machine's own
//! journal is untouched), and the daemon's stderr is a file named by
//! `JOURNAL_STREAM`, as systemd sets it. Needs root (mount namespace).
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tandem_lab::loopback_cluster::{LocalCluster, Options};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

#[test]
fn cluster_events_reach_the_journal_with_their_fields() {
    tandem_lab::netns::require_root().expect("root (a private mount namespace)");
    let c = LocalCluster::new(
        EXE.as_ref(),
        &Options {
            nodes: 1,
            subnet: 38,
            port: 7694,
            ..Options::default()
        },
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&c.config).unwrap();
    text.push_str("\n[[group]]\nname = \"web\"\n[[group.resource]]\nname = \"daemon\"\nagent = \"process\"\nparams = { command = \"sleep 1000000\" }\n");
    std::fs::write(&c.config, text).unwrap();
    let jdir = c.dir().join("journal");
    std::fs::create_dir(&jdir).unwrap();
    let sock = UnixDatagram::bind(jdir.join("socket")).unwrap();
    let stderr_path = c.dir().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = std::fs::metadata(&stderr_path).unwrap();
    let script = format!(
        "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && mount --bind {} /run/systemd/journal && exec {EXE} daemon --node n1 --config {} --socket {}",
        jdir.display(),
        c.config.display(),
        c.dir().join("n1.sock").display()
    );
    let mut daemon = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    let mut takeover = None;
    while Instant::now() < end
        && !(takeover.is_some()
            && got
                .iter()
                .any(|g: &String| g.contains("MESSAGE=Started web/daemon")))
    {
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.contains("MESSAGE=Taking over resource group web") {
            takeover = Some(msg.clone());
        }
        got.push(msg);
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let m = takeover.unwrap_or_else(|| {
        panic!(
            "no takeover line reached the journal; got {got:?}; stderr {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        )
    });
    for field in [
        "PRIORITY=6",
        "TANDEM_NODE=n1",
        "TANDEM_EVENT=group",
        "TANDEM_GROUP=web",
        "SYSLOG_IDENTIFIER=tandem",
    ] {
        assert!(m.lines().any(|l| l == field), "{field} missing in {m:?}");
    }
    assert!(
        !m.contains("TANDEM_PEER="),
        "an empty field was sent: {m:?}"
    );
    let started = got
        .iter()
        .find(|g| g.contains("MESSAGE=Started web/daemon"))
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(
        started.lines().any(|l| l == "TANDEM_RESOURCE=daemon"),
        "{started}"
    );
    // The journal replaced stderr: no duplicate lines there.
    let err = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        !err.contains("Taking over"),
        "logged twice (stderr too): {err}"
    );
}
