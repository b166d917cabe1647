//! Fuzzes the packet decoder and the brain's whole receive path.
//!
//! Run: `cargo install cargo-fuzz && cd fuzz && cargo fuzz run decode --sanitizer none`
//! (stable Rust; add `RUSTC_BOOTSTRAP=1` and drop `--sanitizer none` for ASan).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some(keys) = common::keys() else { return };
    let _ = tandem_wire::decode(data, 7, &keys);
    common::brain_receives(keys, data);
});
