//! Fuzzes past the MAC: the fuzzed bytes become the TLV body of a packet
//! with a valid header, signed with the test key, so the TLV parser, the
//! view, groups and settings, the replay window and the brain's handling
//! of an authentic but hostile peer are all exercised.
//!
//! Run: `cd fuzz && cargo fuzz run signed --sanitizer none` (stable Rust).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_core::{Brain, BrainConfig, LinkId, LinkInfo, NodeId, NodeInfo, Timestamp, Timing};
use tandem_wire::{Key, Keyring, NodeState, Packet, PacketKind};

fn keys() -> Option<Keyring> {
    Some(Keyring::single(Key::new(1, b"fuzz key").ok()?))
}

fuzz_target!(|data: &[u8]| {
    let Some(keys) = keys() else { return };
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
        },
        &keys,
    );
    let mut bytes = template[..32].to_vec();
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    bytes[14..16].copy_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(data);
    let tag = keys.send_key().sign(&bytes);
    bytes.extend_from_slice(&tag);

    let cfg = BrainConfig {
        cluster: "fuzz".into(),
        cluster_id: 7,
        local: NodeId(1),
        nodes: (1..=3)
            .map(|i| NodeInfo { id: NodeId(i), name: format!("n{i}") })
            .collect(),
        links: vec![LinkInfo { label: "eth0".into() }],
        timing: Timing::default(),
        keys,
        incarnation: 1,
        config_digest: 0,
        groups: vec![],
        quorum: Default::default(),
        witness: false,
        fencing: false,
        witness_arbiter: false,
        known_incarnations: vec![],
    };
    let mut brain = Brain::new(cfg, Timestamp::ZERO);
    brain.handle_datagram(Timestamp::from_nanos(1), LinkId(0), &bytes);
    brain.handle_timeout(Timestamp::from_nanos(2));
    while brain.poll().is_some() {}
    let _ = brain.status(Timestamp::from_nanos(3));
});
