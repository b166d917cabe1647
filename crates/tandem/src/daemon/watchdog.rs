//! The watchdog: `/dev/watchdog` (a hardware timer, or the kernel's
//! `softdog`) resets the machine unless it is written to within its
//! timeout. The heartbeat thread pets it as it loops, so a node whose
//! daemon hangs, is frozen or is killed gets reset, and a clean shutdown
//! disarms it with the magic close ('V'). Arming is opt-in (`[watchdog]`):
//! once armed, stopping the daemon by SIGKILL reboots the node, as it
//! should for a node that may hold resources.
#![allow(unsafe_code)] // one ioctl

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `WDIOC_SETTIMEOUT` = `_IOWR('W', 6, int)` from `<linux/watchdog.h>`.
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

/// An armed watchdog device.
pub struct Watchdog {
    file: File,
    device: PathBuf,
    every: Duration,
    last: Instant,
}

impl Watchdog {
    /// Opens `device` (which arms it), asks for `timeout` (whole seconds,
    /// rounded up), and returns it with a line for the log.
    pub fn arm(device: PathBuf, timeout: Duration) -> Result<(Self, String), String> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&device)
            .map_err(|e| format!("cannot open {}: {e}", device.display()))?;
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let mut arg: libc::c_int = libc::c_int::try_from(secs.max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the
        // pointer, which is valid for the call; the descriptor is open.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT, &raw mut arg) };
        let (effective, note) = if r == 0 {
            let got = Duration::from_secs(u64::try_from(arg).unwrap_or(1).max(1));
            (got, format!("timeout {} s", got.as_secs()))
        } else {
            let e = std::io::Error::last_os_error();
            (
                timeout.max(Duration::from_secs(1)),
                format!("the device kept its own timeout ({e})"),
            )
        };
        // Pet four times per timeout, and at least every second.
        let every = (effective / 4).min(Duration::from_secs(1));
        let mut w = Self {
            file,
            device: device.clone(),
            every,
            last: Instant::now(),
        };
        w.write(b"1");
        Ok((
            w,
            format!(
                "watchdog {} armed, {note}: a hung or killed daemon resets this node",
                device.display()
            ),
        ))
    }

    fn write(&mut self, what: &[u8]) {
        if let Err(e) = self.file.write_all(what) {
            tracing::warn!("watchdog {}: {e}", self.device.display());
        }
        self.last = Instant::now();
    }

    /// Pets the watchdog if a quarter of its timeout has passed.
    pub fn pet(&mut self) {
        if self.last.elapsed() >= self.every {
            self.write(b"1");
        }
    }

    /// How long the caller may sleep before the next pet is due.
    pub fn due_in(&self) -> Duration {
        self.every.saturating_sub(self.last.elapsed())
    }

    /// Disarms it (magic close) on a clean shutdown.
    pub fn disarm(mut self) {
        self.write(b"V");
        tracing::info!("watchdog {} disarmed", self.device.display());
    }
}
