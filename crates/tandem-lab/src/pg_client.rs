//! A PostgreSQL client for the volume drills, the benchmark and the demo:
//! `psql` through the VIP from the client namespace, and a client
//! inserting rows one connection each, recording every attempt.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Debian's PostgreSQL server binaries (`/usr/lib/postgresql/N/bin`).
pub fn postgres_bin() -> anyhow::Result<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .find(|b| b.join("postgres").exists())
        })
        .context("Debian's PostgreSQL server is missing (apt-get install postgresql)")
}

/// `psql -c SQL` against `vip` from namespace `ns`, killed after `timeout`;
/// its output when it succeeded.
pub fn run_psql(ns: &str, vip: &str, sql: &str, timeout: Duration) -> Option<String> {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "timeout"])
        .arg(format!("{}", timeout.as_secs_f64()))
        .args([
            "psql",
            "-h",
            vip,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "1")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Every insert the client attempted: the row's value, whether its commit
/// was acknowledged, when the attempt ended.
pub type Ledger = Arc<Mutex<Vec<(i64, bool, Instant)>>>;

/// A client inserting rows through the VIP (see
/// [`crate::volume_cluster::VolumeCluster::insert_client`]); stopped when
/// dropped.
pub struct InsertClient {
    /// What it did.
    pub ledger: Ledger,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl InsertClient {
    /// Starts inserting rows 1, 2, … into table `t` of the database at
    /// `vip`, from namespace `ns`, one connection per row, each attempt
    /// killed after `attempt`.
    pub fn start(ns: String, vip: String, attempt: Duration) -> Self {
        let ledger: Ledger = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (ledger.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut v = 0i64;
            while !st.load(Ordering::Relaxed) {
                v += 1;
                let sql = format!("insert into t values ({v}) returning v");
                let acked = run_psql(&ns, &vip, &sql, attempt).is_some_and(|o| o == v.to_string());
                if let Ok(mut l) = l.lock() {
                    l.push((v, acked, Instant::now()));
                }
                if !acked {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Self {
            ledger,
            stop,
            handle: Some(handle),
        }
    }

    /// Commits acknowledged after `t`.
    pub fn acked_after(&self, t: Instant) -> usize {
        self.ledger
            .lock()
            .map(|l| l.iter().filter(|(_, a, at)| *a && *at > t).count())
            .unwrap_or(0)
    }

    /// Waits until `n` commits were acknowledged after `t`.
    pub fn wait_acked(&self, t: Instant, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.acked_after(t) < n {
            if Instant::now() > deadline {
                bail!("fewer than {n} acknowledged commits within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The longest gap between consecutive acknowledged commits from the
    /// last one before `t` on: what the client saw of a switch after `t`.
    pub fn longest_gap(&self, t: Instant) -> Duration {
        let acks: Vec<Instant> = self
            .ledger
            .lock()
            .map(|l| l.iter().filter(|(_, a, _)| *a).map(|x| x.2).collect())
            .unwrap_or_default();
        let first = acks.iter().rposition(|a| *a <= t).unwrap_or(0);
        acks.get(first..)
            .unwrap_or_default()
            .windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .max()
            .unwrap_or_default()
    }

    /// Stops it and waits for its last attempt.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for InsertClient {
    fn drop(&mut self) {
        self.stop();
    }
}
