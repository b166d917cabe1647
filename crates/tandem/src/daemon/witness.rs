//! Witness probes (two-node clusters, scenario S5), on a worker thread of
//! their own, never on the node loop: at failover only, is any witness
//! host reachable (ICMP echo through the system's `ping`, or a TCP
//! connection)? Or, with an arbitrator (`tandem witness`), does it give
//! this node its vote?

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::inbox::{Inbox, Input};

use tandem_config::{Witness, WitnessKind};
use tandem_wire::Key;
use tandem_wire::arbiter::{VoteAnswer, VoteRequest};

/// The answer to one witness probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A plain witness: whether any answered.
    Reachable(bool),
    /// The arbitrator's vote, valid until then.
    Granted(Instant),
    /// The arbitrator gives its vote to another node.
    Refused,
    /// No valid answer from the arbitrator in time.
    NoAnswer,
}

/// Who this node is, for arbitrator requests.
#[derive(Clone)]
pub struct Identity {
    /// Cluster name.
    pub cluster: String,
    /// This node's name.
    pub node: String,
    /// This daemon's incarnation.
    pub incarnation: u64,
    /// The key shared with the arbitrator.
    pub key: Option<Arc<Key>>,
}

/// A vote counts as valid for this share of its length, from when it was
/// asked for: a margin for clock-rate differences between the machines.
const VOTE_SHARE: f64 = 0.9;

/// What the witness worker is asked to do.
enum Job {
    /// Probe the witnesses, or ask the arbitrator for its vote.
    Probe(u64),
    /// Give the arbitrator's vote back.
    Release,
}

/// Runs witness probes on a long-lived worker thread (`tandem-witness`),
/// one at a time, and reports each answer to the node loop.
pub struct Prober {
    jobs: Option<Sender<Job>>,
    inbox: Inbox,
}

impl Prober {
    /// A prober for `witness` (none configured: every probe fails)
    /// reporting to `inbox`.
    pub fn new(witness: Option<Witness>, identity: Identity, inbox: Inbox) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let report = inbox.clone();
        let worker = Worker {
            witness,
            identity,
            counter: AtomicU64::new(0),
        };
        let spawned = std::thread::Builder::new()
            .name("tandem-witness".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Probe(id) => {
                            let answer = worker.probe(id);
                            report.send(Input::Witness { id, answer });
                        }
                        Job::Release => worker.release(),
                    }
                }
            });
        if let Err(e) = &spawned {
            tracing::error!("cannot start the witness worker: {e}; witness probes will fail");
        }
        Self {
            jobs: spawned.ok().map(|_| tx),
            inbox,
        }
    }

    /// Starts probe `id`: every witness at once; reachable if any answers.
    /// An arbitrator is asked for its vote instead.
    pub fn probe(&self, id: u64) {
        if !self.submit(Job::Probe(id)) {
            self.inbox.send(Input::Witness {
                id,
                answer: Answer::NoAnswer,
            });
        }
    }

    /// Tells the arbitrator (if the witness is one) that this node no
    /// longer needs its vote: one datagram, no answer awaited.
    pub fn release(&self) {
        self.submit(Job::Release);
    }

    fn submit(&self, job: Job) -> bool {
        self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }
}

/// The worker's state.
struct Worker {
    witness: Option<Witness>,
    identity: Identity,
    counter: AtomicU64,
}

impl Worker {
    fn probe(&self, id: u64) -> Answer {
        let Some(w) = &self.witness else {
            return Answer::Reachable(false);
        };
        if let WitnessKind::Arbiter { port, .. } = w.kind
            && let Some(addr) = w.addresses.first()
        {
            let to = SocketAddr::new(*addr, port);
            let answer = ask_arbiter(to, &self.identity, &self.counter, w.timeout);
            tracing::info!("arbitrator {to}, request {id}: {answer:?}");
            return answer;
        }
        // Every witness at once, each on a scoped thread of its own.
        let reachable = std::thread::scope(|scope| {
            let handles: Vec<_> = w
                .addresses
                .iter()
                .filter_map(|a| {
                    std::thread::Builder::new()
                        .name("tandem-witness-probe".into())
                        .spawn_scoped(scope, || reach(*a, &w.kind, w.timeout))
                        .ok()
                })
                .collect();
            handles.into_iter().any(|h| h.join().unwrap_or(false))
        });
        tracing::info!(
            "witness probe {id}: {}",
            if reachable {
                "reachable"
            } else {
                "unreachable"
            }
        );
        Answer::Reachable(reachable)
    }

