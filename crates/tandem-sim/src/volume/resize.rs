//! `resize` in the simulation: the operator grows nodes' backing disks,
//! then runs resize; the simulated driver measures and grows as the
//! daemon's does (a grow is a metadata operation, `VolumeSim::meta_op`,
//! refused when the disk is too small).

use tandem_volumes::VolumeError;

use super::VolumeSim;

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
}
