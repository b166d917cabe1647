//! Fuzzes the Heartbeat drop-in parsers: the input is split at NUL bytes
//! into ha.cf, haresources and authkeys, parsed and converted as
//! `--heartbeat-dir` does.
//!
//! Run: `cd fuzz && cargo fuzz run heartbeat_files --sanitizer none`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split('\0');
    let (hacf, res, auth) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("auth 1\n1 sha1 fuzz-secret-0123456789\n"),
    );
    let auth_path = Path::new("/etc/ha.d/authkeys");
    let Ok(keys) = tandem_config::legacy::parse_authkeys(auth, auth_path) else {
        return;
    };
    let _ = tandem_config::legacy::convert(
        Path::new("/etc/ha.d/ha.cf"),
        hacf,
        Some((Path::new("/etc/ha.d/haresources"), res)),
        keys,
        auth_path,
    );
});
