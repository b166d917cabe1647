//! Where a volume's metadata lives on disk: a region at the end of the
//! backing file (internal) or a file of its own (external), holding two
//! slots written alternately. Each slot is `magic, sequence, length,
//! xxh3 checksum, postcard bytes`; the newest valid slot wins, so a crash
//! in the middle of a metadata write leaves the previous one in place.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tandem_config::MetaPlace;
use tandem_volumes::Metadata;

const MAGIC: u64 = 0x544E_444D_564F_4C31; // "TNDMVOL1"
const HEADER: u64 = 32;

/// Why the metadata could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An OS error on the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No valid slot: never created, or not tandem metadata.
    #[error(
        "{path}: no tandem metadata found; run `tandem volume create-md {volume}` first (it overwrites the end of the disk for internal metadata)"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// Volume name.
        volume: String,
    },
    /// The backing disk is too small.
    #[error(
        "{path}: {size} bytes is too small for a volume with its metadata (at least {need} bytes)"
    )]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// What is needed.
        need: u64,
    },
    /// The metadata does not fit its slot.
    #[error("metadata of {0} bytes does not fit its slot")]
    TooBig(usize),
}

/// The metadata region of one volume on one node.
#[derive(Debug)]
pub struct MetaStore {
    file: File,
    path: PathBuf,
    offset: u64,
    slot: u64,
    seq: u64,
}

/// Bytes a slot needs for a volume of `data` bytes with `peers` peers.
pub fn slot_size(data: u64, peers: usize, al_extents: usize) -> u64 {
    let bitmap = data.div_ceil(4096).div_ceil(8) + 64;
    let need = HEADER + 4096 + peers as u64 * bitmap + al_extents as u64 * 9;
    need.div_ceil(4096) * 4096
}

/// The usable size of a backing disk of `total` bytes with internal
/// metadata.
pub fn data_size_internal(total: u64, peers: usize, al_extents: usize) -> u64 {
    total.saturating_sub(2 * slot_size(total, peers, al_extents)) / 4096 * 4096
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl MetaStore {
    /// Opens the region of a volume whose backing disk is `disk`; returns
    /// it with the usable data size.
    pub fn open(
        disk: &Path,
        place: &MetaPlace,
        peers: usize,
        al_extents: usize,
    ) -> Result<(Self, u64), StoreError> {
        // Seeking to the end measures block devices too (whose metadata
        // says 0 bytes): `disk /dev/sda1;` of a DRBD file works as is.
        let total = {
            use std::io::Seek as _;
            let mut f = std::fs::File::open(disk).map_err(io(disk))?;
            f.seek(std::io::SeekFrom::End(0)).map_err(io(disk))?
        };
        let (path, offset, data, slot) = match place {
            MetaPlace::Internal => {
                let slot = slot_size(total, peers, al_extents);
                let data = data_size_internal(total, peers, al_extents);
                (disk.to_path_buf(), total - 2 * slot, data, slot)
            }
            MetaPlace::External(p) => {
                let data = total / 4096 * 4096;
                (p.clone(), 0, data, slot_size(data, peers, al_extents))
            }
        };
        if data < 4096 * 16 {
            return Err(StoreError::TooSmall {
                path: disk.to_path_buf(),
                size: total,
                need: 4096 * 16 + 2 * slot,
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(matches!(place, MetaPlace::External(_)))
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        Ok((
            Self {
                file,
                path,
                offset,
                slot,
                seq: 0,
            },
            data,
        ))
    }

    fn read_slot(&self, i: u64) -> Option<(u64, Metadata)> {
        let mut head = [0u8; HEADER as usize];
        self.file
            .read_exact_at(&mut head, self.offset + i * self.slot)
            .ok()?;
        let word =
            |k: usize| u64::from_le_bytes(head[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8]));
        let (magic, seq, len, sum) = (word(0), word(1), word(2), word(3));
        if magic != MAGIC || len > self.slot - HEADER {
            return None;
        }
        let mut body = vec![0u8; usize::try_from(len).ok()?];
        self.file
            .read_exact_at(&mut body, self.offset + i * self.slot + HEADER)
            .ok()?;
        if xxhash_rust::xxh3::xxh3_64(&body) != sum {
            return None;
        }
        Some((seq, postcard::from_bytes(&body).ok()?))
    }

    /// The newest valid metadata.
    pub fn load(&mut self, volume: &str) -> Result<Metadata, StoreError> {
        let best = [self.read_slot(0), self.read_slot(1)]
            .into_iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq);
        match best {
            Some((seq, meta)) => {
                self.seq = seq;
                Ok(meta)
            }
            None => Err(StoreError::Missing {
                path: self.path.clone(),
                volume: volume.to_string(),
            }),
        }
    }

    /// Writes `meta` durably into the older slot.
    pub fn save(&mut self, meta: &Metadata) -> Result<(), StoreError> {
        let body = postcard::to_allocvec(meta).map_err(|_| StoreError::TooBig(0))?;
        if body.len() as u64 > self.slot - HEADER {
            return Err(StoreError::TooBig(body.len()));
        }
        self.seq += 1;
        let mut buf = Vec::with_capacity(HEADER as usize + body.len());
        for w in [
            MAGIC,
            self.seq,
            body.len() as u64,
            xxhash_rust::xxh3::xxh3_64(&body),
        ] {
            buf.extend_from_slice(&w.to_le_bytes());
        }
        buf.extend_from_slice(&body);
        let at = self.offset + (self.seq % 2) * self.slot;
        self.file.write_all_at(&buf, at).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }

    /// Writes fresh metadata into both slots (`create-md`).
    pub fn create(&mut self, meta: &Metadata) -> Result<(), StoreError> {
        self.save(meta)?;
        self.save(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_is_ignored() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = dir.path().join("d.img");
        let f = File::create(&disk).expect("create");
        f.set_len(4 << 20).expect("size");
        let (mut st, data) = MetaStore::open(&disk, &MetaPlace::Internal, 1, 16).expect("open");
        assert!(data < 4 << 20 && data > 3 << 20, "{data}");
        assert!(matches!(st.load("r0"), Err(StoreError::Missing { .. })));
        let mut m = Metadata::create(data, 0, &[1], 16);
        st.create(&m).expect("create");
        m.current = 0x1234;
        st.save(&m).expect("save");
        let (mut again, _) = MetaStore::open(&disk, &MetaPlace::Internal, 1, 16).expect("open");
        assert_eq!(again.load("r0").expect("load").current, 0x1234);
        // Tear the newest slot: the previous one is used.
        let at = again.offset + (again.seq % 2) * again.slot + HEADER + 3;
        again.file.write_all_at(&[0xFF; 8], at).expect("tear");
        let (mut third, _) = MetaStore::open(&disk, &MetaPlace::Internal, 1, 16).expect("open");
        assert_eq!(
            third.load("r0").expect("load").current,
            tandem_volumes::gi::JUST_CREATED
        );
    }
}
