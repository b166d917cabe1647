//! tandem's heartbeat wire protocol.
//!
//! The principal types are [`Packet`] (what a heartbeat says), [`Keyring`]
//! (the shared secrets that sign and verify packets) and [`ReplayWindow`]
//! (per sender, link and incarnation: which sequence numbers were already
//! accepted). [`encode`] turns a packet into signed bytes; [`decode`] checks
//! length, magic, version, cluster and MAC before it parses anything else, and
//! returns a typed [`DecodeError`] for every way a datagram can be wrong.
//!
//! The layout is documented in `docs/wire-protocol.md`. The codec is written
//! by hand because the format is a fixed 32-byte header, a few TLVs and a
//! 32-byte MAC: about two hundred lines that are easy to audit and to fuzz,
//! with no allocation beyond the bounded membership view.

pub mod arbiter;
mod auth;
mod codec;
mod packet;
mod replay;

pub use auth::{Key, KeyError, Keyring, MAC_LEN};
pub use codec::{
    DecodeError, HEADER_LEN, MAGIC, MAX_GROUPS, MAX_LIST, MAX_PACKET, MIN_PACKET, VERSION, decode,
    encode, view_room,
};
pub use packet::{
    Echo, GroupPhase, GroupReport, NodeState, Packet, PacketKind, ViewEntry, WireMove, WireSettings,
};
pub use replay::{ReplayVerdict, ReplayWindow};

/// Derives the 32-bit cluster id carried in every packet from the cluster name.
///
/// Two clusters on one network with different names never accept each
/// other's packets, even before the MAC is checked.
pub fn cluster_id(name: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}
