//! The shared secret that signs heartbeats.
//!
//! A key file holds the secret as text (surrounding white space is ignored).
//! Like Heartbeat's `authkeys`, it must not be readable by group or others:
//! anyone who can read it can forge heartbeats.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error(
        "cannot read key file {path}: {source}\n  hint: create one with `tandem keygen {path}` and copy it to every node"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Group or others may read (or write) it.
    #[error(
        "bad permissions on key file {path} (mode {mode:04o}): group or others can access it, so they could forge heartbeats\n  hint: run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The file holds no key.
    #[error("key file {path} is empty\n  hint: create one with `tandem keygen {path}`")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file exists already (keygen refuses to overwrite).
    #[error(
        "{path} exists already; remove it first if you really want a new key (every node must then get the new one)"
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// Checks that only the owner can access `path`.
pub fn check_permissions(path: &Path) -> Result<(), KeyFileError> {
    let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Reads the secret from `path` after checking its permissions.
pub fn read_key(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    check_permissions(path)?;
    let data = std::fs::read(path).map_err(|source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = data.trim_ascii();
    if trimmed.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(trimmed.to_vec())
}

/// Writes `secret` as a new key file readable only by its owner.
pub fn write_key(path: &Path, secret: &[u8]) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(e)
            }
        })?;
    f.write_all(secret).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        write_key(&p, b"abcdef0123456789").unwrap();
        assert_eq!(read_key(&p).unwrap(), b"abcdef0123456789");
        assert!(matches!(
            write_key(&p, b"x"),
            Err(KeyFileError::Exists { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key(&p).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(err.to_string().contains("0644"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "  \n").unwrap();
        assert!(matches!(read_key(&p), Err(KeyFileError::Empty { .. })));
        let missing = read_key(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("tandem keygen"), "{missing}");
    }
}
