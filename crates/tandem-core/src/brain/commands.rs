//! Operator commands (`tandem move|standby|cleanup|force-primary|takeover`):
//! validated against the configuration and membership, then recorded in the
//! replicated [`Settings`] that every node's placement reads.

use super::WitnessState;
use crate::Brain;
use crate::Event;
use crate::Timestamp;
use crate::settings::Move;
use std::time::Duration;
use tandem_wire::{NodeState, PacketKind};

/// An operator command, as `tandem move|standby|unstandby|cleanup` sends it
/// (the control socket carries it as JSON, tagged `command`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Prefer `node` for `group` (for `duration`, or until cleared);
    /// `node: None` clears the preference.
    Move {
        /// Group name.
        group: String,
        /// Node name, or `None` to clear.
        node: Option<String>,
        /// How long the preference lasts.
        duration: Option<Duration>,
    },
    /// Put a node in standby (it runs nothing) or take it out.
    Standby {
        /// Node name.
        node: String,
        /// True: standby; false: back to normal.
        on: bool,
    },
    /// Forget a group's fail counts and blocked state everywhere.
    Cleanup {
        /// Group name.
        group: String,
    },
    /// Two-node clusters whose witness could not be reached: let `node`
    /// (which must be this node) run the groups alone. Refused while any
    /// peer is reachable.
    ForcePrimary {
        /// The node that should run the groups: this one.
        node: String,
    },
    /// Heartbeat's hb_takeover / hb_standby: pull (`take`) or push away all
    /// groups from the local node, as moves.
    TakeOver {
        /// True: move the groups here; false: move them off this node.
        take: bool,
        /// `all`, `local` (groups that prefer this node; also `failback`)
        /// or `foreign` (groups that prefer another node).
        which: String,
    },
}

/// Why an operator command changed nothing. Its `Display` is the message
/// the operator reads; the CLI maps each to an exit code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The node has not heard every peer (or initdead) yet.
    #[error(
        "this node is still joining the cluster (waiting for its peers or initdead); try again in a moment"
    )]
    Joining,
    /// The node is leaving the cluster.
    #[error("this node is shutting down")]
    ShuttingDown,
    /// `force-primary` names another node.
    #[error("run `tandem force-primary {node}` on {node} itself (this is {this})")]
    NotThisNode {
        /// The node named.
        node: String,
        /// This node.
        this: String,
    },
    /// `force-primary` while a peer is reachable.
    #[error("refused: {peer} is reachable, so this is no split; nothing to force")]
    PeerReachable {
        /// A reachable peer.
        peer: String,
    },
    /// `force-primary` while no witness check is pending.
    #[error("this node is not waiting for a witness; nothing to force")]
    NotWaiting,
    /// No such group.
    #[error("no group `{name}` (groups: {known})")]
    UnknownGroup {
        /// The name given.
        name: String,
        /// The configured groups.
        known: String,
    },
    /// No such node.
    #[error("no node `{name}` (nodes: {known})")]
    UnknownNode {
        /// The name given.
        name: String,
        /// The configured nodes.
        known: String,
    },
    /// `release` with no other member to take the groups.
    #[error("no other node is online to take the groups")]
    NoOtherNode,
    /// `takeover`/`release` selection other than all/local/foreign.
    #[error("`{0}`: use all, local or foreign")]
    BadSelection(String),
}

