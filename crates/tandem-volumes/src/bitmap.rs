//! The out-of-sync bitmap kept for one peer: one bit per 4 KiB block, set
//! while the block may differ on that peer.

use serde::{Deserialize, Serialize};

/// Bytes per bitmap bit.
pub const BLOCK: u64 = 4096;

/// One bit per block of the volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bitmap {
    words: Vec<u64>,
    blocks: u64,
    set: u64,
}

impl Bitmap {
    /// A clear bitmap for a volume of `size` bytes.
    pub fn new(size: u64) -> Self {
        let blocks = size.div_ceil(BLOCK);
        let words = usize::try_from(blocks.div_ceil(64)).unwrap_or(0);
        Self {
            words: vec![0; words],
            blocks,
            set: 0,
        }
    }

    /// Blocks covered.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Blocks set.
    pub fn count(&self) -> u64 {
        self.set
    }

    /// Whether block `b` is set.
    pub fn get(&self, b: u64) -> bool {
        let (w, bit) = (b / 64, b % 64);
        usize::try_from(w)
            .ok()
            .and_then(|w| self.words.get(w))
            .is_some_and(|x| x & (1 << bit) != 0)
    }

    /// Sets block `b` (ignored beyond the end).
    pub fn set(&mut self, b: u64) {
        if b >= self.blocks {
            return;
        }
        let (w, bit) = ((b / 64) as usize, b % 64);
        if self.words[w] & (1 << bit) == 0 {
            self.words[w] |= 1 << bit;
            self.set += 1;
        }
    }

    /// Clears block `b`.
    pub fn clear(&mut self, b: u64) {
        if b >= self.blocks {
            return;
        }
        let (w, bit) = ((b / 64) as usize, b % 64);
        if self.words[w] & (1 << bit) != 0 {
            self.words[w] &= !(1 << bit);
            self.set -= 1;
        }
    }

    /// Clears the `n` blocks from `b`.
    pub fn clear_run(&mut self, b: u64, n: u64) {
        for k in b..b.saturating_add(n) {
            self.clear(k);
        }
    }

    /// Sets every block touched by `len` bytes at `offset`.
    pub fn set_range(&mut self, offset: u64, len: u64) {
        for b in blocks_of(offset, len) {
            self.set(b);
        }
    }

    /// Sets every block.
    pub fn set_all(&mut self) {
        for b in 0..self.blocks {
            self.set(b);
        }
    }

    /// Clears every block.
    pub fn clear_all(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.set = 0;
    }

    /// Covers a volume of `size` bytes from now on: new blocks clear,
    /// blocks beyond a smaller size dropped (`resize`).
    pub fn resize(&mut self, size: u64) {
        let blocks = size.div_ceil(BLOCK);
        let words = usize::try_from(blocks.div_ceil(64)).unwrap_or(0);
        self.words.resize(words, 0);
        if !blocks.is_multiple_of(64)
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << (blocks % 64)) - 1;
        }
        self.blocks = blocks;
        self.set = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
    }

    /// Adds every block set in `other` (same size; extra words ignored).
    pub fn merge(&mut self, other: &Bitmap) {
        for b in other.iter() {
            self.set(b);
        }
    }

    /// The first set block at or after `from`.
    pub fn next_set(&self, from: u64) -> Option<u64> {
        (from..self.blocks).find(|b| self.get(*b))
    }

    /// Every set block, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(move |(i, w)| {
            let w = *w;
            (0..64u64)
                .filter(move |bit| w & (1 << bit) != 0)
                .map(move |bit| i as u64 * 64 + bit)
        })
    }
}

/// The blocks touched by `len` bytes at `offset`.
pub fn blocks_of(offset: u64, len: u64) -> std::ops::Range<u64> {
    if len == 0 {
        return 0..0;
    }
    offset / BLOCK..(offset + len).div_ceil(BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_keeps_the_blocks_it_still_covers() {
        let mut b = Bitmap::new(100 * BLOCK);
        b.set(3);
        b.set(99);
        b.resize(300 * BLOCK);
        assert_eq!((b.blocks(), b.count()), (300, 2));
        assert!(b.get(99) && !b.get(100) && !b.get(299));
        b.set(299);
        b.resize(70 * BLOCK);
        assert_eq!((b.blocks(), b.count()), (70, 1));
        assert!(b.get(3) && !b.get(99));
        b.resize(300 * BLOCK);
        assert_eq!(b.count(), 1, "dropped blocks came back");
    }

    #[test]
    fn ranges_count_and_merge() {
        let mut a = Bitmap::new(10 * BLOCK + 1);
        assert_eq!(a.blocks(), 11);
        a.set_range(BLOCK - 1, 2); // straddles blocks 0 and 1
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 1]);
        a.set(1);
        assert_eq!(a.count(), 2);
        let mut b = Bitmap::new(10 * BLOCK + 1);
        b.set(10);
        b.set(99); // beyond the end: ignored
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.next_set(2), Some(10));
        a.clear(10);
        assert_eq!((a.count(), a.next_set(2)), (2, None));
        assert_eq!(blocks_of(0, 0), 0..0);
    }
}
