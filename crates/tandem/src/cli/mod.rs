//! Operator commands other than the daemon.

pub mod probe;
pub mod status;
pub mod volume;

/// Exit code of a command the cluster refused because of its state
/// (joining, shutting down, a peer reachable…): try again later.
pub const EXIT_REFUSED: u8 = 4;
/// Exit code of a command naming a group, node or selection that does not
/// exist: fix the command.
pub const EXIT_UNKNOWN_NAME: u8 = 5;

/// A command the cluster refused; nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// Why, in words.
    pub message: String,
    /// The stable word (see `tandem_control::refusal_kind`).
    pub kind: String,
}

impl Refused {
    /// The process exit code for it.
    pub fn exit_code(&self) -> u8 {
        match self.kind.as_str() {
            "unknown_group" | "unknown_node" | "bad_selection" => EXIT_UNKNOWN_NAME,
            _ => EXIT_REFUSED,
        }
    }
}

/// Sends an operator command to the local daemon and prints its answer.
pub fn command(socket: &Path, cmd: tandem_core::Command) -> anyhow::Result<()> {
    let req = tandem_control::Request::Command(cmd);
    match tandem_control::request(socket, &req, std::time::Duration::from_secs(10))? {
        tandem_control::Response::Done { message } => {
            println!("{message}");
            Ok(())
        }
        tandem_control::Response::Refused { message, kind } => {
            Err(Refused { message, kind }.into())
        }
        tandem_control::Response::Error { message } => bail!("{message}"),
        tandem_control::Response::Status(_) => bail!("unexpected answer from the daemon"),
    }
}

use std::path::Path;

use anyhow::{Context, bail};

/// `tandem config check FILE`.
pub fn config_check(file: &Path) -> anyhow::Result<()> {
    match tandem_config::load(file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("{w}");
            }
            let c = &loaded.config;
            println!(
                "{}: OK — cluster `{}`, {} node(s), {} link(s); keepalive {}, warntime {}, deadtime {}, initdead {}",
                file.display(),
                c.cluster,
                c.nodes.len(),
                c.links.len(),
                tandem_core::time::human(c.timing.keepalive),
                tandem_core::time::human(c.timing.warntime),
                tandem_core::time::human(c.timing.deadtime),
                tandem_core::time::human(c.timing.initdead),
            );
            match tandem_config::keyfile::check_permissions(&c.key_file) {
                Ok(()) => Ok(()),
                Err(e) => bail!("{e}"),
            }
        }
        Err(tandem_config::ConfigError::Invalid(d)) => {
            bail!("{}", tandem_config::ConfigError::Invalid(d))
        }
        Err(e) => Err(e.into()),
    }
}

/// `tandem keygen FILE`: 32 random bytes, hex-encoded, mode 600.
pub fn keygen(file: &Path) -> anyhow::Result<()> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    tandem_config::keyfile::write_key(file, hex.as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    println!(
        "wrote a new key to {} (mode 600); copy it to the same path on every node",
        file.display()
    );
    Ok(())
}

/// `tandem import heartbeat DIR`: prints the native configuration.
pub fn import_heartbeat(dir: &Path) -> anyhow::Result<()> {
    let h = tandem_config::legacy::load_dir(dir)?;
    print!("{}", h.toml);
    let dropped: Vec<String> = h.loaded.warnings.iter().map(ToString::to_string).collect();
    if !dropped.is_empty() {
        eprintln!("Not carried over, or worth a look ({}):", dropped.len());
        for d in dropped {
            eprintln!("{d}");
        }
    }
    if let Some(l) = &h.extras.logfile {
        eprintln!(
            "note: ha.cf's logfile {} is used by `tandem daemon --heartbeat-dir`; with the native file, redirect the daemon's stderr there",
            l.display()
        );
    }
    Ok(())
}
