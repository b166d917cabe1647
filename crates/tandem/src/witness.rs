//! `tandem witness`: the arbitrator daemon for a third machine. It gives a
//! tie-breaking vote to the nodes of many two-node clusters at once (like
//! corosync-qnetd): per cluster, one node at a time holds its vote, for
//! `vote` (default 2 s), renewing it while it needs it. Requests and
//! answers are signed with a key per cluster (see
//! `tandem_wire::arbiter`); the vote keeping itself is the sans-IO
//! `tandem_core::arbiter::Arbiter`.
//!
//! After a start it gives no vote for one vote period: a vote it gave
//! before a restart may still be in use, and it no longer knows by whom.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use tandem_core::Timestamp;
use tandem_core::arbiter::{Arbiter, Decision};
use tandem_wire::Key;
use tandem_wire::arbiter::{ARBITER_MAX, ARBITER_PORT, VoteAnswer, VoteRequest};

/// `tandem witness`'s configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArbiterConfig {
    /// Address and port to listen on (default `0.0.0.0:7695`).
    pub listen: Option<String>,
    /// How long a vote lasts (default 2 s); nodes renew it halfway.
    pub vote: Option<String>,
    /// Where the nodes' request counters are kept across restarts (default
    /// `/var/lib/tandem/witness.state`; relative paths: to this file).
    pub state_file: Option<PathBuf>,
    /// The clusters served.
    #[serde(rename = "cluster", default)]
    pub clusters: Vec<ArbiterCluster>,
}

/// One cluster the arbitrator serves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArbiterCluster {
    /// The cluster's name (as in its tandem.toml).
    pub name: String,
    /// The key shared with its nodes (relative paths: to this file).
    pub key_file: PathBuf,
}

/// A loaded configuration: where to listen, how long votes last, keys.
pub struct Loaded {
    /// Listen address.
    pub listen: SocketAddr,
    /// Vote length.
    pub vote: Duration,
    /// Cluster name to key.
    pub keys: HashMap<String, Key>,
    /// Where the nodes' request counters are kept across restarts.
    pub state_file: PathBuf,
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let cfg: ArbiterConfig =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let listen = match &cfg.listen {
        None => SocketAddr::from(([0, 0, 0, 0], ARBITER_PORT)),
        Some(l) => l.parse().with_context(|| {
            format!(
                "{}: listen = {l:?} is not ADDRESS:PORT (e.g. \"0.0.0.0:{ARBITER_PORT}\")",
                path.display()
            )
        })?,
    };
    let vote = match &cfg.vote {
        None => Duration::from_secs(2),
        Some(v) => tandem_config::parse_duration(v)
            .map_err(|e| anyhow::anyhow!("{}: vote = {v:?}: {e}", path.display()))?,
    };
    if vote > Duration::from_secs(60) {
        bail!(
            "{}: vote = {vote:?} is too long: a node that dies holding the vote keeps it that long, and its peer waits; use at most 60s (default 2s)",
            path.display()
        );
    }
    if vote < Duration::from_millis(200) {
        bail!(
            "{}: vote = {vote:?} is too short: nodes renew it halfway, over the network; use at least 200ms (default 2s)",
            path.display()
        );
    }
    if cfg.clusters.is_empty() {
        bail!(
            "{}: no [[cluster]]: add one table per cluster with name and key_file",
            path.display()
        );
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let mut keys = HashMap::new();
    for c in &cfg.clusters {
        let file = base.join(&c.key_file);
        let secret = tandem_config::keyfile::read_key(&file)
            .with_context(|| format!("cluster {}: key_file {}", c.name, file.display()))?;
        let key = Key::new(1, &secret).with_context(|| format!("cluster {}", c.name))?;
        if keys.insert(c.name.clone(), key).is_some() {
            bail!("{}: cluster {} is listed twice", path.display(), c.name);
        }
    }
    let state_file = cfg.state_file.as_ref().map_or_else(
        || PathBuf::from("/var/lib/tandem/witness.state"),
        |f| base.join(f),
    );
    Ok(Loaded {
        listen,
        vote,
        keys,
        state_file,
    })
}

/// The nodes' request counters, kept across restarts so requests captured
/// before a restart cannot win the vote after it: one JSON line
/// `[cluster, node, incarnation, counter]` per node, rewritten (a new file
/// renamed over the old one) by a thread of its own.
struct Counters {
    tx: std::sync::mpsc::Sender<(String, String, u64, u64)>,
}

type CounterKey = (String, String);

impl Counters {
    /// Loads `path` into `arbiter` and starts the writer.
    fn start(path: &Path, arbiter: &mut Arbiter) -> Self {
        let mut seen: HashMap<CounterKey, (u64, u64)> = HashMap::new();
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            if let Ok((c, n, i, k)) = serde_json::from_str::<(String, String, u64, u64)>(line) {
                arbiter.remember(&c, &n, i, k);
                seen.insert((c, n), (i, k));
            }
        }
        if !seen.is_empty() {
            tracing::info!(
                "remembered the request counters of {} node(s) from {}: requests captured before this start are refused",
                seen.len(),
                path.display()
            );
        }
        let (tx, rx) = std::sync::mpsc::channel::<(String, String, u64, u64)>();
        let path = path.to_path_buf();
        let _ = std::thread::Builder::new()
            .name("tandem-witness-state".into())
            .spawn(move || {
                let mut warned = false;
                while let Ok(first) = rx.recv() {
                    for (c, n, i, k) in std::iter::once(first).chain(rx.try_iter()) {
                        let e = seen.entry((c, n)).or_insert((i, k));
                        *e = (*e).max((i, k));
                    }
                    let mut lines: Vec<String> = seen
                        .iter()
                        .filter_map(|((c, n), (i, k))| serde_json::to_string(&(c, n, i, k)).ok())
                        .collect();
                    lines.sort();
                    let text = lines.join("\n") + "\n";
                    if let Err(e) = crate::state_file::replace(&path, &text)
                        && !std::mem::replace(&mut warned, true)
                    {
                        tracing::warn!(
                            "cannot keep the request counters in {} ({e}): after a restart, requests captured before it could win the vote; set state_file",
                            path.display()
                        );
                    }
                }
            });
        Self { tx }
    }

