//! The checker every part of the configuration reports to: located errors
//! and warnings, times, names.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use crate::diagnostic::{Diagnostic, Severity};
use crate::duration::parse_duration;
use crate::raw::RawTime;

pub(crate) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a Path,
    pub(super) out: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(crate) fn error(
        &mut self,
        at: usize,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let d = Diagnostic::at(Severity::Error, self.file, self.text, at, msg, hint.into());
        self.out.push(d);
    }
    pub(crate) fn warn(
        &mut self,
        at: usize,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let d = Diagnostic::at(
            Severity::Warning,
            self.file,
            self.text,
            at,
            msg,
            hint.into(),
        );
        self.out.push(d);
    }
    /// `raw` parsed by `parse`; on failure, an error at its place saying
    /// `msg(text, why)`, with `hint`.
    pub(crate) fn parsed<T, E>(
        &mut self,
        raw: &Spanned<String>,
        parse: impl FnOnce(&str) -> Result<T, E>,
        msg: impl FnOnce(&str, E) -> String,
        hint: &str,
    ) -> Option<T> {
        match parse(raw.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(raw.span().start, msg(raw.get_ref(), e), Some(hint.into()));
                None
            }
        }
    }
    pub(crate) fn time(
        &mut self,
        v: &Option<Spanned<RawTime>>,
        name: &str,
    ) -> Option<(Duration, usize)> {
        let v = v.as_ref()?;
        let at = v.span().start;
        let parsed = match v.get_ref() {
            // Every time is capped at a day: larger values overflow the
            // arithmetic on deadlines (and are mistakes anyway).
            RawTime::Int(i) if *i > 86_400 => Err(format!("`{i}` is too long (at most a day)")),
            RawTime::Float(f) if *f > 86_400.0 => Err(format!("`{f}` is too long (at most a day)")),
            RawTime::Int(i) if *i > 0 => Ok(Duration::from_secs(i.unsigned_abs())),
            RawTime::Float(f) if *f > 0.0 => Ok(Duration::from_secs_f64(*f)),
            RawTime::Int(_) | RawTime::Float(_) => Err("must be positive".to_string()),
            RawTime::Text(s) => parse_duration(s),
        };
        match parsed {
            Ok(d) if d.is_zero() => {
                self.error(at, format!("{name} must be longer than zero"), None);
                None
            }
            Ok(d) => Some((d, at)),
            Err(e) => {
                self.error(
                    at,
                    format!("invalid {name}: {e}"),
                    Some("write a time such as \"2s\", \"500ms\" or 2 (seconds)".into()),
                );
                None
            }
        }
    }
}

/// The shortest deadtime accepted with `keepalive`: 2 × keepalive + 5 ms.
///
/// The lease under which a node serves ends `deadtime − 2 %` after the
/// last heartbeat a peer acknowledged. While a node holds groups its peers
/// answer its heartbeats at once, so that heartbeat is microseconds old
/// when the lease is renewed, and the next answer comes a keepalive later.
/// The kernel's copy is counted in timer ticks (4 ms with HZ=250) and is
/// written a tick short. This floor keeps the kernel's copy alive from one
/// answer to the next with a tick and a margin to spare; a lost heartbeat
/// may leave the addresses silent for a few milliseconds at the floor
/// itself (`docs/safety.md`, "Lease sizing").
pub fn min_deadtime(keepalive: Duration) -> Duration {
    keepalive * 2 + Duration::from_millis(5)
}

/// [`min_deadtime`] in words, for error messages.
pub const MIN_DEADTIME_RULE: &str = "2 x keepalive + 5 ms";

pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn ms(d: Duration) -> String {
    tandem_core::time::human(d)
}
