//! The disk queue: what each disk operation is for, and ordering. Two
//! writes to overlapping bytes never run at once (the later waits), and a
//! read waits for overlapping writes, so a resync never reads a block
//! that is half written.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::output::{IoId, Output, ReqId};

/// What a disk operation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A metadata write.
    Meta,
    /// The local half of application write `id`.
    AppWrite(u64),
    /// An application read.
    AppRead(ReqId),
    /// The local half of application flush `id`.
    AppFlush(u64),
    /// Work for a peer (its maps say which).
    Peer(u8),
    /// The flush of a demotion: the primary's writes durable before the
    /// metadata stops saying "primary".
    DemoteFlush,
    /// A grow (`resize`).
    Grow,
}

/// A disk operation waiting for an overlapping write.
#[derive(Debug)]
enum Waiting {
    Write {
        io: IoId,
        offset: u64,
        data: Bytes,
        fua: bool,
    },
    Read {
        io: IoId,
        offset: u64,
        len: u64,
    },
}

impl Waiting {
    /// Issues it now.
    fn issue(self, writing: &mut BTreeMap<IoId, (u64, u64)>, out: &mut VecDeque<Output>) {
        match self {
            Waiting::Write {
                io,
                offset,
                data,
                fua,
            } => {
                writing.insert(io, (offset, data.len() as u64));
                out.push_back(Output::DiskWrite {
                    io,
                    offset,
                    data,
                    fua,
                });
            }
            Waiting::Read { io, offset, len } => {
                out.push_back(Output::DiskRead { io, offset, len })
            }
        }
    }

    fn range(&self) -> (u64, u64) {
        match self {
            Waiting::Write { offset, data, .. } => (*offset, data.len() as u64),
            Waiting::Read { offset, len, .. } => (*offset, *len),
        }
    }
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

/// Purposes of operations in flight and the writes they order.
#[derive(Debug, Default)]
pub(super) struct DiskQueue {
    purposes: BTreeMap<IoId, Purpose>,
    writing: BTreeMap<IoId, (u64, u64)>,
    waiting: VecDeque<Waiting>,
}

impl DiskQueue {
    /// Records what `io` is for.
    pub(super) fn note(&mut self, io: IoId, p: Purpose) {
        self.purposes.insert(io, p);
    }

    /// What `io` was for (forgotten).
    pub(super) fn take(&mut self, io: IoId) -> Option<Purpose> {
        self.purposes.remove(&io)
    }

    /// Operations in flight or waiting.
    pub(super) fn open(&self) -> usize {
        self.purposes.len()
    }

    fn blocked(&self, r: (u64, u64), upto: usize) -> bool {
        self.writing.values().any(|w| overlap(*w, r))
            || self
                .waiting
                .iter()
                .take(upto)
                .any(|w| overlap(w.range(), r))
    }

    /// Issues a write now, or after the overlapping writes before it.
    pub(super) fn write(
        &mut self,
        io: IoId,
        offset: u64,
        data: Bytes,
        fua: bool,
        out: &mut VecDeque<Output>,
    ) {
        let w = Waiting::Write {
            io,
            offset,
            data,
            fua,
        };
        if self.blocked(w.range(), self.waiting.len()) {
            self.waiting.push_back(w);
        } else {
            w.issue(&mut self.writing, out);
        }
    }

    /// Issues a read now, or after the overlapping writes before it.
    pub(super) fn read(&mut self, io: IoId, offset: u64, len: u64, out: &mut VecDeque<Output>) {
        let r = Waiting::Read { io, offset, len };
        if self.blocked(r.range(), self.waiting.len()) {
            self.waiting.push_back(r);
        } else {
            r.issue(&mut self.writing, out);
        }
    }

    /// A write finished: issues what waited for it.
    pub(super) fn written(&mut self, io: IoId, out: &mut VecDeque<Output>) {
        if self.writing.remove(&io).is_none() {
            return;
        }
        let mut i = 0;
        while i < self.waiting.len() {
            let r = self.waiting[i].range();
            if self.blocked(r, i) {
                i += 1;
                continue;
            }
            if let Some(w) = self.waiting.remove(i) {
                w.issue(&mut self.writing, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_writes_and_reads_wait_in_order() {
        let (mut q, mut out) = (DiskQueue::default(), VecDeque::new());
        q.write(1, 0, Bytes::from_static(&[1; 8]), false, &mut out);
        q.write(2, 4, Bytes::from_static(&[2; 8]), false, &mut out); // overlaps 1
        q.write(3, 100, Bytes::from_static(&[3; 8]), false, &mut out); // free
        q.read(4, 6, 2, &mut out); // overlaps 1 and 2
        let ios: Vec<IoId> = out
            .drain(..)
            .map(|o| match o {
                Output::DiskWrite { io, .. } | Output::DiskRead { io, .. } => io,
                _ => 0,
            })
            .collect();
        assert_eq!(ios, vec![1, 3]);
        q.written(1, &mut out);
        assert!(matches!(
            out.pop_front(),
            Some(Output::DiskWrite { io: 2, .. })
        ));
        assert!(out.is_empty(), "the read waits for write 2");
        q.written(2, &mut out);
        assert!(matches!(
            out.pop_front(),
            Some(Output::DiskRead { io: 4, .. })
        ));
    }
}
