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
/// Returns a sentence describing the result, for logs and status.
pub fn enter() -> String {
    let param = libc::sched_param {
        sched_priority: PRIORITY,
    };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the
    // call; pid 0 designates the calling thread; no memory is shared.
    let sched = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
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
