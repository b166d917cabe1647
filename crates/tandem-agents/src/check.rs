//! Health checks: TCP connect, HTTP GET (status and body), or a script,
//! with HAProxy-style rise/fall counting.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tandem_config::CheckKind;

/// Fetches `url` (http:// only) with HTTP/1.0; returns status and body.
pub fn http_get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let deadline = Instant::now() + timeout;
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut s =
        TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let left = |d: Instant| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_read_timeout(Some(left(deadline)))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(left(deadline)))
        .map_err(|e| e.to_string())?;
    let host = hostport.split(':').next().unwrap_or(hostport);
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tandem-check\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no HTTP status line")?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// Runs one probe; `Err` says what failed.
pub fn probe(kind: &CheckKind, timeout: Duration) -> Result<(), String> {
    match kind {
        CheckKind::Tcp { address } => {
            let sa = address
                .to_socket_addrs()
                .map_err(|e| format!("{address}: {e}"))?
                .next()
                .ok_or_else(|| format!("{address}: no address"))?;
            TcpStream::connect_timeout(&sa, timeout)
                .map(|_| ())
                .map_err(|e| format!("connect {address}: {e}"))
        }
        CheckKind::Http { url, status, body } => {
            let (got, text) = http_get(url, timeout)?;
            if got != *status {
                return Err(format!("{url} answered {got}, expected {status}"));
            }
            if let Some(b) = body
                && !text.contains(b.as_str())
            {
                return Err(format!("{url} does not contain `{b}`"));
            }
            Ok(())
        }
        CheckKind::Script { command } => {
            match crate::exec::run("/bin/sh", &["-c", command], &Default::default(), timeout) {
                crate::exec::Exit::Code(0, _) => Ok(()),
                crate::exec::Exit::Code(c, out) => Err(format!("`{command}` exited {c}: {out}")),
                crate::exec::Exit::TimedOut => Err(format!("`{command}` timed out")),
                other => Err(format!("`{command}`: {other:?}")),
            }
        }
    }
}

/// Rise/fall state of one resource's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// Whether the check counts as passing.
    pub up: bool,
    ok: u32,
    failed: u32,
    /// The last failure's explanation.
    pub last_error: Option<String>,
}

impl Default for CheckState {
    fn default() -> Self {
        Self {
            up: true,
            ok: 0,
            failed: 0,
            last_error: None,
        }
    }
}

impl CheckState {
    /// Counts one probe outcome against `rise`/`fall`.
    pub fn record(&mut self, outcome: Result<(), String>, rise: u32, fall: u32) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.failed = 0;
                if !self.up && self.ok >= rise {
                    self.up = true;
                }
            }
            Err(e) => {
                self.failed += 1;
                self.ok = 0;
                self.last_error = Some(e);
                if self.up && self.failed >= fall {
                    self.up = false;
                }
            }
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn rise_and_fall() {
        let mut s = CheckState::default();
        s.record(Err("x".into()), 2, 3);
        s.record(Err("x".into()), 2, 3);
        assert!(s.up);
        s.record(Err("x".into()), 2, 3);
        assert!(!s.up);
        s.record(Ok(()), 2, 3);
        assert!(!s.up);
        s.record(Ok(()), 2, 3);
        assert!(s.up);
    }

    #[test]
    fn http_and_tcp_probes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().take(3) {
                let mut c = c.unwrap();
                let mut b = [0u8; 512];
                let _ = c.read(&mut b);
                let _ =
                    c.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nServer n1\n");
            }
        });
        let url = format!("http://{addr}/");
        let t = Duration::from_secs(5);
        assert_eq!(http_get(&url, t).unwrap(), (200, "Server n1\n".into()));
        let ok = CheckKind::Http {
            url: url.clone(),
            status: 200,
            body: Some("n1".into()),
        };
        assert_eq!(probe(&ok, t), Ok(()));
        let wrong = CheckKind::Http {
            url,
            status: 200,
            body: Some("n2".into()),
        };
        assert!(
            probe(&wrong, t)
                .unwrap_err()
                .contains("does not contain `n2`")
        );
        let closed = CheckKind::Tcp {
            address: "127.0.0.1:1".into(),
        };
        assert!(probe(&closed, t).is_err());
        assert!(
            probe(
                &CheckKind::Script {
                    command: "exit 0".into()
                },
                t
            )
            .is_ok()
        );
        assert!(
            probe(
                &CheckKind::Script {
                    command: "exit 1".into()
                },
                t
            )
            .is_err()
        );
    }
}
