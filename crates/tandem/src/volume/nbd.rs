//! The NBD export: fixed newstyle negotiation (OPT_GO, OPT_INFO,
//! OPT_LIST, OPT_ABORT, and the legacy OPT_EXPORT_NAME), simple replies,
//! and READ, WRITE (with FUA), FLUSH, TRIM, WRITE_ZEROES and DISC
//! (`shared/reference/replication.md` §2). Structured replies are
//! declined (allowed by the protocol). Read-only on a secondary.
//!
//! Hand-rolled: the wire format is small and its FLUSH/FUA meaning must be
//! the replicated one; the Rust crates available either lack FUA or panic
//! on options libnbd and qemu send.

use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::mpsc::{Receiver, Sender};

use bytes::Bytes;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY: u32 = 0x6744_6698;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

const FLAG_HAS_FLAGS: u16 = 1;
const FLAG_READ_ONLY: u16 = 2;
const FLAG_SEND_FLUSH: u16 = 4;
const FLAG_SEND_FUA: u16 = 8;
const FLAG_SEND_TRIM: u16 = 32;
const FLAG_SEND_WRITE_ZEROES: u16 = 64;
const FLAG_CAN_MULTI_CONN: u16 = 256;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_FLAG_FUA: u16 = 1;

/// Largest request payload accepted.
pub const MAX_PAYLOAD: u32 = 32 << 20;

/// NBD error numbers.
pub mod errno {
    /// Operation not permitted (write to a read-only export).
    pub const EPERM: u32 = 1;
    /// I/O error.
    pub const EIO: u32 = 5;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// No space (write past the end).
    pub const ENOSPC: u32 = 28;
}

/// What an NBD client asked: the exports' shared operation.
pub use super::requests::Op as Request;

/// A reply for the connection's writer.
#[derive(Debug)]
pub struct Reply {
    /// The request's cookie.
    pub cookie: u64,
    /// 0 or an errno.
    pub error: u32,
    /// Data of a successful read.
    pub data: Option<Bytes>,
}

/// What the export tells its owner.
pub trait Sink: Send + 'static {
    /// The export's size and whether it is read-only now.
    fn describe(&self) -> (u64, bool);
    /// A request arrived on connection `conn`.
    fn request(&self, conn: u64, cookie: u64, req: Request);
}

