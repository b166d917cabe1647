//! A simulated backing disk with a volatile write cache: a completed write
//! is volatile until a flush that was issued after it completes (or it was
//! written with FUA); a crash keeps each volatile write or not, at random,
//! as a real cache may. Metadata writes are durable when they complete
//! (the driver writes them with fdatasync).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tandem_volumes::Metadata;

/// One node's backing disk.
#[derive(Clone, Debug)]
pub struct SimDisk {
    durable: Vec<u8>,
    /// Completed, not yet flushed: (offset, data), oldest first.
    volatile: Vec<(u64, Vec<u8>)>,
    /// Writes flushed so far (an index into the history of volatile
    /// writes): a flush issued at `n` makes the first `n` durable.
    flushed_upto: u64,
    written_total: u64,
    /// The metadata as last written.
    pub meta: Option<Metadata>,
}

impl SimDisk {
    /// A zeroed disk of `size` bytes.
    pub fn new(size: u64) -> Self {
        Self {
            durable: vec![0; size as usize],
            volatile: Vec::new(),
            flushed_upto: 0,
            written_total: 0,
            meta: None,
        }
    }

    /// What a read sees: durable data with the volatile writes on top.
    pub fn read(&self, offset: u64, len: u64) -> Vec<u8> {
        let (o, l) = (offset as usize, len as usize);
        let mut buf = self.durable[o..o + l].to_vec();
        for (wo, data) in &self.volatile {
            let (wo, we) = (*wo as usize, *wo as usize + data.len());
            let (s, e) = (wo.max(o), we.min(o + l));
            if s < e {
                buf[s - o..e - o].copy_from_slice(&data[s - wo..e - wo]);
            }
        }
        buf
    }

    /// A write completed.
    pub fn write(&mut self, offset: u64, data: &[u8], fua: bool) {
        if fua {
            let o = offset as usize;
            self.durable[o..o + data.len()].copy_from_slice(data);
        }
        self.volatile.push((offset, data.to_vec()));
        self.written_total += 1;
    }

    /// Where a flush issued now must reach.
    pub fn flush_mark(&self) -> u64 {
        self.written_total
    }

    /// A flush issued at `mark` completed.
    pub fn flushed(&mut self, mark: u64) {
        let already = self.written_total - self.volatile.len() as u64;
        let n = mark.saturating_sub(already).min(self.volatile.len() as u64) as usize;
        for (o, data) in self.volatile.drain(..n) {
            let o = o as usize;
            self.durable[o..o + data.len()].copy_from_slice(&data);
        }
        self.flushed_upto = self.flushed_upto.max(mark);
    }

    /// Power loss: each volatile write survives or not.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng) {
        for (o, data) in std::mem::take(&mut self.volatile) {
            if rng.random_bool(0.5) {
                let o = o as usize;
                self.durable[o..o + data.len()].copy_from_slice(&data);
            }
        }
    }

    /// The operator grew the backing disk to `size` bytes; the new part
    /// holds `fill` (whatever the extended disk held before).
    pub fn extend(&mut self, size: u64, fill: u8) {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > self.durable.len() {
            self.durable.resize(size, fill);
        }
    }

    /// Bytes the backing disk holds.
    pub fn backing_size(&self) -> u64 {
        self.durable.len() as u64
    }

    /// A grow (`resize`) completed: refused beyond the backing disk.
    pub fn grow(&mut self, meta: Metadata) -> Result<(), String> {
        if meta.size > self.backing_size() {
            return Err(format!(
                "the backing disk holds {} bytes, not {}",
                self.backing_size(),
                meta.size
            ));
        }
        self.meta = Some(meta);
        Ok(())
    }

    /// Everything as a read sees it.
    pub fn contents(&self) -> Vec<u8> {
        self.read(0, self.durable.len() as u64)
    }
}
