//! Each `[[alert]]`'s deliveries kept on disk until done, so an event is
//! delivered at least once even if the daemon dies first: `DIR/N.queue`
//! holds one line per event (its environment, JSON), `DIR/N.done` how many
//! of those lines were delivered. A restarted daemon delivers what is left
//! before anything new; when everything is done the queue is emptied.
//! Only the alert's own worker thread touches these files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// One event's environment for the alert program.
pub type Env = BTreeMap<String, String>;

/// The on-disk queue of one alert (see the module documentation).
#[derive(Debug)]
pub struct Spool {
    queue: PathBuf,
    done_path: PathBuf,
    file: File,
    lines: u64,
    done: u64,
}

impl Spool {
    /// Opens alert `index`'s queue in `dir`; returns it and the events not
    /// yet delivered (from before a restart), oldest first.
    pub fn open(dir: &Path, index: usize) -> std::io::Result<(Self, Vec<Env>)> {
        std::fs::create_dir_all(dir)?;
        let queue = dir.join(format!("{index}.queue"));
        let done_path = dir.join(format!("{index}.done"));
        let done: u64 = std::fs::read_to_string(&done_path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let mut entries = Vec::new();
        if let Ok(f) = File::open(&queue) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                // A torn last line (a crash while writing) is skipped.
                if let Ok(env) = serde_json::from_str::<Env>(&line) {
                    entries.push(env);
                }
            }
        }
        let lines = entries.len() as u64;
        let pending = entries
            .into_iter()
            .skip(usize::try_from(done).unwrap_or(usize::MAX))
            .collect();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&queue)?;
        Ok((
            Self {
                queue,
                done_path,
                file,
                lines,
                done: done.min(lines),
            },
            pending,
        ))
    }

    /// Records an event about to be delivered (durably).
    pub fn push(&mut self, env: &Env) -> std::io::Result<()> {
        let mut line = serde_json::to_string(env).map_err(std::io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        self.lines += 1;
        Ok(())
    }

    /// Marks the oldest undelivered event delivered; empties the queue once
    /// all are.
    pub fn done(&mut self) -> std::io::Result<()> {
        self.done = (self.done + 1).min(self.lines);
        if self.done == self.lines {
            self.file.set_len(0)?;
            self.lines = 0;
            self.done = 0;
        }
        let tmp = self.done_path.with_extension("done.new");
        std::fs::write(&tmp, format!("{}\n", self.done))?;
        std::fs::rename(&tmp, &self.done_path)
    }

    /// The queue file (for messages).
    pub fn path(&self) -> &Path {
        &self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(i: u64) -> Env {
        [("CRM_alert_node_sequence".to_string(), i.to_string())].into()
    }

    #[test]
    fn undelivered_events_survive_a_restart_and_delivered_ones_do_not() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (mut s, pending) = Spool::open(d.path(), 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(pending.is_empty());
        for i in 1..=3 {
            s.push(&env(i)).unwrap_or_else(|e| panic!("{e}"));
        }
        s.done().unwrap_or_else(|e| panic!("{e}"));
        drop(s); // the daemon dies with events 2 and 3 undelivered
        let (mut s, pending) = Spool::open(d.path(), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pending, vec![env(2), env(3)]);
        s.done().unwrap_or_else(|e| panic!("{e}"));
        s.done().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::metadata(s.path()).map(|m| m.len()).unwrap_or(1),
            0,
            "not emptied"
        );
        drop(s);
        let (_, pending) = Spool::open(d.path(), 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(pending.is_empty(), "delivered again: {pending:?}");
    }
}
