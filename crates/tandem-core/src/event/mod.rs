//! What the brain reports: membership changes and anomalies, worded the way
//! Heartbeat users grep for them.

use std::fmt;

mod classify;
pub use classify::Subject;
use std::time::Duration;

use crate::time::human;

/// Why a datagram was rejected; each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Shorter than a packet can be.
    Truncated,
    /// Longer than allowed or than its header says.
    Oversized,
    /// Not a tandem packet.
    BadMagic,
    /// A protocol version this build does not speak.
    UnsupportedVersion,
    /// From another cluster.
    WrongCluster,
    /// Signed with a key id this node does not have.
    UnknownKey,
    /// MAC mismatch: wrong key or tampering.
    BadMac,
    /// Authentic but not well formed.
    Malformed,
    /// A sender id that is not in the configuration.
    UnknownSender,
    /// Sent on one link, received on another.
    WrongLink,
    /// A sequence number already accepted.
    Replayed,
    /// An older incarnation, or a sequence number behind the window.
    Stale,
    /// An incarnation far ahead of this node's clock: forged, or a peer
    /// whose clock is more than a day ahead.
    FutureIncarnation,
}

impl RejectReason {
    /// A short phrase naming the reason, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Oversized => "oversized",
            Self::BadMagic => "not a tandem packet",
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::WrongCluster => "wrong cluster",
            Self::UnknownKey => "unknown key id",
            Self::BadMac => "bad MAC (wrong key or tampered)",
            Self::Malformed => "malformed",
            Self::UnknownSender => "unknown sender",
            Self::WrongLink => "sent on another link",
            Self::Replayed => "replayed or duplicate",
            Self::Stale => "stale incarnation or sequence",
            Self::FutureIncarnation => {
                "incarnation from the future (forged, or the sender's clock is over a day ahead)"
            }
        }
    }

    /// Maps a decoder error onto its counter.
    pub fn from_decode(e: &tandem_wire::DecodeError) -> Self {
        use tandem_wire::DecodeError as D;
        match e {
            D::Truncated(_) => Self::Truncated,
            D::Oversized(_) => Self::Oversized,
            D::BadMagic => Self::BadMagic,
            D::UnsupportedVersion(_) => Self::UnsupportedVersion,
            D::WrongCluster(_) => Self::WrongCluster,
            D::UnknownKey(_) => Self::UnknownKey,
            D::BadMac => Self::BadMac,
            D::Malformed(_) | D::UnknownCritical(_) => Self::Malformed,
        }
    }
}

