//! A probe for stalls of the machine: on every CPU, a thread pinned there
//! at the highest real-time priority (`SCHED_FIFO` 99, set with `chrt`)
//! that wakes every millisecond and records every gap over a threshold. A
//! gap it sees too means that vCPU was not scheduled (the hypervisor took
//! it: a thread running there, the daemon's included, cannot move to
//! another CPU meanwhile) rather than a process starved by load on the
//! machine: lab drills use it to tell the two apart. One probe for the
//! whole machine, unpinned, missed a stall of the other vCPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// One stall: which CPU, when it ended (seconds since midnight, UTC) and
/// how long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stall {
    /// The CPU that stalled.
    pub cpu: usize,
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
    threads: Vec<JoinHandle<(bool, Vec<Stall>)>>,
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
    /// Starts the probe on every CPU this process may use, recording gaps
    /// longer than `threshold`.
    pub fn start(threshold: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus: Vec<usize> = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|c| set.is_set(*c).unwrap_or(false))
                    .collect()
            })
            .unwrap_or_else(|_| vec![0]);
        let threads = cpus
            .into_iter()
            .map(|cpu| {
                let flag = stop.clone();
                std::thread::spawn(move || watch(cpu, threshold, &flag))
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops the probe: whether every CPU's thread ran real-time and
    /// pinned, and the stalls they saw, in time order.
    pub fn stop(self) -> (bool, Vec<Stall>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut realtime = !self.threads.is_empty();
        for t in self.threads {
            let (rt, stalls) = t.join().unwrap_or((false, Vec::new()));
            realtime &= rt;
            all.extend(stalls);
        }
        all.sort_by(|a, b| a.ended_s.total_cmp(&b.ended_s));
        (realtime, all)
    }
}

/// Makes the calling thread `SCHED_FIFO` 99 (with `chrt`); whether it
/// took.
fn fifo_99() -> bool {
    // This thread's id, from /proc/thread-self -> PID/task/TID.
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().to_string()));
    tid.is_some_and(|t| {
        std::process::Command::new("chrt")
            .args(["-f", "-p", "99", &t])
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// One CPU's probe thread: pinned to `cpu`, `SCHED_FIFO` 99; returns
/// whether both took, and the gaps over `threshold`.
fn watch(cpu: usize, threshold: Duration, stop: &AtomicBool) -> (bool, Vec<Stall>) {
    let mut set = nix::sched::CpuSet::new();
    let pinned = set.set(cpu).is_ok()
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok();
    let realtime = fifo_99();
    let mut stalls = Vec::new();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
        let now = Instant::now();
        let gap = now - last;
        if gap > threshold {
            stalls.push(Stall {
                cpu,
                ended_s: second_of_day(),
                gap,
            });
        }
        last = now;
    }
    (realtime && pinned, stalls)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    /// A vCPU taken away is seen on that CPU, whichever it is: here a
    /// real-time thread spins 80 ms on the last CPU, as a hypervisor
    /// holding that vCPU would look. Needs root (CI runs as root) and two
    /// CPUs.
    #[test]
    fn a_stall_of_one_cpu_is_seen_even_when_the_others_run() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(cpus >= 2, "this test needs two CPUs");
        let probe = super::Probe::start(Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(50));
        let last = cpus - 1;
        std::thread::spawn(move || {
            let mut set = nix::sched::CpuSet::new();
            set.set(last).expect("cpu");
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("pin");
            assert!(super::fifo_99(), "needs root");
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(80) {
                std::hint::spin_loop();
            }
        })
        .join()
        .expect("spinner");
        std::thread::sleep(Duration::from_millis(20));
        let (realtime, stalls) = probe.stop();
        assert!(realtime, "the probe needs root");
        assert!(
            stalls
                .iter()
                .any(|s| s.cpu == last && s.gap >= Duration::from_millis(60)),
            "{stalls:?}"
        );
    }

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
