//! `tandem volume resize [--assume-clean]`, the driver's part: the backing
//! disk is measured on the metadata thread (after every earlier metadata
//! write), the engine runs the round (`tandem_volumes` engine `resize`),
//! and once this node grew, the exports follow: the FUSE file's size (a
//! loop device's `losetup -c` asks for it at once; a `stat` within the
//! attribute cache's second may still show the old one) and what new NBD
//! clients are told. The operator's answer waits for this node's outcome.

use std::sync::mpsc::Sender;

use tandem_volumes::VolumeEvent;

use super::{Runner, control, fuse};

/// An operator's resize waiting for the disk's measurement.
pub struct Ask {
    clean: bool,
    reply: Sender<control::Answer>,
}

/// What the engine thread keeps for resizes.
pub(super) struct Grower {
    /// The operator waiting for this node's outcome.
    reply: Option<Sender<control::Answer>>,
    /// The FUSE export's size, if exported.
    fuse: Option<fuse::Size>,
}

impl Grower {
    /// For a FUSE export of `fuse` bytes, if any.
    pub(super) fn new(fuse: Option<fuse::Size>) -> Self {
        Self { reply: None, fuse }
    }
}

impl Runner {
    /// The operator's `resize`: measured first, then asked of the engine.
    pub(super) fn resize_command(&mut self, clean: bool, reply: Sender<control::Answer>) {
        if self.grower.reply.is_some() {
            let message = format!("{}: a resize is already running", self.vol.name());
            let _ = reply.send(control::Answer::Refused { message });
            return;
        }
        self.disk.measure(Some(Ask { clean, reply }));
    }

    /// The disk was measured: for the engine (a peer asked), or for the
    /// operator's command.
    pub(super) fn room(&mut self, room: u64, ask: Option<Ask>) {
        let now = self.now();
        let Some(Ask { clean, reply }) = ask else {
            return self.vol.room_measured(now, room);
        };
        match self.vol.resize(now, room, clean) {
            Ok(()) => self.grower.reply = Some(reply),
            Err(e) => {
                let _ = reply.send(control::Answer::Refused {
                    message: e.to_string(),
                });
            }
        }
    }

    /// A resize's outcome here: the exports follow a grow; the operator
    /// hears either way.
    pub(super) fn resize_event(&mut self, e: &VolumeEvent) {
        let answer = match e {
            VolumeEvent::Resized { to, .. } => {
                self.size = *to;
                if let Some(size) = &self.grower.fuse {
                    size.store(*to, std::sync::atomic::Ordering::Release);
                }
                control::Answer::Done {
                    message: format!("{}: {e}", self.vol.name()),
                }
            }
            VolumeEvent::ResizeFailed { .. } => control::Answer::Refused {
                message: format!("{}: {e}", self.vol.name()),
            },
            _ => return,
        };
        if let Some(reply) = self.grower.reply.take() {
            let _ = reply.send(answer);
        }
    }
}
