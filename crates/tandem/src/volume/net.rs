//! The replication transport: two TCP connections per peer (data, and
//! meta for acknowledgements and pings, so they never queue behind bulk
//! data), each authenticated with the cluster key.
//!
//! Hand-rolled on purpose: a few dozen lines of framing over `std::net`.
//! Connecting: the node with the lower index dials, the other accepts.
//! Each connection opens with a hello (`volume, from, channel, nonce`)
//! answered by the acceptor's own nonce, both MACed; every frame after is
//! `length, counter, postcard(Message), HMAC(nonces, direction, counter,
//! payload)`, so frames cannot be forged, replayed, reordered or moved to
//! another connection. The MAC is keyed BLAKE3 with a key derived from the
//! cluster key (HMAC-SHA256, as the heartbeats use, costs about 2.5 ms per
//! MiB on this kind of machine and capped protocol C at a fifth of the
//! disk's throughput; BLAKE3 is several times faster).

use std::io::{BufReader, BufWriter, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use bytes::Bytes;
use tandem_volumes::{Channel, Message};

use super::{codec, direct};
/// Bytes of a frame's MAC.
pub const MAC_LEN: usize = 32;

/// The key that authenticates replication frames: BLAKE3 in keyed mode,
/// the key derived from the cluster key (never the cluster key itself).
pub struct Key {
    key: [u8; 32],
}

impl Key {
    /// Derives the frame key from the cluster's secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: blake3::derive_key("tandem volume replication frames v1", secret),
        }
    }

    /// The MAC of the concatenation of `parts`.
    pub fn sign_parts(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        for p in parts {
            h.update(p);
        }
        *h.finalize().as_bytes()
    }

    /// Whether `tag` is the MAC of `parts` (constant-time comparison).
    pub fn verify_parts(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; MAC_LEN]>::try_from(tag) else {
            return false;
        };
        let mut h = blake3::Hasher::new_keyed(&self.key);
        for p in parts {
            h.update(p);
        }
        h.finalize() == blake3::Hash::from_bytes(tag)
    }
}

/// Largest frame accepted (a 32 MiB write plus headers).
const MAX_FRAME: u32 = 40 << 20;

/// Bytes of each connection's send and receive buffers: small messages
/// are gathered in them, bulk data of this size or more bypasses them.
const BUFFER: usize = 64 << 10;
const HELLO_TAG: &[u8] = b"tandem volume hello v1";

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An OS error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer's hello or a frame failed authentication.
    #[error("authentication failed (different cluster key?)")]
    Auth,
    /// The peer sent something that is not a frame.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The connection's writer has ended.
    #[error("connection closed")]
    Closed,
}

/// The identity a connection opens with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Volume name.
    pub volume: String,
    /// Sender's node index.
    pub from: u8,
    /// Which connection this is.
    pub meta: bool,
    /// Fresh random bytes.
    pub nonce: [u8; 16],
}

fn encode_hello(h: &Hello, key: &Key, other: &[u8; 16]) -> Vec<u8> {
    let mut body = Vec::new();
    body.push(h.volume.len().min(255) as u8);
    body.extend_from_slice(&h.volume.as_bytes()[..h.volume.len().min(255)]);
    body.push(h.from);
    body.push(u8::from(h.meta));
    body.extend_from_slice(&h.nonce);
    let tag = key.sign_parts(&[HELLO_TAG, &body, other]);
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out
}

