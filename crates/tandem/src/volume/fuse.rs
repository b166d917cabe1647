//! The FUSE export: the volume as one file, `<export>/<name>`, for
//! `losetup --direct-io=on` and a filesystem on top. Write-through (no
//! writeback cache of its own): a write completes when the replicated
//! write does, `fsync` is a replicated flush, and `fallocate` (punch hole,
//! zero range: how loop passes discards) a replicated zeroing. Writes on a
//! secondary fail with EROFS.
//!
//! Requests are answered by whichever thread runs the engine: fuser's
//! reply objects travel with the request through the volume's inbox.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request,
    WriteFlags,
};

use super::Input;
use super::inbox::Inbox;

const FILE: INodeNo = INodeNo(2);
/// The handle of an open with write access.
const WRITER: FileHandle = FileHandle(1);
const TTL: Duration = Duration::from_secs(1);
const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

/// Where a FUSE request's answer goes.
pub enum Reply {
    /// A read.
    Data(ReplyData),
    /// A write of `len` bytes.
    Write(ReplyWrite, u32),
    /// fsync or fallocate.
    Empty(ReplyEmpty),
}

/// What the file system asks the engine: the exports' shared operation.
pub use super::requests::Op;

impl Reply {
    /// Answers with an error.
    pub fn error(self, e: Errno) {
        match self {
            Reply::Data(r) => r.error(e),
            Reply::Write(r, _) => r.error(e),
            Reply::Empty(r) => r.error(e),
        }
    }

    /// Answers with success (`data` for a read).
    pub fn ok(self, data: Option<&[u8]>) {
        match self {
            Reply::Data(r) => r.data(data.unwrap_or(&[])),
            Reply::Write(r, n) => r.written(n),
            Reply::Empty(r) => r.ok(),
        }
    }
}

/// The exported size, shared with the engine thread.
pub type Size = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// The file system.
pub struct VolumeFs {
    name: String,
    /// Bytes exported; a resize raises it.
    size: Size,
    /// Openers with write access (`secondary` waits for them).
    openers: super::demote::Openers,
    inbox: Inbox,
    uid: u32,
    gid: u32,
}

impl VolumeFs {
    /// The export of volume `name` of `size` bytes; `openers` counts the
    /// opens with write access.
    pub fn new(name: &str, size: Size, openers: super::demote::Openers, inbox: Inbox) -> Self {
        Self {
            name: name.to_string(),
            size,
            openers,
            inbox,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        }
    }

    fn size(&self) -> u64 {
        self.size.load(std::sync::atomic::Ordering::Acquire)
    }

    fn attr(&self, ino: INodeNo) -> FileAttr {
        let file = ino == FILE;
        FileAttr {
            ino,
            size: if file { self.size() } else { 0 },
            blocks: if file { self.size() / 512 } else { 0 },
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind: if file {
                FileType::RegularFile
            } else {
                FileType::Directory
            },
            perm: if file { 0o600 } else { 0o755 },
            nlink: if file { 1 } else { 2 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    fn submit(&self, op: Op, reply: Reply) {
        if let Err(std::sync::mpsc::SendError(Input::Fuse { reply, .. })) =
            self.inbox.send(Input::Fuse { op, reply })
        {
            reply.error(Errno::EIO);
        }
    }
}

impl Filesystem for VolumeFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Direct I/O submitted asynchronously (loop's aio) reaches us as
        // concurrent requests rather than one after the other.
        if let Err(e) = config.add_capabilities(fuser::InitFlags::FUSE_ASYNC_DIO) {
            tracing::warn!(
                "volume {}: the kernel lacks FUSE async direct I/O ({e:?}): writes through loop are serial",
                self.name
            );
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name.to_str() == Some(self.name.as_str()) {
            reply.entry(&TTL, &self.attr(FILE), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino {
            INodeNo::ROOT | FILE => reply.attr(&TTL, &self.attr(ino)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino != FILE {
            return reply.error(Errno::EISDIR);
        }
        // The handle says whether this open counts as a writer.
        if flags.0 & libc::O_ACCMODE == libc::O_RDONLY {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            self.openers
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            reply.opened(WRITER, FopenFlags::empty());
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if fh == WRITER {
            let _ = self.openers.fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| n.checked_sub(1),
            );
        }
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != FILE {
            return reply.error(Errno::EISDIR);
        }
        let len = u64::from(size).min(self.size().saturating_sub(offset));
        if len == 0 {
            return reply.data(&[]);
        }
        self.submit(Op::Read { offset, len }, Reply::Data(reply));
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if ino != FILE {
            return reply.error(Errno::EISDIR);
        }
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let fua = flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0;
        let op = Op::Write {
            offset,
            data: super::direct::aligned_copy(data),
            fua,
        };
        self.submit(op, Reply::Write(reply, n));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.submit(Op::Flush, Reply::Empty(reply));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode == 0 || mode == FALLOC_FL_KEEP_SIZE {
            // Allocation: every byte of a volume exists already.
            return reply.ok();
        }
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) == 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let len = length.min(self.size().saturating_sub(offset));
        self.submit(Op::Zero { offset, len }, Reply::Empty(reply));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE, FileType::RegularFile, self.name.as_str()),
        ];
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mounts the export at `dir` (created if missing); unmounted when the
/// returned session is dropped.
pub fn mount(
    dir: &std::path::Path,
    name: &str,
    size: Size,
    openers: super::demote::Openers,
    inbox: Inbox,
) -> anyhow::Result<fuser::BackgroundSession> {
    std::fs::create_dir_all(dir)?;
    // A stale mount from a crashed run: unmount it first.
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir)
        .output();
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName(format!("tandem-{name}")),
        fuser::MountOption::Subtype("tandem".into()),
    ];
    cfg.n_threads = Some(4);
    let fs = VolumeFs::new(name, size, openers, inbox);
    let s = fuser::spawn_mount(fs, dir, &cfg)
        .map_err(|e| anyhow::anyhow!("mount the FUSE export at {}: {e}", dir.display()))?;
    Ok(s)
}
