//! The cluster's lease, as seen by a volume process. The daemon sends the
//! end of its lease (CLOCK_MONOTONIC nanoseconds, shared by every process
//! of the machine) to `STATE_DIR/volumes/NAME.lease`, a root-only datagram
//! socket, each time the brain renews it. A volume promoted by the cluster
//! accepts writes only while that lease runs: a node whose daemon is
//! frozen, starved or cut off stops writing by itself before a peer can be
//! promoted, and its application sees I/O errors, never silent acceptance.
//! A volume promoted by hand (`tandem volume primary`) has no lease.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use super::Input;
use super::inbox::Inbox;

/// Marks a lease datagram (and its format version).
const MAGIC: u32 = 0x544c_5631; // "TLV1"

/// The lease socket of volume `name`.
pub fn socket_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("volumes").join(format!("{name}.lease"))
}

/// Now, in CLOCK_MONOTONIC nanoseconds.
pub fn mono_now() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// One lease datagram: the lease's end, or 0 when the node holds none.
pub fn encode(until: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..].copy_from_slice(&until.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<u64> {
    if b.len() != 12 || u32::from_le_bytes(b.get(..4)?.try_into().ok()?) != MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(b.get(4..12)?.try_into().ok()?))
}

/// Binds the lease socket and forwards each lease to the engine thread.
/// Malformed datagrams are counted in the log, never acted on.
pub fn serve(path: &Path, inbox: Inbox) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let s = UnixDatagram::bind(path)
        .map_err(|e| anyhow::anyhow!("lease socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("tandem-vol-lease".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            let mut bad = 0u64;
            while let Ok(n) = s.recv(&mut buf) {
                match decode(&buf[..n]) {
                    Some(until) => {
                        if inbox.send(Input::Lease { until }).is_err() {
                            return;
                        }
                    }
                    None => {
                        bad += 1;
                        if bad.is_power_of_two() {
                            tracing::warn!("{bad} malformed lease datagram(s) ignored");
                        }
                    }
                }
            }
        })?;
    Ok(())
}

impl super::Runner {
    /// Whether writes must be refused: promoted by the cluster, and its
    /// lease has run out.
    pub(super) fn lease_lapsed(&self) -> bool {
        self.managed
            && self.vol.role() == tandem_volumes::Role::Primary
            && mono_now() >= self.lease_until
    }

    /// Once the lease lapsed, writes are held (see `submit`); renewed
    /// within [`super::LAPSE_HOLD`], they go on in order; otherwise they fail with
    /// EIO and the volume demotes itself as soon as no write is in flight,
    /// so a peer the cluster promotes finds no primary here.
    pub(super) fn check_lease(&mut self) {
        if !self.lease_lapsed() {
            if self.lapsed_since.take().is_some() {
                self.lapse_failed = false;
                let held = std::mem::take(&mut self.held);
                if !held.is_empty() {
                    tracing::info!(target: "tandem::volume", "{}: lease renewed: {} held write(s) go on", self.vol.name(), held.len());
                }
                for (origin, op) in held {
                    self.submit(origin, op);
                }
            }
            return;
        }
        let since = *self
            .lapsed_since
            .get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < super::LAPSE_HOLD {
            return;
        }
        let name = self.vol.name().to_string();
        if !self.lapse_reported {
            self.lapse_reported = true;
            self.lapse_failed = true;
            tracing::warn!(target: "tandem::volume", "{name}: this node lost the cluster's lease: writes refused with EIO from now on");
            self.events.push("lease lapsed: writes refused".to_string());
        }
        for (origin, _) in std::mem::take(&mut self.held) {
            self.lapsed_refusals += 1;
            self.answer(origin, Err(tandem_volumes::IoError::LeaseLapsed));
        }
        let now = self.now();
        // IO suspended for fencing fails too: the application hears of it
        // instead of hanging, and the volume can demote.
        self.vol
            .fail_suspended(now, &tandem_volumes::IoError::LeaseLapsed);
        if self.vol.demote(now).is_ok() {
            self.managed = false;
            self.lapsed_since = None;
            self.lapse_failed = false;
            tracing::warn!(target: "tandem::volume", "{name}: demoted to secondary (lease lapsed)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_round_trip_and_junk_is_refused() {
        assert_eq!(decode(&encode(42)), Some(42));
        assert_eq!(decode(&encode(0)), Some(0));
        assert_eq!(decode(b"junk"), None);
        let mut b = encode(7);
        b[0] ^= 1;
        assert_eq!(decode(&b), None);
        assert_eq!(decode(&[encode(7).as_slice(), b"x"].concat()), None);
    }
}
