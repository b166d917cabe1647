//! What the packet fuzz targets share: the test key and a three-node brain
//! that receives the fuzzed datagram.

use tandem_core::{Brain, BrainConfig, LinkId, NodeId, Timestamp, Timing};
use tandem_wire::{Key, Keyring};

/// The key every packet target signs and verifies with.
pub fn keys() -> Option<Keyring> {
    Some(Keyring::single(Key::new(1, b"fuzz key").ok()?))
}

/// Node n1 of cluster 7 receives `datagram`, runs its timers and carries
/// out everything it asks.
pub fn brain_receives(keys: Keyring, datagram: &[u8]) {
    let mut cfg = BrainConfig::new(
        "fuzz",
        NodeId(1),
        (1..=3).map(|i| format!("n{i}")),
        ["eth0".to_string()],
        Timing::default(),
        keys,
        1,
    );
    cfg.cluster_id = 7;
    let mut brain = Brain::new(cfg, Timestamp::ZERO);
    brain.handle_datagram(Timestamp::from_nanos(1), LinkId(0), datagram);
    brain.handle_timeout(Timestamp::from_nanos(2));
    while brain.poll().is_some() {}
    let _ = brain.status(Timestamp::from_nanos(3));
}
