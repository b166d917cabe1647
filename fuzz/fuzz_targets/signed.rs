//! Fuzzes past the MAC: the fuzzed bytes become the TLV body of a packet
//! with a valid header, signed with the test key, so the TLV parser, the
//! view, groups and settings, the replay window and the brain's handling
//! of an authentic but hostile peer are all exercised.
//!
//! Run: `cd fuzz && cargo fuzz run signed --sanitizer none` (stable Rust).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_wire::{NodeState, Packet, PacketKind};

mod common;

fuzz_target!(|data: &[u8]| {
    let Some(keys) = common::keys() else { return };
    if data.len() > 1200 {
        return;
    }
    // A real packet from n2 gives the header; its body is replaced by the
    // fuzzed bytes and the whole is signed again.
    let template = tandem_wire::encode(
        &Packet {
            kind: PacketKind::Heartbeat,
            link: 0,
            cluster: 7,
            sender: 2,
            incarnation: 5,
            seq: 1,
            state: NodeState::Online,
            view: vec![],
            config_digest: 0,
            groups: vec![],
            settings: None,
            echo: tandem_wire::Echo::None,
        },
        &keys,
    );
    let mut bytes = template[..32].to_vec();
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    bytes[14..16].copy_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(data);
    let tag = keys.send_key().sign(&bytes);
    bytes.extend_from_slice(&tag);

    common::brain_receives(keys, &bytes);
});
