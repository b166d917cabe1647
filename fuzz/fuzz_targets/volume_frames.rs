//! A volume peer's connection past the MAC: the hello (length, body,
//! fields) and then frames signed with the volume key — so the fuzzer
//! reaches the length and counter checks and the message decoder, not
//! just the MAC. Some frames are corrupted on purpose (length, counter,
//! tag). The reader must never panic; it stops at the first bad frame.

#![no_main]

use std::io::Cursor;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tandem::volume::net::{FrameReader, FrameSigner, Key, read_hello};

fuzz_target!(|data: &[u8]| {
    let key = Key::new(b"fuzz-volume-key-0123456789");
    let session = [7u8; 32];
    let nonce = [9u8; 16];
    // A raw hello, as an attacker without the key would send it.
    let _ = read_hello(&mut Cursor::new(data), &key, &nonce);
    // Frames: each chunk (its length from the first byte) signed, unless
    // the chunk's first byte asks for a corruption.
    let signer = FrameSigner {
        key: &key,
        session: &session,
        dir: 1,
    };
    let mut wire = Vec::new();
    let mut rest = data;
    let mut counter = 0u64;
    while let Some((&n, tail)) = rest.split_first() {
        let take = usize::from(n).min(tail.len());
        let (payload, tail) = tail.split_at(take);
        counter += 1;
        let c = match n % 16 {
            0 => counter + 1, // out of sequence
            _ => counter,
        };
        let _ = signer.write(&mut wire, c, payload);
        if n % 16 == 1 {
            if let Some(last) = wire.last_mut() {
                *last ^= 1; // bad tag
            }
        }
        rest = tail;
    }
    let mut reader = FrameReader::new(Cursor::new(wire), Arc::new(key), session, 1);
    while let Ok(m) = reader.read() {
        let _ = tandem::volume::net::is_meta(&m);
    }
});
