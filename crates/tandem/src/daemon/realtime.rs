//! Real-time scheduling for the heartbeat thread, as cluster daemons
//! commonly do (Heartbeat's `realtime`, corosync's `-r`): `SCHED_RR` and
//! locked memory, so CPU or IO pressure on the node does not delay
//! heartbeats into false deaths. Best effort: without the privilege the
//! daemon runs normally and says so in its log and in `tandem status`.
#![allow(unsafe_code)]

/// Priority used for the heartbeat thread (the middle of SCHED_RR's 1..99,
/// like Heartbeat's `rtprio` default), below kernel threads that must win.
const PRIORITY: libc::c_int = 50;

/// Makes the calling thread `SCHED_RR` and locks the process's memory.
/// Threads and processes it starts do not inherit the priority
/// (`SCHED_RESET_ON_FORK`): a witness probe or a fence agent must not
/// compete with heartbeats. Returns a sentence describing the result, for
/// logs and status.
pub fn enter() -> String {
    let param = libc::sched_param {
        sched_priority: PRIORITY,
    };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the
    // call; pid 0 designates the calling thread; no memory is shared.
    let sched =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    let sched_msg = if sched == 0 {
        format!("SCHED_RR priority {PRIORITY}")
    } else {
        format!(
            "normal scheduling (SCHED_RR refused: {})",
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: mlockall takes flags only and touches no Rust-visible memory.
    let lock = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    let lock_msg = if lock == 0 {
        "memory locked".to_string()
    } else {
        format!("memory not locked ({})", std::io::Error::last_os_error())
    };
    format!("{sched_msg}, {lock_msg}")
}

/// Most arenas glibc's allocator may create: enough that no thread ever
/// shares one with another live thread.
const ARENA_MAX: libc::c_int = 1024;

/// Tunes glibc's allocator for a process with a real-time thread, as
/// real-time Linux applications do; call before starting threads.
/// - **An arena per thread**: by default threads share arenas beyond eight
///   per CPU, and the heartbeat thread would then wait for the arena's
///   lock held by a worker that CPU load keeps off the processor (the
///   likely cause of a 97 ms stall under load in CI that cost the lease
///   while a real-time probe saw the machine run throughout).
/// - **No memory handed back**: trimming and growing again take the
///   process's memory-map lock, which any other thread may hold; with
///   memory locked the pages stay resident anyway.
///
/// Returns whether both settings were taken.
pub fn prepare_allocator() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt takes two integers and changes only the
        // allocator's tunables; no memory is shared with Rust.
        let arenas = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) };
        arenas == 1 && trim == 1
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Makes the calling thread `SCHED_RR` at `priority` (no memory locking):
/// for the few helpers whose delay would defeat the heartbeat thread's
/// (the kernel lease enforcer). Processes it starts inherit the priority.
pub fn set_priority(priority: libc::c_int) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the
    // call; pid 0 designates the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Puts the calling thread back to normal scheduling (a thread spawned by a
/// real-time thread inherits its priority).
pub fn set_normal() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as in `set_priority`.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
}

#[cfg(test)]
mod tests {
    /// The arenas glibc's allocator has now (`malloc_info`'s `<heap>`s).
    #[cfg(target_env = "gnu")]
    fn arenas() -> usize {
        use std::io::{Read, Seek};
        use std::os::fd::IntoRawFd;
        let mut f = tempfile::tempfile().unwrap();
        let fd = f.try_clone().unwrap().into_raw_fd();
        // SAFETY: `fd` is ours (a duplicate); fdopen takes it over and
        // fclose closes it; malloc_info writes through the FILE only.
        unsafe {
            let fp = libc::fdopen(fd, c"w".as_ptr());
            assert!(!fp.is_null());
            assert_eq!(libc::malloc_info(0, fp), 0);
            libc::fclose(fp);
        }
        let mut text = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut text).unwrap();
        text.matches("<heap nr=").count()
    }

    /// Issue 17's CI stall: forty live threads no longer share arenas
    /// (glibc's default allows eight per CPU).
    #[cfg(target_env = "gnu")]
    #[test]
    fn every_live_thread_gets_an_arena_of_its_own() {
        assert!(super::prepare_allocator());
        let n = 40;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    let v = std::hint::black_box(vec![1u8; 1000]);
                    b.wait();
                    b.wait();
                    v.len()
                })
            })
            .collect();
        barrier.wait();
        let count = arenas();
        barrier.wait();
        for t in threads {
            t.join().unwrap();
        }
        assert!(count > n, "{count} arenas for {n} live threads");
    }

    /// The calling thread's scheduling policy, without the reset flag.
    fn policy() -> libc::c_int {
        // SAFETY: pid 0 designates the calling thread; no pointers.
        unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
    }

    /// Issue 12, finding 7: helpers started by the heartbeat thread used to
    /// inherit its real-time priority.
    #[test]
    fn what_the_heartbeat_thread_starts_runs_at_normal_priority() {
        let (own, thread, process) = std::thread::spawn(|| {
            let said = super::enter();
            assert!(
                said.starts_with("SCHED_RR"),
                "needs root (CI runs as root): {said}"
            );
            let thread = std::thread::spawn(policy).join().unwrap_or(-1);
            // Field 41 of /proc/PID/stat is the policy of the process.
            let out = std::process::Command::new("cat")
                .arg("/proc/self/stat")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            let process: libc::c_int = out
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(38))
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1);
            (policy(), thread, process)
        })
        .join()
        .unwrap_or((-1, -1, -1));
        assert_eq!(own, libc::SCHED_RR);
        assert_eq!(
            thread,
            libc::SCHED_OTHER,
            "a helper thread inherited SCHED_RR"
        );
        assert_eq!(
            process,
            libc::SCHED_OTHER,
            "a child process inherited SCHED_RR"
        );
    }
}