/// Something the brain noticed. `Display` gives the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// First valid packet from `node` on `link` (or first after it died).
    LinkUp {
        /// Peer name.
        node: String,
        /// Link label (interface, or link name).
        link: String,
    },
    /// No valid packet from `node` on `link` for deadtime.
    LinkDead {
        /// Peer name.
        node: String,
        /// Link label.
        link: String,
        /// How long the link was silent.
        silent: Duration,
    },
    /// `node` is late: silent on every link for warntime.
    Late {
        /// Peer name.
        node: String,
        /// How long it has been silent.
        silent: Duration,
    },
    /// A late node was heard again before deadtime.
    Resumed {
        /// Peer name.
        node: String,
        /// How long it was silent.
        silent: Duration,
    },
    /// `node` was silent on every link for deadtime (or never heard within
    /// initdead of start-up).
    Dead {
        /// Peer name.
        node: String,
        /// How long it was silent (since start-up if never heard).
        silent: Duration,
        /// True when it was never heard since this node started.
        never_heard: bool,
    },
    /// A node is heard for the first time since this node started.
    Joined {
        /// Peer name.
        node: String,
        /// Its incarnation.
        incarnation: u64,
    },
    /// A dead or departed node is heard again.
    Back {
        /// Peer name.
        node: String,
        /// Its incarnation.
        incarnation: u64,
    },
    /// A node is heard with a newer incarnation: its daemon restarted.
    Restarted {
        /// Peer name.
        node: String,
        /// Incarnation before.
        old: u64,
        /// Incarnation now.
        new: u64,
    },
    /// A node announced a clean shutdown.
    Left {
        /// Peer name.
        node: String,
    },
    /// This node's brain was not run for `gap`: the daemon was frozen,
    /// suspended or starved of CPU. Deaths are held back for two keepalives
    /// so peers can be heard again first.
    Stalled {
        /// How long the brain went without input.
        gap: Duration,
    },
    /// A peer's configuration digest differs from ours.
    ConfigMismatch {
        /// Peer name.
        node: String,
    },
    /// Another process signs packets as this node: two nodes share a name.
    DuplicateNode {
        /// The node name both claim.
        node: String,
        /// The other process's incarnation.
        incarnation: u64,
    },
    /// This node begins to take over a group (after a failover, a move or
    /// at start-up).
    Acquiring {
        /// Group name.
        group: String,
        /// Why, in words; it begins with `failover`, `move` or `placement`
        /// (see [`Event::acquire_kind`]).
        reason: String,
    },
    /// A resource operation begins.
    OpStarted {
        /// Group name.
        group: String,
        /// Resource name.
        resource: String,
        /// Start or stop (monitors are not logged).
        op: crate::resources::Op,
    },
    /// A resource operation succeeded.
    OpDone {
        /// Group name.
        group: String,
        /// Resource name.
        resource: String,
        /// Start or stop.
        op: crate::resources::Op,
        /// How long it took.
        took: Duration,
    },
    /// Every resource of the group runs here.
    Acquired {
        /// Group name.
        group: String,
    },
    /// This node begins to release a group (move, standby, failback,
    /// shutdown, or too many failures).
    Releasing {
        /// Group name.
        group: String,
        /// Why.
        reason: String,
    },
    /// Every resource of the group is stopped here.
    Released {
        /// Group name.
        group: String,
    },
    /// A monitor found a resource not running or failed.
    MonitorFailed {
        /// Group name.
        group: String,
        /// Resource name.
        resource: String,
        /// What the agent said.
        detail: String,
        /// Fail count on this node now.
        count: u32,
        /// The migration threshold.
        threshold: u32,
    },
    /// A start failed: the group leaves this node.
    StartFailed {
        /// Group name.
        group: String,
        /// Resource name.
        resource: String,
        /// What the agent said.
        detail: String,
    },
    /// A stop failed or timed out: the group is blocked on this node.
    StopFailed {
        /// Group name.
        group: String,
        /// Resource name.
        resource: String,
        /// What the agent said.
        detail: String,
    },
    /// This partition gained or lost quorum.
    Quorum {
        /// Whether it has quorum now.
        quorate: bool,
        /// Votes present.
        present: u32,
        /// Votes needed.
        needed: u32,
        /// What happens without quorum.
        policy: crate::config::NoQuorumPolicy,
    },
    /// This node's data for a group became ready (`hold: None`) or not.
    DataReadiness {
        /// The group.
        group: String,
        /// Why its data is not ready here.
        hold: Option<String>,
    },
    /// The daemon was frozen past its lease: it releases everything first.
    LeaseLost {
        /// How long it was frozen.
        gap: Duration,
    },
    /// A fence agent ran against a dead node.
    Fenced {
        /// The node.
        node: String,
        /// The agent's error, if it failed.
        error: Option<String>,
    },
    /// The witness check of a failover finished.
    Witness {
        /// Whether a witness answered.
        reachable: bool,
    },
    /// An operator setting changed (standby, move, cleanup).
    SettingsChanged {
        /// What changed, in words.
        what: String,
    },
    /// An operator command reached this node (reported by the daemon, not
    /// the brain: the brain does not know who asked).
    Operator {
        /// Who asked: a local user, or an HTTP token's name and address.
        by: String,
        /// The command, in words.
        command: String,
        /// The answer: what changed, or why nothing did.
        outcome: String,
    },
    /// Datagrams are being rejected; reported at the 1st, 2nd, 4th, 8th …
    /// occurrence of each reason so a flood cannot flood the log.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// Link label it arrived on.
        link: String,
        /// How many of this reason so far.
        count: u64,
    },
}

