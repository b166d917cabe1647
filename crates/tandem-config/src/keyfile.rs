//! The shared secret that signs heartbeats.
//!
//! A key file holds the secret as text (surrounding white space is ignored).
//! Like Heartbeat's `authkeys`, it must not be readable by group or others:
//! anyone who can read it can forge heartbeats.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;
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
    /// Owned by another user than root or the one running tandem: that
    /// user could change the key.
    #[error(
        "key file {path} is owned by uid {uid}, not by root or this user (uid {euid}): its owner could replace the key\n  hint: run `chown root {path}` (or the user tandem runs as)"
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The effective uid of this process.
        euid: u32,
    },
    /// A native key shorter than [`MIN_KEY_LEN`].
    #[error(
        "key file {path} holds a {len}-byte secret; tandem needs at least {min} bytes so it cannot be guessed\n  hint: make a new one with `tandem keygen FILE` and copy it to every node"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// The secret's length.
        len: usize,
        /// The minimum.
        min: usize,
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

/// The shortest native key accepted (bytes); `tandem keygen` writes 64.
pub const MIN_KEY_LEN: usize = 16;

#[allow(unsafe_code)]
fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments, has no preconditions and cannot
    // fail.
    unsafe { libc::geteuid() }
}

/// Checks the opened file: only its owner may access it, and that owner is
/// root or the user running tandem. Checked on the file descriptor that is
/// then read, so the file cannot be swapped between check and read.
fn check_opened(path: &Path, file: &std::fs::File) -> Result<(), KeyFileError> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(|source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let (uid, euid) = (meta.uid(), euid());
    if uid != 0 && uid != euid {
        return Err(KeyFileError::Owner {
            path: path.to_path_buf(),
            uid,
            euid,
        });
    }
    Ok(())
}

/// Checks that only the owner can access `path` (and that the owner is root
/// or this user).
pub fn check_permissions(path: &Path) -> Result<(), KeyFileError> {
    let file = std::fs::File::open(path).map_err(|source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_opened(path, &file)
}

/// Reads the secret from `path` after checking its permissions and owner
/// on the opened file.
pub fn read_key(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    use std::io::Read;
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    check_opened(path, &file)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(io)?;
    let trimmed = data.trim_ascii();
    if trimmed.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(trimmed.to_vec())
}

/// Refuses a native key (not an `authkeys` file) shorter than
/// [`MIN_KEY_LEN`].
pub fn check_length(path: &Path, secret: &[u8]) -> Result<(), KeyFileError> {
    if secret.len() < MIN_KEY_LEN {
        return Err(KeyFileError::TooShort {
            path: path.to_path_buf(),
            len: secret.len(),
            min: MIN_KEY_LEN,
        });
    }
    Ok(())
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

    /// Issue 12, finding 10: Heartbeat's sample secret `HI!` was accepted.
    #[test]
    fn short_native_keys_are_refused() {
        let p = Path::new("/etc/tandem/authkey");
        let err = check_length(p, b"HI!").unwrap_err();
        assert!(err.to_string().contains("3-byte secret"), "{err}");
        assert!(err.to_string().contains("tandem keygen"), "{err}");
        assert!(check_length(p, b"0123456789abcdef").is_ok());
    }

    /// The owner is checked on the opened file: a key owned by another
    /// user is refused (root running the test gives the file away).
    #[test]
    fn a_key_owned_by_someone_else_is_refused() {
        assert_eq!(
            euid(),
            0,
            "only root can give a file away: run as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        write_key(&p, b"abcdef0123456789").unwrap();
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let err = read_key(&p).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Owner { uid: 65534, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chown"), "{err}");
    }
}
