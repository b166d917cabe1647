//! Where the daemon's log lines go: stderr (or, under systemd, the journal
//! with structured fields, `journal.rs`), plus ha.cf's `logfile`. Every
//! sink is fed through a queue by a writer thread, so a slow stderr, disk or
//! journal never blocks the heartbeat thread.

use std::path::Path;

use anyhow::{Context, anyhow};

use super::journal;

/// Sets up logging: stderr, or the journal with structured fields when
/// stderr is the journal (under systemd; `journal.rs`), plus `logfile`
/// when given (ha.cf's logfile).
/// The node loop logs; a slow stderr or disk must never block it, so
/// each sink is fed through an in-memory queue by a writer thread.
pub fn init_logging(
    logfile: Option<&Path>,
    node: &str,
) -> anyhow::Result<Vec<tracing_appender::non_blocking::WorkerGuard>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (err_writer, g1) = tracing_appender::non_blocking(std::io::stderr());
    let mut guards = vec![g1];
    // The structured fields of cluster events are for the journal; the
    // message already says them.
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name() == "message" {
            write!(w, "{value:?}")
        } else if journal::EVENT_FIELDS.contains(&field.name()) {
            Ok(())
        } else {
            write!(w, " {}={value:?}", field.name())
        }
    });
    let journal = journal::layer(node);
    let stderr_layer = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .fmt_fields(fields)
            .with_writer(err_writer)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let file_layer = match logfile {
        Some(p) => {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("open logfile {}", p.display()))?;
            let (w, g) = tracing_appender::non_blocking(f);
            guards.push(g);
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(w)
                    .with_target(false)
                    .with_ansi(false),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr_layer)
        .with(journal)
        .with(file_layer)
        .try_init()
        .map_err(|e| anyhow!("logging: {e}"))?;
    Ok(guards)
}
