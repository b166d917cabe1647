//! A probe for machine-wide stalls: a thread at the highest real-time
//! priority (`SCHED_FIFO` 99, set with `chrt`) that wakes every
//! millisecond and records every gap over a threshold. A gap it sees too
//! means the whole virtual machine was not scheduled (the hypervisor took
//! the vCPU) rather than a process starved by load on the machine: lab
//! drills use it to tell the two apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// One stall: when it ended (seconds since midnight, UTC) and how long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stall {
    /// End of the gap, seconds since midnight UTC (as in the daemons'
    /// log timestamps).
    pub ended_s: f64,
    /// Its length.
    pub gap: Duration,
}

/// A running probe; [`Probe::stop`] returns what it saw.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(bool, Vec<Stall>)>,
}

/// Seconds since midnight UTC now.
pub fn second_of_day() -> f64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_micros()) / 1e6
}

/// The seconds since midnight of a log line's RFC 3339 timestamp
/// (`2026-11-30T23:06:59.986654Z …`), if it has one.
pub fn log_second_of_day(line: &str) -> Option<f64> {
    let t = line.get(11..26)?;
    let (h, rest) = t.split_once(':')?;
    let (m, s) = rest.split_once(':')?;
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

impl Probe {
    /// Starts the probe, recording gaps longer than `threshold`.
    pub fn start(threshold: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // This thread's id, from /proc/thread-self -> PID/task/TID.
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().to_string()));
            let realtime = tid.is_some_and(|t| {
                std::process::Command::new("chrt")
                    .args(["-f", "-p", "99", &t])
                    .status()
                    .is_ok_and(|s| s.success())
            });
            let mut stalls = Vec::new();
            let mut last = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                let now = Instant::now();
                let gap = now - last;
                if gap > threshold {
                    stalls.push(Stall {
                        ended_s: second_of_day(),
                        gap,
                    });
                }
                last = now;
            }
            (realtime, stalls)
        });
        Self { stop, thread }
    }

    /// Stops the probe: whether it ran real-time, and the stalls it saw.
    pub fn stop(self) -> (bool, Vec<Stall>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((false, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_times() {
        let t = super::log_second_of_day("2026-11-30T23:06:59.986654Z  WARN x");
        assert!(
            t.is_some_and(|t| (t - 83_219.986_654).abs() < 1e-6),
            "{t:?}"
        );
        assert_eq!(super::log_second_of_day("short"), None);
    }
}
