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
//! next one goes. Events are queued on disk before delivery
//! (`alert_spool.rs`), so a daemon that dies first delivers them when it
//! starts again (marked `TANDEM_ALERT_REPLAYED=1`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tandem_agents::exec::{Exit, run};

use super::alert_spool::{Env, Spool};
use tandem_api::{EventLog, Numbered};
use tandem_config::{Alert, AlertAction};
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
    /// This daemon's incarnation (sequence numbers restart with it).
    pub incarnation: u64,
    /// Where each alert's undelivered events are kept (`alert_spool.rs`).
    pub spool_dir: std::path::PathBuf,
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
        let label = match &alert.action {
            AlertAction::Program(p) => p.display().to_string(),
            AlertAction::Mail { to, .. } => format!("mail to {to}"),
        };
        let (spool, pending) = match Spool::open(&origin.spool_dir, i) {
            Ok((spool, pending)) => (Some(Arc::new(Mutex::new(spool))), pending),
            Err(e) => {
                tracing::warn!(
                    "alert {label}: cannot keep its queue in {} ({e}); events are delivered from memory only",
                    origin.spool_dir.display()
                );
                (None, Vec::new())
            }
        };
        // The queuer writes each wanted event to the spool as it arrives
        // (so it survives a crash even while an earlier delivery hangs);
        // the deliverer runs the program for each, in order.
        let (tx, queued) = std::sync::mpsc::channel::<Env>();
        let queuer_spool = spool.clone();
        let queuer_label = label.clone();
        let (qalert, qorigin) = (alert.clone(), origin.clone());
        std::thread::Builder::new()
            .name(format!("tandem-alertq-{i}"))
            .spawn(move || {
                for n in rx {
                    if !wanted(&qalert, &n.event) {
                        continue;
                    }
                    let env = environment(&qalert, &qorigin, &n);
                    if let Some(s) = &queuer_spool
                        && let Ok(mut s) = s.lock()
                        && let Err(e) = s.push(&env)
                    {
                        tracing::warn!("alert {queuer_label}: queue {}: {e}", s.path().display());
                    }
                    if tx.send(env).is_err() {
                        break;
                    }
                }
            })?;
        std::thread::Builder::new()
            .name(format!("tandem-alert-{i}"))
            .spawn(move || {
                if !pending.is_empty() {
                    tracing::info!(
                        "alert {label}: delivering {} event(s) left from before the restart",
                        pending.len()
                    );
                }
                let replayed = pending.into_iter().map(|mut env| {
                    env.insert("TANDEM_ALERT_REPLAYED".into(), "1".into());
                    env
                });
                for env in replayed.chain(queued) {
                    deliver(&alert, &env, &shared.alerts);
                    if let Some(s) = &spool
                        && let Ok(mut s) = s.lock()
                    {
                        let _ = s.done();
                    }
                }
            })?;
    }
    Ok(())
}

/// Whether `alert` takes `e`: its kinds, its groups, and for mail only
/// takeovers and releases (as Heartbeat's MailTo mailed at start and stop).
fn wanted(alert: &Alert, e: &Event) -> bool {
    let group = e.subject().group;
    alert.kinds.iter().any(|k| k == e.kind())
        && (alert.groups.is_empty() || group.is_some_and(|g| alert.groups.iter().any(|x| x == g)))
        && (matches!(alert.action, AlertAction::Program(_))
            || matches!(e, Event::Acquiring { .. } | Event::Releasing { .. }))
}

/// The mail alert: the message through the MTA's `sendmail -t`.
const MAIL: &str = r#"printf 'To: %s\nSubject: %s\nX-Tandem-Sequence: %s\n\n%s\n' "$TANDEM_MAIL_TO" "$TANDEM_MAIL_SUBJECT" "$CRM_alert_node_sequence" "$TANDEM_ALERT_TEXT" | "$TANDEM_SENDMAIL" -t"#;

fn deliver(alert: &Alert, env: &Env, stats: &AlertStats) {
    let (program, args): (String, Vec<&str>) = match &alert.action {
        AlertAction::Program(p) => (p.to_string_lossy().to_string(), Vec::new()),
        AlertAction::Mail { .. } => ("/bin/sh".into(), vec!["-c", MAIL]),
    };
    let seq = env
        .get("CRM_alert_node_sequence")
        .map_or("?", String::as_str);
    let text = env.get("TANDEM_ALERT_TEXT").map_or("", String::as_str);
    let mut wait = Duration::from_secs(1);
    for attempt in 0..=alert.retries {
        let why = match run(&program, &args, env, alert.timeout) {
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
                "alert {program}: event {seq} ({text}) not delivered after {} attempt(s): {why}",
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

/// `HH:MM:SS.uuuuuu` (UTC), Pacemaker's default timestamp format, with
/// the Unix seconds and microseconds.
fn timestamp(at: SystemTime) -> (String, u64, u32) {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let text = time::format_description::parse_borrowed::<2>(
        "[hour]:[minute]:[second].[subsecond digits:6]",
    )
    .ok()
    .and_then(|f| time::OffsetDateTime::from(at).format(&f).ok())
    .unwrap_or_default();
    (text, d.as_secs(), d.subsec_micros())
}

/// The alert program's environment.
pub fn environment(alert: &Alert, origin: &Origin, n: &Numbered) -> Env {
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
        ("TANDEM_ALERT_INCARNATION", origin.incarnation.to_string()),
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
    if let AlertAction::Mail {
        to,
        subject,
        sendmail,
    } = &alert.action
    {
        let prefix = subject.as_deref().unwrap_or("tandem");
        env.insert("TANDEM_MAIL_TO".into(), to.clone());
        env.insert(
            "TANDEM_MAIL_SUBJECT".into(),
            format!("{prefix}: {} on {}", n.event, origin.node),
        );
        env.insert("TANDEM_SENDMAIL".into(), sendmail.display().to_string());
    }
    env
}
