//! `resize` in the simulation: the operator grows nodes' backing disks,
//! then runs resize; the simulated driver measures and grows as the
//! daemon's does (a grow is a metadata write that may be refused when the
//! disk is too small).

use tandem_volumes::{IoId, Metadata, VolumeError};

use super::{DiskOp, Ev, VolumeSim};

impl VolumeSim {
    /// The operator grows node `i`'s backing disk to `size` bytes; the
    /// new part holds a pattern of its own on each node (whatever the
    /// extended disk held), so a new area left unsynced shows.
    pub fn grow_backing(&mut self, i: usize, size: u64) {
        let fill = 0xA0 | (i as u8 & 0xF);
        self.nodes[i].disk.extend(size, fill);
    }

    /// `resize [--assume-clean]` on node `i` (none while it is down).
    pub fn resize(&mut self, i: usize, clean: bool) -> Option<Result<(), VolumeError>> {
        let room = self.nodes[i].disk.backing_size();
        self.with_volume(i, |v, now| v.resize(now, room, clean))
    }

    /// The application may write anywhere in `size` bytes from now on.
    pub fn app_grow(&mut self, size: u64) {
        self.size = size;
        self.app.grow(size);
    }

    pub(super) fn measure_room(&mut self, i: usize) {
        let (room, now) = (self.nodes[i].disk.backing_size(), self.now);
        if let Some(v) = self.nodes[i].vol.as_mut() {
            v.room_measured(now, room);
        }
    }

    pub(super) fn grow(&mut self, i: usize, io: IoId, meta: Box<Metadata>) {
        let (lo, hi) = self.meta_latency_us;
        let at = self.now
            + std::time::Duration::from_micros(rand::Rng::random_range(&mut self.rng, lo..hi));
        let life = self.nodes[i].life;
        self.schedule(
            at,
            Ev::Disk {
                node: i,
                life,
                io,
                op: DiskOp::Grow { meta },
            },
        );
    }
}