impl Event {
    /// Whether the event deserves a warning rather than an info line.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Event::LinkDead { .. }
                | Event::Late { .. }
                | Event::Dead { .. }
                | Event::Stalled { .. }
                | Event::ConfigMismatch { .. }
                | Event::DuplicateNode { .. }
                | Event::Rejected { .. }
                | Event::MonitorFailed { .. }
                | Event::StartFailed { .. }
                | Event::StopFailed { .. }
                | Event::Quorum { quorate: false, .. }
                | Event::Witness { reachable: false }
                | Event::LeaseLost { .. }
                | Event::Fenced { error: Some(_), .. }
        )
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::LinkUp { node, link } => write!(f, "Link {node}:{link} up"),
            Event::LinkDead { node, link, silent } => {
                write!(f, "Link {node}:{link} dead (silent for {})", human(*silent))
            }
            Event::Late { node, silent } => {
                write!(f, "No heartbeat from {node} for {}", human(*silent))
            }
            Event::Resumed { node, silent } => {
                write!(f, "Heartbeat from {node} resumed after {}", human(*silent))
            }
            Event::Dead {
                node,
                silent,
                never_heard,
            } => {
                if *never_heard {
                    write!(
                        f,
                        "{node} is dead (not heard within initdead {} of start-up)",
                        human(*silent)
                    )
                } else {
                    write!(f, "{node} is dead (no heartbeat for {})", human(*silent))
                }
            }
            Event::Joined { node, incarnation } => {
                write!(f, "{node} is up (incarnation {incarnation})")
            }
            Event::Back { node, incarnation } => {
                write!(f, "{node} is back (incarnation {incarnation})")
            }
            Event::Restarted { node, old, new } => {
                write!(f, "{node} restarted (incarnation {old} -> {new})")
            }
            Event::Left { node } => write!(f, "{node} left the cluster (clean shutdown)"),
            Event::Stalled { gap } => write!(
                f,
                "This node was not scheduled for {} (frozen, suspended or starved of CPU); holding back deaths for two keepalives",
                human(*gap)
            ),
            Event::ConfigMismatch { node } => write!(
                f,
                "{node} runs a different configuration (digest differs); make the files identical on every node"
            ),
            Event::DuplicateNode { node, incarnation } => write!(
                f,
                "Another process signs heartbeats as {node} (incarnation {incarnation}): two nodes share a name"
            ),
            Event::Acquiring { group, reason } => {
                write!(f, "Taking over resource group {group} ({reason})")
            }
            Event::OpStarted {
                group,
                resource,
                op,
            } => match op {
                crate::resources::Op::Start => write!(f, "Starting {group}/{resource}"),
                crate::resources::Op::Stop => write!(f, "Stopping {group}/{resource}"),
                crate::resources::Op::Monitor => write!(f, "Probing {group}/{resource}"),
            },
            Event::OpDone {
                group,
                resource,
                op,
                took,
            } => {
                let verb = match op {
                    crate::resources::Op::Start => "Started",
                    crate::resources::Op::Stop => "Stopped",
                    crate::resources::Op::Monitor => "Probed",
                };
                write!(f, "{verb} {group}/{resource} in {}", human(*took))
            }
            Event::Acquired { group } => {
                write!(f, "Acquisition completed: resource group {group} runs here")
            }
            Event::Releasing { group, reason } => {
                write!(f, "Releasing resource group {group} ({reason})")
            }
            Event::Released { group } => {
                write!(f, "Release completed: resource group {group} stopped here")
            }
            Event::MonitorFailed {
                group,
                resource,
                detail,
                count,
                threshold,
            } => {
                if count < threshold {
                    write!(
                        f,
                        "Monitor of {group}/{resource} failed ({detail}): restarting in place (failure {count} of {threshold})"
                    )
                } else {
                    write!(
                        f,
                        "Monitor of {group}/{resource} failed ({detail}): {count} failures reach migration_threshold {threshold}, moving {group} away"
                    )
                }
            }
            Event::StartFailed {
                group,
                resource,
                detail,
            } => write!(
                f,
                "Start of {group}/{resource} failed ({detail}): giving up {group} on this node"
            ),
            Event::StopFailed {
                group,
                resource,
                detail,
            } => write!(
                f,
                "Stop of {group}/{resource} failed ({detail}): group {group} is BLOCKED here and will not start anywhere; check this node, then run `tandem cleanup {group}`"
            ),
            Event::SettingsChanged { what } => write!(f, "Settings: {what}"),
            Event::Operator {
                by,
                command,
                outcome,
            } => write!(f, "Operator {by}: {command}: {outcome}"),
            Event::Fenced { node, error: None } => {
                write!(
                    f,
                    "{node} fenced: it runs nothing any more; taking over may proceed"
                )
            }
            Event::Fenced {
                node,
                error: Some(e),
            } => write!(
                f,
                "Fencing {node} FAILED ({e}): nothing starts in its place; retrying in 1 s"
            ),
            Event::DataReadiness { group, hold: None } => {
                write!(f, "{group}: this node's data is ready; it may run here")
            }
            Event::DataReadiness {
                group,
                hold: Some(why),
            } => write!(f, "{group}: not startable here: {why}"),
            Event::LeaseLost { gap } => write!(
                f,
                "Frozen for {} past this node's lease: another node may run its groups now; releasing everything before anything else",
                human(*gap)
            ),
            Event::Witness { reachable: true } => {
                write!(f, "Witness reached: this node may act alone")
            }
            Event::Witness { reachable: false } => write!(
                f,
                "Witness unreachable: this node WAITS and runs nothing (split brain avoided); `tandem force-primary` overrides"
            ),
            Event::Quorum {
                quorate: true,
                present,
                needed,
                ..
            } => write!(f, "Quorum regained ({present} votes, {needed} needed)"),
            Event::Quorum {
                quorate: false,
                present,
                needed,
                policy,
            } => write!(
                f,
                "Quorum lost ({present} votes, {needed} needed): {}",
                match policy {
                    crate::config::NoQuorumPolicy::Stop => "stopping every group here",
                    crate::config::NoQuorumPolicy::Freeze => "freezing groups as they are",
                    crate::config::NoQuorumPolicy::Ignore =>
                        "ignoring it (no_quorum = ignore: UNSAFE)",
                }
            ),
            Event::Rejected {
                reason,
                link,
                count,
            } => write!(
                f,
                "Rejected datagram on {link}: {} ({count} so far)",
                reason.as_str()
            ),
        }
    }
}
