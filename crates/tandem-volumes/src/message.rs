//! What two nodes of a volume tell each other. The driver carries each
//! message on the data connection or the meta connection
//! ([`Message::channel`]), so acknowledgements never queue behind bulk
//! data, and authenticates it with the cluster key.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::gi::{Generations, SideFlags, Uuid};
use crate::state::{DiskState, Role};

/// How a peer acknowledges a replicated write (the connection's protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// Complete once the write is handed to the network.
    A,
    /// Complete once the peer received it.
    B,
    /// Complete once the peer's disk write completed.
    C,
}

/// Which of the two connections carries a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Writes, barriers, resync data, bitmaps.
    Data,
    /// Acknowledgements and pings.
    Meta,
}

/// A message between two nodes of one volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message after connecting: who this is and what it holds.
    Hello {
        /// Volume size in bytes.
        size: u64,
        /// Generations (the bitmap generation is the one kept for the
        /// receiver).
        gens: Generations,
        /// Flags for the resync decision.
        flags: SideFlags,
        /// Role.
        role: Role,
        /// Disk state.
        disk: DiskState,
        /// Blocks set in the bitmap kept for the receiver.
        dirty: u64,
        /// The operator asked this side to throw its changes away.
        discard_my_data: bool,
        /// The sender (a secondary) is connected to a primary other than
        /// the receiver: two secondaries then decide nothing about the data
        /// until that primary is gone (three-node volumes).
        with_primary: bool,
    },
    /// The blocks set in the sender's bitmap for the receiver.
    Bitmap {
        /// Set block numbers.
        blocks: Vec<u64>,
        /// The sender is the sync target and runs `before-resync-target`
        /// first: wait for [`Message::ResyncReady`].
        #[serde(default)]
        hold: bool,
    },
    /// The sync target that held the resync is ready (its
    /// `before-resync-target` handler finished): the source sends its sync
    /// generation and the blocks.
    ResyncReady,
    /// The sync source's new generation for the target.
    SyncUuid(Uuid),
    /// An application write.
    Write {
        /// Sequence number on this connection.
        seq: u64,
        /// Epoch of the write.
        epoch: u64,
        /// Byte offset.
        offset: u64,
        /// Data.
        data: Bytes,
        /// Force unit access: durable before the peer acknowledges.
        fua: bool,
        /// Which acknowledgement the sender waits for.
        protocol: Protocol,
        /// The other nodes the primary sent this write to (a secondary
        /// marks it out of sync for every other peer).
        others: Vec<u8>,
    },
    /// The primary started a new data generation (a peer is away): the
    /// secondary adopts it, and tracks changes for the `absent` nodes
    /// against its old one.
    NewCurrent {
        /// The new current generation.
        current: Uuid,
        /// The nodes the primary no longer replicates to.
        absent: Vec<u8>,
    },
    /// Node `node` is in sync with the primary that sends this, as the
    /// receiver is: the receiver stops tracking changes for it.
    InSync {
        /// The node in sync.
        node: u8,
    },
    /// Node `node` acknowledged every write of epochs up to `epoch` as
    /// durable (sent by the primary to its other secondaries, which stop
    /// tracking those writes as possibly missing there).
    Durable {
        /// The node that flushed.
        node: u8,
        /// The epoch.
        epoch: u64,
    },
    /// Every write of epochs up to `epoch` was sent: acknowledge once they
    /// are written and flushed.
    Barrier {
        /// The epoch closed.
        epoch: u64,
    },
    /// Every write of epochs up to `epoch` is durable here.
    BarrierAck {
        /// The epoch.
        epoch: u64,
    },
    /// Protocol B: write `seq` was received.
    RecvAck {
        /// Sequence number.
        seq: u64,
    },
    /// Protocol C: write `seq` is written.
    WriteAck {
        /// Sequence number.
        seq: u64,
    },
    /// Resync: the source's copy of a run of blocks.
    ResyncData {
        /// First block number.
        block: u64,
        /// The run: whole 4 KiB blocks, at most
        /// [`RESYNC_RUN`](crate::RESYNC_RUN) of them (the last shorter at
        /// the end of the volume).
        data: Bytes,
    },
    /// Resync with checksums: the digest of the source's copy of a run.
    ResyncDigest {
        /// First block number.
        block: u64,
        /// Blocks in the run.
        blocks: u64,
        /// Its digest.
        digest: u64,
    },
    /// Resync with checksums: the target's copy of the run starting at
    /// `block` differs; send it.
    ResyncWant {
        /// First block number.
        block: u64,
    },
    /// Resync: the target wrote a run (or found it equal).
    ResyncAck {
        /// First block number.
        block: u64,
        /// Blocks in the run.
        blocks: u64,
    },
    /// Resync finished: the source's generations to adopt.
    ResyncDone {
        /// The source's generations.
        gens: Generations,
    },
    /// Role or disk changed.
    State {
        /// Role.
        role: Role,
        /// Disk state.
        disk: DiskState,
    },
    /// Online verify: the digest of a block on the verify source.
    VerifyDigest {
        /// Block number.
        block: u64,
        /// Digest of its contents.
        digest: u64,
    },
    /// Online verify: whether the block matched.
    VerifyReply {
        /// Block number.
        block: u64,
        /// Same contents on both sides.
        same: bool,
    },
    /// Online verify finished on the source.
    VerifyDone,
    /// Liveness probe.
    Ping,
    /// Answer to a ping.
    PingAck,
    /// `resize`: how many data bytes does your backing disk hold now?
    ResizeAsk,
    /// The answer to [`Message::ResizeAsk`].
    ResizeRoom {
        /// Data bytes the backing disk holds (its metadata excluded).
        room: u64,
    },
    /// Grow the volume to `size` bytes. Node `source` grows last, once
    /// every other node did, and resyncs the new area to them unless
    /// `clean` (the operator vouched that it is identical everywhere).
    Resize {
        /// The new size.
        size: u64,
        /// The node whose new area the others get.
        source: u8,
        /// Nothing to resync (`--assume-clean`).
        clean: bool,
    },
    /// The sender grew to `size` bytes.
    Resized {
        /// Its size now.
        size: u64,
    },
}

impl Message {
    /// The connection that carries it.
    pub fn channel(&self) -> Channel {
        match self {
            Message::RecvAck { .. }
            | Message::WriteAck { .. }
            | Message::BarrierAck { .. }
            | Message::ResyncAck { .. }
            | Message::ResyncWant { .. }
            | Message::VerifyReply { .. }
            | Message::Ping
            | Message::PingAck => Channel::Meta,
            _ => Channel::Data,
        }
    }
}
