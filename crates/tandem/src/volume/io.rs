//! Disk workers and the NBD listeners. Data operations run on a small pool
//! of threads (positional reads and writes on the backing file, so they
//! never share a file offset); metadata writes run on a thread of their
//! own with the [`MetaStore`], in order.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tandem_volumes::Metadata;

use super::Input;
use super::direct::Direct;
use super::inbox::Inbox;
use super::nbd;
use super::store::MetaStore;

/// A disk operation.
enum Job {
    Write {
        io: u64,
        offset: u64,
        data: Bytes,
        fua: bool,
    },
    Read {
        io: u64,
        offset: u64,
        len: u64,
    },
    Flush {
        io: u64,
    },
}

/// A job for the metadata writer.
enum MetaJob {
    /// Write this metadata durably, report `io`.
    Save(u64, Box<Metadata>),
    /// Grow to `meta.size` (the region moves to the disk's new end), then
    /// report `io`.
    Grow(u64, Box<Metadata>),
    /// Measure what the disk could hold (`resize`); report
    /// [`Input::Room`] with `ask`.
    Measure(Option<super::resize::Ask>),
    /// Answer once every earlier save is done.
    Sync(Sender<()>),
}

/// The disk workers of one volume.
pub struct DiskPool {
    jobs: Sender<Job>,
    meta: Sender<MetaJob>,
}

/// Where data operations may reach: the volume's size, raised by a grow.
type Bound = Arc<std::sync::atomic::AtomicU64>;

const WORKERS: usize = 4;