/// Reads and checks a peer's hello (MAC first, then its fields), signed
/// for our nonce `other`.
pub fn read_hello(r: &mut impl Read, key: &Key, other: &[u8; 16]) -> Result<Hello, NetError> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let len = usize::from(u16::from_be_bytes(len));
    if !(19..=300).contains(&len) {
        return Err(NetError::Protocol("bad hello length"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let mut tag = [0u8; MAC_LEN];
    r.read_exact(&mut tag)?;
    if !key.verify_parts(&[HELLO_TAG, &body, other], &tag) {
        return Err(NetError::Auth);
    }
    let n = usize::from(body[0]);
    if body.len() != 1 + n + 2 + 16 {
        return Err(NetError::Protocol("bad hello"));
    }
    let volume = String::from_utf8_lossy(&body[1..1 + n]).into_owned();
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&body[n + 3..]);
    Ok(Hello {
        volume,
        from: body[1 + n],
        meta: body[2 + n] != 0,
        nonce,
    })
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    let _ = getrandom::fill(&mut n);
    n
}

/// One authenticated connection, after the hellos.
pub struct Conn {
    stream: TcpStream,
    /// Both nonces, dialer's first: every frame's MAC covers them.
    session: [u8; 32],
    /// Whether this side dialed (directions differ in the MAC).
    dialer: bool,
}

impl Conn {
    /// Dials `to` as node `from` of `volume`.
    pub fn dial(
        to: SocketAddr,
        volume: &str,
        from: u8,
        meta: bool,
        key: &Key,
    ) -> Result<Self, NetError> {
        let stream = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mine = Hello {
            volume: volume.to_string(),
            from,
            meta,
            nonce: nonce(),
        };
        (&stream).write_all(&encode_hello(&mine, key, &[0; 16]))?;
        let theirs = read_hello(&mut (&stream), key, &mine.nonce)?;
        if theirs.volume != volume || theirs.meta != meta {
            return Err(NetError::Protocol(
                "the acceptor answered for another volume",
            ));
        }
        stream.set_read_timeout(None)?;
        let mut session = [0u8; 32];
        session[..16].copy_from_slice(&mine.nonce);
        session[16..].copy_from_slice(&theirs.nonce);
        Ok(Self {
            stream,
            session,
            dialer: true,
        })
    }

    /// Completes an accepted connection: returns who it is from.
    pub fn accept(
        stream: TcpStream,
        volume: &str,
        me: u8,
        key: &Key,
    ) -> Result<(Hello, Self), NetError> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let theirs = read_hello(&mut (&stream), key, &[0; 16])?;
        if theirs.volume != volume {
            return Err(NetError::Protocol("a connection for another volume"));
        }
        let mine = Hello {
            volume: volume.to_string(),
            from: me,
            meta: theirs.meta,
            nonce: nonce(),
        };
        (&stream).write_all(&encode_hello(&mine, key, &theirs.nonce))?;
        stream.set_read_timeout(None)?;
        let mut session = [0u8; 32];
        session[..16].copy_from_slice(&theirs.nonce);
        session[16..].copy_from_slice(&mine.nonce);
        Ok((
            theirs,
            Self {
                stream,
                session,
                dialer: false,
            },
        ))
    }

    /// Closes both directions (the reader sees the end at once).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// A handle for shutting it down later.
    pub fn handle(&self) -> std::io::Result<TcpStream> {
        self.stream.try_clone()
    }

    /// Splits into a frame writer (fed by a channel, on its own thread)
    /// and a frame reader loop.
    pub fn split(self, key: Arc<Key>) -> std::io::Result<(FrameWriter, FrameReader)> {
        let w = self.stream.try_clone()?;
        Ok((
            FrameWriter {
                out: BufWriter::with_capacity(BUFFER, w),
                key: key.clone(),
                session: self.session,
                dir: u8::from(self.dialer),
                counter: 0,
            },
            FrameReader {
                inp: BufReader::with_capacity(BUFFER, self.stream),
                key,
                session: self.session,
                dir: u8::from(!self.dialer),
                counter: 0,
            },
        ))
    }
}

/// Writes authenticated frames (driven by `volume/outbox.rs`).
pub struct FrameWriter {
    pub(super) out: BufWriter<TcpStream>,
    pub(super) key: Arc<Key>,
    pub(super) session: [u8; 32],
    pub(super) dir: u8,
    pub(super) counter: u64,
}

impl FrameWriter {
    /// Writes `m` as the next frame (buffered: flush `out` after).
    pub(super) fn write(&mut self, m: &Message) -> Result<(), NetError> {
        let parts = codec::encode(m).map_err(|_| NetError::Protocol("encode"))?;
        self.counter += 1;
        let s = FrameSigner {
            key: &self.key,
            session: &self.session,
            dir: self.dir,
        };
        s.write_parts(&mut self.out, self.counter, &parts)?;
        Ok(())
    }
}

/// What signs one direction's frames: length (u32), counter (u64), the
/// postcard payload, and a MAC over session, direction, counter, payload.
pub struct FrameSigner<'a> {
    /// The volume's key.
    pub key: &'a Key,
    /// Both hellos' nonces.
    pub session: &'a [u8; 32],
    /// The direction (1: from the dialer).
    pub dir: u8,
}

