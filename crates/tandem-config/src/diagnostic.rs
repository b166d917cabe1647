//! Problems found in a configuration file, located by line and column.

use std::fmt;
use std::path::{Path, PathBuf};

/// Whether a problem stops tandem from starting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file is used; the operator should look.
    Warning,
}

/// One problem, with where it is and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// The offending source line, for display.
    pub source_line: String,
}

impl Diagnostic {
    /// A diagnostic at byte offset `at` of `text`.
    pub fn at(
        severity: Severity,
        file: &Path,
        text: &str,
        at: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        let at = at.min(text.len());
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..at].chars().count() + 1;
        let source_line = text[line_start..]
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        Self {
            severity,
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            hint,
            source_line,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(
            f,
            "{}:{}:{}: {kind}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        let gutter = self.line.to_string().len();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", self.line, self.source_line)?;
        write!(
            f,
            "{:gutter$} | {}^",
            "",
            " ".repeat(self.column.saturating_sub(1))
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n{:gutter$} = hint: {h}", "")?;
        }
        Ok(())
    }
}
