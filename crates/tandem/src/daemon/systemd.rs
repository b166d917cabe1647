//! systemd integration (`Type=notify`): `READY=1` once this node has joined
//! its cluster (every peer heard, or initdead passed, and its resources
//! probed), a `STATUS=` line as membership changes, and `WATCHDOG=1` only
//! while the heartbeat thread keeps publishing its snapshot (it does at
//! least every 100 ms): a hung heartbeat thread stops the pings, and
//! systemd kills and restarts the daemon after `WatchdogSec`.
//!
//! The messages are sent from a thread of its own (`tandem-systemd`), so
//! a slow service manager never delays a heartbeat. Without
//! `NOTIFY_SOCKET` (not under systemd) nothing starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::node_loop::Shared;

/// How often the thread looks at the snapshot.
const TICK: Duration = Duration::from_millis(100);

/// Starts the notifier when systemd asked for notifications.
pub fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(());
    }
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(w) = watchdog {
        tracing::info!(
            "systemd watchdog: the heartbeat thread must show progress every {} ms",
            w.as_millis()
        );
    }
    std::thread::Builder::new()
        .name("tandem-systemd".into())
        .spawn(move || run(&shared, watchdog))?;
    Ok(())
}

fn run(shared: &Shared, watchdog: Option<Duration>) {
    let mut ready = false;
    let mut last_status = String::new();
    let mut last_ping = Instant::now();
    // Ping at half the watchdog period, as systemd recommends.
    let every = watchdog.map(|w| w / 2);
    loop {
        std::thread::sleep(TICK);
        let snap = shared.snapshot.lock().ok().and_then(|g| g.clone());
        let Some((m, taken)) = snap else { continue };
        let status = format!(
            "{} of cluster {}: {}/{} nodes online, {} group(s) active here",
            m.local,
            m.cluster,
            m.members.len(),
            m.nodes.len(),
            m.groups
                .iter()
                .filter(|g| g.active_on.contains(&m.local))
                .count()
        );
        let mut states = Vec::new();
        if m.joined && !ready {
            states.push(NotifyState::Ready);
        }
        if status != last_status {
            states.push(NotifyState::Status(&status));
        }
        if let Some(every) = every
            && ping_due(last_ping.elapsed(), taken.elapsed(), every)
        {
            states.push(NotifyState::Watchdog);
            last_ping = Instant::now();
        }
        if states.is_empty() {
            continue;
        }
        match sd_notify::notify(&states) {
            Ok(()) => {
                ready |= m.joined;
                last_status = status;
            }
            Err(e) => tracing::warn!("systemd notification failed: {e}"),
        }
    }
}

/// Whether to send `WATCHDOG=1` now: a period has passed since the last
/// ping, and the heartbeat thread published a snapshot within it.
fn ping_due(since_ping: Duration, snapshot_age: Duration, every: Duration) -> bool {
    since_ping >= every && snapshot_age < every
}

/// Tells systemd the daemon is stopping (groups being stopped, then
/// leaving the cluster).
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::ping_due;
    use std::time::Duration;

    #[test]
    fn no_ping_for_a_stale_heartbeat_thread() {
        let ms = Duration::from_millis;
        assert!(ping_due(ms(200), ms(100), ms(200)));
        assert!(!ping_due(ms(150), ms(100), ms(200)), "too soon");
        assert!(
            !ping_due(ms(400), ms(250), ms(200)),
            "the heartbeat thread published nothing for 250 ms"
        );
    }
}
