//! `[[alert]]`: every transition of the chosen kinds is handed to the
//! alert program **in order, at least once, with a sequence number**, with
//! Pacemaker's alert environment (`CRM_alert_kind`, `CRM_alert_node`,
//! `CRM_alert_rsc`, `CRM_alert_task`, `CRM_alert_rc`, `CRM_alert_desc`,
//! `CRM_alert_node_sequence`, `CRM_alert_timestamp`, …), so Pacemaker's
//! sample agents (`alert_file.sh.sample`, `alert_smtp.sh.sample`,
//! `alert_snmp.sh.sample`) work unchanged, plus `TANDEM_ALERT_*` for what
//! Pacemaker lacks (the event's kind in tandem's words, its text, the
//! group, the cluster).
//!
//! Each `[[alert]]` has a worker thread of its own (`tandem-alert-N`) fed
//! by the event log: a hanging or failing agent delays only its own
//! deliveries, never the cluster. A run that fails (exit code not 0, or
//! killed at its timeout) is retried after 1 s, 2 s, 4 s… up to `retries`
//! times; then the event is counted as undelivered and logged, and the
//! next one goes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tandem_agents::exec::{Exit, run};
use tandem_api::{EventLog, Numbered};
use tandem_config::Alert;
use tandem_core::Event;

/// Deliveries that failed after every retry, all alerts together.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Events delivered.
    pub delivered: AtomicU64,
    /// Events given up on.
    pub failed: AtomicU64,
}

/// Who this node is, for the environment.
#[derive(Clone, Debug)]
pub struct Origin {
    /// Cluster name.
    pub cluster: String,
    /// This node.
    pub node: String,
    /// This node's id.
    pub node_id: u16,
}

/// Starts one worker per alert, subscribed to `log`; deliveries are
/// counted in `shared.alerts`.
pub fn start(
    alerts: &[Alert],
    origin: &Origin,
    log: &EventLog,
    shared: &Arc<super::node_loop::Shared>,
) -> std::io::Result<()> {
    for (i, alert) in alerts.iter().enumerate() {
        let rx = log.subscribe();
        let (alert, origin, shared) = (alert.clone(), origin.clone(), shared.clone());
        std::thread::Builder::new()
            .name(format!("tandem-alert-{i}"))
            .spawn(move || {
                for n in rx {
                    if alert.kinds.iter().any(|k| k == n.event.kind()) {
                        deliver(&alert, &origin, &n, &shared.alerts);
                    }
                }
            })?;
    }
    Ok(())
}

fn deliver(alert: &Alert, origin: &Origin, n: &Numbered, stats: &AlertStats) {
    let env = environment(alert, origin, n);
    let program = alert.program.to_string_lossy();
    let mut wait = Duration::from_secs(1);
    for attempt in 0..=alert.retries {
        let why = match run(&program, &[], &env, alert.timeout) {
            Exit::Code(0, _) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Exit::Code(c, out) => format!("exit code {c}: {out}"),
            Exit::Signal(s) => format!("killed by signal {s}"),
            Exit::TimedOut => format!("still running after {:?}; killed", alert.timeout),
            Exit::SpawnFailed(e) => e,
        };
        if attempt == alert.retries {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "alert {program}: event {} ({}) not delivered after {} attempt(s): {why}",
                n.seq,
                n.event,
                attempt + 1
            );
            return;
        }
        std::thread::sleep(wait);
        wait *= 2;
    }
}

/// What Pacemaker calls the event, and its node, description, task, rc,
/// resource and interval.
struct Pacemaker {
    kind: &'static str,
    node: String,
    desc: String,
    task: String,
    rc: String,
    rsc: String,
    exec_ms: String,
}

