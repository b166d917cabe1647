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
        "{path}: no tandem metadata found; run `tandem volume create-md {volume}` first (it overwrites the end of the disk for internal metadata). If the backing disk grew while the volume was down and its metadata locator is gone, shrink the disk back to its old size, start the volume, then grow the disk again and run `tandem volume resize {volume}`"
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
    /// Where the region is recorded (`STATE_DIR/volumes/NAME.meta-at`,
    /// written when it is created, found elsewhere or moved): found again
    /// after a restart even if the backing disk grew meanwhile.
    locator: Option<PathBuf>,
    layout: Layout,
}

/// What the region's place and size depend on.
#[derive(Clone, Debug)]
struct Layout {
    disk: PathBuf,
    internal: bool,
    peers: usize,
    al_extents: usize,
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

/// Where a volume's relocated metadata region is recorded.
pub fn locator_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("volumes").join(format!("{name}.meta-at"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The size of `disk` (seeking to the end measures block devices too,
/// whose metadata says 0 bytes: `disk /dev/sda1;` of a DRBD file works).
fn measure(disk: &Path) -> Result<u64, StoreError> {
    use std::io::Seek as _;
    let mut f = std::fs::File::open(disk).map_err(io(disk))?;
    f.seek(std::io::SeekFrom::End(0)).map_err(io(disk))
}

impl Layout {
    /// The region's place and slot size, and the data bytes the disk
    /// holds, for the disk's size now.
    fn at_end(&self) -> Result<(u64, u64, u64), StoreError> {
        let total = measure(&self.disk)?;
        Ok(if self.internal {
            let slot = slot_size(total, self.peers, self.al_extents);
            let data = data_size_internal(total, self.peers, self.al_extents);
            (total.saturating_sub(2 * slot), slot, data)
        } else {
            let data = total / 4096 * 4096;
            (0, slot_size(data, self.peers, self.al_extents), data)
        })
    }
}

impl MetaStore {
    /// Opens the region of a volume whose backing disk is `disk`; returns
    /// it with the data bytes the disk holds. `locator`: where a resize
    /// records a moved region.
    pub fn open(
        disk: &Path,
        place: &MetaPlace,
        peers: usize,
        al_extents: usize,
        locator: Option<PathBuf>,
    ) -> Result<(Self, u64), StoreError> {
        let layout = Layout {
            disk: disk.to_path_buf(),
            internal: matches!(place, MetaPlace::Internal),
            peers,
            al_extents,
        };
        let (offset, slot, data) = layout.at_end()?;
        if data < 4096 * 16 {
            return Err(StoreError::TooSmall {
                path: disk.to_path_buf(),
                size: measure(disk)?,
                need: 4096 * 16 + 2 * slot,
            });
        }
        let path = match place {
            MetaPlace::Internal => disk.to_path_buf(),
            MetaPlace::External(p) => p.clone(),
        };
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
                locator,
                layout,
            },
            data,
        ))
    }

    /// The data bytes the disk holds below the region now (internal), or
    /// in all (external).
    pub fn room(&self) -> u64 {
        if self.layout.internal {
            self.offset / 4096 * 4096
        } else {
            measure(&self.layout.disk).map_or(0, |t| t / 4096 * 4096)
        }
    }

    /// The data bytes the disk would hold with the region at its end now
    /// (after the operator grew it): what `resize` may grow to.
    /// A region at the new end must not overlap the current one (a crash
    /// while writing it would leave neither): a disk grown by less than
    /// that holds no more.
    pub fn capacity(&self) -> u64 {
        match self.layout.at_end() {
            Ok((offset, _, _)) if self.layout.internal && offset < self.offset + 2 * self.slot => {
                self.room()
            }
            Ok((_, _, data)) => data,
            Err(_) => 0,
        }
    }

    /// The recorded place of the region, if any.
    fn located(&self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(self.locator.as_ref()?).ok()?;
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        Some((it.next()?.ok()?, it.next()?.ok()?))
    }

    /// Slot `i` of the region at `offset` with slots of `slot` bytes.
    fn read_slot(&self, (offset, slot): (u64, u64), i: u64) -> Option<(u64, Metadata)> {
        let mut head = [0u8; HEADER as usize];
        self.file.read_exact_at(&mut head, offset + i * slot).ok()?;
        let word =
            |k: usize| u64::from_le_bytes(head[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8]));
        let (magic, seq, len, sum) = (word(0), word(1), word(2), word(3));
        if magic != MAGIC || len > slot - HEADER {
            return None;
        }
        let mut body = vec![0u8; usize::try_from(len).ok()?];
        self.file
            .read_exact_at(&mut body, offset + i * slot + HEADER)
            .ok()?;
        if xxhash_rust::xxh3::xxh3_64(&body) != sum {
            return None;
        }
        Some((seq, postcard::from_bytes(&body).ok()?))
    }

    /// The newest valid metadata: at the end of the disk, or where a
    /// resize moved it (the backing disk grew since); the newest slot of
    /// either place wins, and the region is used there from now on.
    pub fn load(&mut self, volume: &str) -> Result<Metadata, StoreError> {
        let places = std::iter::once((self.offset, self.slot)).chain(self.located());
        let best = places
            .flat_map(|at| [(at, 0), (at, 1)])
            .filter_map(|(at, i)| self.read_slot(at, i).map(|found| (at, found)))
            .max_by_key(|(_, (seq, _))| *seq);
        match best {
            Some(((offset, slot), (seq, meta))) => {
                (self.offset, self.slot, self.seq) = (offset, slot, seq);
                if self.located() != Some((offset, slot)) {
                    self.record()?;
                }
                Ok(meta)
            }
            None => Err(StoreError::Missing {
                path: self.path.clone(),
                volume: volume.to_string(),
            }),
        }
    }