impl FrameSigner<'_> {
    /// Writes frame number `counter` carrying `payload` to `out`.
    pub fn write(&self, out: &mut impl Write, counter: u64, payload: &[u8]) -> std::io::Result<()> {
        let c = counter.to_be_bytes();
        let tag = self
            .key
            .sign_parts(&[self.session, &[self.dir], &c, payload]);
        let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(&c)?;
        out.write_all(payload)?;
        out.write_all(&tag)
    }

    /// Writes frame number `counter` carrying `parts`, the same bytes as
    /// [`FrameSigner::write`] of the parts joined. Bulk data of
    /// [`BUFFER`] bytes or more goes to the socket at once, straight from
    /// its buffer (the peer starts on it while later frames are prepared).
    pub fn write_parts<W: Write>(
        &self,
        out: &mut BufWriter<W>,
        counter: u64,
        parts: &codec::Parts,
    ) -> std::io::Result<()> {
        let c = counter.to_be_bytes();
        let bulk = parts.bulk.as_deref().unwrap_or(&[]);
        let tag = self.key.sign_parts(&[
            self.session,
            &[self.dir],
            &c,
            &parts.head,
            bulk,
            &parts.tail,
        ]);
        let len = u32::try_from(parts.len()).map_err(std::io::Error::other)?;
        if bulk.len() < BUFFER {
            for p in [
                &len.to_be_bytes()[..],
                &c,
                &parts.head,
                bulk,
                &parts.tail,
                &tag,
            ] {
                out.write_all(p)?;
            }
            return Ok(());
        }
        let mut pre = Vec::with_capacity(12 + parts.head.len());
        pre.extend_from_slice(&len.to_be_bytes());
        pre.extend_from_slice(&c);
        pre.extend_from_slice(&parts.head);
        let mut post = parts.tail.clone();
        post.extend_from_slice(&tag);
        out.flush()?;
        write_all_vectored(
            out.get_mut(),
            &mut [IoSlice::new(&pre), IoSlice::new(bulk), IoSlice::new(&post)],
        )
    }
}

/// Writes every byte of `bufs` (std's `write_all_vectored` is unstable).
fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads authenticated frames.
pub struct FrameReader<R = TcpStream> {
    inp: BufReader<R>,
    key: Arc<Key>,
    session: [u8; 32],
    dir: u8,
    counter: u64,
}

impl<R: Read> FrameReader<R> {
    /// Reads the frames of direction `dir` of `session` from `inp` (the
    /// connection's reader comes from [`Conn::split`]; this is for tests
    /// and the fuzzer).
    pub fn new(inp: R, key: Arc<Key>, session: [u8; 32], dir: u8) -> Self {
        Self {
            inp: BufReader::new(inp),
            key,
            session,
            dir,
            counter: 0,
        }
    }

    /// The next message.
    pub fn read(&mut self) -> Result<Message, NetError> {
        let mut head = [0u8; 12];
        self.inp.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if len > MAX_FRAME {
            return Err(NetError::Protocol("frame too large"));
        }
        let c = u64::from_be_bytes(head[4..12].try_into().unwrap_or([0; 8]));
        if c != self.counter + 1 {
            return Err(NetError::Protocol("frame out of sequence"));
        }
        let payload = read_payload(&mut self.inp, len as usize)?;
        let mut tag = [0u8; MAC_LEN];
        self.inp.read_exact(&mut tag)?;
        if !self
            .key
            .verify_parts(&[&self.session, &[self.dir], &head[4..12], &payload], &tag)
        {
            return Err(NetError::Auth);
        }
        self.counter = c;
        codec::decode(&payload).map_err(|_| NetError::Protocol("undecodable message"))
    }
}

/// Reads a `len`-byte payload into a buffer of its own (a write's data is a
/// slice of it), placed so that bulk data starts on a page boundary: the
/// disk worker then writes it directly, without a copy. Read into spare
/// capacity, never zeroed first; the capacity is reserved up front, so the
/// buffer never moves.
fn read_payload(inp: &mut impl Read, len: usize) -> std::io::Result<Bytes> {
    let mut first = [0u8; codec::HEAD_MAX];
    let first = &mut first[..len.min(codec::HEAD_MAX)];
    inp.read_exact(first)?;
    let mut buf = Vec::with_capacity(len + direct::ALIGN);
    let pad = match codec::bulk_start(first) {
        Some(at) => (buf.as_ptr() as usize + at)
            .next_multiple_of(direct::ALIGN)
            .saturating_sub(buf.as_ptr() as usize + at),
        None => 0,
    };
    buf.resize(pad, 0);
    buf.extend_from_slice(first);
    let rest = (len - first.len()) as u64;
    inp.take(rest).read_to_end(&mut buf)?;
    if buf.len() != pad + len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Bytes::from(buf).slice(pad..))
}

