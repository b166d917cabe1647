//! Operator settings shared by every node: standby nodes, group moves and
//! cleanups. Carried in every heartbeat; the record with the highest
//! (generation, origin) wins, so nodes converge after any change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tandem_wire::{WireMove, WireSettings};

use crate::NodeId;
use crate::time::Timestamp;

/// An operator's preference for where a group runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// Group index.
    pub group: usize,
    /// Node it should run on.
    pub node: NodeId,
    /// When the preference lapses (local clock); `None`: until cleared.
    pub until: Option<Timestamp>,
}

/// The settings record. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Grows with every change.
    pub generation: u64,
    /// Node that made the latest change.
    pub origin: u16,
    /// Nodes in standby.
    pub standby: BTreeSet<NodeId>,
    /// Operator moves.
    pub moves: Vec<Move>,
    /// Per group, the number of cleanups ordered so far.
    pub cleanups: BTreeMap<usize, u32>,
}

impl Settings {
    /// The wire form, with move expiries as time remaining at `now`.
    pub fn to_wire(&self, now: Timestamp) -> WireSettings {
        WireSettings {
            generation: self.generation,
            origin: self.origin,
            standby: self.standby.iter().map(|n| n.0).collect(),
            moves: self
                .moves
                .iter()
                .map(|m| WireMove {
                    group: u16::try_from(m.group).unwrap_or(u16::MAX),
                    node: m.node.0,
                    remaining_ms: m.until.map_or(0, |u| {
                        u32::try_from(u.since(now).as_millis())
                            .unwrap_or(u32::MAX)
                            .max(1)
                    }),
                })
                .collect(),
            cleanups: self
                .cleanups
                .iter()
                .map(|(g, c)| (u16::try_from(*g).unwrap_or(u16::MAX), *c))
                .collect(),
        }
    }

    /// Whether `w` supersedes this record.
    pub fn superseded_by(&self, w: &WireSettings) -> bool {
        (w.generation, w.origin) > (self.generation, self.origin)
    }

    /// Adopts `w` received at `now`; entries naming unknown groups or nodes
    /// are dropped.
    pub fn adopt(&mut self, w: &WireSettings, now: Timestamp, groups: usize, nodes: u16) {
        self.generation = w.generation;
        self.origin = w.origin;
        self.standby = w
            .standby
            .iter()
            .filter(|n| (1..=nodes).contains(*n))
            .map(|n| NodeId(*n))
            .collect();
        self.moves = w
            .moves
            .iter()
            .filter(|m| usize::from(m.group) < groups && (1..=nodes).contains(&m.node))
            .map(|m| Move {
                group: usize::from(m.group),
                node: NodeId(m.node),
                until: (m.remaining_ms > 0)
                    .then(|| now + Duration::from_millis(u64::from(m.remaining_ms))),
            })
            .collect();
        self.cleanups = w
            .cleanups
            .iter()
            .filter(|(g, _)| usize::from(*g) < groups)
            .map(|(g, c)| (usize::from(*g), *c))
            .collect();
    }

    /// Drops moves whose time is up; true if any was dropped.
    pub fn expire(&mut self, now: Timestamp) -> bool {
        let before = self.moves.len();
        self.moves.retain(|m| m.until.is_none_or(|u| u > now));
        self.moves.len() != before
    }

    /// The next move expiry.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.moves.iter().filter_map(|m| m.until).min()
    }

    /// Where an operator moved `group`, if anywhere.
    pub fn moved_to(&self, group: usize) -> Option<NodeId> {
        self.moves.iter().find(|m| m.group == group).map(|m| m.node)
    }
}
