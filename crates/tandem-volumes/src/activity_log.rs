//! The activity log: the 4 MiB extents the primary may be writing. An
//! extent is made hot (recorded durably in the metadata) before the first
//! write into it; after a crash of the primary, every hot extent is
//! treated as out of sync, so the resync covers writes that reached one
//! side only.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Bytes per extent.
pub const EXTENT: u64 = 4 << 20;

/// The hot extents, least recently used first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityLog {
    hot: VecDeque<u64>,
    limit: usize,
}

impl ActivityLog {
    /// An empty log that keeps at most `limit` extents hot.
    pub fn new(limit: usize) -> Self {
        Self {
            hot: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// The extents touched by `len` bytes at `offset`.
    pub fn extents_of(offset: u64, len: u64) -> std::ops::Range<u64> {
        if len == 0 {
            return 0..0;
        }
        offset / EXTENT..(offset + len).div_ceil(EXTENT)
    }

    /// Marks the extents of a write hot, most recent last. Returns whether
    /// the set of hot extents changed (the metadata must then be written
    /// durably before the write is).
    pub fn touch(&mut self, offset: u64, len: u64) -> bool {
        let mut changed = false;
        for e in Self::extents_of(offset, len) {
            if let Some(pos) = self.hot.iter().position(|x| *x == e) {
                self.hot.remove(pos);
            } else {
                changed = true;
            }
            self.hot.push_back(e);
        }
        while self.hot.len() > self.limit {
            self.hot.pop_front();
            changed = true;
        }
        changed
    }

    /// Whether every extent of a write is already hot.
    pub fn covers(&self, offset: u64, len: u64) -> bool {
        Self::extents_of(offset, len).all(|e| self.hot.contains(&e))
    }

    /// The hot extents.
    pub fn hot(&self) -> impl Iterator<Item = u64> + '_ {
        self.hot.iter().copied()
    }

    /// Forgets every extent (nothing is being written).
    pub fn clear(&mut self) {
        self.hot.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_extents_change_the_log_hot_ones_do_not() {
        let mut al = ActivityLog::new(2);
        assert!(al.touch(0, 4096));
        assert!(!al.touch(100, 4096));
        assert!(al.covers(0, EXTENT));
        assert!(al.touch(EXTENT, 1));
        assert!(al.touch(2 * EXTENT, 1)); // evicts extent 0
        assert_eq!(al.hot().collect::<Vec<_>>(), vec![1, 2]);
        assert!(!al.covers(0, 1));
    }
}