fn pacemaker(e: &Event, origin: &Origin) -> Pacemaker {
    let mut p = Pacemaker {
        kind: e.kind(),
        node: origin.node.clone(),
        desc: e.to_string(),
        task: String::new(),
        rc: String::new(),
        rsc: String::new(),
        exec_ms: String::new(),
    };
    let op_word = |op: &tandem_core::Op| format!("{op:?}").to_lowercase();
    match e {
        Event::Dead { node, .. } | Event::Left { node } => {
            p.node.clone_from(node);
            p.desc = "lost".into();
        }
        Event::Joined { node, .. } | Event::Back { node, .. } | Event::Restarted { node, .. } => {
            p.node.clone_from(node);
            p.desc = "member".into();
        }
        Event::Late { node, .. } | Event::Resumed { node, .. } => {
            p.node.clone_from(node);
            p.desc = if matches!(e, Event::Late { .. }) {
                "late"
            } else {
                "member"
            }
            .into();
        }
        Event::OpDone {
            resource, op, took, ..
        } => {
            (p.rsc, p.task, p.rc, p.desc) =
                (resource.clone(), op_word(op), "0".into(), "ok".into());
            p.exec_ms = took.as_millis().to_string();
        }
        Event::StartFailed {
            resource, detail, ..
        } => {
            (p.rsc, p.task, p.rc, p.desc) =
                (resource.clone(), "start".into(), "1".into(), detail.clone());
        }
        Event::StopFailed {
            resource, detail, ..
        } => {
            (p.rsc, p.task, p.rc, p.desc) =
                (resource.clone(), "stop".into(), "1".into(), detail.clone());
        }
        Event::MonitorFailed {
            resource, detail, ..
        } => {
            (p.rsc, p.task, p.rc, p.desc) = (
                resource.clone(),
                "monitor".into(),
                "7".into(),
                detail.clone(),
            );
        }
        Event::Fenced { node, error } => {
            p.task = "off".into();
            p.rc = if error.is_none() { "0" } else { "1" }.into();
            p.desc = match error {
                None => format!("Operation off of {node} by {}: OK", origin.node),
                Some(err) => format!("Operation off of {node} by {}: {err}", origin.node),
            };
            p.node.clone_from(node);
        }
        _ => {}
    }
    p
}

/// `HH:MM:SS.uuuuuu` (UTC), Pacemaker's default timestamp format.
fn timestamp(at: SystemTime) -> (String, u64, u32) {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let day = secs % 86_400;
    let text = format!(
        "{:02}:{:02}:{:02}.{:06}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        d.subsec_micros()
    );
    (text, secs, d.subsec_micros())
}

/// The alert program's environment.
pub fn environment(alert: &Alert, origin: &Origin, n: &Numbered) -> BTreeMap<String, String> {
    let p = pacemaker(&n.event, origin);
    let (ts, epoch, usec) = timestamp(n.at);
    let subject = n.event.subject();
    let interval = if p.task == "monitor" { "1000" } else { "0" };
    let mut env: BTreeMap<String, String> = [
        (
            "CRM_alert_version",
            format!("tandem-{}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "CRM_alert_recipient",
            alert.recipient.clone().unwrap_or_default(),
        ),
        ("CRM_alert_node_sequence", n.seq.to_string()),
        ("CRM_alert_timestamp", ts),
        ("CRM_alert_timestamp_epoch", epoch.to_string()),
        ("CRM_alert_timestamp_usec", usec.to_string()),
        ("CRM_alert_kind", p.kind.to_string()),
        ("CRM_alert_node", p.node),
        ("CRM_alert_nodeid", origin.node_id.to_string()),
        ("CRM_alert_desc", p.desc),
        ("CRM_alert_task", p.task),
        ("CRM_alert_rc", p.rc),
        ("CRM_alert_rsc", p.rsc),
        ("CRM_alert_interval", interval.to_string()),
        ("CRM_alert_target_rc", "0".to_string()),
        ("CRM_alert_status", "0".to_string()),
        ("CRM_alert_exec_time", p.exec_ms),
        ("TANDEM_ALERT_KIND", n.event.kind().to_string()),
        ("TANDEM_ALERT_TEXT", n.event.to_string()),
        ("TANDEM_ALERT_SEQUENCE", n.seq.to_string()),
        ("TANDEM_ALERT_CLUSTER", origin.cluster.clone()),
        ("TANDEM_ALERT_LOCAL_NODE", origin.node.clone()),
        ("TANDEM_ALERT_WARNING", n.event.is_warning().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(g) = subject.group {
        env.insert("TANDEM_ALERT_GROUP".into(), g.to_string());
    }
    if let Some(k) = n.event.acquire_kind() {
        env.insert("TANDEM_ALERT_REASON".into(), k.to_string());
    }
    env
}
