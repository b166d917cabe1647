//! `/metrics`: Prometheus text (OpenMetrics) in tandem's own namespace,
//! covering what ha_cluster_exporter and the keepalived exporters give.
//!
//! Gauges are read from the status snapshot at each scrape; counters and
//! the operation-duration histogram come from the events (`events.rs`) and
//! only ever grow. Every node, group and resource of the configuration
//! appears in every scrape (0 or 1), so a series never vanishes when a node
//! dies.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tandem_control::Status;

use crate::AppState;
use crate::events::{EventLog, Labels};

/// Content type of the OpenMetrics text format (served when asked for).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the classic Prometheus text format (served otherwise:
/// what `promtool check metrics`, curl users and older scrapers read).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Gauges = Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn word<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".into(),
    }
}

fn gauge(reg: &mut Registry, name: &str, help: &str) -> Gauges {
    let g = Gauges::default();
    reg.register(name, help, g.clone());
    g
}

/// A gauge without labels.
fn one(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    g.set(v);
    reg.register(name, help, g);
}

fn set(g: &Gauges, labels: &[(&str, &str)], v: f64) {
    g.get_or_create(&l(labels)).set(v);
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The whole scrape as text.
pub fn render(status: &Status, log: &EventLog) -> String {
    let mut root = Registry::with_prefix("tandem");
    let m = &status.membership;
    let node = m.local.as_str();

    let info = gauge(&mut root, "info", "This daemon: version, node and cluster");
    set(
        &info,
        &[
            ("version", &status.daemon.version),
            ("node", node),
            ("cluster", &m.cluster),
        ],
        1.0,
    );
    one(
        &mut root,
        "joined",
        "1 once this node has joined its cluster",
        flag(m.joined),
    );

    let states = ["online", "late", "dead", "left", "pending"];
    let node_state = gauge(
        &mut root,
        "node_state",
        "Each node's state as this node sees it (1 for the current state)",
    );
    let member = gauge(
        &mut root,
        "node_member",
        "1 when the node is a member (online or late)",
    );
    let standby = gauge(&mut root, "node_standby", "1 when the node is in standby");
    let link_up = gauge(&mut root, "link_up", "1 when the link to the peer is up");
    let heard = gauge(
        &mut root,
        "link_last_heard_seconds",
        "Seconds since a valid heartbeat arrived from the peer on the link",
    );
    for n in &m.nodes {
        let now = word(&n.state);
        for s in states {
            set(
                &node_state,
                &[("node", &n.name), ("state", s)],
                flag(now == s),
            );
        }
        set(
            &member,
            &[("node", &n.name)],
            flag(m.members.contains(&n.name)),
        );
        set(
            &standby,
            &[("node", &n.name)],
            flag(m.standby.contains(&n.name)),
        );
        for link in &n.links {
            let labels = [("peer", n.name.as_str()), ("link", link.name.as_str())];
            set(&link_up, &labels, flag(word(&link.state) == "up"));
            if let Some(ms) = link.last_heard_ms {
                set(&heard, &labels, ms as f64 / 1000.0);
            }
        }
    }

    if let Some(q) = &m.quorum {
        one(
            &mut root,
            "quorate",
            "1 when this node's partition has quorum",
            flag(q.quorate),
        );
        let votes = gauge(
            &mut root,
            "quorum_votes",
            "Quorum votes: present, needed and total",
        );
        set(&votes, &[("kind", "present")], f64::from(q.present));
        set(&votes, &[("kind", "needed")], f64::from(q.needed));
        set(&votes, &[("kind", "total")], f64::from(q.total));
    }
    one(
        &mut root,
        "waiting",
        "1 when this node waits (witness, arbitrator or fence) instead of running groups alone",
        flag(m.waiting.is_some()),
    );
    one(
        &mut root,
        "lease_remaining_seconds",
        "Seconds left on this node's lease (0 when it holds none)",
        m.lease_ms.unwrap_or(0) as f64 / 1000.0,
    );

    let active = gauge(
        &mut root,
        "group_active",
        "1 on each node where the group is active (as this node sees it)",
    );
    let started_here = gauge(
        &mut root,
        "group_started_here",
        "1 when the group is started on this node",
    );
    let blocked = gauge(
        &mut root,
        "group_blocked",
        "1 when a failed stop blocks the group",
    );
    let moved = gauge(
        &mut root,
        "group_moved",
        "1 while an operator move is in force",
    );
    let rstate = gauge(
        &mut root,
        "resource_state",
        "Each resource's state on this node (1 for the current state)",
    );
    let fails = gauge(
        &mut root,
        "resource_failcount",
        "Failures counted against the resource on this node (Pacemaker's fail-count)",
    );
    let rstates = [
        "unknown", "stopped", "starting", "started", "stopping", "failed", "blocked",
    ];
    for g in &m.groups {
        for n in &m.nodes {
            set(
                &active,
                &[("group", &g.name), ("node", &n.name)],
                flag(g.active_on.contains(&n.name)),
            );
        }
        set(
            &started_here,
            &[("group", &g.name)],
            flag(g.phase_here == "started"),
        );
        set(
            &blocked,
            &[("group", &g.name)],
            flag(g.blocked_on.is_some()),
        );
        set(&moved, &[("group", &g.name)], flag(g.moved_to.is_some()));
        for r in &g.resources {
            let now = word(&r.state);
            for s in rstates {
                set(
                    &rstate,
                    &[("group", &g.name), ("resource", &r.name), ("state", s)],
                    flag(now == s),
                );
            }
            set(
                &fails,
                &[("group", &g.name), ("resource", &r.name)],
                f64::from(r.fail_count),
            );
        }
    }

    let c = &log.counters;
    root.register(
        "group_takeovers",
        "Groups taken over by this node, by reason (failover, move, placement)",
        c.takeovers.clone(),
    );
    root.register(
        "group_releases",
        "Groups released by this node",
        c.releases.clone(),
    );
    root.register(
        "resource_failures",
        "Resource failures on this node, by operation",
        c.failures.clone(),
    );
    root.register(
        "agent_operation_duration_seconds",
        "How long agent starts and stops took, by agent kind and operation",
        c.op_seconds.clone(),
    );
    root.register(
        "fencing_operations",
        "Fencing operations, by node and result",
        c.fencing.clone(),
    );
    root.register(
        "witness_checks",
        "Witness checks at failover, by result",
        c.witness.clone(),
    );
    root.register(
        "node_deaths",
        "Peers declared dead by this node",
        c.deaths.clone(),
    );
    root.register(
        "lease_lost",
        "Times this daemon was frozen past its lease",
        c.lease_lost.clone(),
    );

    let s = &m.stats;
    let packets = Family::<Labels, Counter>::default();
    root.register(
        "heartbeat_packets",
        "Heartbeat datagrams: sent, accepted, and rejected by reason",
        packets.clone(),
    );
    packets
        .get_or_create(&l(&[("result", "sent")]))
        .inc_by(s.sent);
    packets
        .get_or_create(&l(&[("result", "accepted")]))
        .inc_by(s.accepted);
    for (reason, v) in [
        ("truncated", s.truncated),
        ("oversized", s.oversized),
        ("bad_magic", s.bad_magic),
        ("unsupported_version", s.unsupported_version),
        ("wrong_cluster", s.wrong_cluster),
        ("unknown_key", s.unknown_key),
        ("bad_mac", s.bad_mac),
        ("malformed", s.malformed),
        ("unknown_sender", s.unknown_sender),
        ("wrong_link", s.wrong_link),
        ("replayed", s.replayed),
        ("stale", s.stale),
        ("future_incarnation", s.future_incarnation),
    ] {
        packets
            .get_or_create(&l(&[("result", "rejected"), ("reason", reason)]))
            .inc_by(v);
    }
    let stalls = Counter::<u64>::default();
    stalls.inc_by(s.stalls);
    root.register(
        "stalls",
        "Times the heartbeat thread went without running for over two keepalives",
        stalls,
    );
    root.register(
        "heartbeat_lateness_seconds",
        "How much later than one keepalive after the previous one the peers' heartbeats arrived",
        Lateness(s.heartbeat_lateness.clone()),
    );
    one(
        &mut root,
        "timer_lateness_max_seconds",
        "Worst delay of the heartbeat thread past a deadline",
        s.max_timer_lateness_us as f64 / 1e6,
    );
    let dropped = Counter::<u64>::default();
    dropped.inc_by(log.dropped());
    root.register(
        "events_dropped",
        "Events not recorded for the API because the queue was full",
        dropped,
    );

    let alerts = Family::<Labels, Counter>::default();
    root.register(
        "alert_deliveries",
        "Events handed to [[alert]] programs, by result",
        alerts.clone(),
    );
    alerts
        .get_or_create(&l(&[("result", "delivered")]))
        .inc_by(status.daemon.alerts_delivered);
    alerts
        .get_or_create(&l(&[("result", "failed")]))
        .inc_by(status.daemon.alerts_failed);

    volumes(&mut root, status);

    let mut out = String::new();
    if encode(&mut out, &root).is_err() {
        out = "# the metrics could not be encoded\n".into();
    }
    out
}

/// The brain's fixed-bucket lateness histogram, encoded as a Prometheus
/// histogram.
#[derive(Debug)]
struct Lateness(tandem_core::LatenessHistogram);

impl prometheus_client::encoding::EncodeMetric for Lateness {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        let mut buckets: Vec<(f64, u64)> = tandem_core::LATENESS_BOUNDS_US
            .iter()
            .zip(&h.buckets)
            .map(|(b, c)| (*b as f64 / 1e6, *c))
            .collect();
        buckets.push((f64::MAX, h.buckets[tandem_core::LATENESS_BOUNDS_US.len()]));
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum_us as f64 / 1e6,
            h.count,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

fn volumes(root: &mut Registry, status: &Status) {
    if status.volumes.is_empty() {
        return;
    }
    let role = gauge(
        root,
        "volume_primary",
        "1 when this node's copy of the volume is primary",
    );
    let disk = gauge(
        root,
        "volume_disk_state",
        "This node's disk state (1 for the current state)",
    );
    let connected = gauge(
        root,
        "volume_peer_connected",
        "1 when the volume is connected to the peer",
    );
    let oos = gauge(
        root,
        "volume_out_of_sync_bytes",
        "Bytes out of sync with the peer",
    );
    let done = gauge(
        root,
        "volume_resync_done_ratio",
        "Resync progress with the peer, 0 to 1",
    );
    let bytes = Family::<Labels, Counter>::default();
    root.register(
        "volume_network_bytes",
        "Replication payload bytes sent and received",
        bytes.clone(),
    );
    for v in &status.volumes {
        let name = v.name.as_str();
        set(
            &role,
            &[("volume", name)],
            flag(v.role.to_string().eq_ignore_ascii_case("primary")),
        );
        let now = v.disk.to_string().to_lowercase();
        for s in [
            "diskless",
            "attaching",
            "inconsistent",
            "outdated",
            "consistent",
            "uptodate",
            "failed",
        ] {
            set(&disk, &[("volume", name), ("state", s)], flag(now == s));
        }
        bytes
            .get_or_create(&l(&[("volume", name), ("direction", "sent")]))
            .inc_by(v.counters.ns * 1024);
        bytes
            .get_or_create(&l(&[("volume", name), ("direction", "received")]))
            .inc_by(v.counters.nr * 1024);
        for p in &v.peers {
            let labels = [("volume", name), ("peer", p.node.as_str())];
            set(
                &connected,
                &labels,
                flag(p.connection.to_string() == "Connected"),
            );
            set(&oos, &labels, (p.out_of_sync_kib * 1024) as f64);
            set(&done, &labels, p.done / 100.0);
        }
    }
}

/// The classic Prometheus text format from OpenMetrics text: a counter's
/// HELP and TYPE lines name its `_total` series, and there is no `# EOF`
/// or `_created` series.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::BTreeSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE ", "# UNIT "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match meta {
            Some(("# UNIT ", _)) => continue,
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                if name.ends_with("_created") {
                    continue;
                }
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// `GET /metrics`: OpenMetrics when the scraper asks for it (Prometheus
/// does), the classic text format otherwise.
pub(crate) async fn handler(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    match s.backend.status() {
        Ok(st) => {
            let text = render(&st, &s.events);
            let (kind, body) = if openmetrics {
                (OPENMETRICS, text)
            } else {
                (PROMETHEUS_TEXT, to_prometheus_text(&text))
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Err(e) => crate::routes::error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[cfg(test)]
mod tests {
    use super::to_prometheus_text;

    #[test]
    fn classic_text_names_counters_by_their_total_series() {
        let om = "# HELP tandem_stalls Times.\n# TYPE tandem_stalls counter\ntandem_stalls_total 3\ntandem_stalls_created 1.7e9\n# HELP tandem_up Up.\n# TYPE tandem_up gauge\ntandem_up 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP tandem_stalls_total Times.\n# TYPE tandem_stalls_total counter\ntandem_stalls_total 3\n# HELP tandem_up Up.\n# TYPE tandem_up gauge\ntandem_up 1\n"
        );
    }
}
