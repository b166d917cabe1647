//! Replication messages to frame payloads and back, without copying their
//! bulk data. The bytes are exactly postcard's encoding of the
//! [`Message`] (the wire format is postcard's), but the data of a write or
//! of a resync run is sent from the engine's own buffer and, on receipt,
//! sliced out of the frame's buffer: two copies of every replicated byte
//! fewer on the data path, which runs CPU-bound on small machines
//! (bench/README.md "volumes").

use std::sync::OnceLock;

use bytes::Bytes;
use tandem_volumes::{Message, Protocol};

/// A message's payload in three parts: `head`, then the bulk data (if the
/// message carries any), then `tail`.
pub struct Parts {
    /// The encoding up to and including the bulk data's length.
    pub head: Vec<u8>,
    /// The bulk data, sent as it is.
    pub bulk: Option<Bytes>,
    /// The encoding after the bulk data.
    pub tail: Vec<u8>,
}

impl Parts {
    /// Bytes of the whole payload.
    pub fn len(&self) -> usize {
        self.head.len() + self.bulk.as_ref().map_or(0, Bytes::len) + self.tail.len()
    }

    /// Whether the payload is empty (never, for a real message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// postcard's variant numbers of the messages that carry bulk data,
/// learnt from postcard itself so that reordering `Message` cannot
/// desynchronise this module.
struct Variants {
    write: u32,
    resync_data: u32,
}

fn variants() -> &'static Variants {
    static V: OnceLock<Variants> = OnceLock::new();
    V.get_or_init(|| {
        let index = |m: &Message| {
            postcard::to_allocvec(m)
                .ok()
                .and_then(|b| postcard::take_from_bytes::<u32>(&b).ok().map(|(i, _)| i))
                .unwrap_or(u32::MAX)
        };
        Variants {
            write: index(&Message::Write {
                seq: 0,
                epoch: 0,
                offset: 0,
                data: Bytes::new(),
                fua: false,
                protocol: Protocol::C,
                others: Vec::new(),
            }),
            resync_data: index(&Message::ResyncData {
                block: 0,
                data: Bytes::new(),
            }),
        }
    })
}

/// Encodes `m`; the parts concatenated are `postcard::to_allocvec(m)`.
pub fn encode(m: &Message) -> Result<Parts, postcard::Error> {
    let v = variants();
    Ok(match m {
        Message::Write {
            seq,
            epoch,
            offset,
            data,
            fua,
            protocol,
            others,
        } => Parts {
            head: postcard::to_allocvec(&(v.write, *seq, *epoch, *offset, data.len()))?,
            bulk: Some(data.clone()),
            tail: postcard::to_allocvec(&(*fua, *protocol, others))?,
        },
        Message::ResyncData { block, data } => Parts {
            head: postcard::to_allocvec(&(v.resync_data, *block, data.len()))?,
            bulk: Some(data.clone()),
            tail: Vec::new(),
        },
        other => Parts {
            head: postcard::to_allocvec(other)?,
            bulk: None,
            tail: Vec::new(),
        },
    })
}

/// Bytes of a payload's start that always hold a bulk message's head
/// (variant, three u64 and a length, each at most a 10-byte varint).
pub const HEAD_MAX: usize = 48;

/// Where the bulk data starts in a payload that begins with `prefix` (at
/// most [`HEAD_MAX`] bytes of it), if the message carries bulk data: the
/// receiver reads the rest of the payload so that the data lands on a
/// page boundary, and the peer's disk write needs no copy.
pub fn bulk_start(prefix: &[u8]) -> Option<usize> {
    let v = variants();
    let (index, rest) = postcard::take_from_bytes::<u32>(prefix).ok()?;
    let rest = if index == v.write {
        postcard::take_from_bytes::<(u64, u64, u64, u64)>(rest)
            .ok()?
            .1
    } else if index == v.resync_data {
        postcard::take_from_bytes::<(u64, u64)>(rest).ok()?.1
    } else {
        return None;
    };
    Some(prefix.len() - rest.len())
}

