//! The recent events the API and console show, and the counters the
//! metrics derive from them.
//!
//! The heartbeat thread hands each event to an [`EventSink`], which never
//! blocks or waits: a queue of its own (one producer, so a send is a few
//! atomic steps that never wait for another thread, unlike a bounded
//! channel's, which spins while the reader finishes a read), with at most
//! [`QUEUE`] events waiting and drops counted beyond. A thread of its own
//! (`tandem-events`) numbers the events and keeps the last [`CAPACITY`]
//! of them in an [`EventLog`]; other producers get sinks of their own
//! ([`EventLog::sink`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};
use tandem_core::Event;

/// Events kept for the API and console.
pub const CAPACITY: usize = 500;

/// Most events waiting between one sink and the log.
pub const QUEUE: usize = 4096;

/// One event as the API serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number on this node, from 1, without gaps unless events
    /// were dropped (counted in `tandem_events_dropped_total`).
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The node that saw it (the answering node).
    pub node: String,
    /// `node`, `link`, `group`, `resource`, `quorum`, `fencing`, `witness`,
    /// `lease`, `settings`, `volume` or `packet`.
    pub kind: String,
    /// Whether it is logged as a warning.
    pub warning: bool,
    /// The log line.
    pub text: String,
    /// The node it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about_node: Option<String>,
    /// The group it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The resource it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// An event with its number and time, as subscribers (the alert workers)
/// receive it.
#[derive(Clone, Debug)]
pub struct Numbered {
    /// Sequence number on this node (the same as the API's).
    pub seq: u64,
    /// When the heartbeat thread handed it over.
    pub at: SystemTime,
    /// The event.
    pub event: Event,
    /// The event as the API serves it.
    pub record: EventRecord,
}

/// Label sets of the event-derived metrics.
pub(crate) type Labels = Vec<(String, String)>;

/// Counters derived from events, shared with every scrape.
pub(crate) struct EventCounters {
    /// Groups taken over here, by group and reason (failover, move,
    /// placement).
    pub takeovers: Family<Labels, Counter>,
    /// Groups released here, by group.
    pub releases: Family<Labels, Counter>,
    /// Resource failures here, by group, resource and operation.
    pub failures: Family<Labels, Counter>,
    /// Agent start/stop durations, by agent kind and operation.
    pub op_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Fencing outcomes, by node and result.
    pub fencing: Family<Labels, Counter>,
    /// Witness checks, by result.
    pub witness: Family<Labels, Counter>,
    /// Peers declared dead, by node.
    pub deaths: Family<Labels, Counter>,
    /// Times this daemon found itself frozen past its lease.
    pub lease_lost: Counter,
}

fn op_histogram() -> Histogram {
    // 5 ms … ~20 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.0, 13,
    ))
}

