//! Fuzzes the arbitrator's datagrams: raw bytes (refused before any
//! parsing unless the MAC matches), and arbitrary bodies signed with a
//! served cluster's key (parsed, then checked against the cluster named).
//!
//! Run: `cd fuzz && cargo fuzz run arbiter --sanitizer none`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_wire::Key;
use tandem_wire::arbiter::{ARBITER_MAGIC, ARBITER_VERSION, VoteAnswer, VoteRequest, open};

fuzz_target!(|data: &[u8]| {
    let (Ok(web), Ok(db)) = (Key::new(1, b"web key"), Key::new(1, b"db key")) else {
        return;
    };
    let keys = [("web", &web), ("db", &db)];
    let _ = open::<VoteRequest>(data, keys);
    let _ = open::<VoteAnswer>(data, keys);
    let mut signed = ARBITER_MAGIC.to_vec();
    signed.push(ARBITER_VERSION);
    signed.extend_from_slice(data);
    let tag = web.sign(&signed);
    signed.extend_from_slice(&tag);
    let _ = open::<VoteRequest>(&signed, keys);
    let _ = open::<VoteAnswer>(&signed, keys);
});
