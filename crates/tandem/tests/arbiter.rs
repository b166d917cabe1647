//! `tandem witness` on loopback, spoken to directly: the quiet period after
//! a start, one holder per cluster, renewals, refusals naming the holder,
//! replayed and forged requests ignored, clusters independent, and a bad
//! configuration refused with the file named. Needs no root.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_wire::Key;
use tandem_wire::arbiter::{VoteAnswer, VoteRequest, open, seal};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const ADDR: &str = "127.0.61.1:17695";

/// The tests that run an arbitrator share its address: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start(dir: &std::path::Path) -> Running {
    // Started again in the same folder (a restart), the keys are there.
    if !dir.join("web.key").exists() {
        tandem_config::keyfile::write_key(&dir.join("web.key"), b"web-cluster-arbitrator-key")
            .unwrap();
        tandem_config::keyfile::write_key(&dir.join("db.key"), b"db-cluster-arbitrator-key")
            .unwrap();
    }
    std::fs::write(
        dir.join("witness.toml"),
        format!(
            "listen = \"{ADDR}\"\nvote = \"400ms\"\nstate_file = \"witness.state\"\n[[cluster]]\nname = \"web\"\nkey_file = \"web.key\"\n[[cluster]]\nname = \"db\"\nkey_file = \"db.key\"\n"
        ),
    )
    .unwrap();
    Running(
        Command::new(EXE)
            .args(["witness", "--config"])
            .arg(dir.join("witness.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

struct Node {
    sock: UdpSocket,
    cluster: &'static str,
    name: &'static str,
    key: Key,
    counter: u64,
}

impl Node {
    fn new(cluster: &'static str, name: &'static str, secret: &[u8]) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(ADDR).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Self {
            sock,
            cluster,
            name,
            key: Key::new(1, secret).unwrap(),
            counter: 0,
        }
    }

    fn request(&mut self) -> Vec<u8> {
        self.counter += 1;
        seal(
            &self.key,
            &VoteRequest {
                cluster: self.cluster.into(),
                node: self.name.into(),
                incarnation: 1,
                counter: self.counter,
                nonce: self.counter * 7919,
                release: false,
            },
        )
    }

    /// Sends `bytes`; the answer, if one came within 300 ms.
    fn send(&self, bytes: &[u8]) -> Option<VoteAnswer> {
        self.send_within(bytes, Duration::from_millis(300))
    }

    fn send_within(&self, bytes: &[u8], wait: Duration) -> Option<VoteAnswer> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        self.sock.send(bytes).unwrap();
        let mut buf = [0u8; 2048];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(open::<VoteAnswer>(&buf[..n], [(self.cluster, &self.key)]).unwrap())
    }

    fn ask(&mut self) -> Option<VoteAnswer> {
        let r = self.request();
        self.send(&r)
    }
}

#[test]
fn one_holder_per_cluster_renewals_refusals_and_no_replays() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let _arb = start(dir.path());
    let mut n1 = Node::new("web", "n1", b"web-cluster-arbitrator-key");
    let mut n2 = Node::new("web", "n2", b"web-cluster-arbitrator-key");
    // Quiet period (one vote length) after the start: answers, no votes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        assert!(Instant::now() < deadline, "the arbitrator never answered");
        // Asked every 20 ms, so the first answer comes within 20 ms of
        // the arbitrator's start, well inside its 400 ms quiet period.
        let r = n1.request();
        if let Some(a) = n1.send_within(&r, Duration::from_millis(20)) {
            break a;
        }
    };
    assert!(!first.granted, "a vote inside the quiet period");
    std::thread::sleep(Duration::from_millis(500));
    let a = n1.ask().unwrap();
    assert!(a.granted, "{a:?}");
    assert_eq!(a.vote_ms, 400);
    assert_eq!(a.nonce, n1.counter * 7919);
    // n2 is refused and told who holds it; n1 renews.
    let b = n2.ask().unwrap();
    assert!(!b.granted);
    assert_eq!(b.holder.as_deref(), Some("n1"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(n1.ask().unwrap().granted);
    std::thread::sleep(Duration::from_millis(250));
    assert!(!n2.ask().unwrap().granted, "n1's renewal did not hold");
    // Another cluster is independent.
    let mut d1 = Node::new("db", "n2", b"db-cluster-arbitrator-key");
    assert!(d1.ask().unwrap().granted);
    // A replayed request and a forged one get no answer.
    let old = n2.request();
    assert!(n2.send(&old).is_some());
    assert!(n2.send(&old).is_none(), "a replay was answered");
    let mut forger = Node::new("web", "n2", b"not the key");
    assert!(forger.ask().is_none(), "a forged request was answered");
    // n1 stops renewing: after its vote lapses, n2 gets it.
    std::thread::sleep(Duration::from_millis(500));
    let c = n2.ask().unwrap();
    assert!(c.granted, "{c:?}");
    // n2 gives it back: n1 gets it at once, without waiting for a lapse.
    n2.counter += 1;
    let back = seal(
        &n2.key,
        &VoteRequest {
            cluster: "web".into(),
            node: "n2".into(),
            incarnation: 1,
            counter: n2.counter,
            nonce: 1,
            release: true,
        },
    );
    assert!(n2.send(&back).is_some_and(|a| !a.granted));
    assert!(n1.ask().unwrap().granted, "the vote was not given back");
}

/// Runs `tandem witness` on a configuration file holding `text`: whether
/// it failed, and what it printed on stderr.
fn witness_with(file: &std::path::Path, text: &str) -> (bool, String) {
    std::fs::write(file, text).unwrap();
    let out = Command::new(EXE)
        .args(["witness", "--config"])
        .arg(file)
        .output()
        .unwrap();
    (
        !out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_bad_configuration_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("witness.toml");
    let (failed, err) = witness_with(&file, "listen = \"127.0.0.1:7695\"\n");
    assert!(
        failed && err.contains("witness.toml") && err.contains("no [[cluster]]"),
        "{err}"
    );
    let cluster = "[[cluster]]\nname = \"a\"\nkey_file = \"k\"\n";
    let (_, err) = witness_with(&file, &format!("vote = \"50ms\"\n{cluster}"));
    assert!(err.contains("too short"), "{err}");
    // Issue 12, finding 13: the vote is capped (a node that dies holding
    // it keeps it that long).
    let (failed, err) = witness_with(&file, &format!("vote = \"61s\"\n{cluster}"));
    assert!(
        failed && err.contains("too long") && err.contains("at most 60s"),
        "{err}"
    );
    let (_, err) = witness_with(&file, "[[cluster]]\nname = \"a\"\nkey_fil = \"k\"\n");
    assert!(err.contains("line 3") || err.contains("key_fil"), "{err}");
}

/// Issue 12, finding 6: the arbitrator's anti-replay state was in memory
/// only, so requests captured before it restarted won the vote after it.
/// It keeps the nodes' counters in its state file now.
#[test]
fn requests_captured_before_a_restart_are_ignored_after_it() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut n1 = Node::new("web", "n1", b"web-cluster-arbitrator-key");
    let arb = start(dir.path());
    // Past the quiet period, n1 gets the vote; an eavesdropper keeps the
    // request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let captured = loop {
        assert!(Instant::now() < deadline, "never granted");
        let r = n1.request();
        if n1.send(&r).is_some_and(|a| a.granted) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The arbitrator restarts; once its quiet period is over, the replay
    // gets no answer at all, and n1's next real request is served.
    let state = dir.path().join("witness.state");
    let written = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"n1\"")) {
        assert!(Instant::now() < written, "the counters were never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(arb);
    let _arb = start(dir.path());
    // A node of the other cluster tells when votes are open again.
    let mut db = Node::new("db", "d1", b"db-cluster-arbitrator-key");
    let open = Instant::now() + Duration::from_secs(10);
    while !db.ask().is_some_and(|a| a.granted) {
        assert!(
            Instant::now() < open,
            "the restarted arbitrator never granted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        n1.send(&captured),
        None,
        "a request captured before the restart was served"
    );
    // n1's next real request is served.
    assert!(n1.ask().is_some_and(|a| a.granted));
}
