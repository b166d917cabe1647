//! tandem's configuration.
//!
//! [`parse`] turns the text of a native `tandem.toml` into a validated
//! [`Config`], or into a list of [`Diagnostic`]s, each naming the file, line
//! and column of the problem with a hint to fix it. [`load`] does the same
//! from a path. [`keyfile`] reads the shared secret and refuses files that
//! group or others can read.

pub mod address;
pub mod brain;
pub mod diagnostic;
pub mod duration;
pub mod groups;
pub mod keyfile;
pub mod legacy;
mod model;
pub mod native;
mod raw;

pub use address::{AddressError, FloatingAddress};
pub use brain::UnknownNode;
pub use diagnostic::{Diagnostic, Severity};
pub use duration::parse_duration;
pub use groups::{AgentKind, CheckKind, Explicit, Group, HealthCheck, Resource};
pub use model::{
    ALERT_KINDS, Alert, AlertAction, Config, Control, DEFAULT_ALERT_KINDS, DEFAULT_PORT,
    DEFAULT_VOLUME_PORT, Fencing, Http, Link, LinkKind, MetaPlace, NbdListen, Node,
    ReplicationProtocol, Tls, Volume, VolumeNode, Watchdog, Witness, WitnessKind, min_deadtime,
};
pub use native::Native;

use std::path::{Path, PathBuf};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file has errors; every one is listed.
    #[error("{}", render_all(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render_all(d: &[Diagnostic]) -> String {
    let errors = d.iter().filter(|d| d.severity == Severity::Error).count();
    let mut s: String = d.iter().map(|d| format!("{d}\n")).collect();
    s.push_str(&format!(
        "{errors} error{} found; the configuration was not used",
        if errors == 1 { "" } else { "s" }
    ));
    s
}

/// A valid configuration and the warnings met while reading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Problems that do not stop tandem from running.
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates configuration text. `file` names it in diagnostics
/// and anchors relative paths (the key file) to its directory.
pub fn parse(text: &str, file: &Path) -> Result<Loaded, ConfigError> {
    model::build(text, file)
}

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}
