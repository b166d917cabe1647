//! The event history kept on disk, so it survives restarts: every event
//! the node records is appended as one JSON line to
//! `STATE_DIR/history/events.jsonl` by a thread of its own
//! (`tandem-history`), which rotates the file at 1 MiB and keeps four old
//! ones (`events.1.jsonl` … `events.4.jsonl`): at most 5 MiB. Read by
//! `GET /api/v1/history` and by `tandem history`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::events::{EventLog, EventRecord};

/// The current file's name.
pub const CURRENT: &str = "events.jsonl";
/// Older files kept.
pub const KEEP: usize = 4;
/// Size at which the current file is rotated.
pub const MAX_BYTES: u64 = 1 << 20;

fn old(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("events.{n}.jsonl"))
}

/// Appends records to the history, rotating it.
#[derive(Debug)]
pub struct HistoryWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl HistoryWriter {
    /// Opens (creating) the history in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Self::with_limit(dir, MAX_BYTES)
    }

    /// As [`HistoryWriter::open`], rotating at `max` bytes.
    pub fn with_limit(dir: &Path, max: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(CURRENT))?;
        let size = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            size,
            max,
        })
    }

    /// Appends one record (one line).
    pub fn append(&mut self, r: &EventRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_string(r).map_err(std::io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        if self.size >= self.max {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        for n in (1..KEEP).rev() {
            let from = old(&self.dir, n);
            if from.exists() {
                std::fs::rename(&from, old(&self.dir, n + 1))?;
            }
        }
        std::fs::rename(self.dir.join(CURRENT), old(&self.dir, 1))?;
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(CURRENT))?;
        self.size = 0;
        Ok(())
    }
}

/// Keeps `log`'s events in `dir` from now on, on a thread of its own.
pub fn start(dir: &Path, log: &EventLog) -> std::io::Result<()> {
    let mut w = HistoryWriter::open(dir)?;
    let rx = log.subscribe();
    std::thread::Builder::new()
        .name("tandem-history".into())
        .spawn(move || {
            let mut failing = false;
            for n in rx {
                match w.append(&n.record) {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(
                            "event history: {e}; events are not kept on disk until it works again"
                        );
                    }
                    Err(_) => {}
                }
            }
        })?;
    Ok(())
}

/// The records in `dir` at or after `since_ms` (Unix milliseconds), oldest
/// first. Lines that do not parse (a torn last line after a crash) are
/// skipped.
pub fn read(dir: &Path, since_ms: u64) -> Vec<EventRecord> {
    let mut files: Vec<PathBuf> = (1..=KEEP).rev().map(|n| old(dir, n)).collect();
    files.push(dir.join(CURRENT));
    let mut out = Vec::new();
    for f in files {
        let Ok(file) = File::open(&f) else { continue };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(r) = serde_json::from_str::<EventRecord>(&line)
                && r.time_ms >= since_ms
            {
                out.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> EventRecord {
        EventRecord {
            seq: i,
            time_ms: 1000 + i,
            node: "n1".into(),
            kind: "node".into(),
            warning: false,
            text: format!("event {i} {}", "x".repeat(100)),
            about_node: None,
            group: None,
            resource: None,
        }
    }

    #[test]
    fn rotates_keeps_a_bounded_tail_and_reads_in_order() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut w = HistoryWriter::with_limit(d.path(), 2000).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..200 {
            w.append(&rec(i)).unwrap_or_else(|e| panic!("{e}"));
        }
        let all = read(d.path(), 0);
        assert!(!old(d.path(), KEEP + 1).exists());
        let total: u64 = std::fs::read_dir(d.path())
            .map(|r| {
                r.flatten()
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0);
        assert!(
            total <= 2000 * (KEEP as u64 + 1) + 200,
            "{total} bytes kept"
        );
        assert_eq!(all.last().map(|r| r.seq), Some(199));
        assert!(
            all.windows(2).all(|w| w[0].seq + 1 == w[1].seq),
            "a gap or disorder"
        );
        assert!(all.len() < 200, "nothing was rotated away");
        // A torn line is skipped; reading from a time filters.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(CURRENT))
            .and_then(|mut f| f.write_all(b"{\"seq\": 9"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(d.path(), 1000 + 195).len(), 5);
    }
}
