//! Fuzzes the control socket's messages: a request line as a local client
//! sends it (the daemon parses it before checking rights), and the
//! daemon's answer as the CLI parses it. Neither may panic.
//!
//! Run: `cd fuzz && cargo fuzz run control --sanitizer none`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<tandem_control::Request>(data) {
        // What parses must serialize back and parse to the same request.
        if let Ok(text) = serde_json::to_string(&req) {
            let again = serde_json::from_str::<tandem_control::Request>(&text);
            assert!(again.is_ok_and(|r| r == req), "{text}");
        }
    }
    let _ = serde_json::from_slice::<tandem_control::Response>(data);
});
