//! The systemd agent against a stand-in for systemd: a private
//! `dbus-daemon` with a fake `org.freedesktop.systemd1` manager that
//! implements the calls and signal tandem uses (Subscribe, StartUnit,
//! StopUnit, GetUnit, JobRemoved, Unit.ActiveState) the way systemd
//! documents them. Machines here have no systemd as PID 1, so this checks
//! tandem's side of the protocol, not systemd itself. Needs `dbus-daemon`
//! (Debian package `dbus-daemon`; scripts/test.sh installs it).
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_agents::systemd::run_on;
use tandem_core::{Op, OpResult};
use zbus::object_server::SignalEmitter;
use zbus::{ObjectPath, OwnedObjectPath};

type Units = Arc<Mutex<HashMap<String, String>>>;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum SdError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchUnit(String),
}

fn unit_path(name: &str) -> OwnedObjectPath {
    let escaped: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect();
    OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/unit/{escaped}")).unwrap()
}

struct Unit {
    name: String,
    units: Units,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl Unit {
    #[zbus(property)]
    fn active_state(&self) -> String {
        self.units
            .lock()
            .unwrap()
            .get(&self.name)
            .cloned()
            .unwrap_or_else(|| "inactive".into())
    }
}

/// A service unit's main process, as systemd's Service interface says it.
struct Service {
    name: String,
    pids: Arc<Mutex<HashMap<String, u32>>>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Service")]
impl Service {
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> u32 {
        self.pids
            .lock()
            .unwrap()
            .get(&self.name)
            .copied()
            .unwrap_or(0)
    }
}

struct Manager {
    pids: Arc<Mutex<HashMap<String, u32>>>,
    units: Units,
    jobs: AtomicU32,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Manager {
    fn set(&self, unit: &str, state: &str) {
        self.units
            .lock()
            .unwrap()
            .insert(unit.to_string(), state.to_string());
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    async fn subscribe(&self) {
        self.calls.lock().unwrap().push("Subscribe".into());
    }

    async fn get_unit(&self, name: String) -> Result<OwnedObjectPath, SdError> {
        self.calls.lock().unwrap().push(format!("GetUnit {name}"));
        if self.units.lock().unwrap().contains_key(&name) {
            Ok(unit_path(&name))
        } else {
            Err(SdError::NoSuchUnit(format!("Unit {name} not loaded.")))
        }
    }

    async fn start_unit(
        &self,
        name: String,
        mode: String,
        #[zbus(object_server)] server: &zbus::ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, SdError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("StartUnit {name} {mode}"));
        let path = unit_path(&name);
        let unit = Unit {
            name: name.clone(),
            units: self.units.clone(),
        };
        let _ = server.at(path.clone(), unit).await;
        let service = Service {
            name: name.clone(),
            pids: self.pids.clone(),
        };
        let _ = server.at(path, service).await;
        if name == "web.service" {
            self.pids.lock().unwrap().insert(name.clone(), 4242);
        }
        let (state, result) = match name.as_str() {
            "broken.service" => ("failed", "failed"),
            "slow.service" => ("activating", "done"),
            "hang.service" => ("activating", ""),
            _ => ("active", "done"),
        };
        self.set(&name, state);
        let id = self.jobs.fetch_add(1, Ordering::SeqCst);
        let job = OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}")).unwrap();
        let (emitter, units, job2) = (emitter.to_owned(), self.units.clone(), job.clone());
        tokio::spawn(async move {
            // systemd answers the call first and removes the job later.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if result.is_empty() {
                return;
            }
            let _ = Manager::job_removed(&emitter, id, job2.as_ref(), &name, result).await;
            if name == "slow.service" {
                tokio::time::sleep(Duration::from_millis(200)).await;
                units.lock().unwrap().insert(name, "active".into());
            }
        });
        Ok(job)
    }

