//! The latest incarnation seen of each peer, kept in `state_dir/peers`
//! across restarts, so packets captured before this node restarted cannot
//! be replayed after it: the brain refuses older incarnations. Written by a
//! thread of its own (never disk IO on the heartbeat thread), atomically
//! (a new file renamed over the old one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("peers")
}

/// What the file says: (node name, incarnation) per line `NAME INCARNATION`;
/// lines that do not parse are skipped.
pub fn load(state_dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(file(state_dir))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// Records newer incarnations as the brain reports them.
pub struct Recorder {
    tx: Sender<(String, u64)>,
}

impl Recorder {
    /// Starts the writer thread, beginning from what `known` holds.
    pub fn start(state_dir: &Path, known: Vec<(String, u64)>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<(String, u64)>();
        let path = file(state_dir);
        let mut seen: BTreeMap<String, u64> = known.into_iter().collect();
        std::thread::Builder::new()
            .name("tandem-peers".into())
            .spawn(move || {
                while let Ok((node, inc)) = rx.recv() {
                    let mut changed = false;
                    for (n, i) in std::iter::once((node, inc)).chain(rx.try_iter()) {
                        if seen.get(&n).is_none_or(|old| i > *old) {
                            seen.insert(n, i);
                            changed = true;
                        }
                    }
                    if changed && let Err(e) = write(&path, &seen) {
                        tracing::warn!(
                            "cannot record the peers' incarnations in {}: {e}; after a restart, packets captured before it could be replayed",
                            path.display()
                        );
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// `node` was seen with incarnation `incarnation`.
    pub fn seen(&self, node: &str, incarnation: u64) {
        let _ = self.tx.send((node.to_string(), incarnation));
    }
}

fn write(path: &Path, seen: &BTreeMap<String, u64>) -> std::io::Result<()> {
    let text: String = seen.iter().map(|(n, i)| format!("{n} {i}\n")).collect();
    crate::state_file::replace(path, &text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn survives_a_restart_and_only_grows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = super::Recorder::start(dir.path(), vec![]).expect("writer");
        r.seen("n2", 500);
        r.seen("n3", 7);
        r.seen("n2", 400); // older: ignored
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while super::load(dir.path()) != vec![("n2".to_string(), 500), ("n3".to_string(), 7)] {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                super::load(dir.path())
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