/// Decodes a payload as `postcard::from_bytes` would, the bulk data of a
/// write or resync run a slice of `payload` rather than a copy.
pub fn decode(payload: &Bytes) -> Result<Message, postcard::Error> {
    let v = variants();
    let (index, rest) = postcard::take_from_bytes::<u32>(payload)?;
    // Where `data` (the bytes just before `after`) starts in the payload.
    let slice = |data: &[u8], after: &[u8]| {
        let start = payload.len() - after.len() - data.len();
        payload.slice(start..start + data.len())
    };
    if index == v.write {
        let ((seq, epoch, offset), rest) = postcard::take_from_bytes::<(u64, u64, u64)>(rest)?;
        let (data, rest) = postcard::take_from_bytes::<&[u8]>(rest)?;
        let data = slice(data, rest);
        let ((fua, protocol, others), _) =
            postcard::take_from_bytes::<(bool, Protocol, Vec<u8>)>(rest)?;
        return Ok(Message::Write {
            seq,
            epoch,
            offset,
            data,
            fua,
            protocol,
            others,
        });
    }
    if index == v.resync_data {
        let (block, rest) = postcard::take_from_bytes::<u64>(rest)?;
        let (data, rest) = postcard::take_from_bytes::<&[u8]>(rest)?;
        return Ok(Message::ResyncData {
            block,
            data: slice(data, rest),
        });
    }
    postcard::from_bytes(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Write {
                seq: 300,
                epoch: 1 << 40,
                offset: 4096 * 77,
                data: Bytes::from(vec![7u8; 300]),
                fua: true,
                protocol: Protocol::B,
                others: vec![2, 3],
            },
            Message::Write {
                seq: 1,
                epoch: 0,
                offset: 0,
                data: Bytes::new(),
                fua: false,
                protocol: Protocol::C,
                others: Vec::new(),
            },
            Message::ResyncData {
                block: 123_456,
                data: Bytes::from((0..=255u8).cycle().take(8192).collect::<Vec<_>>()),
            },
            Message::WriteAck { seq: 9 },
            Message::Barrier { epoch: 4 },
            Message::Ping,
        ]
    }

    #[test]
    fn parts_are_postcards_encoding_and_decode_back() {
        for m in samples() {
            let whole = postcard::to_allocvec(&m).expect("encode");
            let p = encode(&m).expect("parts");
            let mut joined = p.head.clone();
            joined.extend_from_slice(p.bulk.as_deref().unwrap_or(&[]));
            joined.extend_from_slice(&p.tail);
            assert_eq!(joined, whole, "{m:?}");
            assert_eq!(p.len(), whole.len());
            let back = decode(&Bytes::from(whole)).expect("decode");
            assert_eq!(back, m);
        }
    }

    #[test]
    fn bulk_data_is_a_slice_of_the_frame_not_a_copy() {
        let m = &samples()[0];
        let payload = Bytes::from(postcard::to_allocvec(m).expect("encode"));
        let Ok(Message::Write { data, .. }) = decode(&payload) else {
            panic!("not a write");
        };
        let inside = payload.as_ptr_range();
        assert!(inside.contains(&data.as_ptr()), "the data was copied");
    }

    #[test]
    fn the_bulk_start_is_found_from_the_head_alone() {
        for m in samples() {
            let p = encode(&m).expect("parts");
            let whole = postcard::to_allocvec(&m).expect("encode");
            let prefix = &whole[..whole.len().min(HEAD_MAX)];
            let want = p.bulk.is_some().then_some(p.head.len());
            assert_eq!(bulk_start(prefix), want, "{m:?}");
        }
        assert_eq!(bulk_start(&[]), None);
    }

    #[test]
    fn truncated_and_garbled_payloads_are_errors_not_panics() {
        for m in samples() {
            let whole = postcard::to_allocvec(&m).expect("encode");
            for cut in 0..whole.len() {
                let _ = decode(&Bytes::copy_from_slice(&whole[..cut]));
            }
            let mut bad = whole.clone();
            bad[1..].iter_mut().for_each(|b| *b = 0xff);
            assert!(decode(&Bytes::from(bad)).is_err() || whole.len() < 3);
        }
    }
}
