//! Where the node loop's time went when it was late. The brain sees only
//! that it was not run for a while ("not scheduled for 97 ms"); this meter,
//! kept by the node loop itself, says whether the thread sat in its wait
//! and the kernel woke it late, or spent the time in its own work, and how:
//! runnable but not run (CPU contention), asleep (blocked on a lock or a
//! disk), page faults, context switches. Operators read it in the log; lab
//! drills use it to tell a starved thread from a blocked one.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// One reading of the thread's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Reading {
    /// Nanoseconds on a CPU, and runnable but waiting for one
    /// (`/proc/thread-self/schedstat`).
    run_ns: u64,
    runq_ns: u64,
    /// Minor and major page faults, voluntary and involuntary switches.
    minflt: u64,
    majflt: u64,
    nvcsw: u64,
    nivcsw: u64,
}

impl Reading {
    fn since(&self, before: &Reading) -> Reading {
        Reading {
            run_ns: self.run_ns.saturating_sub(before.run_ns),
            runq_ns: self.runq_ns.saturating_sub(before.runq_ns),
            minflt: self.minflt.saturating_sub(before.minflt),
            majflt: self.majflt.saturating_sub(before.majflt),
            nvcsw: self.nvcsw.saturating_sub(before.nvcsw),
            nivcsw: self.nivcsw.saturating_sub(before.nivcsw),
        }
    }
}

/// Parses `/proc/…/schedstat`: run time, run-queue wait (ns), slices.
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

/// The node loop's meter: [`LoopMeter::before_wait`] and
/// [`LoopMeter::after_wait`] mark the two phases of every turn.
pub struct LoopMeter {
    threshold: Duration,
    schedstat: Option<File>,
    mark: Instant,
    reading: Reading,
    /// When `reading` was taken.
    reading_at: Instant,
    wait: Option<Duration>,
    last_report: Option<Instant>,
    suppressed: u64,
}

impl LoopMeter {
    /// A meter for the calling thread, reporting phases longer than
    /// `threshold` (beyond the wait asked for).
    pub fn new(threshold: Duration) -> Self {
        let schedstat = File::open("/proc/thread-self/schedstat").ok();
        let mut m = Self {
            threshold,
            schedstat,
            mark: Instant::now(),
            reading: Reading::default(),
            reading_at: Instant::now(),
            wait: None,
            last_report: None,
            suppressed: 0,
        };
        m.reading = m.read();
        m
    }

    fn read(&self) -> Reading {
        let mut r = Reading::default();
        if let Some(f) = &self.schedstat {
            let mut buf = [0u8; 96];
            if let Ok(n) = f.read_at(&mut buf, 0)
                && let Some((run, runq)) = std::str::from_utf8(&buf[..n])
                    .ok()
                    .and_then(parse_schedstat)
            {
                (r.run_ns, r.runq_ns) = (run, runq);
            }
        }
        // SAFETY: `usage` is a plain C struct written by the kernel;
        // RUSAGE_THREAD reads the calling thread's counters only.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is valid for writes and outlives the call.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } == 0 {
            let n = |v: libc::c_long| u64::try_from(v).unwrap_or(0);
            r.minflt = n(usage.ru_minflt);
            r.majflt = n(usage.ru_majflt);
            r.nvcsw = n(usage.ru_nvcsw);
            r.nivcsw = n(usage.ru_nivcsw);
        }
        r
    }

    /// The loop's work is done; it now waits up to `wait` (`None`: until
    /// something arrives).
    pub fn before_wait(&mut self, wait: Option<Duration>) {
        self.phase_ended("its own work", Duration::ZERO);
        self.wait = wait;
    }

    /// The wait returned.
    pub fn after_wait(&mut self) {
        // An unbounded wait cannot be late.
        let asked = self.wait.unwrap_or(Duration::MAX);
        self.phase_ended("its wait (woken late)", asked);
    }

    fn phase_ended(&mut self, what: &str, allowed: Duration) {
        let now = Instant::now();
        let took = now - self.mark;
        let over = took.saturating_sub(allowed);
        if over > self.threshold {
            let d = self.read().since(&self.reading);
            self.report(now, what, took, over, &d);
            self.refresh(Instant::now());
        } else if now - self.reading_at >= self.threshold / 4 {
            // Reading the counters costs two system calls and a /proc
            // read: under a flood of datagrams the loop turns thousands
            // of times a second, so the baseline is refreshed only every
            // quarter threshold. A late phase's figures then cover it and
            // at most a quarter threshold before it.
            self.refresh(now);
        }
        self.mark = Instant::now();
    }

    fn refresh(&mut self, now: Instant) {
        self.reading = self.read();
        self.reading_at = now;
    }

    fn report(&mut self, now: Instant, what: &str, took: Duration, over: Duration, d: &Reading) {
        if self
            .last_report
            .is_some_and(|t| now - t < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        self.last_report = Some(now);
        let ms = |ns: u64| ns as f64 / 1e6;
        let slept = (took.as_nanos() as f64 / 1e6 - ms(d.run_ns) - ms(d.runq_ns)).max(0.0);
        let suppressed = std::mem::take(&mut self.suppressed);
        tracing::warn!(
            "node loop late by {over:.0?} in {what} ({took:.0?} in all): {:.1} ms runnable but not run, {:.1} ms running, {slept:.1} ms asleep; {} minor and {} major page faults, {} voluntary and {} involuntary switches{}",
            ms(d.runq_ns),
            ms(d.run_ns),
            d.minflt,
            d.majflt,
            d.nvcsw,
            d.nivcsw,
            if suppressed > 0 {
                format!(" ({suppressed} more in the last second not logged)")
            } else {
                String::new()
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_lines() {
        assert_eq!(parse_schedstat("123 456 7\n"), Some((123, 456)));
        assert_eq!(parse_schedstat("123\n"), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn the_threads_own_counters_move() {
        let m = LoopMeter::new(Duration::from_millis(5));
        let before = m.read();
        let mut v = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(20) {
            v = v.wrapping_add(std::hint::black_box(1));
        }
        std::thread::sleep(Duration::from_millis(2));
        let d = m.read().since(&before);
        assert!(v > 0);
        assert!(d.run_ns >= 10_000_000, "{d:?}");
        assert!(d.nvcsw >= 1, "{d:?}");
    }
}
