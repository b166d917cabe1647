//! Fuzzes the native configuration parser and its checks: any text gives
//! a configuration or located diagnostics, never a panic.
//!
//! Run: `cd fuzz && cargo fuzz run config --sanitizer none`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tandem_config::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
