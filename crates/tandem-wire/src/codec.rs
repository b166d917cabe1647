//! The heartbeat packet: layout, encoder and decoder.
//!
//! ```text
//! offset size field
//!  0      4   magic "TNDM"
//!  4      1   version (1)
//!  5      1   kind (1 heartbeat, 2 leave)
//!  6      1   key id
//!  7      1   link index the packet was sent on
//!  8      4   cluster id
//! 12      2   sender node id
//! 14      2   body length (bytes of TLVs)
//! 16      8   sender's boot incarnation
//! 24      8   sequence number (per sender, link and incarnation)
//! 32      n   TLVs: type u8 | length u16 | value
//! 32+n   32   HMAC-SHA256 over bytes 0 .. 32+n
//! ```
//!
//! All integers are big-endian. A TLV type with bit 0x80 set is critical: a
//! receiver that does not know it rejects the packet; others are skipped.

use crate::auth::{Keyring, MAC_LEN};
use crate::packet::{
    Echo, GroupPhase, GroupReport, NodeState, Packet, PacketKind, ViewEntry, WireMove, WireSettings,
};

/// First four bytes of every packet.
pub const MAGIC: [u8; 4] = *b"TNDM";
/// The protocol version this build speaks.
pub const VERSION: u8 = 2;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Smallest valid packet: a header and a MAC.
pub const MIN_PACKET: usize = HEADER_LEN + MAC_LEN;
/// Largest packet sent or accepted; fits one Ethernet frame.
pub const MAX_PACKET: usize = 1400;

const TLV_STATE: u8 = 1;
const TLV_VIEW: u8 = 2;
const TLV_CONFIG_DIGEST: u8 = 3;
const TLV_GROUPS: u8 = 4;
const TLV_SETTINGS: u8 = 5;
const TLV_ECHO: u8 = 6;
const TLV_CRITICAL: u8 = 0x80;
const GROUP_ENTRY_LEN: usize = 2 + 1 + 1 + 2;
/// Most groups a packet reports (and a configuration may have).
pub const MAX_GROUPS: usize = 64;
/// Most entries of each settings list (standby nodes, moves, cleanups).
pub const MAX_LIST: usize = 32;
const VIEW_ENTRY_LEN: usize = 2 + 8 + 1 + 8;
const TLV_HEADER_LEN: usize = 3;

/// How many membership-view entries fit in a packet of a cluster with
/// `nodes` nodes and `groups` groups in the worst case: every group
/// reported, and the settings at their largest (every node in standby,
/// a move and a cleanup for every group). A configuration whose nodes do
/// not all fit would have views cut short, so it is refused.
pub fn view_room(nodes: usize, groups: usize) -> usize {
    let g = groups.min(MAX_GROUPS);
    let (gl, nl) = (groups.min(MAX_LIST), nodes.min(MAX_LIST));
    let state = TLV_HEADER_LEN + 1;
    let digest = TLV_HEADER_LEN + 8;
    let reports = if g == 0 {
        0
    } else {
        TLV_HEADER_LEN + g * GROUP_ENTRY_LEN
    };
    let settings = TLV_HEADER_LEN + 8 + 2 + 1 + 2 * nl + 1 + 8 * gl + 1 + 6 * gl;
    let echo = TLV_HEADER_LEN + 1;
    let used = MIN_PACKET + state + digest + reports + settings + echo + TLV_HEADER_LEN;
    MAX_PACKET.saturating_sub(used) / VIEW_ENTRY_LEN
}

/// Every way a datagram can fail to be a valid packet.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header plus MAC, or shorter than its body length says.
    #[error("truncated packet ({0} bytes)")]
    Truncated(usize),
    /// Longer than [`MAX_PACKET`] or longer than its body length says.
    #[error("oversized packet ({0} bytes)")]
    Oversized(usize),
    /// Does not start with [`MAGIC`]: not a tandem packet.
    #[error("not a tandem packet (bad magic)")]
    BadMagic,
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// From another cluster.
    #[error("packet for another cluster (id {0:#010x})")]
    WrongCluster(u32),
    /// Signed with a key id this node does not have.
    #[error("unknown key id {0}")]
    UnknownKey(u8),
    /// The MAC does not match: wrong key or tampered packet.
    #[error("bad MAC (wrong key or tampered packet)")]
    BadMac,
    /// Authentic, but its content is not well formed.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Carries a critical field this build does not understand.
    #[error("unknown critical field type {0}")]
    UnknownCritical(u8),
}

