//! Resources and groups: their specification, their lifecycle on this
//! node, and the agent operations the brain asks the daemon to run.
//!
//! A group is an ordered list of resources, started left to right and
//! stopped right to left, on one node at a time. The brain runs one
//! operation at a time per group and learns its outcome through
//! [`crate::Brain::handle_op_result`].

use std::time::Duration;

use tandem_wire::GroupPhase;

use crate::placement::PlacementRules;
use crate::time::Timestamp;

/// A resource as the brain needs it (agent parameters stay in the daemon).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    /// Name, unique in its group.
    pub name: String,
    /// Start timeout.
    pub start_timeout: Duration,
    /// Stop timeout.
    pub stop_timeout: Duration,
    /// Monitor interval; `None`: never monitored.
    pub monitor_interval: Option<Duration>,
    /// Monitor timeout.
    pub monitor_timeout: Duration,
}

/// A resource group as the brain needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// Name.
    pub name: String,
    /// Resources in start order.
    pub resources: Vec<ResourceSpec>,
    /// Where it prefers to run.
    pub rules: PlacementRules,
    /// Monitor failures on one node before the group leaves it.
    pub migration_threshold: u32,
    /// Failures older than this are forgotten; `None`: never.
    pub failure_timeout: Option<Duration>,
    /// Replicated volumes the group's data lives on: it waits for the
    /// daemon to report them ready before it starts here.
    pub volumes: Vec<String>,
}

/// An agent operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Start the resource.
    Start,
    /// Stop the resource (must succeed if it is already stopped).
    Stop,
    /// Check the resource: running, not running, or failed.
    Monitor,
}

/// An operation the daemon must run, then report with its `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// Identifies the result.
    pub id: u64,
    /// The resource, by name: stable whatever the order of the lists the
    /// driver keeps (the executor looks the resource up by it).
    pub key: ResourceKey,
    /// Group position in the brain's configuration (for the simulator,
    /// which built that list itself).
    pub group: usize,
    /// Resource position in the group (likewise).
    pub resource: usize,
    /// What to do.
    pub op: Op,
    /// How long the agent may take; the daemon kills it after that and
    /// reports [`OpResult::TimedOut`].
    pub timeout: Duration,
}

/// A resource's stable identity: its group's name and its own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// Group name.
    pub group: String,
    /// Resource name.
    pub resource: String,
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.group, self.resource)
    }
}

/// The outcome of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// Done; for a monitor: running.
    Ok,
    /// For a monitor: cleanly not running.
    NotRunning,
    /// Failed, with the agent's explanation.
    Failed(String),
    /// The agent did not finish in time and was killed.
    TimedOut,
}

/// A resource's state on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Not yet probed since the daemon started.
    Unknown,
    /// Not running.
    Stopped,
    /// Start in progress.
    Starting,
    /// Running.
    Started,
    /// Stop in progress.
    Stopping,
    /// Found failed (monitor) or failed to start; will be stopped.
    Failed,
    /// A stop failed or timed out: it may still run; nothing more is done
    /// until the node is fenced or an operator runs `tandem cleanup`.
    Blocked,
}

/// Runtime state of one resource on this node.
#[derive(Clone, Debug)]
pub(crate) struct ResourceRt {
    pub(crate) state: ResourceState,
    pub(crate) fail_count: u32,
    pub(crate) last_failure: Option<Timestamp>,
    pub(crate) next_monitor: Option<Timestamp>,
    pub(crate) pending: Option<(u64, Op)>,
    pub(crate) last_error: Option<String>,
    /// Its main process was reported gone while a monitor was under way:
    /// monitor again as soon as that one answers.
    pub(crate) recheck: bool,
}

impl ResourceRt {
    pub(crate) fn new() -> Self {
        Self {
            state: ResourceState::Unknown,
            fail_count: 0,
            last_failure: None,
            next_monitor: None,
            pending: None,
            last_error: None,
            recheck: false,
        }
    }
}

/// Runtime state of one group on this node.
#[derive(Clone, Debug)]
pub(crate) struct GroupRt {
    pub(crate) resources: Vec<ResourceRt>,
    /// After a monitor failure below the threshold: restart from here.
    pub(crate) restart_from: Option<usize>,
    /// Cleanups already applied.
    pub(crate) cleanups_applied: u32,
    /// A node that reported the group blocked; nothing starts it until a
    /// cleanup (or, later, fencing).
    pub(crate) blocked_on: Option<crate::NodeId>,
    /// Whether this node was acquiring the group (for log wording).
    pub(crate) acquiring: bool,
    /// Whether this node was releasing the group (for log wording).
    pub(crate) releasing: bool,
    /// Why this node's copy of the group's data is not fit to run it.
    pub(crate) data_hold: Option<String>,
    /// This node's copy is durably unfit (Outdated or Inconsistent).
    pub(crate) data_stale: bool,
}

impl GroupRt {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            resources: (0..n).map(|_| ResourceRt::new()).collect(),
            restart_from: None,
            cleanups_applied: 0,
            blocked_on: None,
            acquiring: false,
            releasing: false,
            data_hold: None,
            data_stale: false,
        }
    }

    /// The group's phase on this node, as reported to peers.
    pub(crate) fn phase(&self) -> GroupPhase {
        use ResourceState as R;
        let states = || self.resources.iter().map(|r| r.state);
        if states().any(|s| s == R::Blocked) {
            GroupPhase::Blocked
        } else if states().any(|s| s == R::Unknown) {
            GroupPhase::Probing
        } else if states().all(|s| s == R::Stopped) {
            GroupPhase::Stopped
        } else if states().any(|s| s == R::Stopping) {
            GroupPhase::Stopping
        } else if states().all(|s| s == R::Started) {
            GroupPhase::Started
        } else {
            // Starting, or failed and about to be stopped.
            GroupPhase::Starting
        }
    }

    /// Whether fail counts ban the group from this node.
    pub(crate) fn banned(&self, threshold: u32) -> bool {
        threshold > 0 && self.resources.iter().any(|r| r.fail_count >= threshold)
    }

    pub(crate) fn probed(&self) -> bool {
        self.resources
            .iter()
            .all(|r| r.state != ResourceState::Unknown)
    }

    pub(crate) fn busy(&self) -> bool {
        self.resources.iter().any(|r| r.pending.is_some())
    }
}
