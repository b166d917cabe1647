//! Fuzzes the control sockets' messages: a request line as a local client
//! sends it (the daemon parses it before checking rights), and the
//! daemon's answer as the CLI parses it; the same for a volume process's
//! control socket (`tandem volume …`). None may panic.
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
    use tandem::volume::control::{Answer, Command};
    if let Ok(cmd) = serde_json::from_slice::<Command>(data)
        && let Ok(text) = serde_json::to_string(&cmd)
    {
        let again = serde_json::from_str::<Command>(&text);
        assert!(again.is_ok_and(|c| c == cmd), "{text}");
    }
    let _ = serde_json::from_slice::<Answer>(data);
});