/// Which channel a message goes on, as a bool (meta = true).
pub fn is_meta(m: &Message) -> bool {
    m.channel() == Channel::Meta
}

/// Accepts connections for `volume` on `listener` and hands each
/// authenticated one to `found` (on the caller's thread).
pub fn accept_loop(
    listener: TcpListener,
    volume: String,
    me: u8,
    key: Arc<Key>,
    found: Sender<(Hello, Conn)>,
) {
    use super::accept_gate::{Gate, Summary};
    let mut gate = Gate::default();
    let mut gated = Summary::default();
    let failed = Arc::new(std::sync::Mutex::new(Summary::default()));
    for s in listener.incoming() {
        let Ok(s) = s else { continue };
        let now = std::time::Instant::now();
        let Some(ticket) = s.peer_addr().ok().and_then(|a| gate.admit(a.ip(), now)) else {
            drop(s); // closed at once: no thread, no read
            if let Some(n) = gated.note(now) {
                tracing::warn!(
                    "volume {volume}: refused {n} connection(s): too many handshakes at once or too many from one address"
                );
            }
            continue;
        };
        let (volume, key, found, failed) =
            (volume.clone(), key.clone(), found.clone(), failed.clone());
        let _ = std::thread::Builder::new()
            .name("tandem-vol-accept".into())
            .spawn(move || {
                let _ticket = ticket;
                match Conn::accept(s, &volume, me, &key) {
                    Ok(pair) => {
                        let _ = found.send(pair);
                    }
                    Err(e) => {
                        let due = failed
                            .lock()
                            .ok()
                            .and_then(|mut f| f.note(std::time::Instant::now()));
                        if let Some(n) = due {
                            tracing::warn!("volume {volume}: refused {n} connection(s) at the hello, the last: {e}");
                        }
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_wrong_key_is_refused() {
        let key = Arc::new(Key::new(b"a volume test key, long enough"));
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let k2 = key.clone();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let (h, c) = Conn::accept(s, "r0", 1, &k2).expect("hello");
            assert_eq!((h.from, h.meta), (0, true));
            let (_w, mut r) = c.split(k2).expect("split");
            r.read().expect("frame")
        });
        let c = Conn::dial(addr, "r0", 0, true, &key).expect("dial");
        let (w, _r) = c.split(key.clone()).expect("split");
        let (outbox, writer) = super::super::outbox::outbox(w);
        outbox.send(Message::Barrier { epoch: 7 }).expect("send");
        drop(outbox);
        writer.run();
        assert_eq!(t.join().expect("join"), Message::Barrier { epoch: 7 });

        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let other = Key::new(b"another key, also long enough!!");
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            Conn::accept(s, "r0", 1, &other).err()
        });
        assert!(Conn::dial(addr, "r0", 0, false, &key).is_err());
        assert!(matches!(t.join().expect("join"), Some(NetError::Auth)));
    }

    #[test]
    fn a_received_writes_data_lands_page_aligned_and_whole() {
        let key = Arc::new(Key::new(b"a volume test key, long enough"));
        let session = [5u8; 32];
        let signer = FrameSigner {
            key: &key,
            session: &session,
            dir: 1,
        };
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let msgs = [
            Message::Write {
                seq: 1 << 33,
                epoch: 3,
                offset: 4096 * 1000,
                data: Bytes::from(data.clone()),
                fua: false,
                protocol: tandem_volumes::Protocol::C,
                others: vec![2],
            },
            Message::ResyncData {
                block: 77,
                data: Bytes::from(data[..8192].to_vec()),
            },
            Message::Barrier { epoch: 9 },
        ];
        let mut wire = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let parts = codec::encode(m).expect("encode");
            let mut out = BufWriter::new(&mut wire);
            signer
                .write_parts(&mut out, i as u64 + 1, &parts)
                .expect("frame");
            out.flush().expect("flush");
        }
        let mut r = FrameReader::new(&wire[..], key, session, 1);
        for m in &msgs {
            let got = r.read().expect("frame");
            assert_eq!(&got, m);
            if let Message::Write { data, .. } | Message::ResyncData { data, .. } = &got {
                assert_eq!(data.as_ptr() as usize % direct::ALIGN, 0, "{m:?}");
            }
        }
    }
}
