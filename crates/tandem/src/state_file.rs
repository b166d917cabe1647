//! Small state files under `state_dir`, replaced atomically: the new text
//! goes to `FILE.new`, which is then renamed over `FILE`, so a crash never
//! leaves half a file.

use std::path::Path;

/// Replaces `path` with `text` atomically, creating its folder if needed.
pub fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
