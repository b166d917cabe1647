//! `tandem probe URL`: the client of the demo and the failover benchmark.
//! Every interval it fetches the URL (with a timeout) and prints one JSON
//! line: milliseconds since start, and the body's first line or the error.
//! Ends on SIGTERM/SIGINT or when stdout closes.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One probe's outcome, as printed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Milliseconds since the probe started.
    pub t_ms: f64,
    /// The first line of the body (e.g. the node's name), if it answered 200.
    pub answer: Option<String>,
    /// The error, if it did not.
    pub error: Option<String>,
}

/// Runs the probe loop.
pub fn run(url: &str, interval: Duration, timeout: Duration) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let start = Instant::now();
    let mut next = start;
    let mut out = std::io::stdout().lock();
    while !stop.load(Ordering::Relaxed) {
        let t = start.elapsed().as_secs_f64() * 1000.0;
        let sample = match tandem_agents::check::http_get(url, timeout) {
            Ok((200, body)) => Sample {
                t_ms: t,
                answer: Some(body.lines().next().unwrap_or("").trim().to_string()),
                error: None,
            },
            Ok((code, _)) => Sample {
                t_ms: t,
                answer: None,
                error: Some(format!("HTTP {code}")),
            },
            Err(e) => Sample {
                t_ms: t,
                answer: None,
                error: Some(e),
            },
        };
        if writeln!(out, "{}", serde_json::to_string(&sample)?).is_err() {
            break;
        }
        let _ = out.flush();
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    Ok(())
}
