//! The replication engine fed arbitrary peer messages (decoded with
//! postcard from the fuzzed bytes, as the volume process decodes
//! authenticated frames) and arbitrary disk completions, as primary or
//! secondary: it must never panic, whatever an authenticated but confused
//! (or hostile) peer sends.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_core::Timestamp;
use tandem_volumes::{Message, Metadata, PeerConfig, Protocol, Volume, VolumeConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let cfg = VolumeConfig::new(
        "r0",
        0,
        vec![PeerConfig {
            node: 1,
            name: "n2".into(),
            protocol: [Protocol::A, Protocol::B, Protocol::C][usize::from(mode % 3)],
        }],
        7,
    );
    let mut meta = Metadata::create(1 << 20, 0, &[1], 8);
    meta.flags.consistent = mode & 4 != 0;
    meta.flags.primary = mode & 8 != 0;
    let mut v = Volume::attach(cfg, meta, Timestamp::ZERO);
    let mut t = 1u64;
    let mut now = || {
        t += 1000;
        Timestamp::from_nanos(t)
    };
    if mode & 16 != 0 {
        let _ = v.promote(now(), true);
    }
    v.connected(now(), 1);
    let mut rest = rest;
    while !rest.is_empty() {
        match postcard::take_from_bytes::<Message>(rest) {
            Ok((msg, tail)) => {
                v.received(now(), 1, msg);
                rest = tail;
            }
            Err(_) => {
                // Not a message: use a byte as a disk completion or a write.
                let b = rest[0];
                match b % 4 {
                    0 => v.disk_done(now(), u64::from(b), Ok(None)),
                    1 => v.disk_done(now(), u64::from(b), Err("EIO".into())),
                    2 => v.write(now(), u64::from(b), u64::from(b) * 512, vec![b; 512].into(), b & 1 != 0),
                    _ => v.flush(now(), u64::from(b)),
                }
                rest = &rest[1..];
            }
        }
        while v.poll().is_some() {}
        v.handle_timeout(now());
    }
    let _ = v.status().render();
});