    /// Grows the data region to `meta.size` bytes (`resize`): with the
    /// disk grown, the region moves to its new end (written there in full,
    /// then recorded in the locator), else `meta` is saved in place.
    pub fn grow(&mut self, meta: &Metadata) -> Result<(), StoreError> {
        let (offset, slot, _) = self.layout.at_end()?;
        if meta.size > self.capacity() {
            return Err(StoreError::TooSmall {
                path: self.layout.disk.clone(),
                size: measure(&self.layout.disk)?,
                need: meta.size,
            });
        }
        let place = if self.layout.internal && meta.size > self.room() {
            (offset, slot)
        } else if self.layout.internal {
            (self.offset, self.slot)
        } else if slot > self.slot {
            // External: bigger slots go after the old ones, which stay
            // valid until the new ones are written.
            (self.offset + 2 * self.slot, slot)
        } else {
            (self.offset, self.slot)
        };
        if place == (self.offset, self.slot) {
            return self.save(meta);
        }
        (self.offset, self.slot) = place;
        self.save(meta)?;
        self.save(meta)?;
        self.record()
    }

    /// Records where the region is in the locator (atomically).
    fn record(&self) -> Result<(), StoreError> {
        let Some(l) = &self.locator else {
            return Ok(());
        };
        if let Some(d) = l.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let tmp = l.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.offset, self.slot))
            .and_then(|()| std::fs::rename(&tmp, l))
            .map_err(io(l))
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

    /// Writes fresh metadata into both slots at the end of the disk
    /// (`create-md`); a moved region is forgotten.
    pub fn create(&mut self, meta: &Metadata) -> Result<(), StoreError> {
        (self.offset, self.slot, _) = self.layout.at_end()?;
        self.save(meta)?;
        self.save(meta)?;
        self.record()
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
        let (mut st, data) =
            MetaStore::open(&disk, &MetaPlace::Internal, 1, 16, None).expect("open");
        assert!(data < 4 << 20 && data > 3 << 20, "{data}");
        assert!(matches!(st.load("r0"), Err(StoreError::Missing { .. })));
        let mut m = Metadata::create(data, 0, &[1], 16);
        st.create(&m).expect("create");
        m.current = 0x1234;
        st.save(&m).expect("save");
        let (mut again, _) =
            MetaStore::open(&disk, &MetaPlace::Internal, 1, 16, None).expect("open");
        assert_eq!(again.load("r0").expect("load").current, 0x1234);
        // Tear the newest slot: the previous one is used.
        let at = again.offset + (again.seq % 2) * again.slot + HEADER + 3;
        again.file.write_all_at(&[0xFF; 8], at).expect("tear");
        let (mut third, _) =
            MetaStore::open(&disk, &MetaPlace::Internal, 1, 16, None).expect("open");
        assert_eq!(
            third.load("r0").expect("load").current,
            tandem_volumes::gi::JUST_CREATED
        );
    }

    /// Creates or resizes the file at `p` to `len` bytes (what the
    /// operator's `truncate -s` does).
    fn resize_file(p: &Path, len: u64) {
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(p)
            .and_then(|f| f.set_len(len))
            .expect("resize the file");
    }

    #[test]
    fn a_disk_grown_while_down_is_found_through_the_locator_and_grown_into() {
        let dir = tempfile::tempdir().expect("dir");
        let (disk, locator) = (dir.path().join("d.img"), dir.path().join("r0.meta-at"));
        resize_file(&disk, 4 << 20);
        let open = || {
            MetaStore::open(&disk, &MetaPlace::Internal, 1, 16, Some(locator.clone()))
                .expect("open")
        };
        let (mut st, data) = open();
        let mut m = Metadata::create(data, 0, &[1], 16);
        st.create(&m).expect("create");
        // The operator grows the disk; the volume restarts before a resize.
        resize_file(&disk, 8 << 20);
        let (mut st, _) = open();
        assert_eq!(st.load("r0").expect("found through the locator").size, data);
        assert_eq!(st.room(), data, "data may not reach into the region");
        let capacity = st.capacity();
        assert!(capacity > 7 << 20, "{capacity}");
        m.size = capacity;
        m.current = 0x4242;
        st.grow(&m).expect("grow");
        let (mut st, _) = open();
        let found = st.load("r0").expect("at the new end");
        assert_eq!((found.size, found.current), (capacity, 0x4242));
        assert_eq!(st.room(), capacity);
        // Without a locator the grown disk's region is not found: the
        // error says how to recover.
        let e = dir.path().join("e.img");
        resize_file(&e, 4 << 20);
        let (mut st, data) = MetaStore::open(&e, &MetaPlace::Internal, 1, 16, None).expect("open");
        st.create(&Metadata::create(data, 0, &[1], 16))
            .expect("create");
        resize_file(&e, 8 << 20);
        let (mut st, _) = MetaStore::open(&e, &MetaPlace::Internal, 1, 16, None).expect("open");
        let err = st.load("r0").expect_err("not found").to_string();
        assert!(err.contains("shrink the disk back"), "{err}");
    }

    #[test]
    fn a_disk_grown_by_less_than_the_region_holds_no_more() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = dir.path().join("d.img");
        resize_file(&disk, 4 << 20);
        let (mut st, data) =
            MetaStore::open(&disk, &MetaPlace::Internal, 1, 16, None).expect("open");
        st.create(&Metadata::create(data, 0, &[1], 16))
            .expect("create");
        resize_file(&disk, (4 << 20) + 4096);
        assert_eq!(st.capacity(), data, "the new region would overlap the old");
    }
}
