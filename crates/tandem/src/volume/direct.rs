//! Data writes that bypass the page cache (`O_DIRECT`). A buffered write
//! costs a copy into the page cache and leaves the device work to the next
//! `fdatasync`, which then writes back and flushes (about 0.3 ms for one
//! 4 KiB block on the development VM, against 0.14 ms written directly and
//! flushed: bench/README.md "volumes"). Direct writes need the buffer, the
//! offset and the length aligned to the device's logical block; 4 KiB
//! covers every device. Unaligned writes, and backing files whose file
//! system refuses `O_DIRECT`, go through the page cache as before; the
//! kernel keeps the two coherent. Reads stay buffered.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

/// Alignment of direct writes: buffer address, offset and length.
pub const ALIGN: usize = 4096;

/// The backing file opened a second time for direct writes.
pub struct Direct {
    file: Option<File>,
    /// Cleared when the file system refused a direct write.
    usable: AtomicBool,
}

impl Direct {
    /// Opens `path` with `O_DIRECT`; without it (a file system that
    /// refuses it) every write is buffered.
    pub fn open(path: &Path) -> Self {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        if let Err(e) = &file {
            tracing::info!(
                "{}: no direct I/O ({e}); writes go through the page cache",
                path.display()
            );
        }
        Self {
            usable: AtomicBool::new(file.is_ok()),
            file: file.ok(),
        }
    }

    /// Writes `data` at `offset` to `buffered` or, when aligned, directly
    /// (copied into `scratch` first unless `data` is itself aligned).
    pub fn write_at(
        &self,
        buffered: &File,
        scratch: &mut Vec<u8>,
        data: &[u8],
        offset: u64,
    ) -> std::io::Result<()> {
        let aligned = |n: usize| n.is_multiple_of(ALIGN);
        let file = match &self.file {
            Some(f)
                if self.usable.load(Ordering::Relaxed)
                    && !data.is_empty()
                    && aligned(data.len())
                    && offset.is_multiple_of(ALIGN as u64) =>
            {
                f
            }
            _ => return buffered.write_all_at(data, offset),
        };
        let r = if aligned(data.as_ptr() as usize) {
            file.write_all_at(data, offset)
        } else {
            let buf = aligned_room(scratch, data.len());
            buf.copy_from_slice(data);
            file.write_all_at(buf, offset)
        };
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // The file system takes O_DIRECT opens but not these
                // writes: buffered from now on.
                self.usable.store(false, Ordering::Relaxed);
                tracing::info!("direct write refused ({e}); writes go through the page cache");
                buffered.write_all_at(data, offset)
            }
            r => r,
        }
    }
}

/// `len` bytes of `scratch` starting at an [`ALIGN`]ed address (grown as
/// needed).
fn aligned_room(scratch: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if scratch.len() < len + ALIGN {
        scratch.resize(len + ALIGN, 0);
    }
    let start = scratch.as_ptr().align_offset(ALIGN);
    &mut scratch[start..start + len]
}

/// A copy of `data` at an [`ALIGN`]ed address, so that a direct write of
/// it needs no second copy.
pub fn aligned_copy(data: &[u8]) -> Bytes {
    // Room for the data at an aligned address, never zeroed first (one
    // pass over the data, not two); the capacity is never exceeded, so
    // the buffer does not move.
    let mut v: Vec<u8> = Vec::with_capacity(data.len() + ALIGN);
    let start = v.as_ptr().align_offset(ALIGN).min(ALIGN);
    v.resize(start, 0);
    v.extend_from_slice(data);
    Bytes::from(v).slice(start..)
}

/// `len` bytes read from `r` into an [`ALIGN`]ed buffer (an NBD write's
/// payload: written directly without a second copy).
pub fn aligned_read(r: &mut impl std::io::Read, len: usize) -> std::io::Result<Bytes> {
    let mut v = Vec::new();
    r.read_exact(aligned_room(&mut v, len))?;
    let start = v.as_ptr().align_offset(ALIGN);
    Ok(Bytes::from(v).slice(start..start + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn an_aligned_copy_is_aligned_and_equal() {
        for len in [0, 1, 4096, 300_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let c = aligned_copy(&data);
            assert_eq!(&c[..], &data[..]);
            assert_eq!(c.as_ptr() as usize % ALIGN, 0, "len {len}");
        }
    }

    #[test]
    fn an_aligned_read_is_aligned_and_whole() {
        let data: Vec<u8> = (0..20_000).map(|i| (i % 249) as u8).collect();
        let mut r = std::io::Cursor::new(data.clone());
        let got = aligned_read(&mut r, 12_288).expect("read");
        assert_eq!(&got[..], &data[..12_288]);
        assert_eq!(got.as_ptr() as usize % ALIGN, 0);
        assert!(
            aligned_read(&mut r, 12_288).is_err(),
            "short input is an error"
        );
    }

    #[test]
    fn aligned_and_unaligned_writes_land_where_they_should() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk");
        std::fs::write(&path, vec![0u8; 64 << 10]).expect("create");
        let buffered = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let direct = Direct::open(&path);
        let mut scratch = Vec::new();
        let block: Vec<u8> = (0..8192).map(|i| (i % 253) as u8).collect();
        // Aligned offset and length, from an unaligned buffer (copied).
        let unaligned = Bytes::from(vec![9u8; 8193]).slice(1..);
        direct
            .write_at(&buffered, &mut scratch, &unaligned, 4096)
            .expect("direct");
        direct
            .write_at(&buffered, &mut scratch, &aligned_copy(&block), 16384)
            .expect("aligned");
        // Unaligned offset: buffered.
        direct
            .write_at(&buffered, &mut scratch, &[7u8; 100], 30_001)
            .expect("buffered");
        assert!(
            direct.file.is_some() && direct.usable.load(Ordering::Relaxed),
            "the temporary directory's file system took no direct writes: nothing direct was tested"
        );
        let mut back = Vec::new();
        File::open(&path)
            .expect("reopen")
            .read_to_end(&mut back)
            .expect("read");
        assert!(back[..4096].iter().all(|b| *b == 0));
        assert!(back[4096..12288].iter().all(|b| *b == 9));
        assert_eq!(&back[16384..24576], &block[..]);
        assert!(back[30_001..30_101].iter().all(|b| *b == 7));
        assert!(back[30_101..].iter().all(|b| *b == 0));
    }
}