    fn record(&self, req: &VoteRequest) {
        let _ = self.tx.send((
            req.cluster.clone(),
            req.node.clone(),
            req.incarnation,
            req.counter,
        ));
    }
}

/// Runs the arbitrator until SIGTERM or SIGINT.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let loaded = load(path)?;
    let _guards = crate::daemon::init_logging(None, &crate::daemon::hostname())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handlers")?;
    }
    serve(&loaded, &stop)
}

/// Serves requests on `loaded.listen` until `stop` is set.
pub fn serve(loaded: &Loaded, stop: &AtomicBool) -> anyhow::Result<()> {
    let sock =
        UdpSocket::bind(loaded.listen).with_context(|| format!("listen on {}", loaded.listen))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let epoch = Instant::now();
    let mut arbiter = Arbiter::new(loaded.vote);
    let counters = Counters::start(&loaded.state_file, &mut arbiter);
    let mut names: Vec<&String> = loaded.keys.keys().collect();
    names.sort();
    tracing::info!(
        "tandem witness {} listening on {} for {} cluster(s): {}; votes last {:?}; no vote before {:?} have passed (one given before a restart may still be in use)",
        env!("CARGO_PKG_VERSION"),
        sock.local_addr().unwrap_or(loaded.listen),
        names.len(),
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        loaded.vote,
        loaded.vote
    );
    let mut rejected: u64 = 0;
    let mut open = false;
    let mut buf = [0u8; ARBITER_MAX + 1];
    while !stop.load(Ordering::Relaxed) {
        if !open && epoch.elapsed() >= loaded.vote {
            open = true;
            tracing::info!("votes open");
        }
        let (len, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e).context("receive"),
        };
        let elapsed = epoch.elapsed();
        let now = Timestamp::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        let keys = loaded.keys.iter().map(|(c, k)| (c.as_str(), k));
        let req: VoteRequest = match tandem_wire::arbiter::open(&buf[..len], keys) {
            Ok(r) => r,
            Err(e) => {
                rejected += 1;
                // The first few in full, then one line per hundred.
                if rejected <= 10 || rejected.is_multiple_of(100) {
                    tracing::warn!("rejected a request from {from}: {e} ({rejected} so far)");
                }
                continue;
            }
        };
        let (granted, holder) = if req.release {
            counters.record(&req);
            if arbiter.release(&req.cluster, &req.node, req.incarnation, req.counter) {
                tracing::info!(
                    "cluster {}: {} gave the vote back ({from})",
                    req.cluster.escape_debug(),
                    req.node.escape_debug()
                );
            }
            (false, None)
        } else if elapsed < loaded.vote {
            (false, None)
        } else {
            let decision =
                arbiter.request(now, &req.cluster, &req.node, req.incarnation, req.counter);
            if decision != Decision::Replayed {
                counters.record(&req);
            }
            match decision {
                Decision::Granted { changed } => {
                    if changed {
                        tracing::info!(
                            "cluster {}: vote given to {} ({from})",
                            req.cluster.escape_debug(),
                            req.node.escape_debug()
                        );
                    }
                    (true, Some(req.node.clone()))
                }
                Decision::Refused { holder } => {
                    tracing::info!(
                        "cluster {}: {} asked; {} holds the vote",
                        req.cluster.escape_debug(),
                        req.node.escape_debug(),
                        holder.escape_debug()
                    );
                    (false, Some(holder))
                }
                Decision::Replayed => {
                    rejected += 1;
                    tracing::warn!(
                        "cluster {}: replayed or reordered request from {} ({from}) ignored",
                        req.cluster.escape_debug(),
                        req.node.escape_debug()
                    );
                    continue;
                }
            }
        };
        let answer = VoteAnswer {
            cluster: req.cluster.clone(),
            node: req.node.clone(),
            nonce: req.nonce,
            granted,
            holder,
            vote_ms: u64::try_from(loaded.vote.as_millis()).unwrap_or(u64::MAX),
        };
        if let Some(key) = loaded.keys.get(&req.cluster) {
            let _ = sock.send_to(&tandem_wire::arbiter::seal(key, &answer), from);
        }
    }
    tracing::info!("tandem witness stopping");
    Ok(())
}
