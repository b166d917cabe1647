//! systemd units as resources, through systemd's D-Bus API
//! (`org.freedesktop.systemd1`, via `zbus_systemd`).
//!
//! - start: subscribe to the manager's `JobRemoved` signal, call
//!   `StartUnit(unit, "replace")`, wait for the job to be removed, and
//!   succeed when its result is `done` and the unit is `active` (a unit
//!   still `activating` is waited for until the deadline).
//! - stop: the same with `StopUnit`; a unit systemd does not know is already
//!   stopped.
//! - monitor: `GetUnit`, then the unit's `ActiveState`: `active`,
//!   `reloading` and `refreshing` are running; `inactive` or an unknown unit
//!   is cleanly not running; `failed`, `activating` and `deactivating` are
//!   failures (the unit is not serving).
//!
//! The bus is the system bus (`DBUS_SYSTEM_BUS_ADDRESS` overrides its
//! address, as for every D-Bus client). Each operation opens its own
//! connection on its own thread, under the operation's deadline.

use std::time::Duration;

use futures_util::StreamExt;
use tandem_core::{Op, OpResult};
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};
use zbus_systemd::zbus;

/// The unit name systemd expects: `apache2` becomes `apache2.service`.
pub fn unit_name(unit: &str) -> String {
    const SUFFIXES: [&str; 11] = [
        ".service",
        ".socket",
        ".target",
        ".mount",
        ".automount",
        ".swap",
        ".timer",
        ".path",
        ".slice",
        ".scope",
        ".device",
    ];
    if SUFFIXES.iter().any(|s| unit.ends_with(s)) {
        unit.to_string()
    } else {
        format!("{unit}.service")
    }
}

/// Runs `op` on `unit` over the system bus.
pub fn run(unit: &str, op: Op, timeout: Duration) -> OpResult {
    run_on(None, unit, op, timeout)
}

/// Runs `op` on `unit` over the bus at `address` (`None`: the system bus).
pub fn run_on(address: Option<&str>, unit: &str, op: Op, timeout: Duration) -> OpResult {
    let unit = unit_name(unit);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return OpResult::Failed(format!("cannot start a D-Bus runtime: {e}")),
    };
    rt.block_on(async move {
        let work = async {
            let conn = connect(address).await?;
            let mgr = ManagerProxy::new(&conn)
                .await
                .map_err(|e| format!("systemd manager: {e}"))?;
            match op {
                Op::Start => job(&conn, &mgr, &unit, true).await,
                Op::Stop => job(&conn, &mgr, &unit, false).await,
                Op::Monitor => monitor(&conn, &mgr, &unit).await,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => OpResult::Failed(e),
            Err(_) => OpResult::TimedOut,
        }
    })
}

/// A service unit's `MainPID` over the system bus (`None`: no main
/// process, not a service, or systemd unreachable), for the watcher.
pub fn main_pid(unit: &str, timeout: Duration) -> Option<u32> {
    main_pid_on(None, unit, timeout)
}

/// [`main_pid`] over the bus at `address` (`None`: the system bus).
pub fn main_pid_on(address: Option<&str>, unit: &str, timeout: Duration) -> Option<u32> {
    let unit = unit_name(unit);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async move {
        let work = async {
            let conn = connect(address).await.ok()?;
            let mgr = ManagerProxy::new(&conn).await.ok()?;
            let path = mgr.get_unit(unit).await.ok()?;
            let svc = ServiceProxy::builder(&conn)
                .path(path)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .ok()?;
            svc.main_pid().await.ok().filter(|p| *p > 1)
        };
        tokio::time::timeout(timeout, work).await.ok().flatten()
    })
}

async fn connect(address: Option<&str>) -> Result<zbus::Connection, String> {
    let r = match address {
        None => zbus::Connection::system().await,
        Some(a) => zbus::connection::Builder::address(a).build().await,
    };
    r.map_err(|e| {
        format!(
            "cannot reach systemd on the {} ({e}); systemd resources need systemd as init, otherwise use lsb: or process",
            address.map_or("system bus".to_string(), |a| format!("bus {a}"))
        )
    })
}

/// Whether a D-Bus error says the unit is not loaded.
fn no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _) if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit")
}