fn kind_byte(k: PacketKind) -> u8 {
    match k {
        PacketKind::Heartbeat => 1,
        PacketKind::Leave => 2,
    }
}

fn push_tlv(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    out.push(ty);
    // Values are bounded by the view size check in `encode`.
    out.extend_from_slice(&(u16::try_from(value.len()).unwrap_or(u16::MAX)).to_be_bytes());
    out.extend_from_slice(value);
}

/// Encodes and signs `packet` with the ring's sending key.
///
/// Groups beyond [`MAX_GROUPS`] and settings lists beyond [`MAX_LIST`] are
/// cut, and the membership view is truncated to the room left in
/// [`MAX_PACKET`].
pub fn encode(packet: &Packet, keys: &Keyring) -> Vec<u8> {
    let key = keys.send_key();
    let mut body = Vec::with_capacity(64 + packet.view.len() * VIEW_ENTRY_LEN);
    push_tlv(&mut body, TLV_STATE, &[packet.state.to_byte()]);
    if packet.echo != Echo::None {
        push_tlv(&mut body, TLV_ECHO, &[packet.echo.to_byte()]);
    }
    push_tlv(
        &mut body,
        TLV_CONFIG_DIGEST,
        &packet.config_digest.to_be_bytes(),
    );
    if !packet.groups.is_empty() {
        let mut g = Vec::with_capacity(packet.groups.len() * GROUP_ENTRY_LEN);
        for r in packet.groups.iter().take(MAX_GROUPS) {
            g.extend_from_slice(&r.group.to_be_bytes());
            g.push(r.phase.to_byte());
            g.push(u8::from(r.banned) | (u8::from(r.stale) << 1));
            g.extend_from_slice(&r.target.to_be_bytes());
        }
        push_tlv(&mut body, TLV_GROUPS, &g);
    }
    if let Some(st) = &packet.settings {
        let mut v = Vec::new();
        v.extend_from_slice(&st.generation.to_be_bytes());
        v.extend_from_slice(&st.origin.to_be_bytes());
        let standby = &st.standby[..st.standby.len().min(MAX_LIST)];
        let moves = &st.moves[..st.moves.len().min(MAX_LIST)];
        let cleanups = &st.cleanups[..st.cleanups.len().min(MAX_LIST)];
        v.push(u8::try_from(standby.len()).unwrap_or(0));
        for n in standby {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v.push(u8::try_from(moves.len()).unwrap_or(0));
        for m in moves {
            v.extend_from_slice(&m.group.to_be_bytes());
            v.extend_from_slice(&m.node.to_be_bytes());
            v.extend_from_slice(&m.remaining_ms.to_be_bytes());
        }
        v.push(u8::try_from(cleanups.len()).unwrap_or(0));
        for (g, c) in cleanups {
            v.extend_from_slice(&g.to_be_bytes());
            v.extend_from_slice(&c.to_be_bytes());
        }
        push_tlv(&mut body, TLV_SETTINGS, &v);
    }

    // The membership view fills what room is left.
    let room = MAX_PACKET.saturating_sub(MIN_PACKET + body.len() + TLV_HEADER_LEN) / VIEW_ENTRY_LEN;
    let view = &packet.view[..packet.view.len().min(room)];
    let mut v = Vec::with_capacity(view.len() * VIEW_ENTRY_LEN);
    for e in view {
        v.extend_from_slice(&e.node.to_be_bytes());
        v.extend_from_slice(&e.incarnation.to_be_bytes());
        v.push(u8::from(e.up));
        v.extend_from_slice(&e.seen.to_be_bytes());
    }
    push_tlv(&mut body, TLV_VIEW, &v);

    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + MAC_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind_byte(packet.kind));
    out.push(key.id());
    out.push(packet.link);
    out.extend_from_slice(&packet.cluster.to_be_bytes());
    out.extend_from_slice(&packet.sender.to_be_bytes());
    out.extend_from_slice(&(u16::try_from(body.len()).unwrap_or(u16::MAX)).to_be_bytes());
    out.extend_from_slice(&packet.incarnation.to_be_bytes());
    out.extend_from_slice(&packet.seq.to_be_bytes());
    out.extend_from_slice(&body);
    let tag = key.sign(&out);
    out.extend_from_slice(&tag);
    out
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// A bounds-checked reader over a field's bytes.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.b.len() - self.at < n {
            return Err(DecodeError::Malformed("settings field too short"));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(be_u16(self.take(2)?, 0))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(be_u32(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(be_u64(self.take(8)?, 0))
    }
}

fn decode_settings(value: &[u8]) -> Result<WireSettings, DecodeError> {
    let mut r = Reader { b: value, at: 0 };
    let mut st = WireSettings {
        generation: r.u64()?,
        origin: r.u16()?,
        ..WireSettings::default()
    };
    for _ in 0..r.u8()? {
        st.standby.push(r.u16()?);
    }
    for _ in 0..r.u8()? {
        st.moves.push(WireMove {
            group: r.u16()?,
            node: r.u16()?,
            remaining_ms: r.u32()?,
        });
    }
    for _ in 0..r.u8()? {
        st.cleanups.push((r.u16()?, r.u32()?));
    }
    if r.at != value.len() {
        return Err(DecodeError::Malformed("settings field too long"));
    }
    Ok(st)
}

/// Decodes and authenticates a datagram addressed to cluster `cluster`.
///
/// Checks are ordered cheapest first, and nothing past the header is parsed
/// before the MAC is verified. Never panics; allocates at most one view
/// bounded by the packet length.
pub fn decode(data: &[u8], cluster: u32, keys: &Keyring) -> Result<Packet, DecodeError> {
    if data.len() > MAX_PACKET {
        return Err(DecodeError::Oversized(data.len()));
    }
    if data.len() < 4 || data[..4] != MAGIC {
        return Err(if data.len() < 4 {
            DecodeError::Truncated(data.len())
        } else {
            DecodeError::BadMagic
        });
    }
    if data.len() < 5 {
        return Err(DecodeError::Truncated(data.len()));
    }
    if data[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion(data[4]));
    }
    if data.len() < MIN_PACKET {
        return Err(DecodeError::Truncated(data.len()));
    }
    let their_cluster = be_u32(data, 8);
    if their_cluster != cluster {
        return Err(DecodeError::WrongCluster(their_cluster));
    }
    let body_len = usize::from(be_u16(data, 14));
    let expected = HEADER_LEN + body_len + MAC_LEN;
    if data.len() < expected {
        return Err(DecodeError::Truncated(data.len()));
    }
    if data.len() > expected {
        return Err(DecodeError::Oversized(data.len()));
    }
    let key_id = data[6];
    let key = keys.get(key_id).ok_or(DecodeError::UnknownKey(key_id))?;
    let signed = expected - MAC_LEN;
    if !key.verify(&data[..signed], &data[signed..]) {
        return Err(DecodeError::BadMac);
    }

    let kind = match data[5] {
        1 => PacketKind::Heartbeat,
        2 => PacketKind::Leave,
        _ => return Err(DecodeError::Malformed("unknown packet kind")),
    };
    let mut packet = Packet {
        kind,
        link: data[7],
        cluster: their_cluster,
        sender: be_u16(data, 12),
        incarnation: be_u64(data, 16),
        seq: be_u64(data, 24),
        state: NodeState::Starting,
        view: Vec::new(),
        config_digest: 0,
        groups: Vec::new(),
        settings: None,
        echo: Echo::None,
    };
    let mut seen_state = false;
    let body = &data[HEADER_LEN..signed];
    let mut at = 0;
    while at < body.len() {
        if body.len() - at < 3 {
            return Err(DecodeError::Malformed("truncated field header"));
        }
        let ty = body[at];
        let len = usize::from(be_u16(body, at + 1));
        at += 3;
        if body.len() - at < len {
            return Err(DecodeError::Malformed("field runs past the body"));
        }
        let value = &body[at..at + len];
        at += len;
        match ty {
            TLV_STATE => {
                if len != 1 {
                    return Err(DecodeError::Malformed("state field length"));
                }
                packet.state = NodeState::from_byte(value[0])
                    .ok_or(DecodeError::Malformed("unknown node state"))?;
                seen_state = true;
            }
            TLV_CONFIG_DIGEST => {
                if len != 8 {
                    return Err(DecodeError::Malformed("config digest length"));
                }
                packet.config_digest = be_u64(value, 0);
            }
            TLV_VIEW => {
                if len % VIEW_ENTRY_LEN != 0 {
                    return Err(DecodeError::Malformed("view field length"));
                }
                packet.view = value
                    .chunks_exact(VIEW_ENTRY_LEN)
                    .map(|c| ViewEntry {
                        node: be_u16(c, 0),
                        incarnation: be_u64(c, 2),
                        up: c[10] != 0,
                        seen: be_u64(c, 11),
                    })
                    .collect();
            }
            TLV_GROUPS => {
                if len % GROUP_ENTRY_LEN != 0 {
                    return Err(DecodeError::Malformed("groups field length"));
                }
                packet.groups = value
                    .chunks_exact(GROUP_ENTRY_LEN)
                    .map(|c| {
                        Ok(GroupReport {
                            group: be_u16(c, 0),
                            phase: GroupPhase::from_byte(c[2])
                                .ok_or(DecodeError::Malformed("unknown group phase"))?,
                            banned: c[3] & 1 != 0,
                            stale: c[3] & 2 != 0,
                            target: be_u16(c, 4),
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            TLV_SETTINGS => packet.settings = Some(decode_settings(value)?),
            TLV_ECHO => {
                if len != 1 {
                    return Err(DecodeError::Malformed("echo field length"));
                }
                packet.echo = Echo::from_byte(value[0]);
            }
            t if t & TLV_CRITICAL != 0 => return Err(DecodeError::UnknownCritical(t)),
            _ => {}
        }
    }
    if !seen_state {
        return Err(DecodeError::Malformed("missing state field"));
    }
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Key;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        Keyring::single(Key::new(1, b"test key material").unwrap())
    }

    fn sample() -> Packet {
        Packet {
            kind: PacketKind::Heartbeat,
            link: 1,
            cluster: 0xdead_beef,
            sender: 2,
            incarnation: 1_700_000_000_000_000,
            seq: 42,
            state: NodeState::Online,
            view: vec![
                ViewEntry {
                    node: 1,
                    incarnation: 7,
                    up: true,
                    seen: 41,
                },
                ViewEntry {
                    node: 2,
                    incarnation: 1_700_000_000_000_000,
                    up: true,
                    seen: 0,
                },
            ],
            config_digest: 0x0102_0304_0506_0708,
            groups: vec![],
            settings: None,
            echo: Echo::None,
        }
    }

    /// The worst-case packet of a cluster carries exactly `view_room`
    /// view entries: one more is cut.
    #[test]
    fn view_room_is_what_a_worst_case_packet_keeps() {
        for (nodes, groups) in [(2, 0), (5, 8), (16, 32), (32, 64), (32, 0)] {
            let room = view_room(nodes, groups);
            let mut p = sample();
            p.groups = (0..groups)
                .map(|g| GroupReport {
                    group: g as u16,
                    phase: GroupPhase::Started,
                    banned: false,
                    stale: false,
                    target: 1,
                })
                .collect();
            p.settings = Some(WireSettings {
                generation: 1,
                origin: 1,
                standby: (0..nodes as u16).collect(),
                moves: (0..groups as u16)
                    .map(|g| WireMove {
                        group: g,
                        node: 1,
                        remaining_ms: 5,
                    })
                    .collect(),
                cleanups: (0..groups as u16).map(|g| (g, 1)).collect(),
            });
            p.echo = Echo::Wanted;
            let entry = p.view[0];
            p.view = vec![entry; room + 1];
            let bytes = encode(&p, &ring());
            assert!(bytes.len() <= MAX_PACKET);
            let back = decode(&bytes, p.cluster, &ring()).unwrap();
            assert_eq!(back.view.len(), room, "{nodes} nodes, {groups} groups");
        }
    }

    #[test]
    fn golden_layout_v2() {
        let bytes = encode(&sample(), &ring());
        assert_eq!(&bytes[..4], b"TNDM");
        assert_eq!(bytes[4], 2, "version");
        assert_eq!(bytes[5], 1, "kind heartbeat");
        assert_eq!(bytes[6], 1, "key id");
        assert_eq!(bytes[7], 1, "link");
        assert_eq!(&bytes[8..12], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&bytes[12..14], &[0, 2]);
        // state (4) + digest (11) + view header (3) + 2 entries (38)
        assert_eq!(&bytes[14..16], &[0, 56]);
        assert_eq!(bytes.len(), 32 + 56 + 32);
        assert_eq!(&bytes[32..36], &[1, 0, 1, 2], "state TLV");
        // The first view entry: node 1, incarnation 7, up, seen 41.
        let view = 32 + 4 + 11 + 3;
        assert_eq!(&bytes[view..view + 2], &[0, 1]);
        assert_eq!(bytes[view + 10], 1);
        assert_eq!(&bytes[view + 11..view + 19], &41u64.to_be_bytes());
    }

    #[test]
    fn round_trip() {
        let p = sample();
        let bytes = encode(&p, &ring());
        assert_eq!(decode(&bytes, 0xdead_beef, &ring()).unwrap(), p);
    }

    /// The echo field costs nothing when unused (the packet is byte for
    /// byte what earlier versions sent), round-trips when used, and an
    /// unknown value from a newer sender asks for nothing.
    #[test]
    fn echo_field() {
        let plain = encode(&sample(), &ring());
        for echo in [Echo::Wanted, Echo::Reply] {
            let p = Packet { echo, ..sample() };
            let bytes = encode(&p, &ring());
            assert_eq!(bytes.len(), plain.len() + 4);
            assert_eq!(decode(&bytes, 0xdead_beef, &ring()).unwrap(), p);
        }
        let mut p = sample();
        p.echo = Echo::Wanted;
        let mut bytes = encode(&p, &ring());
        let at = HEADER_LEN + 4; // the echo field follows the 4-byte state field
        assert_eq!(&bytes[at..at + 4], &[TLV_ECHO, 0, 1, 1]);
        bytes[at + 3] = 9;
        let signed = bytes.len() - MAC_LEN;
        let mac = ring().send_key().sign(&bytes[..signed]);
        bytes[signed..].copy_from_slice(&mac);
        assert_eq!(
            decode(&bytes, 0xdead_beef, &ring()).unwrap().echo,
            Echo::None
        );
    }

    #[test]
    fn rejections_are_typed() {
        let keys = ring();
        let bytes = encode(&sample(), &keys);
        assert_eq!(
            decode(&bytes, 1, &keys).unwrap_err(),
            DecodeError::WrongCluster(0xdead_beef)
        );
        let other = Keyring::single(Key::new(1, b"another key").unwrap());
        assert_eq!(
            decode(&bytes, 0xdead_beef, &other).unwrap_err(),
            DecodeError::BadMac
        );
        let other_id = Keyring::single(Key::new(9, b"test key material").unwrap());
        assert_eq!(
            decode(&bytes, 0xdead_beef, &other_id).unwrap_err(),
            DecodeError::UnknownKey(1)
        );
        assert_eq!(
            decode(&bytes[..40], 0xdead_beef, &keys).unwrap_err(),
            DecodeError::Truncated(40)
        );
        assert_eq!(
            decode(&bytes[..bytes.len() - 1], 0xdead_beef, &keys).unwrap_err(),
            DecodeError::Truncated(bytes.len() - 1)
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode(&long, 0xdead_beef, &keys).unwrap_err(),
            DecodeError::Oversized(bytes.len() + 1)
        );
        assert_eq!(
            decode(&vec![0u8; 2000], 0xdead_beef, &keys).unwrap_err(),
            DecodeError::Oversized(2000)
        );
        let mut v3 = bytes.clone();
        v3[4] = 3;
        assert_eq!(
            decode(&v3, 0xdead_beef, &keys).unwrap_err(),
            DecodeError::UnsupportedVersion(3)
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(
            decode(&magic, 0xdead_beef, &keys).unwrap_err(),
            DecodeError::BadMagic
        );
        let mut tampered = bytes;
        tampered[30] ^= 1;
        assert_eq!(
            decode(&tampered, 0xdead_beef, &keys).unwrap_err(),
            DecodeError::BadMac
        );
    }

    /// Builds a correctly signed packet around an arbitrary body, to test the
    /// TLV parser behind the MAC.
    fn signed_with_body(body: &[u8], keys: &Keyring) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, 1, 1, 0]);
        out.extend_from_slice(&7u32.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(body);
        let tag = keys.send_key().sign(&out);
        out.extend_from_slice(&tag);
        out
    }

    #[test]
    fn tlv_rules() {
        let keys = ring();
        // Unknown non-critical TLV is skipped.
        let ok = signed_with_body(&[1, 0, 1, 2, 0x10, 0, 2, 9, 9], &keys);
        assert_eq!(decode(&ok, 7, &keys).unwrap().state, NodeState::Online);
        // Unknown critical TLV is refused.
        let crit = signed_with_body(&[1, 0, 1, 2, 0x90, 0, 0], &keys);
        assert_eq!(
            decode(&crit, 7, &keys).unwrap_err(),
            DecodeError::UnknownCritical(0x90)
        );
        // Missing state.
        let none = signed_with_body(&[], &keys);
        assert!(matches!(
            decode(&none, 7, &keys).unwrap_err(),
            DecodeError::Malformed(_)
        ));
        // Field running past the body.
        let past = signed_with_body(&[1, 0, 9, 2], &keys);
        assert!(matches!(
            decode(&past, 7, &keys).unwrap_err(),
            DecodeError::Malformed(_)
        ));
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        (
            any::<bool>(),
            any::<u8>(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            0u8..3,
            // Up to 40 members: what fits beside 20 groups (configurations
            // allow 32 nodes).
            proptest::collection::vec((any::<u16>(), any::<u64>(), any::<bool>()), 0..40),
            any::<u64>(),
            proptest::collection::vec((any::<u16>(), 0u8..6, any::<bool>(), any::<u16>()), 0..20),
            proptest::option::of((
                any::<u64>(),
                any::<u16>(),
                proptest::collection::vec(any::<u16>(), 0..5),
                proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u32>()), 0..5),
                proptest::collection::vec((any::<u16>(), any::<u32>()), 0..5),
            )),
        )
            .prop_map(
                |(leave, link, sender, inc, seq, st, view, digest, groups, settings)| Packet {
                    kind: if leave {
                        PacketKind::Leave
                    } else {
                        PacketKind::Heartbeat
                    },
                    link,
                    cluster: 7,
                    sender,
                    incarnation: inc,
                    seq,
                    state: [NodeState::Starting, NodeState::Online, NodeState::Leaving]
                        [usize::from(st)],
                    view: view
                        .into_iter()
                        .map(|(node, incarnation, up)| ViewEntry {
                            node,
                            incarnation,
                            up,
                            seen: incarnation.rotate_left(7),
                        })
                        .collect(),
                    config_digest: digest,
                    groups: groups
                        .into_iter()
                        .map(|(group, p, banned, target)| GroupReport {
                            group,
                            phase: GroupPhase::from_byte(p).unwrap(),
                            banned,
                            stale: banned && target % 2 == 0,
                            target,
                        })
                        .collect(),
                    settings: settings.map(|(generation, origin, standby, moves, cleanups)| {
                        WireSettings {
                            generation,
                            origin,
                            standby,
                            moves: moves
                                .into_iter()
                                .map(|(group, node, remaining_ms)| WireMove {
                                    group,
                                    node,
                                    remaining_ms,
                                })
                                .collect(),
                            cleanups,
                        }
                    }),
                    echo: [Echo::None, Echo::Wanted, Echo::Reply][(seq % 3) as usize],
                },
            )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(p in arb_packet()) {
            let keys = ring();
            let bytes = encode(&p, &keys);
            prop_assert!(bytes.len() <= MAX_PACKET);
            prop_assert_eq!(decode(&bytes, 7, &keys).unwrap(), p);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = decode(&data, 7, &ring());
        }

        #[test]
        fn any_single_bit_flip_is_rejected(p in arb_packet(), bit in 0usize..(64 * 8)) {
            let keys = ring();
            let mut bytes = encode(&p, &keys);
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&bytes, 7, &keys).is_err());
        }

        #[test]
        fn tlv_parser_never_panics_behind_a_valid_mac(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let keys = ring();
            let _ = decode(&signed_with_body(&body, &keys), 7, &keys);
        }
    }
}
