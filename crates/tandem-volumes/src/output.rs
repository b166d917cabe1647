//! The engine's one output type: everything it asks its driver to do.
//! Drivers (the daemon's volume thread, the simulator) take outputs with
//! [`crate::Volume::poll`] and handle each with one exhaustive `match`.

use bytes::Bytes;

use crate::event::VolumeEvent;
use crate::message::Message;
use crate::meta::Metadata;

/// Names a disk operation; its completion comes back with
/// [`crate::Volume::disk_done`].
pub type IoId = u64;
/// Names an application request (an NBD cookie, a FUSE unique id…).
pub type ReqId = u64;

/// Why an application request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// Writes need the primary role.
    #[error(
        "the volume is not primary here; writes are refused (promote it with `tandem volume primary`)"
    )]
    ReadOnly,
    /// The node lost the cluster's lease: a peer may be promoted now.
    #[error("this node lost the cluster's lease; writes are refused (a peer may be primary now)")]
    LeaseLapsed,
    /// The local copy is not usable.
    #[error("the local copy is {0}; no I/O until it is up to date")]
    NotUsable(crate::state::DiskState),
    /// Beyond the end of the volume.
    #[error("offset {offset} + {len} bytes is beyond the end of the volume ({size} bytes)")]
    OutOfRange {
        /// Offset asked.
        offset: u64,
        /// Length asked.
        len: u64,
        /// Volume size.
        size: u64,
    },
    /// The local disk failed.
    #[error("local disk error: {0}")]
    Disk(String),
}

/// One thing the engine asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write the metadata durably (write + fdatasync), then report `io`.
    MetaWrite {
        /// Report id.
        io: IoId,
        /// The whole metadata.
        meta: Box<Metadata>,
    },
    /// Write to the backing disk, then report `io`. `fua`: durable
    /// before reporting.
    DiskWrite {
        /// Report id.
        io: IoId,
        /// Byte offset.
        offset: u64,
        /// Data.
        data: Bytes,
        /// Force unit access.
        fua: bool,
    },
    /// Read from the backing disk, then report `io` with the bytes.
    DiskRead {
        /// Report id.
        io: IoId,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Make every completed write durable (fdatasync), then report `io`.
    DiskFlush {
        /// Report id.
        io: IoId,
    },
    /// Send a message to a peer, on the connection [`Message::channel`]
    /// names, in order.
    Send {
        /// Peer node index.
        peer: u8,
        /// The message.
        msg: Message,
    },
    /// Close the connections to a peer (split brain, unrelated data, a
    /// protocol error, a ping timeout); report [`crate::Volume::connection_lost`].
    Disconnect {
        /// Peer node index.
        peer: u8,
    },
    /// An application request finished: data for a read, nothing for a
    /// write or a flush.
    Complete {
        /// The request.
        req: ReqId,
        /// Its outcome.
        result: Result<Option<Bytes>, IoError>,
    },
    /// Measure how many data bytes the backing disk holds now (its
    /// metadata excluded), and report with
    /// [`crate::Volume::room_measured`] (`resize`).
    MeasureRoom,
    /// Grow: let data operations reach `meta.size` bytes, moving the
    /// metadata region to the end of the (grown) backing disk if it lives
    /// there, and write `meta` durably in its place; then report `io`.
    Grow {
        /// Report id.
        io: IoId,
        /// The metadata for the new size.
        meta: Box<Metadata>,
    },
    /// Something to log.
    Event(VolumeEvent),
}
