//! The watchdog, with a plain file standing in for `/dev/watchdog` (lab
//! machines have no watchdog device): the daemon arms it at start-up, pets
//! it from the heartbeat thread, stops petting while frozen (a real device
//! would then reset the node), and disarms it with the magic 'V' on a clean
//! stop. Needs no root.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::{Duration, Instant};

use tandem_lab::loopback_cluster::{LocalCluster, Options};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

fn size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Waits until the file has grown past `from` bytes.
fn grows(p: &std::path::Path, from: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if size(p) > from {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_watchdog_is_armed_petted_silent_when_frozen_and_disarmed_on_stop() {
    let mut c = LocalCluster::new(
        EXE.as_ref(),
        &Options {
            nodes: 1,
            subnet: 47,
            port: 7694,
            ..Options::default()
        },
    )
    .unwrap();
    let device = c.dir().join("watchdog");
    std::fs::write(&device, b"").unwrap();
    let mut text = std::fs::read_to_string(&c.config).unwrap();
    text.push_str("\n[watchdog]\ndevice = \"watchdog\"\ntimeout = \"2s\"\n");
    std::fs::write(&c.config, text).unwrap();
    c.start(0).unwrap();
    let log = c
        .wait_log(0, Duration::from_secs(10), &["watchdog", "armed"])
        .unwrap();
    // A regular file refuses the timeout ioctl; the daemon says so.
    assert!(log.contains("kept its own timeout"), "{log}");

    // Petted: timeout 2 s, so a pet every 0.5 s.
    let before = size(&device);
    assert!(
        grows(&device, before, Duration::from_secs(3)),
        "no pet in 3 s"
    );
    let at = size(&device);
    assert!(grows(&device, at, Duration::from_secs(3)), "pets stopped");

    // Frozen: no pet for longer than the timeout (a real device resets).
    c.signal(0, libc::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let frozen_at = size(&device);
    assert!(
        !grows(&device, frozen_at, Duration::from_millis(2500)),
        "a frozen daemon kept petting"
    );
    c.signal(0, libc::SIGCONT).unwrap();
    assert!(
        grows(&device, frozen_at, Duration::from_secs(3)),
        "no pet after the thaw"
    );

    // Clean stop: the last byte written is the magic 'V'.
    c.stop(0, Duration::from_secs(10)).unwrap();
    let bytes = std::fs::read(&device).unwrap();
    assert_eq!(bytes.last(), Some(&b'V'), "{bytes:?}");
    assert!(bytes[..bytes.len() - 1].iter().all(|b| *b == b'1'));
}

#[test]
fn a_watchdog_that_cannot_be_opened_stops_the_daemon_with_the_fix() {
    let mut c = LocalCluster::new(
        EXE.as_ref(),
        &Options {
            nodes: 1,
            subnet: 48,
            port: 7694,
            ..Options::default()
        },
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&c.config).unwrap();
    text.push_str("\n[watchdog]\ndevice = \"/nonexistent/watchdog\"\n");
    std::fs::write(&c.config, text).unwrap();
    c.start(0).unwrap();
    let log = c
        .wait_log(0, Duration::from_secs(10), &["[watchdog]"])
        .unwrap();
    assert!(log.contains("cannot open /nonexistent/watchdog"), "{log}");
    assert!(log.contains("remove [watchdog]"), "{log}");
}