    fn release(&self) {
        let Some(w) = &self.witness else { return };
        let (WitnessKind::Arbiter { port, .. }, Some(addr)) = (&w.kind, w.addresses.first()) else {
            return;
        };
        let Some(key) = &self.identity.key else {
            return;
        };
        let to = SocketAddr::new(*addr, *port);
        let request = VoteRequest {
            cluster: self.identity.cluster.clone(),
            node: self.identity.node.clone(),
            incarnation: self.identity.incarnation,
            counter: self.counter.fetch_add(1, Ordering::Relaxed) + 1,
            nonce: 0,
            release: true,
        };
        let bind: SocketAddr = if to.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(sock) = UdpSocket::bind(bind) {
            let _ = sock.send_to(&tandem_wire::arbiter::seal(key, &request), to);
            tracing::info!("arbitrator {to}: vote given back (every peer is back)");
        }
    }
}

/// Whether the plain witness at `a` answers within `t`.
fn reach(a: std::net::IpAddr, kind: &WitnessKind, t: Duration) -> bool {
    match kind {
        WitnessKind::Tcp(port) => TcpStream::connect_timeout(&SocketAddr::new(a, *port), t).is_ok(),
        // Asked for its vote instead (see `Worker::probe`).
        WitnessKind::Arbiter { .. } => false,
        WitnessKind::Icmp => {
            let secs = format!("{:.3}", t.as_secs_f64().max(0.001));
            matches!(
                tandem_agents::exec::run(
                    "ping",
                    &["-n", "-q", "-c", "1", "-W", &secs, &a.to_string()],
                    &Default::default(),
                    t + Duration::from_millis(500),
                ),
                tandem_agents::exec::Exit::Code(0, _)
            )
        }
    }
}

/// Asks the arbitrator at `to` for its vote: the request is sent up to
/// three times within `timeout`; the first valid answer counts.
fn ask_arbiter(to: SocketAddr, who: &Identity, counter: &AtomicU64, timeout: Duration) -> Answer {
    let Some(key) = &who.key else {
        return Answer::NoAnswer;
    };
    let bind: SocketAddr = if to.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(sock) = UdpSocket::bind(bind) else {
        return Answer::NoAnswer;
    };
    if sock.connect(to).is_err() {
        return Answer::NoAnswer;
    }
    let mut nonce = [0u8; 8];
    if getrandom::fill(&mut nonce).is_err() {
        return Answer::NoAnswer;
    }
    let nonce = u64::from_le_bytes(nonce);
    let asked = Instant::now();
    let deadline = asked + timeout;
    let tries = 3u32;
    let mut buf = [0u8; tandem_wire::arbiter::ARBITER_MAX];
    for n in 0..tries {
        let request = VoteRequest {
            cluster: who.cluster.clone(),
            node: who.node.clone(),
            incarnation: who.incarnation,
            counter: counter.fetch_add(1, Ordering::Relaxed) + 1,
            nonce,
            release: false,
        };
        let _ = sock.send(&tandem_wire::arbiter::seal(key, &request));
        let slot_end = asked + timeout * (n + 1) / tries;
        loop {
            let left = slot_end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = sock.set_read_timeout(Some(left));
            let Ok(len) = sock.recv(&mut buf) else {
                break;
            };
            let answer: Result<VoteAnswer, _> =
                tandem_wire::arbiter::open(&buf[..len], [(who.cluster.as_str(), &**key)]);
            match answer {
                Ok(a) if a.nonce == nonce && a.node == who.node => {
                    return if a.granted {
                        let vote = Duration::from_millis(a.vote_ms).mul_f64(VOTE_SHARE);
                        Answer::Granted(asked + vote)
                    } else {
                        Answer::Refused
                    };
                }
                Ok(_) => {} // an answer to an older request
                Err(e) => tracing::warn!("arbitrator {to}: rejected an answer: {e}"),
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Answer::NoAnswer
}
