//! The NBD export fed arbitrary client bytes: negotiation (options of any
//! length, unknown options, OPT_GO/INFO/LIST/ABORT/EXPORT_NAME) and then
//! requests (any magic, command, flags, offset, length). It must never
//! panic or allocate without bound; each parsed request must be within the
//! payload limit.

#![no_main]

use std::io::{Cursor, Read, Write};
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use tandem::volume::nbd::{MAX_PAYLOAD, Request, Sink, TryClone, serve};

/// The client's bytes to read; what the server writes is dropped.
#[derive(Clone)]
struct Client(Arc<Mutex<Cursor<Vec<u8>>>>);

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().map_or(Ok(0), |mut c| c.read(buf))
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TryClone for Client {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        Ok(self.clone())
    }
    fn shutdown_both(&self) {}
}

struct Export {
    read_only: bool,
}

impl Sink for Export {
    fn describe(&self) -> (u64, bool) {
        (1 << 20, self.read_only)
    }
    fn request(&self, _conn: u64, _cookie: u64, req: Request) {
        if let Request::Write { data, .. } = &req {
            assert!(data.len() <= MAX_PAYLOAD as usize);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let client = Client(Arc::new(Mutex::new(Cursor::new(rest.to_vec()))));
    // No replies: the reply writer ends at once.
    let (_, replies) = std::sync::mpsc::channel();
    serve(client, "r0", 1, &Export { read_only: mode & 1 != 0 }, replies);
});