async fn active_state(
    conn: &zbus::Connection,
    mgr: &ManagerProxy<'_>,
    unit: &str,
) -> Result<Option<String>, String> {
    let path = match mgr.get_unit(unit.to_string()).await {
        Ok(p) => p,
        Err(e) if no_such_unit(&e) => return Ok(None),
        Err(e) => return Err(format!("GetUnit {unit}: {e}")),
    };
    let proxy = UnitProxy::builder(conn)
        .path(path)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("unit {unit}: {e}"))?;
    proxy
        .active_state()
        .await
        .map(Some)
        .map_err(|e| format!("ActiveState of {unit}: {e}"))
}

async fn monitor(
    conn: &zbus::Connection,
    mgr: &ManagerProxy<'_>,
    unit: &str,
) -> Result<OpResult, String> {
    Ok(match active_state(conn, mgr, unit).await?.as_deref() {
        None | Some("inactive") => OpResult::NotRunning,
        Some("active" | "reloading" | "refreshing") => OpResult::Ok,
        Some(other) => OpResult::Failed(format!("unit {unit} is {other}")),
    })
}

async fn job(
    conn: &zbus::Connection,
    mgr: &ManagerProxy<'_>,
    unit: &str,
    start: bool,
) -> Result<OpResult, String> {
    // Subscribe before the job exists, so its removal cannot be missed.
    // (Subscribe fails harmlessly when this client already is subscribed.)
    let _ = mgr.subscribe().await;
    let mut removed = mgr
        .receive_job_removed()
        .await
        .map_err(|e| format!("listen for JobRemoved: {e}"))?;
    let call = if start {
        mgr.start_unit(unit.to_string(), "replace".to_string())
            .await
    } else {
        mgr.stop_unit(unit.to_string(), "replace".to_string()).await
    };
    let verb = if start { "StartUnit" } else { "StopUnit" };
    let path = match call {
        Ok(p) => p,
        Err(e) if !start && no_such_unit(&e) => return Ok(OpResult::Ok),
        Err(e) => return Err(format!("{verb} {unit}: {e}")),
    };
    let result = loop {
        let Some(signal) = removed.next().await else {
            return Err(format!("the bus closed while {verb} {unit} ran"));
        };
        let Ok(args) = signal.args() else { continue };
        if args.job == path {
            break args.result;
        }
    };
    if result != "done" {
        let state = active_state(conn, mgr, unit).await.ok().flatten();
        return Ok(OpResult::Failed(format!(
            "{verb} {unit}: job {result}{}",
            state.map(|s| format!(", unit is {s}")).unwrap_or_default()
        )));
    }
    // The job is done; a start also needs the unit active (a unit still
    // activating is waited for; the caller's deadline bounds the wait).
    loop {
        let state = active_state(conn, mgr, unit).await?;
        match (start, state.as_deref()) {
            (true, Some("active" | "reloading" | "refreshing")) => return Ok(OpResult::Ok),
            (true, Some("activating")) => {}
            (true, s) => {
                return Ok(OpResult::Failed(format!(
                    "started {unit}, but it is {}",
                    s.unwrap_or("not loaded")
                )));
            }
            (false, None | Some("inactive" | "failed")) => return Ok(OpResult::Ok),
            (false, Some("deactivating")) => {}
            (false, Some(s)) => {
                return Ok(OpResult::Failed(format!("stopped {unit}, but it is {s}")));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_services() {
        assert_eq!(unit_name("apache2"), "apache2.service");
        assert_eq!(unit_name("nginx.service"), "nginx.service");
        assert_eq!(unit_name("srv-data.mount"), "srv-data.mount");
        assert_eq!(unit_name("a.b"), "a.b.service");
    }

    #[test]
    fn a_machine_without_the_bus_gets_a_clear_failure() {
        let r = run_on(
            Some("unix:path=/nonexistent/tandem-test-bus"),
            "x",
            Op::Monitor,
            Duration::from_secs(2),
        );
        let OpResult::Failed(msg) = r else {
            panic!("{r:?}")
        };
        assert!(msg.contains("cannot reach systemd"), "{msg}");
        assert!(msg.contains("use lsb: or process"), "{msg}");
    }
}
