//! Logging to the systemd journal with structured fields, when the daemon
//! runs under systemd (its stderr is the journal: `JOURNAL_STREAM`
//! matches, systemd's "automatic protocol upgrading"). Each line carries
//! `TANDEM_NODE` (this node) and, for cluster events, `TANDEM_EVENT` (the
//! kind: node, link, group, resource, …), `TANDEM_PEER`, `TANDEM_GROUP`
//! and `TANDEM_RESOURCE`, so `journalctl -u tandem TANDEM_GROUP=web`
//! shows one group's history.
//!
//! The layer never blocks the thread that logs (the heartbeat thread logs
//! events): records go through a bounded queue to a writer thread
//! (`tandem-journal`) that sends them to the journal's socket; a full queue
//! drops and counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

use libsystemd::logging::Priority;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// The structured fields the node loop attaches to cluster events; the
/// stderr format leaves them out (the message already says them).
pub const EVENT_FIELDS: [&str; 4] = ["event", "peer", "group", "resource"];

/// Records waiting for the writer thread.
const QUEUE: usize = 4096;

struct Record {
    priority: Priority,
    message: String,
    fields: Vec<(String, String)>,
}

/// A `tracing` layer writing to the journal (see the module documentation).
pub struct JournalLayer {
    tx: SyncSender<Record>,
    node: String,
    dropped: AtomicU64,
}

/// The journal layer when stderr is connected to the journal; `None`
/// otherwise (then the daemon logs to stderr).
pub fn layer(node_hint: &str) -> Option<JournalLayer> {
    if !libsystemd::logging::connected_to_journal() {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Record>(QUEUE);
    std::thread::Builder::new()
        .name("tandem-journal".into())
        .spawn(move || {
            while let Ok(r) = rx.recv() {
                let vars = r.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                if libsystemd::logging::journal_send(r.priority, &r.message, vars).is_err() {
                    // The journal is gone: say so once, on stderr.
                    eprintln!(
                        "tandem: cannot write to the journal; logging stops: {}",
                        r.message
                    );
                    break;
                }
            }
        })
        .ok()?;
    Some(JournalLayer {
        tx,
        node: node_hint.to_string(),
        dropped: AtomicU64::new(0),
    })
}

#[derive(Default)]
struct Fields {
    message: String,
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else if !value.is_empty() {
            self.extra
                .push((journal_name(field.name()), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.extra
                .push((journal_name(field.name()), format!("{value:?}")));
        }
    }
}

/// `group` → `TANDEM_GROUP` (journal field names are upper case).
fn journal_name(field: &str) -> String {
    format!("TANDEM_{}", field.to_ascii_uppercase())
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => Priority::Error,
            tracing::Level::WARN => Priority::Warning,
            tracing::Level::INFO => Priority::Info,
            _ => Priority::Debug,
        };
        let mut fields = f.extra;
        fields.push(("TANDEM_NODE".into(), self.node.clone()));
        fields.push(("SYSLOG_IDENTIFIER".into(), "tandem".into()));
        fields.push((
            "TANDEM_TARGET".into(),
            event.metadata().target().to_string(),
        ));
        let record = Record {
            priority,
            message: f.message,
            fields,
        };
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn field_names_are_journal_names() {
        assert_eq!(super::journal_name("group"), "TANDEM_GROUP");
    }
}
