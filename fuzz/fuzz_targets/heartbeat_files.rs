//! Fuzzes the Heartbeat and DRBD drop-in parsers: the input is split at
//! NUL bytes into ha.cf, haresources, authkeys and a DRBD resource file,
//! parsed and converted as `--heartbeat-dir` does (haresources naming
//! `drbddisk::R` reads the DRBD file), and the DRBD file alone as
//! `tandem import drbd` does.
//!
//! Run: `cd fuzz && cargo fuzz run heartbeat_files --sanitizer none`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split('\0');
    let (hacf, res, auth, drbd) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("auth 1\n1 sha1 fuzz-secret-0123456789\n"),
        parts.next().unwrap_or(""),
    );
    let drbd = [(std::path::PathBuf::from("/etc/drbd.d/r0.res"), drbd.to_string())];
    let _ = tandem_config::legacy::drbd::import(&drbd, None, None);
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
        &drbd,
    );
});