impl DiskPool {
    /// Opens the data region of `path` (`size` bytes) and starts the
    /// workers; completions go to `inbox`.
    pub fn start(
        path: &Path,
        size: u64,
        mut store: MetaStore,
        inbox: Inbox,
    ) -> anyhow::Result<Self> {
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        );
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let bound: Bound = Arc::new(size.into());
        let direct = Arc::new(Direct::open(path));
        for _ in 0..WORKERS {
            let (file, rx, inbox, bound) = (file.clone(), rx.clone(), inbox.clone(), bound.clone());
            let direct = direct.clone();
            std::thread::Builder::new()
                .name("tandem-vol-disk".into())
                .spawn(move || worker(&file, &direct, &bound, &rx, &inbox))?;
        }
        let (meta, mrx) = std::sync::mpsc::channel::<MetaJob>();
        std::thread::Builder::new()
            .name("tandem-vol-meta".into())
            .spawn(move || {
                while let Ok(job) = mrx.recv() {
                    match job {
                        MetaJob::Save(io, m) => {
                            let result = store.save(&m).map(|()| None).map_err(|e| e.to_string());
                            let _ = inbox.send(Input::DiskDone { io, result });
                        }
                        MetaJob::Grow(io, m) => {
                            let result = store.grow(&m).map_err(|e| e.to_string());
                            if result.is_ok() {
                                bound.store(m.size, std::sync::atomic::Ordering::Release);
                            }
                            let result = result.map(|()| None);
                            let _ = inbox.send(Input::DiskDone { io, result });
                        }
                        MetaJob::Measure(ask) => {
                            let room = store.capacity();
                            let _ = inbox.send(Input::Room { room, ask });
                        }
                        MetaJob::Sync(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(Self { jobs, meta })
    }

    /// Writes `data` at `offset`.
    pub fn write(&self, io: u64, offset: u64, data: Bytes, fua: bool) {
        let _ = self.jobs.send(Job::Write {
            io,
            offset,
            data,
            fua,
        });
    }

    /// Reads `len` bytes at `offset`.
    pub fn read(&self, io: u64, offset: u64, len: u64) {
        let _ = self.jobs.send(Job::Read { io, offset, len });
    }

    /// Flushes completed writes.
    pub fn flush(&self, io: u64) {
        let _ = self.jobs.send(Job::Flush { io });
    }

    /// Writes the metadata durably.
    pub fn meta(&self, io: u64, m: Metadata) {
        let _ = self.meta.send(MetaJob::Save(io, Box::new(m)));
    }

    /// Grows the data region to `m.size` bytes, the metadata moved and
    /// written in its new place (`resize`).
    pub fn grow(&self, io: u64, m: Metadata) {
        let _ = self.meta.send(MetaJob::Grow(io, Box::new(m)));
    }

    /// Measures what the disk could hold, after every earlier metadata
    /// write.
    pub fn measure(&self, ask: Option<super::resize::Ask>) {
        let _ = self.meta.send(MetaJob::Measure(ask));
    }

    /// Waits (up to `limit`) until every metadata write asked for so far
    /// is on disk: before the process exits.
    pub fn finish(&self, limit: std::time::Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.meta.send(MetaJob::Sync(tx)).is_ok() {
            let _ = rx.recv_timeout(limit);
        }
    }
}

fn worker(file: &File, direct: &Direct, bound: &Bound, rx: &Mutex<Receiver<Job>>, inbox: &Inbox) {
    // Where unaligned buffers are copied for direct writes.
    let mut scratch = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let (io, result) = match job {
            Job::Write {
                io,
                offset,
                data,
                fua,
            } => {
                let size = bound.load(std::sync::atomic::Ordering::Acquire);
                let r = if offset + data.len() as u64 > size {
                    Err("write past the data region".to_string())
                } else {
                    direct
                        .write_at(file, &mut scratch, &data, offset)
                        .and_then(|()| if fua { file.sync_data() } else { Ok(()) })
                        .map(|()| None)
                        .map_err(|e| e.to_string())
                };
                (io, r)
            }
            Job::Read { io, offset, len } => {
                let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
                let r = file
                    .read_exact_at(&mut buf, offset)
                    .map(|()| Some(Bytes::from(buf)))
                    .map_err(|e| e.to_string());
                (io, r)
            }
            Job::Flush { io } => (
                io,
                file.sync_data().map(|()| None).map_err(|e| e.to_string()),
            ),
        };
        if inbox.send(Input::DiskDone { io, result }).is_err() {
            return;
        }
    }
}

/// The owner side of the NBD export: requests go to the engine's inbox.
struct Sink {
    inbox: Inbox,
    describe: Arc<Mutex<(u64, bool)>>,
}

impl nbd::Sink for Sink {
    fn describe(&self) -> (u64, bool) {
        self.describe.lock().map(|d| *d).unwrap_or((0, true))
    }
    fn request(&self, conn: u64, cookie: u64, req: nbd::Request) {
        let _ = self.inbox.send(Input::Nbd { conn, cookie, req });
    }
}

/// What NBD clients are told at negotiation: size, and read-only unless
/// primary (updated by the engine thread).
pub type Describe = Arc<Mutex<(u64, bool)>>;

/// Listens for NBD clients on `at`.
pub fn serve_nbd(
    at: &tandem_config::NbdListen,
    name: &str,
    inbox: Inbox,
    describe: Describe,
) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let name = name.to_string();
    match at {
        tandem_config::NbdListen::Unix(p) => {
            let _ = std::fs::remove_file(p);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            let l = std::os::unix::net::UnixListener::bind(p)
                .map_err(|e| anyhow::anyhow!("nbd socket {}: {e}", p.display()))?;
            std::thread::Builder::new()
                .name("tandem-nbd-listen".into())
                .spawn(move || {
                    for s in l.incoming().flatten() {
                        spawn_client(s, &name, &inbox, &describe, &next);
                    }
                })?;
        }
        tandem_config::NbdListen::Tcp(a) => {
            let l = std::net::TcpListener::bind(a).map_err(|e| anyhow::anyhow!("nbd {a}: {e}"))?;
            std::thread::Builder::new()
                .name("tandem-nbd-listen".into())
                .spawn(move || {
                    for s in l.incoming().flatten() {
                        let _ = s.set_nodelay(true);
                        spawn_client(s, &name, &inbox, &describe, &next);
                    }
                })?;
        }
    }
    Ok(())
}

fn spawn_client<S>(
    s: S,
    name: &str,
    inbox: &Inbox,
    describe: &Describe,
    next: &std::sync::atomic::AtomicU64,
) where
    S: std::io::Read + std::io::Write + nbd::TryClone + Send + 'static,
{
    let conn = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = inbox.send(Input::NbdOpened { conn, replies: tx });
    let sink = Sink {
        inbox: inbox.clone(),
        describe: describe.clone(),
    };
    let name = name.to_string();
    let _ = std::thread::Builder::new()
        .name("tandem-nbd-client".into())
        .spawn(move || nbd::serve(s, &name, conn, &sink, rx));
}
