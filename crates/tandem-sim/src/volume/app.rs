//! The application on the primary and what it was promised: per sector,
//! the last write acknowledged, writes in flight, and writes that may or
//! may not have landed (in flight at a crash, or failed).

use std::collections::{BTreeMap, BTreeSet};

use super::pattern::SECTOR;

/// What a completed flush covered: `last_acked` at its issue, and the
/// peers (with their link session) in sync then.
pub type Covered = (Vec<u64>, Vec<(usize, u64)>);

/// A request the application has outstanding.
#[derive(Clone, Debug)]
pub enum Req {
    /// A write of sectors by `writer`.
    Write {
        /// The write's id (in the data).
        writer: u64,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// A flush, with what it must make durable.
    Flush {
        /// `last_acked` when it was issued.
        snapshot: Vec<u64>,
        /// Peers in sync when it was issued, with their link session.
        covered: Vec<(usize, u64)>,
    },
}

/// The application and its checker.
#[derive(Debug, Default)]
pub struct App {
    /// The node it writes to.
    pub primary: Option<usize>,
    next_writer: u64,
    next_req: u64,
    /// Per sector: the last acknowledged writer.
    pub last_acked: Vec<u64>,
    /// Per sector: the writer in flight.
    pub inflight: Vec<u64>,
    /// Per sector: writers that may have landed.
    pub maybe: Vec<BTreeSet<u64>>,
    /// Per sector: every writer ever acknowledged there (and 0, the
    /// sector never written).
    acked_ever: Vec<BTreeSet<u64>>,
    /// Outstanding requests.
    pub outstanding: BTreeMap<u64, Req>,
    /// Per node, per sector: the writer a completed flush made durable
    /// there (at least).
    pub floor: BTreeMap<usize, Vec<u64>>,
    /// Per sector: the latest writer a completed flush covered, wherever
    /// it was made durable (what an application that fsyncs relies on).
    pub flushed: Vec<u64>,
    /// Writes and flushes completed, and failed.
    pub writes_done: u64,
    /// Flushes completed.
    pub flushes_done: u64,
    /// Requests that failed.
    pub failed: u64,
    /// No new requests (converging).
    pub stopped: bool,
}

impl App {
    /// For a volume of `size` bytes.
    pub fn new(size: u64) -> Self {
        let n = (size / SECTOR) as usize;
        Self {
            next_writer: 1,
            next_req: 1,
            last_acked: vec![0; n],
            flushed: vec![0; n],
            inflight: vec![0; n],
            maybe: vec![BTreeSet::new(); n],
            acked_ever: vec![BTreeSet::from([0]); n],
            ..Self::default()
        }
    }

    /// The volume grew to `size` bytes: its new sectors hold whatever the
    /// source's grown disk held (foreign data) until written.
    pub fn grow(&mut self, size: u64) {
        let n = (size / SECTOR) as usize;
        self.last_acked.resize(n, 0);
        self.flushed.resize(n, 0);
        self.inflight.resize(n, 0);
        self.maybe.resize(n, BTreeSet::from([u64::MAX]));
        self.acked_ever.resize(n, BTreeSet::from([0]));
        for f in self.floor.values_mut() {
            f.resize(n, 0);
        }
    }

    fn sectors(offset: u64, len: u64) -> std::ops::Range<usize> {
        (offset / SECTOR) as usize..((offset + len) / SECTOR) as usize
    }

    /// Whether a write to these bytes may be issued (no overlapping write
    /// in flight: applications do not race themselves).
    pub fn free(&self, offset: u64, len: u64) -> bool {
        Self::sectors(offset, len).all(|s| self.inflight[s] == 0)
    }

    /// Records a new write; returns (request id, writer id).
    pub fn start_write(&mut self, offset: u64, len: u64) -> (u64, u64) {
        let (req, writer) = (self.next_req, self.next_writer);
        self.next_req += 1;
        self.next_writer += 1;
        for s in Self::sectors(offset, len) {
            self.inflight[s] = writer;
        }
        self.outstanding.insert(
            req,
            Req::Write {
                writer,
                offset,
                len,
            },
        );
        (req, writer)
    }

    /// Records a new flush.
    pub fn start_flush(&mut self, covered: Vec<(usize, u64)>) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        self.outstanding.insert(
            req,
            Req::Flush {
                snapshot: self.last_acked.clone(),
                covered,
            },
        );
        req
    }

    /// A request completed; for a completed flush, returns what it covered.
    pub fn complete(&mut self, req: u64, ok: bool) -> Option<Covered> {
        match self.outstanding.remove(&req)? {
            Req::Write {
                writer,
                offset,
                len,
            } => {
                for s in Self::sectors(offset, len) {
                    self.inflight[s] = 0;
                    if ok {
                        self.acked_ever[s].insert(writer);
                        self.last_acked[s] = writer;
                        self.maybe[s].clear();
                    } else {
                        self.maybe[s].insert(writer);
                    }
                }
                if ok {
                    self.writes_done += 1;
                } else {
                    self.failed += 1;
                }
                None
            }
            Req::Flush { snapshot, covered } => {
                if ok {
                    self.flushes_done += 1;
                    for (f, w) in self.flushed.iter_mut().zip(&snapshot) {
                        *f = (*f).max(*w);
                    }
                    Some((snapshot, covered))
                } else {
                    self.failed += 1;
                    None
                }
            }
        }
    }

    /// Protocol A: a write of these bytes was acknowledged once written
    /// locally and sent, and was still on its way to the peers when the
    /// primary crashed. It is lost with it (DRBD's protocol A too): the
    /// survivors may hold any write acknowledged there before, until the
    /// sector is written again.
    pub fn lost_on_the_wire(&mut self, offset: u64, len: u64) {
        for s in Self::sectors(offset, len) {
            let earlier = self.acked_ever[s].clone();
            self.maybe[s].extend(earlier);
        }
    }

    /// The primary crashed: its outstanding requests will never complete.
    pub fn primary_lost(&mut self) {
        for (_, r) in std::mem::take(&mut self.outstanding) {
            if let Req::Write {
                writer,
                offset,
                len,
            } = r
            {
                for s in Self::sectors(offset, len) {
                    self.inflight[s] = 0;
                    self.maybe[s].insert(writer);
                }
            }
        }
        self.primary = None;
    }

    /// Before convergence: the application stops issuing new requests but
    /// keeps its outstanding ones.
    pub fn primary_keep(&mut self) {
        self.stopped = true;
    }

    /// Whether `writer` is acceptable in sector `s` of a copy that must
    /// hold every acknowledged write.
    pub fn acceptable(&self, s: usize, writer: u64) -> bool {
        writer == self.last_acked[s]
            || writer == self.inflight[s]
            || self.maybe[s].contains(&writer)
    }
}