impl EventCounters {
    fn new() -> Self {
        Self {
            takeovers: Family::default(),
            releases: Family::default(),
            failures: Family::default(),
            op_seconds: Family::new_with_constructor(op_histogram),
            fencing: Family::default(),
            witness: Family::default(),
            deaths: Family::default(),
            lease_lost: Counter::default(),
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The recent events of this node, numbered.
pub struct EventLog {
    node: String,
    recent: Mutex<VecDeque<EventRecord>>,
    next_seq: AtomicU64,
    dropped: Arc<AtomicU64>,
    pub(crate) counters: EventCounters,
    /// `GROUP/RESOURCE` → agent kind, for the duration histogram.
    agents: std::collections::BTreeMap<String, String>,
    /// Who else gets every event, in order (unbounded: a slow alert agent
    /// delays only its own deliveries).
    subscribers: Mutex<Vec<std::sync::mpsc::Sender<Numbered>>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("node", &self.node)
            .finish()
    }
}

/// One producer's end (the heartbeat thread's, the operator's): hands
/// events over without ever blocking or waiting. Not `Clone`: a queue
/// with two producers could make one wait for the other.
#[derive(Debug)]
pub struct EventSink {
    tx: Sender<(SystemTime, Event)>,
    /// Events sent and not yet taken by the log's thread.
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// Queues `event`; when [`QUEUE`] events already wait, it is dropped
    /// and counted, never waited for.
    pub fn send(&self, event: Event) {
        if self.queued.load(Ordering::Relaxed) >= QUEUE {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send((SystemTime::now(), event)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl EventLog {
    /// A log for `node` (with each resource's agent kind, keyed
    /// `GROUP/RESOURCE`) fed by the returned sink through a thread
    /// `tandem-events`.
    pub fn start(
        node: &str,
        agents: std::collections::BTreeMap<String, String>,
    ) -> std::io::Result<(EventSink, Arc<EventLog>)> {
        let log = Arc::new(Self::new(node, agents));
        let sink = log.sink()?;
        Ok((sink, log))
    }

    /// Another producer's sink, drained into this log by a thread of its
    /// own.
    pub fn sink(self: &Arc<Self>) -> std::io::Result<EventSink> {
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let sink = EventSink {
            tx,
            queued: queued.clone(),
            dropped: self.dropped.clone(),
        };
        let feed = self.clone();
        std::thread::Builder::new()
            .name("tandem-events".into())
            .spawn(move || {
                while let Ok((at, event)) = rx.recv() {
                    queued.fetch_sub(1, Ordering::Relaxed);
                    feed.record(at, &event);
                }
            })?;
        Ok(sink)
    }

    /// A log fed by hand with [`EventLog::record`] (tests, tools).
    pub fn new(node: &str, agents: std::collections::BTreeMap<String, String>) -> Self {
        Self {
            node: node.to_string(),
            recent: Mutex::new(VecDeque::with_capacity(CAPACITY)),
            next_seq: AtomicU64::new(1),
            dropped: Arc::new(AtomicU64::new(0)),
            counters: EventCounters::new(),
            agents,
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// Every event recorded from now on, in order, with its number.
    pub fn subscribe(&self) -> Receiver<Numbered> {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut s) = self.subscribers.lock() {
            s.push(tx);
        }
        rx
    }

    /// Numbers and keeps `event`, and counts it in the metrics. Numbering,
    /// delivery to subscribers and keeping happen under one lock, so
    /// events recorded by several sinks' threads reach every reader in
    /// the order of their numbers.
    pub fn record(&self, at: SystemTime, event: &Event) {
        self.count(event);
        let subject = event.subject();
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let record = EventRecord {
            seq,
            time_ms: at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            node: self.node.clone(),
            kind: event.kind().to_string(),
            warning: event.is_warning(),
            text: event.to_string(),
            about_node: subject.node.map(str::to_string),
            group: subject.group.map(str::to_string),
            resource: subject.resource.map(str::to_string),
        };
        subs.retain(|tx| {
            tx.send(Numbered {
                seq,
                at,
                event: event.clone(),
                record: record.clone(),
            })
            .is_ok()
        });
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == CAPACITY {
                recent.pop_front();
            }
            recent.push_back(record);
        }
    }

    /// Events with a sequence number above `since`, oldest first, at most
    /// `limit`.
    pub fn since(&self, since: u64, limit: usize) -> Vec<EventRecord> {
        let Ok(recent) = self.recent.lock() else {
            return Vec::new();
        };
        let newer: Vec<_> = recent.iter().filter(|r| r.seq > since).cloned().collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).collect()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn count(&self, event: &Event) {
        let c = &self.counters;
        match event {
            Event::Acquiring { group, .. } => {
                let why = event.acquire_kind().unwrap_or("placement");
                c.takeovers
                    .get_or_create(&labels(&[("group", group), ("reason", why)]))
                    .inc();
            }
            Event::Releasing { group, .. } => {
                c.releases.get_or_create(&labels(&[("group", group)])).inc();
            }
            Event::OpDone {
                group,
                resource,
                op,
                took,
            } => {
                let agent = self
                    .agents
                    .get(&format!("{group}/{resource}"))
                    .map_or("unknown", String::as_str);
                let op = format!("{op:?}").to_lowercase();
                c.op_seconds
                    .get_or_create(&labels(&[("agent", agent), ("op", &op)]))
                    .observe(took.as_secs_f64());
            }
            Event::MonitorFailed {
                group, resource, ..
            } => failure(c, group, resource, "monitor"),
            Event::StartFailed {
                group, resource, ..
            } => failure(c, group, resource, "start"),
            Event::StopFailed {
                group, resource, ..
            } => failure(c, group, resource, "stop"),
            Event::Fenced { node, error } => {
                let result = if error.is_none() { "ok" } else { "failed" };
                c.fencing
                    .get_or_create(&labels(&[("node", node), ("result", result)]))
                    .inc();
            }
            Event::Witness { reachable } => {
                let result = if *reachable {
                    "reachable"
                } else {
                    "unreachable"
                };
                c.witness
                    .get_or_create(&labels(&[("result", result)]))
                    .inc();
            }
            Event::Dead { node, .. } => {
                c.deaths.get_or_create(&labels(&[("node", node)])).inc();
            }
            Event::LeaseLost { .. } => {
                c.lease_lost.inc();
            }
            _ => {}
        }
    }
}

fn failure(c: &EventCounters, group: &str, resource: &str, op: &str) {
    c.failures
        .get_or_create(&labels(&[
            ("group", group),
            ("resource", resource),
            ("op", op),
        ]))
        .inc();
}

/// How long ago `time_ms` was, for display.
pub fn age(time_ms: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Duration::from_millis(now.saturating_sub(time_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_bounded_and_filtered() {
        let log = EventLog::new("n1", Default::default());
        for i in 0..(CAPACITY + 10) {
            log.record(
                SystemTime::now(),
                &Event::SettingsChanged {
                    what: format!("change {i}"),
                },
            );
        }
        let all = log.since(0, usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all.first().map(|r| r.seq), Some(11));
        assert_eq!(all.last().map(|r| r.seq), Some(CAPACITY as u64 + 10));
        let tail = log.since(CAPACITY as u64 + 8, 10);
        assert_eq!(
            tail.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![CAPACITY as u64 + 9, CAPACITY as u64 + 10]
        );
        assert_eq!(log.since(0, 3).len(), 3);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = EventSink {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..QUEUE + 2 {
            sink.send(Event::Witness { reachable: true });
        }
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(rx.try_iter().count(), QUEUE);
    }

    #[test]
    fn two_sinks_reach_a_subscriber_in_the_order_of_their_numbers() {
        let log = Arc::new(EventLog::new("n1", Default::default()));
        let rx = log.subscribe();
        let (a, b) = (log.sink().unwrap(), log.sink().unwrap());
        let n = 3000;
        let feed = |s: EventSink| {
            std::thread::spawn(move || {
                for i in 0..n {
                    s.send(Event::Witness {
                        reachable: i % 2 == 0,
                    });
                }
            })
        };
        let (ta, tb) = (feed(a), feed(b));
        ta.join().unwrap();
        tb.join().unwrap();
        let mut last = 0;
        for _ in 0..2 * n {
            let e = rx.recv_timeout(Duration::from_secs(10)).expect("an event");
            assert!(e.seq > last, "{} after {last}", e.seq);
            last = e.seq;
        }
        let kept: Vec<u64> = log.since(0, CAPACITY).iter().map(|r| r.seq).collect();
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "{kept:?}");
    }

    #[test]
    fn every_sink_feeds_the_one_log() {
        let log = Arc::new(EventLog::new("n1", Default::default()));
        let (a, b) = (log.sink().unwrap(), log.sink().unwrap());
        a.send(Event::Witness { reachable: true });
        b.send(Event::Witness { reachable: false });
        a.send(Event::Witness { reachable: false });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while log.since(0, 10).len() < 3 {
            assert!(std::time::Instant::now() < deadline, "events not recorded");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(log.dropped(), 0);
    }
}