impl Brain {
    /// Applies an operator command; answers what changed, or why not.
    pub(super) fn apply_command(
        &mut self,
        now: Timestamp,
        cmd: Command,
    ) -> Result<String, CommandError> {
        self.advance(now);
        // Until every peer was heard (or initdead passed), this node may not
        // know the cluster's latest settings; a change made now could be
        // silently overridden by them.
        if self.state == NodeState::Starting {
            return Err(CommandError::Joining);
        }
        if self.leaving {
            return Err(CommandError::ShuttingDown);
        }
        if let Command::ForcePrimary { node } = &cmd {
            if *node != self.local_name() {
                return Err(CommandError::NotThisNode {
                    node: node.clone(),
                    this: self.local_name().to_string(),
                });
            }
            if let Some(p) = self.peers.iter().find(|p| p.state.is_member()) {
                return Err(CommandError::PeerReachable {
                    peer: p.name.clone(),
                });
            }
            if !matches!(
                self.witness.state,
                WitnessState::Unreachable | WitnessState::Checking(_)
            ) {
                return Err(CommandError::NotWaiting);
            }
            self.witness.state = WitnessState::Forced;
            let what = format!("{node} forced to act alone by an operator");
            self.events
                .push_back(Event::SettingsChanged { what: what.clone() });
            self.reconcile(now);
            return Ok(what);
        }
        let mut next = self.settings.clone();
        let answer = match cmd {
            Command::Move {
                group,
                node,
                duration,
            } => {
                let g = self
                    .group_by_name(&group)
                    .ok_or_else(|| self.unknown_group(&group))?;
                next.moves.retain(|m| m.group != g);
                match node {
                    None => format!("cleared the operator preference for {group}"),
                    Some(n) => {
                        let id = self.node_by_name(&n).ok_or_else(|| self.unknown_node(&n))?;
                        next.moves.push(Move {
                            group: g,
                            node: id,
                            until: duration.map(|d| now + d),
                        });
                        match duration {
                            Some(d) => {
                                format!("{group} moves to {n} for {}", crate::time::human(d))
                            }
                            None => format!(
                                "{group} moves to {n} (until `tandem move {group} --clear`)"
                            ),
                        }
                    }
                }
            }
            Command::Standby { node, on } => {
                let id = self
                    .node_by_name(&node)
                    .ok_or_else(|| self.unknown_node(&node))?;
                if on {
                    next.standby.insert(id);
                    format!("{node} is in standby: its groups move to other nodes")
                } else {
                    next.standby.remove(&id);
                    format!("{node} is back from standby")
                }
            }
            Command::Cleanup { group } => {
                let g = self
                    .group_by_name(&group)
                    .ok_or_else(|| self.unknown_group(&group))?;
                // The count comes from peers too: a key holder could send
                // u32::MAX.
                let c = next.cleanups.entry(g).or_insert(0);
                *c = c.saturating_add(1);
                format!("{group}: fail counts and blocked state cleared on every node")
            }
            // Applied above, before the settings are touched.
            Command::ForcePrimary { .. } => return Err(CommandError::NotWaiting),
            Command::TakeOver { take, which } => {
                let me = self.cfg.local;
                let preferred = |g: usize| {
                    self.cfg.groups[g]
                        .rules
                        .scores
                        .iter()
                        .max_by_key(|(n, s)| (*s, std::cmp::Reverse(*n)))
                        .map(|(n, _)| *n)
                };
                let chosen: Vec<usize> = (0..self.cfg.groups.len())
                    .filter(|&g| match which.as_str() {
                        "all" => true,
                        "local" | "failback" => preferred(g) == Some(me),
                        "foreign" => preferred(g) != Some(me),
                        _ => false,
                    })
                    .collect();
                if !matches!(which.as_str(), "all" | "local" | "failback" | "foreign") {
                    return Err(CommandError::BadSelection(which));
                }
                let to = if take {
                    me
                } else {
                    self.peers
                        .iter()
                        .find(|p| p.state.is_member())
                        .map(|p| p.id)
                        .ok_or(CommandError::NoOtherNode)?
                };
                next.moves.retain(|m| !chosen.contains(&m.group));
                next.moves.extend(chosen.iter().map(|&g| Move {
                    group: g,
                    node: to,
                    until: None,
                }));
                let names: Vec<&str> = chosen
                    .iter()
                    .map(|&g| self.cfg.groups[g].name.as_str())
                    .collect();
                if names.is_empty() {
                    format!("no {which} group to move")
                } else {
                    format!(
                        "{} move{} to {} (until `tandem move GROUP --clear`)",
                        names.join(", "),
                        if names.len() == 1 { "s" } else { "" },
                        self.node_name(to)
                    )
                }
            }
        };
        next.generation = self
            .settings
            .generation
            .max(self.peers.iter().filter(|p| p.state.is_member()).count() as u64)
            // Adopted from peers: a key holder could send u64::MAX.
            .saturating_add(1);
        next.origin = self.cfg.local.0;
        self.settings = next;
        self.events.push_back(Event::SettingsChanged {
            what: answer.clone(),
        });
        // Tell everyone now.
        if self.state != NodeState::Leaving {
            self.queue_heartbeats(PacketKind::Heartbeat);
        }
        self.reconcile(now);
        Ok(answer)
    }

    pub(super) fn unknown_group(&self, name: &str) -> CommandError {
        let known: Vec<&str> = self.cfg.groups.iter().map(|g| g.name.as_str()).collect();
        CommandError::UnknownGroup {
            name: name.to_string(),
            known: known.join(", "),
        }
    }

    pub(super) fn unknown_node(&self, name: &str) -> CommandError {
        let known: Vec<&str> = self.cfg.nodes.iter().map(|n| n.name.as_str()).collect();
        CommandError::UnknownNode {
            name: name.to_string(),
            known: known.join(", "),
        }
    }
}
