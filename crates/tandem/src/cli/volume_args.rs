//! The `tandem volume` subcommands (drbdadm's words) and their dispatch.

/// `tandem volume` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum VolumeAction {
    /// Write fresh metadata on this node's backing disk (the copy is then
    /// inconsistent until a sync or `primary --force`).
    CreateMd {
        /// Volume name.
        name: String,
        /// Overwrite existing metadata (forgets which copy is newest).
        #[arg(long)]
        force: bool,
    },
    /// Start the volume on this node (its own process) and connect to peers.
    Up {
        /// Volume name.
        name: String,
    },
    /// Stop the volume on this node (refused while primary).
    Down {
        /// Volume name.
        name: String,
    },
    /// Run the volume in the foreground (what `up` starts).
    Run {
        /// Volume name.
        name: String,
    },
    /// Become primary: the export becomes writable here.
    Primary {
        /// Volume name.
        name: String,
        /// Make this copy the newest even if it is not up to date: peers
        /// resync from it and lose what it lacks.
        #[arg(long)]
        force: bool,
    },
    /// Become secondary: the export becomes read-only here. Refused while
    /// the exported file is open for writing (unmount the file system and
    /// `losetup -d` its loop device first, in every mount namespace), like
    /// DRBD's "Device is held open by someone"; waits up to 2 s for a loop
    /// device just detached to let go.
    Secondary {
        /// Volume name.
        name: String,
    },
    /// Leave StandAlone and connect to peers.
    Connect {
        /// Volume name.
        name: String,
        /// One peer (default: all).
        peer: Option<String>,
        /// After a split brain: this node is the victim; its changes since
        /// the split are overwritten by the peer's data.
        #[arg(long)]
        discard_my_data: bool,
    },
    /// Drop the connection and stay StandAlone.
    Disconnect {
        /// Volume name.
        name: String,
        /// One peer (default: all).
        peer: Option<String>,
    },
    /// Discard this node's copy; it is fully resynced from a peer.
    Invalidate {
        /// Volume name.
        name: String,
    },
    /// Discard a peer's copy; it is fully resynced from this node's
    /// (DRBD's `invalidate-remote`). This copy must be UpToDate, the peer
    /// connected and secondary; everything on the peer's copy is replaced.
    InvalidateRemote {
        /// Volume name.
        name: String,
        /// One peer (default: all).
        peer: Option<String>,
    },
    /// Mark this node's copy Outdated (DRBD's `outdate`): it cannot be
    /// promoted until it resynced from an up-to-date peer. A primary whose
    /// IO is suspended for this node resumes once the heartbeats carry it.
    Outdate {
        /// Volume name.
        name: String,
    },
    /// Resume IO suspended for fencing (`fencing = resource-and-stonith`)
    /// without waiting for the lost peer to be outdated or fenced. Only
    /// when you know that peer cannot be promoted (it is powered off, or
    /// you ran `tandem volume outdate` there): a peer promoted later would
    /// lack every write made from now on.
    ResumeIo {
        /// Volume name.
        name: String,
    },
    /// Online verify: compare every block with the peers' copies.
    Verify {
        /// Volume name.
        name: String,
        /// One peer (default: all).
        peer: Option<String>,
    },
    /// Grow the volume to what every node's backing disk holds now
    /// (DRBD's `resize`). First grow the backing disk on every node
    /// (`lvextend -L +10G vg/r0`, `truncate -s 20G /var/lib/tandem/r0.img`),
    /// then run this on one node with every peer connected and in sync.
    /// The volume takes the smallest disk's size; the new area is resynced
    /// from the primary (or from this node if none is). Then grow the
    /// filesystem: `losetup -c /dev/loopN` and `resize2fs /dev/loopN`.
    /// Shrinking is not supported.
    Resize {
        /// Volume name.
        name: String,
        /// The new area is identical on every node already (fresh zeroed
        /// disks, thin volumes): skip its resync.
        #[arg(long)]
        assume_clean: bool,
    },
    /// Role, disk and connections, like `drbdadm status`.
    Status {
        /// Volume name (default: every volume with a copy here).
        name: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Recent events of a volume; with --now/--follow, its state as a
    /// stream of `drbdsetup events2`-style lines (`exists …`, `change …`).
    Events {
        /// Volume name.
        name: String,
        /// Print the current state (`exists` lines, ending `exists -`).
        #[arg(long)]
        now: bool,
        /// Keep printing `change` lines (and resync progress every second)
        /// until interrupted.
        #[arg(long)]
        follow: bool,
    },
}

/// Runs one `tandem volume` subcommand.
pub fn dispatch(
    action: VolumeAction,
    config: &std::path::Path,
    heartbeat: bool,
    node: Option<&str>,
    state_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use super::volume as v;
    use crate::volume::control::Command as C;
    let mut t = v::Target::load(config, node, heartbeat)?;
    if let Some(d) = state_dir {
        t.config.state_dir = d;
    }
    match action {
        VolumeAction::CreateMd { name, force } => v::create_md(&t, &name, force),
        VolumeAction::Up { name } => v::up(&t, &name),
        VolumeAction::Down { name } => v::command(&t, &name, C::Down),
        VolumeAction::Run { name } => {
            let _guards = crate::daemon::init_logging(None, &crate::daemon::hostname())?;
            crate::volume::run(&t.config, &name, &t.node)
        }
        VolumeAction::Primary { name, force } => {
            v::command(&t, &name, C::Primary { force, lease: None })
        }
        VolumeAction::Secondary { name } => v::command(&t, &name, C::Secondary),
        VolumeAction::Connect {
            name,
            peer,
            discard_my_data,
        } => v::command(
            &t,
            &name,
            C::Connect {
                discard_my_data,
                peer,
            },
        ),
        VolumeAction::Disconnect { name, peer } => v::command(&t, &name, C::Disconnect { peer }),
        VolumeAction::Invalidate { name } => v::command(&t, &name, C::Invalidate),
        VolumeAction::InvalidateRemote { name, peer } => {
            v::command(&t, &name, C::InvalidateRemote { peer })
        }
        VolumeAction::ResumeIo { name } => v::command(&t, &name, C::ResumeIo),
        VolumeAction::Outdate { name } => v::command(&t, &name, C::Outdate),
        VolumeAction::Verify { name, peer } => v::command(&t, &name, C::Verify { peer }),
        VolumeAction::Resize { name, assume_clean } => {
            v::command(&t, &name, C::Resize { assume_clean })
        }
        VolumeAction::Status { name, json } => v::status(&t, name.as_deref(), json),
        VolumeAction::Events { name, now, follow } => {
            super::volume_events::events(&t, &name, now, follow)
        }
    }
}
