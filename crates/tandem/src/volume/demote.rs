//! `secondary` while the export is held open: like DRBD ("Device is held
//! open by someone"), a primary whose FUSE file is still open for writing
//! — a loop device not yet detached, a file system mounted on it in some
//! mount namespace, a program — is not demoted, since every later write of
//! that opener would be refused and lost to it. A loop device's release
//! reaches the FUSE file a moment after `losetup -d` returns, so the
//! command waits up to [`GRACE`] for the count to drop before refusing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::{Runner, control};

/// How long `secondary` waits for the export's openers to let go.
pub const GRACE: Duration = Duration::from_secs(2);

/// Openers of the FUSE file with write access, shared with the file system.
pub type Openers = Arc<AtomicUsize>;

/// A `secondary` waiting for the export's openers.
pub(super) struct Demotion {
    openers: Option<Openers>,
    /// The exported file.
    file: Option<PathBuf>,
    waiting: Option<(Sender<control::Answer>, Instant)>,
}

impl Demotion {
    /// Watches `openers` of `file` (`None` without a FUSE export).
    pub(super) fn new(openers: Option<Openers>, file: Option<PathBuf>) -> Self {
        Self {
            openers,
            file,
            waiting: None,
        }
    }

    /// How many hold the export open for writing.
    fn held(&self) -> usize {
        self.openers
            .as_ref()
            .map_or(0, |o| o.load(Ordering::Acquire))
    }

    /// A demotion is waiting (the engine loop polls every few ms).
    pub(super) fn pending(&self) -> bool {
        self.waiting.is_some()
    }
}

impl Runner {
    /// `secondary`: answered at once when not primary or when nothing
    /// holds the export open for writing; else once the openers let go,
    /// or with a refusal after [`GRACE`].
    pub(super) fn demote_command(&mut self, reply: Sender<control::Answer>) {
        if self.vol.role() != tandem_volumes::Role::Primary || self.demotion.held() == 0 {
            let answer = self.command(control::Command::Secondary);
            let _ = reply.send(answer);
            return;
        }
        if let Some((earlier, _)) = self.demotion.waiting.take() {
            let _ = earlier.send(control::Answer::Refused {
                message: "another `secondary` came meanwhile".into(),
            });
        }
        self.demotion.waiting = Some((reply, Instant::now() + GRACE));
    }

    /// Carries out or refuses a waiting demotion.
    pub(super) fn retry_demotion(&mut self) {
        let Some((_, deadline)) = &self.demotion.waiting else {
            return;
        };
        let held = self.demotion.held();
        if held > 0 && Instant::now() < *deadline {
            return;
        }
        let Some((reply, _)) = self.demotion.waiting.take() else {
            return;
        };
        let answer = if held == 0 || self.vol.role() != tandem_volumes::Role::Primary {
            self.command(control::Command::Secondary)
        } else {
            control::Answer::Refused {
                message: held_open(self.vol.name(), self.demotion.file.as_deref(), held),
            }
        };
        let _ = reply.send(answer);
    }
}

/// The refusal: who holds the export open, and the fix.
fn held_open(name: &str, file: Option<&Path>, held: usize) -> String {
    let file = file.map_or_else(|| "the export".to_string(), |f| f.display().to_string());
    let loops = file_loop_devices(Path::new(&file));
    let by = if loops.is_empty() {
        String::new()
    } else {
        format!(" ({} attached to it)", loops.join(", "))
    };
    format!(
        "{name}: {file} is still open for writing by {held} opener(s){by}: a file system mounted on its loop device, the loop device itself or a program. Demoted now, their later writes would be refused and lost to them. Unmount the file system in every mount namespace that has it (containers, `ip netns exec`), detach the loop device (`losetup -d`), then run `tandem volume secondary {name}` again"
    )
}

/// The loop devices whose backing file is `file` (as this process's mount
/// namespace names it, where the export is mounted).
fn file_loop_devices(file: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let back = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            (name.starts_with("loop") && Path::new(back.trim()) == file)
                .then(|| format!("/dev/{name}"))
        })
        .collect();
    found.sort();
    found
}
