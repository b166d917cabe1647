//! Where the daemon's log lines go: stderr (or, under systemd, the journal
//! with structured fields, `journal.rs`), plus ha.cf's `logfile`. Every
//! sink is fed through a queue by a writer thread, so a slow stderr, disk or
//! journal never blocks the heartbeat thread.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

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
            let file = Arc::new(LogFile::open(p)?);
            let _ = LOG_FILE.set(file.clone());
            let (w, g) = tracing_appender::non_blocking(LogFileWriter(file));
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

/// The `logfile`, reopened by path on SIGHUP (after logrotate renamed it).
struct LogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// The daemon's log file, once logging is set up with one.
static LOG_FILE: OnceLock<Arc<LogFile>> = OnceLock::new();

impl LogFile {
    fn open(p: &Path) -> anyhow::Result<Self> {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        Ok(Self {
            path: p.to_path_buf(),
            file: Mutex::new(Self::open_file(p)?),
        })
    }

    fn open_file(p: &Path) -> anyhow::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("open logfile {}", p.display()))
    }
}

/// Reopens the log file by its path (SIGHUP, after a rotation renamed it):
/// `None` without a log file. On failure the old file is kept.
pub fn reopen_logfile() -> Option<anyhow::Result<PathBuf>> {
    let f = LOG_FILE.get()?;
    Some(LogFile::open_file(&f.path).map(|new| {
        if let Ok(mut cur) = f.file.lock() {
            *cur = new;
        }
        f.path.clone()
    }))
}

/// Writes to the current log file.
struct LogFileWriter(Arc<LogFile>);

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .file
            .lock()
            .map_err(|_| std::io::Error::other("log file lock poisoned"))?
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .file
            .lock()
            .map_err(|_| std::io::Error::other("log file lock poisoned"))?
            .flush()
    }
}
