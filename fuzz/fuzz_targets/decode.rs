//! Fuzzes the packet decoder and the brain's whole receive path.
//!
//! Run: `cargo install cargo-fuzz && cd fuzz && cargo fuzz run decode --sanitizer none`
//! (stable Rust; add `RUSTC_BOOTSTRAP=1` and drop `--sanitizer none` for ASan).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_core::{Brain, BrainConfig, LinkId, LinkInfo, NodeId, NodeInfo, Timestamp, Timing};
use tandem_wire::{Key, Keyring};

fuzz_target!(|data: &[u8]| {
    let Ok(key) = Key::new(1, b"fuzz key") else { return };
    let keys = Keyring::single(key);
    let _ = tandem_wire::decode(data, 7, &keys);

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
    brain.handle_datagram(Timestamp::from_nanos(1), LinkId(0), data);
    brain.handle_timeout(Timestamp::from_nanos(2));
    while brain.poll().is_some() {}
});
