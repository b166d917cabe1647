//! Who may change things through the API: bearers of a token from the
//! tokens file, over TLS or from a loopback address.
//!
//! The file holds one `NAME TOKEN` pair per line (`#` starts a comment).
//! The name is what the audit log shows; the token never appears in a log,
//! an error or a status.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, StatusCode, header};

/// Shortest token accepted, in characters.
pub const MIN_TOKEN: usize = 16;

/// The tokens allowed to change things.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: tokens are secrets.
        f.debug_list()
            .entries(self.entries.iter().map(|(n, _)| n))
            .finish()
    }
}

/// Why the tokens file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// It could not be read.
    #[error("[http] tokens_file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Others may read it.
    #[error(
        "[http] tokens_file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Readable {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A line is not `NAME TOKEN`.
    #[error("{path}:{line}: {detail}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Line number (from 1).
        line: usize,
        /// What is wrong and how to fix it.
        detail: String,
    },
}

impl Tokens {
    /// No tokens: the API is read-only.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads `NAME TOKEN` lines from `path` (which must not be readable by
    /// other users).
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| TokensError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(TokensError::Readable {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text).map_err(|(line, detail)| TokensError::Syntax {
            path: path.to_path_buf(),
            line,
            detail,
        })
    }

    /// Parses the file's text; errors give the line number and a fix.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err((
                    i + 1,
                    "expected `NAME TOKEN` (two words); make a token with `openssl rand -hex 16`"
                        .into(),
                ));
            };
            if token.len() < MIN_TOKEN {
                return Err((
                    i + 1,
                    format!(
                        "the token for {name} is {} characters; use at least {MIN_TOKEN} random ones (`openssl rand -hex 16`)",
                        token.len()
                    ),
                ));
            }
            if entries.iter().any(|(n, _)| n == name) {
                return Err((i + 1, format!("{name} appears twice; names must be unique")));
            }
            entries.push((name.to_string(), token.as_bytes().to_vec()));
        }
        Ok(Self { entries })
    }

    /// Whether no token is configured (the API is read-only).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the token presented, compared in constant time.
    fn find(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (name, token) in &self.entries {
            if constant_time_eq::constant_time_eq(token, presented) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Checks a change request: the caller's token name, or the refusal.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        tls: bool,
    ) -> Result<String, Denied> {
        if self.is_empty() {
            return Err(Denied::ReadOnly);
        }
        if !tls && !peer.ip().is_loopback() {
            return Err(Denied::Insecure);
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Denied::Missing)?;
        self.find(presented.trim().as_bytes())
            .map(str::to_string)
            .ok_or(Denied::Wrong)
    }
}

/// Why a change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No tokens file: the API is read-only.
    ReadOnly,
    /// Plain HTTP from another host: a token would cross the network in
    /// clear.
    Insecure,
    /// No `Authorization: Bearer` header.
    Missing,
    /// The token is not in the file.
    Wrong,
}

impl Denied {
    /// The HTTP status and the message for the caller.
    pub fn answer(self) -> (StatusCode, &'static str) {
        match self {
            Denied::ReadOnly => (
                StatusCode::FORBIDDEN,
                "changes are disabled: [http] has no tokens_file (the API is read-only)",
            ),
            Denied::Insecure => (
                StatusCode::FORBIDDEN,
                "changes need TLS or a loopback client: set [http] cert and key, or use the control socket",
            ),
            Denied::Missing => (
                StatusCode::UNAUTHORIZED,
                "this change needs a token: send `Authorization: Bearer TOKEN`",
            ),
            Denied::Wrong => (
                StatusCode::UNAUTHORIZED,
                "the token was not accepted (see [http] tokens_file)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_syntax_errors_name_the_line() {
        let t = Tokens::parse("# ops\nalice 0123456789abcdef0123\n\nbob short\n");
        assert_eq!(t.as_ref().err().map(|e| e.0), Some(4));
        let t = Tokens::parse("alice 0123456789abcdef0123 extra\n");
        assert!(t.err().is_some_and(|e| e.1.contains("NAME TOKEN")));
        let t = Tokens::parse("a 0123456789abcdef0123\na 0123456789abcdef0124\n");
        assert!(t.err().is_some_and(|e| e.1.contains("twice")));
    }

    #[test]
    fn rules() {
        let t = Tokens::parse("alice 0123456789abcdef0123 # the on-call\n").unwrap_or_default();
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap_or(([0, 0, 0, 0], 0).into());
        let remote: SocketAddr = "10.0.0.9:5000".parse().unwrap_or(([0, 0, 0, 0], 0).into());
        let mut h = HeaderMap::new();
        assert_eq!(t.authorize(&h, local, false), Err(Denied::Missing));
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef0123"
                .parse()
                .unwrap_or(header::HeaderValue::from_static("")),
        );
        assert_eq!(t.authorize(&h, local, false), Ok("alice".to_string()));
        assert_eq!(t.authorize(&h, remote, false), Err(Denied::Insecure));
        assert_eq!(t.authorize(&h, remote, true), Ok("alice".to_string()));
        h.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("Bearer nope"),
        );
        assert_eq!(t.authorize(&h, local, false), Err(Denied::Wrong));
        assert_eq!(
            Tokens::none().authorize(&h, local, true),
            Err(Denied::ReadOnly)
        );
        assert!(!format!("{t:?}").contains("0123456789"));
    }
}
