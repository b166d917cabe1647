//! `tandem probe URL`: the client of the demo and the failover benchmark
//! (`tcp://ADDR:PORT`: a TCP connection opening counts as an answer).
//! Every interval it starts one HTTP GET (with a timeout) on a thread of
//! its own, so a request hanging on a dead node does not delay the next
//! ones, and prints one JSON line per request: its start time in
//! milliseconds, and the body's first line or the error. Lines come in
//! completion order; readers sort by time. Ends on SIGTERM/SIGINT or when
//! stdout closes.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One probe's outcome, as printed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Milliseconds from the probe's start to this request's start.
    pub t_ms: f64,
    /// The first line of the body (e.g. the node's name), if it answered 200.
    pub answer: Option<String>,
    /// The error, if it did not.
    pub error: Option<String>,
}

fn one(url: &str, t_ms: f64, timeout: Duration) -> Sample {
    if let Some(addr) = url.strip_prefix("tcp://") {
        // A TCP service (e.g. a TLS port): answered = the connection opened.
        let r = addr
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("{addr}: {e}"))
            .and_then(|a| {
                std::net::TcpStream::connect_timeout(&a, timeout).map_err(|e| e.to_string())
            });
        return match r {
            Ok(_) => Sample {
                t_ms,
                answer: Some("open".into()),
                error: None,
            },
            Err(e) => Sample {
                t_ms,
                answer: None,
                error: Some(e),
            },
        };
    }
    match tandem_agents::check::http_get(url, timeout) {
        Ok((200, body)) => Sample {
            t_ms,
            answer: Some(body.lines().next().unwrap_or("").trim().to_string()),
            error: None,
        },
        Ok((code, _)) => Sample {
            t_ms,
            answer: None,
            error: Some(format!("HTTP {code}")),
        },
        Err(e) => Sample {
            t_ms,
            answer: None,
            error: Some(e),
        },
    }
}

/// Runs the probe loop.
/// Sample times count from `epoch_unix_ms` (wall clock) when given, else
/// from the probe's start.
pub fn run(
    url: &str,
    interval: Duration,
    timeout: Duration,
    epoch_unix_ms: Option<u64>,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let (tx, rx) = std::sync::mpsc::channel::<Sample>();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            for s in rx {
                let Ok(line) = serde_json::to_string(&s) else {
                    continue;
                };
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        })
    };
    let start = Instant::now();
    // The probe's start, in milliseconds after the epoch.
    let offset_ms = epoch_unix_ms.map_or(0.0, |e| unix_ms() - e as f64);
    let mut next = start;
    while !stop.load(Ordering::Relaxed) {
        let (tx, url) = (tx.clone(), url.to_string());
        std::thread::spawn(move || {
            // Stamped when the request really starts: a thread scheduled
            // late must not be ordered before requests made earlier.
            let t_ms = offset_ms + start.elapsed().as_secs_f64() * 1000.0;
            let _ = tx.send(one(&url, t_ms, timeout));
        });
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    drop(tx);
    let _ = writer.join();
    Ok(())
}

/// Milliseconds since 1970 by the wall clock.
pub fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
