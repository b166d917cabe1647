//! The boot incarnation: a number that grows at every daemon start, so peers
//! recognise a restart and refuse packets captured from an earlier run.
//!
//! It is the larger of the wall clock in microseconds and the last value
//! used plus one, kept in `state_dir/incarnation`; the file makes it grow
//! even if the wall clock steps back between two starts.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Picks this start's incarnation and records it. Returns it with a warning
/// when the state directory could not be used.
pub fn next(state_dir: &Path) -> (u64, Option<String>) {
    let file = state_dir.join("incarnation");
    let previous = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let value = clock.max(previous.saturating_add(1));
    let warning = std::fs::create_dir_all(state_dir)
        .and_then(|()| std::fs::write(&file, format!("{value}\n")))
        .err()
        .map(|e| {
            format!(
                "cannot record the incarnation in {}: {e}; relying on the wall clock alone",
                file.display()
            )
        });
    (value, warning)
}

#[cfg(test)]
mod tests {
    #[test]
    fn grows_even_if_the_file_is_ahead_of_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("incarnation"),
            format!("{}\n", u64::MAX - 5),
        )
        .unwrap();
        let (a, w) = super::next(dir.path());
        assert_eq!(a, u64::MAX - 4);
        assert!(w.is_none());
        let (b, _) = super::next(dir.path());
        assert_eq!(b, u64::MAX - 3);
    }
}
