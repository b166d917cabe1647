//! Waiting in tests without a bare sleep: poll a condition until it holds
//! or a deadline passes, and fail naming what was awaited.

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it is true; panics after `timeout` naming
/// `what` (test tooling: a failed wait is a failed test).
pub fn until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` every 10 ms until it gives a value; `None` after `timeout`
/// (the caller says what it saw).
pub fn until_some<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes a self-signed certificate and key for `subject_ip` (usable as an
/// end-entity certificate and as its own trust root) into `dir` with
/// Debian's `openssl`; returns (certificate, key).
pub fn self_signed(
    dir: &std::path::Path,
    subject_ip: &str,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    use anyhow::Context;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=tandem-test"])
        .arg("-addext")
        .arg(format!("subjectAltName=IP:{subject_ip}"))
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("run openssl (apt-get install openssl)")?;
    anyhow::ensure!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((cert, key))
}