    async fn stop_unit(
        &self,
        name: String,
        mode: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, SdError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("StopUnit {name} {mode}"));
        if !self.units.lock().unwrap().contains_key(&name) {
            return Err(SdError::NoSuchUnit(format!("Unit {name} not loaded.")));
        }
        self.set(&name, "inactive");
        let id = self.jobs.fetch_add(1, Ordering::SeqCst);
        let job = OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}")).unwrap();
        let (emitter, job2) = (emitter.to_owned(), job.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = Manager::job_removed(&emitter, id, job2.as_ref(), &name, "done").await;
        });
        Ok(job)
    }

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// A private bus with the fake systemd on it; killed on drop.
struct FakeSystemd {
    bus: Child,
    address: String,
    units: Units,
    calls: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

fn fake_systemd() -> FakeSystemd {
    let dir = tempfile::tempdir().unwrap();
    let mut bus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .arg(format!(
            "--address=unix:path={}",
            dir.path().join("bus").display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon is needed for this test (Debian package dbus-daemon)");
    let mut line = String::new();
    std::io::BufReader::new(bus.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line.trim().to_string();
    assert!(address.starts_with("unix:"), "dbus-daemon printed {line:?}");
    let units: Units = Arc::default();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr2, units2, calls2) = (address.clone(), units.clone(), calls.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let manager = Manager {
                pids: Arc::default(),
                units: units2,
                jobs: AtomicU32::new(1),
                calls: calls2,
            };
            let conn = zbus::connection::Builder::address(addr2.as_str())
                .name("org.freedesktop.systemd1")
                .serve_at("/org/freedesktop/systemd1", manager)
                .build()
                .await
                .unwrap();
            tx.send(()).unwrap();
            std::future::pending::<()>().await;
            drop(conn);
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the fake systemd did not come up");
    FakeSystemd {
        bus,
        address,
        units,
        calls,
        _dir: dir,
    }
}

const T: Duration = Duration::from_secs(5);

#[test]
fn start_monitor_stop_follow_the_unit_state() {
    let sd = fake_systemd();
    let a = Some(sd.address.as_str());
    assert_eq!(run_on(a, "web", Op::Monitor, T), OpResult::NotRunning);
    assert_eq!(run_on(a, "web", Op::Start, T), OpResult::Ok);
    assert_eq!(sd.units.lock().unwrap()["web.service"], "active");
    assert_eq!(run_on(a, "web", Op::Monitor, T), OpResult::Ok);
    assert_eq!(run_on(a, "web.service", Op::Stop, T), OpResult::Ok);
    assert_eq!(sd.units.lock().unwrap()["web.service"], "inactive");
    assert_eq!(run_on(a, "web", Op::Monitor, T), OpResult::NotRunning);
    let calls = sd.calls.lock().unwrap().clone();
    assert!(calls.contains(&"Subscribe".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"StartUnit web.service replace".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"StopUnit web.service replace".to_string()),
        "{calls:?}"
    );
}

#[test]
fn a_failed_unit_fails_the_start_and_the_monitor() {
    let sd = fake_systemd();
    let a = Some(sd.address.as_str());
    let r = run_on(a, "broken", Op::Start, T);
    let OpResult::Failed(msg) = r else {
        panic!("{r:?}")
    };
    assert!(
        msg.contains("job failed") && msg.contains("unit is failed"),
        "{msg}"
    );
    let r = run_on(a, "broken", Op::Monitor, T);
    assert!(
        matches!(&r, OpResult::Failed(m) if m.contains("failed")),
        "{r:?}"
    );
}

#[test]
fn a_unit_still_activating_is_waited_for() {
    let sd = fake_systemd();
    let a = Some(sd.address.as_str());
    assert_eq!(run_on(a, "slow", Op::Start, T), OpResult::Ok);
    assert_eq!(sd.units.lock().unwrap()["slow.service"], "active");
}

#[test]
fn stopping_an_unknown_unit_is_not_an_error() {
    let sd = fake_systemd();
    let a = Some(sd.address.as_str());
    assert_eq!(run_on(a, "nothere", Op::Stop, T), OpResult::Ok);
    assert_eq!(run_on(a, "nothere", Op::Monitor, T), OpResult::NotRunning);
}

#[test]
fn a_job_that_never_ends_times_out() {
    let sd = fake_systemd();
    let a = Some(sd.address.as_str());
    let r = run_on(a, "hang", Op::Start, Duration::from_millis(500));
    assert_eq!(r, OpResult::TimedOut);
}

#[test]
fn the_main_pid_of_a_service_is_read_for_the_watch() {
    let sd = fake_systemd();
    let a = Some(sd.address.as_str());
    assert_eq!(
        tandem_agents::systemd::main_pid_on(a, "web", T),
        None,
        "not loaded yet"
    );
    assert_eq!(run_on(a, "web", Op::Start, T), OpResult::Ok);
    assert_eq!(tandem_agents::systemd::main_pid_on(a, "web", T), Some(4242));
    // A unit without a main process (MainPID 0) has none to watch.
    assert_eq!(run_on(a, "other", Op::Start, T), OpResult::Ok);
    assert_eq!(tandem_agents::systemd::main_pid_on(a, "other", T), None);
}
