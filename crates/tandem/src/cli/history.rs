//! `tandem history`: one timeline merged from every node's event history.
//! With `[http]`, each node is asked over its API (`/api/v1/history`);
//! a node that cannot be reached is named, and for this node the files in
//! its state directory are read instead. Without `[http]`, only this
//! node's files are read.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tandem_api::EventRecord;

/// What to show.
#[derive(Debug, Clone)]
pub struct Query {
    /// Only events this recent.
    pub since: Option<Duration>,
    /// Only events about this group.
    pub group: Option<String>,
    /// Only events seen by, or about, this node.
    pub node: Option<String>,
    /// JSON instead of lines.
    pub json: bool,
}

/// Runs `tandem history` for the cluster in `config`, this node being
/// `local` with its state in `state_dir`.
pub fn run(config: &Path, local: &str, state_dir: Option<&Path>, q: &Query) -> anyhow::Result<()> {
    let loaded = tandem_config::load(config)?;
    let cfg = loaded.config;
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    let since_ms = q.since.map_or(0, |d| {
        now_ms.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    let local_dir = state_dir.map_or_else(|| cfg.state_dir.clone(), Path::to_path_buf);
    let mut all: Vec<EventRecord> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    match &cfg.http {
        Some(http) => {
            for (i, node) in cfg.nodes.iter().enumerate() {
                match fetch(&cfg, http, i, since_ms) {
                    Ok(mut v) => all.append(&mut v),
                    Err(e) if node.name == local => {
                        all.extend(tandem_api::history::read(
                            &local_dir.join("history"),
                            since_ms,
                        ));
                        missing.push(format!(
                            "{} (its API: {e:#}; read its files instead)",
                            node.name
                        ));
                    }
                    Err(e) => missing.push(format!("{} ({e:#})", node.name)),
                }
            }
        }
        None => {
            all.extend(tandem_api::history::read(
                &local_dir.join("history"),
                since_ms,
            ));
            missing.push("the other nodes (add [http] to merge their history)".into());
        }
    }
    all.retain(|r| {
        q.group.as_ref().is_none_or(|g| r.group.as_ref() == Some(g))
            && q.node
                .as_ref()
                .is_none_or(|n| &r.node == n || r.about_node.as_ref() == Some(n))
    });
    all.sort_by(|a, b| (a.time_ms, &a.node, a.seq).cmp(&(b.time_ms, &b.node, b.seq)));
    if q.json {
        let doc = serde_json::json!({"events": all, "unreachable": missing});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    for r in &all {
        println!(
            "{} {:<8} {:<8} {}",
            clock(r.time_ms),
            r.node,
            r.kind,
            r.text
        );
    }
    for m in &missing {
        eprintln!("tandem history: not included: {m}");
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) from Unix milliseconds.
fn clock(ms: u64) -> String {
    utc(
        ms,
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]",
    )
}

/// Unix milliseconds formatted in UTC with a `time` format description
/// (the raw number if it cannot be).
pub fn utc(ms: u64, description: &str) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
    let fmt = time::format_description::parse_borrowed::<2>(description);
    match (at, fmt) {
        (Ok(at), Ok(fmt)) => at.format(&fmt).unwrap_or_else(|_| ms.to_string()),
        _ => ms.to_string(),
    }
}

/// One node's history over its API.
fn fetch(
    cfg: &tandem_config::Config,
    http: &tandem_config::Http,
    i: usize,
    since_ms: u64,
) -> anyhow::Result<Vec<EventRecord>> {
    let node = &cfg.nodes[i];
    let listen = http.listen_for(&node.name);
    let host = if listen.ip().is_unspecified() {
        node.addresses
            .iter()
            .flatten()
            .next()
            .copied()
            .context("no address to reach it")?
    } else {
        listen.ip()
    };
    let scheme = if http.tls.is_some() { "https" } else { "http" };
    let url = format!(
        "{scheme}://{}/api/v1/history?since_ms={since_ms}",
        std::net::SocketAddr::new(host, listen.port())
    );
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(t) = &http.tls {
        // The cluster's certificate (or its CA) is the trust root.
        let pem = std::fs::read(&t.cert).with_context(|| format!("read {}", t.cert.display()))?;
        let cert = ureq::tls::Certificate::from_pem(&pem)
            .with_context(|| format!("{}: not a PEM certificate", t.cert.display()))?
            .to_owned();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .tls_config(tls.build())
        .build()
        .into();
    let records: Vec<EventRecord> = agent
        .get(&url)
        .call()
        .with_context(|| url.clone())?
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_json()
        .with_context(|| url.clone())?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_is_civil_utc() {
        assert_eq!(super::clock(0), "1970-01-01 00:00:00.000");
        assert_eq!(super::clock(1_796_074_950_333), "2026-11-30 21:42:30.333");
    }
}
