//! `authkeys`: the signing method and key, permissions checked, key lines
//! redacted from every message.

use std::path::Path;

use super::hacf::{Diags, Line, logical_lines};
use super::{AuthKeys, AuthMethod};
use crate::ConfigError;
use crate::diagnostic::{Diagnostic, Severity};

/// Parses `authkeys`, checking its permissions first.
pub fn load_authkeys(path: &Path) -> Result<AuthKeys, ConfigError> {
    crate::keyfile::check_permissions(path).map_err(|e| {
        ConfigError::Invalid(vec![Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: e.to_string().lines().next().unwrap_or("").to_string(),
            hint: Some(format!(
                "run `chmod 600 {}` (Heartbeat refuses it too)",
                path.display()
            )),
            source_line: String::new(),
        }])
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_authkeys(&text, path)
}

/// Parses the text of an `authkeys` file.
pub fn parse_authkeys(text: &str, file: &Path) -> Result<AuthKeys, ConfigError> {
    let mut g = Diags {
        file,
        text,
        out: Vec::new(),
    };
    let mut send: Option<(u8, Line)> = None;
    let mut keys = Vec::new();
    for l in logical_lines(text) {
        let w: Vec<&str> = l.text.split_whitespace().collect();
        if w[0] == "auth" {
            match w.get(1).and_then(|n| n.parse::<u8>().ok()) {
                Some(n) if (1..=15).contains(&n) => send = Some((n, l)),
                _ => g.error(
                    &l,
                    "`auth` needs a key number from 1 to 15",
                    Some("e.g. auth 1".into()),
                ),
            }
            continue;
        }
        let Some(id) = w[0].parse::<u8>().ok().filter(|n| (1..=15).contains(n)) else {
            g.error(
                &l,
                "unexpected line (not shown: it may hold a secret)",
                Some("lines are `auth N` or `N METHOD KEY` (e.g. 1 sha1 secret)".into()),
            );
            continue;
        };
        let method = match w.get(1).map(|m| m.to_ascii_lowercase()).as_deref() {
            Some("crc") => AuthMethod::Crc,
            Some("md5") => AuthMethod::Md5,
            Some("sha1") => AuthMethod::Sha1,
            _ => {
                // The word is not echoed: it may be the secret itself
                // (`1 mysecret`, the method forgotten).
                g.error(
                    &l,
                    format!("key {id}: unknown method (not sha1, md5 or crc)"),
                    Some(format!(
                        "write `{id} sha1 YOUR-SECRET` (sha1 is best; crc secures nothing)"
                    )),
                );
                continue;
            }
        };
        let key = w.get(2..).map(|k| k.join(" ")).unwrap_or_default();
        if method != AuthMethod::Crc && key.is_empty() {
            g.error(
                &l,
                format!("key {id} has no secret"),
                Some(format!("write: {id} sha1 YOUR-SECRET")),
            );
            continue;
        }
        if keys.iter().any(|(k, _, _)| *k == id) {
            g.error(&l, format!("key {id} is defined twice"), None);
        }
        keys.push((id, method, key.into_bytes()));
    }
    match &send {
        None => g.out.push(Diagnostic::at(
            Severity::Error,
            file,
            text,
            0,
            "no `auth N` line selects a key",
            Some("add a line `auth 1`".into()),
        )),
        Some((n, l)) if !keys.iter().any(|(k, _, _)| k == n) => {
            g.error(
                l,
                format!("`auth {n}` selects key {n}, which no line defines"),
                Some(format!("add a line `{n} sha1 YOUR-SECRET`")),
            );
        }
        _ => {}
    }
    // Diagnostics quote their line: never the secrets on it.
    for d in &mut g.out {
        d.source_line = redact_key_line(&d.source_line);
    }
    if g.out.iter().any(|d| d.severity == Severity::Error) {
        return Err(ConfigError::Invalid(g.out));
    }
    Ok(AuthKeys {
        send: send.map_or(1, |s| s.0),
        keys,
    })
}

/// An authkeys line as it may be shown: `auth N` lines as they are, key
/// lines with everything after the key number hidden.
pub(super) fn redact_key_line(line: &str) -> String {
    let mut words = line.split_whitespace();
    match words.next() {
        None => String::new(),
        Some("auth") => line.to_string(),
        Some(first) if words.next().is_some() => format!("{first} <hidden>"),
        Some(_) => "<hidden>".to_string(),
    }
}

/// Whether a key file is a Heartbeat `authkeys` file rather than a bare secret.
pub fn looks_like_authkeys(text: &str) -> bool {
    text.lines().any(|l| {
        l.split('#')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with("auth ")
    })
}
