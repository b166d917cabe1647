//! Application requests from the exports (NBD, FUSE): split into engine
//! requests, and answered when every part is done.

use bytes::Bytes;
use tandem_volumes::{IoError, ReqId};

use super::{MAX_CHUNK, Origin, Pending, Runner, fuse, nbd};

/// What an export (NBD or FUSE) asks of the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read `len` bytes at `offset`.
    Read {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Write `data` at `offset`; `fua`: durable before it completes.
    Write {
        /// Offset.
        offset: u64,
        /// Data.
        data: Bytes,
        /// Force unit access.
        fua: bool,
    },
    /// Make every completed write durable, here and on the peers.
    Flush,
    /// Zero `len` bytes at `offset` (NBD TRIM and WRITE_ZEROES, FUSE
    /// punch-hole and zero-range).
    Zero {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
    },
}

impl Runner {
    /// Hands an application operation to the engine, split into writes of
    /// at most [`MAX_CHUNK`]; the origin is answered when every part is.
    pub(super) fn submit(&mut self, origin: Origin, op: Op) {
        if !matches!(op, Op::Read { .. }) && self.lease_lapsed() {
            // Held while the cluster may still renew the lease (a peer
            // that just came back has not acknowledged a fresh heartbeat
            // yet); refused once the lapse lasts (see `check_lease`).
            if self.lapse_failed {
                self.lapsed_refusals += 1;
                return self.answer(origin, Err(IoError::LeaseLapsed));
            }
            self.held.push((origin, op));
            return;
        }
        let now = self.now();
        let parent = self.next_req;
        self.next_req += 1;
        let mut ids = Vec::new();
        let mut next = || {
            let id = self.next_req;
            self.next_req += 1;
            id
        };
        let mut writes = Vec::new();
        let write = !matches!(op, Op::Read { .. });
        match op {
            Op::Read { offset, len } => {
                let id = next();
                ids.push(id);
                self.vol.read(now, id, offset, len);
            }
            Op::Flush => {
                let id = next();
                ids.push(id);
                self.vol.flush(now, id);
            }
            Op::Write { offset, data, fua } => {
                let mut at = 0u64;
                while at < data.len() as u64 || (at == 0 && data.is_empty()) {
                    let end = (at + MAX_CHUNK).min(data.len() as u64);
                    writes.push((
                        next(),
                        offset + at,
                        data.slice(at as usize..end as usize),
                        fua,
                    ));
                    if data.is_empty() {
                        break;
                    }
                    at = end;
                }
            }
            Op::Zero { offset, len } => {
                let zeros = Bytes::from(vec![0u8; MAX_CHUNK.min(len) as usize]);
                let mut at = 0u64;
                while at < len {
                    let n = MAX_CHUNK.min(len - at);
                    writes.push((next(), offset + at, zeros.slice(..n as usize), false));
                    at += n;
                }
            }
        }
        ids.extend(writes.iter().map(|w| w.0));
        if ids.is_empty() {
            // A zero-length zeroing: nothing to do.
            return self.answer(origin, Ok(None));
        }
        self.pending.insert(
            parent,
            Pending {
                origin,
                write,
                parts: ids.len(),
                error: None,
                data: None,
            },
        );
        for id in &ids {
            self.parts.insert(*id, parent);
        }
        for (id, off, data, fua) in writes {
            self.vol.write(now, id, off, data, fua);
        }
    }

    /// An NBD request (connection `conn`, the client's `cookie`).
    pub(super) fn nbd_request(&mut self, conn: u64, cookie: u64, req: Op) {
        let write = !matches!(req, Op::Read { .. } | Op::Flush);
        self.submit(
            Origin::Nbd {
                conn,
                cookie,
                write,
            },
            req,
        );
    }

    /// A FUSE request, answered through `reply`.
    pub(super) fn fuse_request(&mut self, op: Op, reply: fuse::Reply) {
        self.submit(Origin::Fuse(reply), op);
    }

    /// Engine request `req` finished: when it was the last part of an
    /// application request, that one is answered.
    pub(super) fn complete(&mut self, req: ReqId, result: Result<Option<Bytes>, IoError>) {
        let Some(parent) = self.parts.remove(&req) else {
            return;
        };
        let Some(p) = self.pending.get_mut(&parent) else {
            return;
        };
        p.parts -= 1;
        match result {
            Ok(Some(d)) => p.data = Some(d),
            Ok(None) => {}
            Err(e) => {
                if p.error.is_none() {
                    p.error = Some(e);
                }
            }
        }
        if p.parts > 0 {
            return;
        }
        let Some(p) = self.pending.remove(&parent) else {
            return;
        };
        let result = match p.error {
            Some(e) => Err(e),
            // Completed after the lease lapsed: the peer may be promoted by
            // now without it (it may have completed here only because the
            // peer's connection was lost). Never acknowledged then: an
            // error for a write that landed is safe, a success for one the
            // new primary lacks is not.
            None if p.write && self.lease_lapsed() => {
                self.lapsed_refusals += 1;
                Err(IoError::LeaseLapsed)
            }
            None => Ok(p.data),
        };
        self.answer(p.origin, result);
    }

    pub(super) fn answer(&mut self, origin: Origin, result: Result<Option<Bytes>, IoError>) {
        match origin {
            Origin::Fuse(reply) => match result {
                Ok(data) => reply.ok(data.as_deref()),
                Err(IoError::ReadOnly) => reply.error(fuser::Errno::EROFS),
                Err(IoError::OutOfRange { .. }) => reply.error(fuser::Errno::EINVAL),
                Err(_) => reply.error(fuser::Errno::EIO),
            },
            Origin::Nbd {
                conn,
                cookie,
                write,
            } => {
                let error = match &result {
                    Ok(_) => 0,
                    Err(IoError::ReadOnly) => nbd::errno::EPERM,
                    Err(IoError::OutOfRange { .. }) if write => nbd::errno::ENOSPC,
                    Err(IoError::OutOfRange { .. }) => nbd::errno::EINVAL,
                    Err(_) => nbd::errno::EIO,
                };
                let data = result.ok().flatten().filter(|_| !write);
                if let Some(tx) = self.nbd.get(&conn)
                    && tx
                        .send(nbd::Reply {
                            cookie,
                            error,
                            data,
                        })
                        .is_err()
                {
                    self.nbd.remove(&conn);
                }
            }
        }
    }
}