fn u16_of(r: &mut impl Read) -> std::io::Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}
fn u32_of(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}
fn u64_of(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn opt_reply(w: &mut impl Write, opt: u32, kind: u32, data: &[u8]) -> std::io::Result<()> {
    w.write_all(&REPLY_MAGIC.to_be_bytes())?;
    w.write_all(&opt.to_be_bytes())?;
    w.write_all(&kind.to_be_bytes())?;
    w.write_all(&(data.len() as u32).to_be_bytes())?;
    w.write_all(data)?;
    w.flush()
}

fn tflags(read_only: bool) -> u16 {
    let mut f = FLAG_HAS_FLAGS
        | FLAG_SEND_FLUSH
        | FLAG_SEND_FUA
        | FLAG_SEND_TRIM
        | FLAG_SEND_WRITE_ZEROES
        | FLAG_CAN_MULTI_CONN;
    if read_only {
        f |= FLAG_READ_ONLY;
    }
    f
}

/// Negotiates with a client; `Ok(true)` when transmission starts.
fn negotiate<S: Read + Write>(s: &mut S, name: &str, sink: &dyn Sink) -> std::io::Result<bool> {
    s.write_all(&NBDMAGIC.to_be_bytes())?;
    s.write_all(&IHAVEOPT.to_be_bytes())?;
    s.write_all(&3u16.to_be_bytes())?; // FIXED_NEWSTYLE | NO_ZEROES
    s.flush()?;
    let client = u32_of(s)?;
    let no_zeroes = client & 2 != 0;
    loop {
        if u64_of(s)? != IHAVEOPT {
            return Ok(false);
        }
        let opt = u32_of(s)?;
        let len = u32_of(s)?;
        if len > 4096 {
            return Ok(false);
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        let (size, ro) = sink.describe();
        match opt {
            OPT_EXPORT_NAME => {
                s.write_all(&size.to_be_bytes())?;
                s.write_all(&tflags(ro).to_be_bytes())?;
                if !no_zeroes {
                    s.write_all(&[0u8; 124])?;
                }
                s.flush()?;
                return Ok(true);
            }
            OPT_ABORT => {
                opt_reply(s, opt, REP_ACK, &[])?;
                return Ok(false);
            }
            OPT_LIST => {
                let mut d = (name.len() as u32).to_be_bytes().to_vec();
                d.extend_from_slice(name.as_bytes());
                opt_reply(s, opt, REP_SERVER, &d)?;
                opt_reply(s, opt, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let n = data
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    as usize;
                let asked = data
                    .get(4..4 + n)
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                if asked.as_deref().is_some_and(|a| !a.is_empty() && a != name) {
                    opt_reply(s, opt, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                let mut info = 0u16.to_be_bytes().to_vec();
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&tflags(ro).to_be_bytes());
                opt_reply(s, opt, REP_INFO, &info)?;
                let mut bs = 3u16.to_be_bytes().to_vec();
                for v in [512u32, 4096, MAX_PAYLOAD] {
                    bs.extend_from_slice(&v.to_be_bytes());
                }
                opt_reply(s, opt, REP_INFO, &bs)?;
                opt_reply(s, opt, REP_ACK, &[])?;
                if opt == OPT_GO {
                    return Ok(true);
                }
            }
            _ => opt_reply(s, opt, REP_ERR_UNSUP, &[])?,
        }
    }
}

/// Serves one client: negotiation, then requests until DISC or EOF.
/// Replies come from `replies` (fed by the owner) on a writer thread.
pub fn serve<S>(stream: S, name: &str, conn: u64, sink: &dyn Sink, replies: Receiver<Reply>)
where
    S: Read + Write + TryClone + Send + 'static,
{
    let mut s = stream;
    match negotiate(&mut s, name, sink) {
        Ok(true) => {}
        _ => return,
    }
    let Ok(w) = s.try_clone_stream() else { return };
    let writer = std::thread::Builder::new()
        .name("tandem-nbd-reply".into())
        .spawn(move || {
            let mut w = BufWriter::new(w);
            while let Ok(r) = replies.recv() {
                let mut ok = w.write_all(&SIMPLE_REPLY.to_be_bytes()).is_ok()
                    && w.write_all(&r.error.to_be_bytes()).is_ok()
                    && w.write_all(&r.cookie.to_be_bytes()).is_ok();
                if let Some(d) = &r.data {
                    ok = ok && w.write_all(d).is_ok();
                }
                if !ok || w.flush().is_err() {
                    return;
                }
            }
        });
    let mut r = BufReader::with_capacity(1 << 20, s);
    while let Ok(magic) = u32_of(&mut r) {
        if magic != REQUEST_MAGIC {
            break;
        }
        let (Ok(flags), Ok(kind), Ok(cookie), Ok(offset), Ok(len)) = (
            u16_of(&mut r),
            u16_of(&mut r),
            u64_of(&mut r),
            u64_of(&mut r),
            u32_of(&mut r),
        ) else {
            break;
        };
        let fua = flags & CMD_FLAG_FUA != 0;
        let req = match kind {
            CMD_READ if len <= MAX_PAYLOAD => Request::Read {
                offset,
                len: u64::from(len),
            },
            CMD_WRITE if len <= MAX_PAYLOAD => {
                let Ok(data) = super::direct::aligned_read(&mut r, len as usize) else {
                    break;
                };
                Request::Write { offset, data, fua }
            }
            CMD_FLUSH => Request::Flush,
            CMD_TRIM | CMD_WRITE_ZEROES if len <= MAX_PAYLOAD => Request::Zero {
                offset,
                len: u64::from(len),
            },
            CMD_DISC => break,
            _ => {
                // Unknown command or oversized: EINVAL, keep going (a write's
                // payload cannot be skipped safely, so that ends it).
                if kind == CMD_WRITE {
                    break;
                }
                sink.request(
                    conn,
                    cookie,
                    Request::Read {
                        offset: u64::MAX,
                        len: 0,
                    },
                );
                continue;
            }
        };
        sink.request(conn, cookie, req);
    }
    // DISC or EOF: close the socket, so the client (which waits for the
    // server to close after DISC) and the reply writer both see the end.
    r.get_ref().shutdown_both();
    drop(writer);
}

/// Streams that can be cloned for a second thread and shut down (TCP and
/// Unix sockets).
pub trait TryClone: Sized {
    /// Another handle on the same socket.
    fn try_clone_stream(&self) -> std::io::Result<Self>;
    /// Closes both directions.
    fn shutdown_both(&self);
}

impl TryClone for std::net::TcpStream {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn shutdown_both(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl TryClone for std::os::unix::net::UnixStream {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn shutdown_both(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// Sends replies for `conn`.
pub type ReplySender = Sender<Reply>;
