//! What a node does about its volumes given the cluster's view — the glue
//! between the brain and the replication engine, as a pure state machine
//! (status and view in, actions and a readiness verdict out), so the
//! daemon's watcher and the simulator run the same rules:
//!
//! - **Readiness**: a group with volumes may start here only while every
//!   one of its volumes is UpToDate here; otherwise the verdict says why
//!   (`volume r0: this copy is Outdated (resync from n2 running)`).
//! - **Forget a dead peer**: once the cluster declares a peer dead or gone,
//!   its replication connection is dropped at once (once per death), so a
//!   promotion need not wait for the volume's own ping timeout.
//! - **Outdate after a replication-only partition**: when the connection to
//!   a primary peer broke, and that peer stays a live member running a
//!   group that uses the volume for longer than the grace period, it is
//!   writing without this copy: this copy outdates itself (resource-level
//!   fencing from the secondary's side), so it can never be promoted with
//!   stale data.

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_core::Timestamp;

use crate::{ConnState, DiskState, Role, VolumeStatus};

/// A peer as the cluster sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// The peer's node name (as in the volume's status).
    pub name: String,
    /// A current member of the cluster.
    pub member: bool,
    /// Declared dead, or gone (left).
    pub gone: bool,
    /// Runs a group that uses this volume.
    pub runs_its_group: bool,
}

/// What the glue asks of the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlueAction {
    /// Drop the replication connection to this dead peer.
    Forget {
        /// The peer.
        peer: String,
    },
    /// Mark this copy Outdated: `peer` went on as primary without it.
    Outdate {
        /// The primary that wrote without this copy.
        peer: String,
    },
}

/// The glue's memory, per (volume, peer).
#[derive(Clone, Debug)]
pub struct Glue {
    grace: Duration,
    /// When the connection to a primary peer broke.
    lost_primary: BTreeMap<(String, String), Timestamp>,
    /// Whether the peer was last seen connected and primary.
    was_primary: BTreeMap<(String, String), bool>,
    /// Peers already forgotten during their current death.
    forgotten: BTreeMap<(String, String), bool>,
}

impl Glue {
    /// A primary peer may stay a live member this long after its
    /// replication connection broke before this copy outdates itself.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            lost_primary: BTreeMap::new(),
            was_primary: BTreeMap::new(),
            forgotten: BTreeMap::new(),
        }
    }

    /// Looks at volume `st` at `now` with the cluster's `peers`: what to do,
    /// and why a group using it may not start here (`None`: it may).
    pub fn look(
        &mut self,
        now: Timestamp,
        st: &VolumeStatus,
        peers: &[PeerView],
    ) -> (Option<String>, Vec<GlueAction>) {
        let mut actions = Vec::new();
        for p in &st.peers {
            let key = (st.name.clone(), p.node.clone());
            let view = peers.iter().find(|v| v.name == p.node);
            let connected = p.connection == ConnState::Connected;
            let gone = view.is_some_and(|v| v.gone);
            if gone && connected && !self.forgotten.get(&key).copied().unwrap_or(false) {
                self.forgotten.insert(key.clone(), true);
                actions.push(GlueAction::Forget {
                    peer: p.node.clone(),
                });
            }
            if !gone {
                self.forgotten.remove(&key);
            }
            if connected {
                self.lost_primary.remove(&key);
                self.was_primary
                    .insert(key.clone(), p.role == Role::Primary);
            } else if self.was_primary.remove(&key) == Some(true) {
                self.lost_primary.insert(key.clone(), now);
            }
            if let Some(since) = self.lost_primary.get(&key).copied()
                && now.since(since) > self.grace
            {
                let alive_and_active = view.is_some_and(|v| v.member && v.runs_its_group);
                if alive_and_active && st.role == Role::Secondary && st.disk == DiskState::UpToDate
                {
                    actions.push(GlueAction::Outdate {
                        peer: p.node.clone(),
                    });
                }
                self.lost_primary.remove(&key);
            }
        }
        if st.disk == DiskState::UpToDate {
            return (None, actions);
        }
        let syncing = st
            .peers
            .iter()
            .find(|p| p.out_of_sync_kib > 0 && p.connection == ConnState::Connected)
            .map(|p| format!(" (resync from {} running)", p.node))
            .unwrap_or_default();
        (
            Some(format!(
                "volume {}: this copy is {:?}{syncing}",
                st.name, st.disk
            )),
            actions,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplState;
    use crate::gi::Uuid;
    use crate::status::{Counters, PeerStatus};

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_nanos(n * 1_000_000)
    }

    fn status(disk: DiskState, conn: ConnState, peer_role: Role) -> VolumeStatus {
        VolumeStatus {
            name: "r0".into(),
            role: Role::Secondary,
            disk,
            peers: vec![PeerStatus {
                node: "n1".into(),
                connection: conn,
                replication: ReplState::Established,
                role: peer_role,
                peer_disk: DiskState::UpToDate,
                done: 100.0,
                out_of_sync_kib: 0,
                resync_kib_s: None,
                eta_seconds: None,
            }],
            counters: Counters::default(),
            current: Uuid::default(),
            size: 1 << 20,
        }
    }

    fn n1(member: bool, gone: bool, runs: bool) -> Vec<PeerView> {
        vec![PeerView {
            name: "n1".into(),
            member,
            gone,
            runs_its_group: runs,
        }]
    }

    #[test]
    fn a_primary_writing_on_without_this_copy_outdates_it_after_the_grace() {
        let mut g = Glue::new(Duration::from_secs(2));
        let up = status(DiskState::UpToDate, ConnState::Connected, Role::Primary);
        assert_eq!(g.look(ms(0), &up, &n1(true, false, true)), (None, vec![]));
        // The replication link breaks; n1 stays a member running the group.
        let cut = status(DiskState::UpToDate, ConnState::Connecting, Role::Unknown);
        assert_eq!(g.look(ms(100), &cut, &n1(true, false, true)).1, vec![]);
        assert_eq!(g.look(ms(2000), &cut, &n1(true, false, true)).1, vec![]);
        assert_eq!(
            g.look(ms(2200), &cut, &n1(true, false, true)).1,
            vec![GlueAction::Outdate { peer: "n1".into() }]
        );
        // Once only.
        assert_eq!(g.look(ms(5000), &cut, &n1(true, false, true)).1, vec![]);
    }

    #[test]
    fn a_dead_peer_is_forgotten_once_and_a_dead_primary_outdates_nothing() {
        let mut g = Glue::new(Duration::from_secs(2));
        let up = status(DiskState::UpToDate, ConnState::Connected, Role::Primary);
        g.look(ms(0), &up, &n1(true, false, true));
        assert_eq!(
            g.look(ms(10), &up, &n1(false, true, true)).1,
            vec![GlueAction::Forget { peer: "n1".into() }]
        );
        assert_eq!(g.look(ms(20), &up, &n1(false, true, true)).1, vec![]);
        // The dead primary is not writing: no outdate after the grace.
        let cut = status(DiskState::UpToDate, ConnState::Connecting, Role::Unknown);
        g.look(ms(30), &cut, &n1(false, true, false));
        assert_eq!(g.look(ms(5000), &cut, &n1(false, true, false)).1, vec![]);
    }

    #[test]
    fn readiness_says_why_a_copy_is_not_fit() {
        let mut g = Glue::new(Duration::from_secs(2));
        let mut st = status(DiskState::Inconsistent, ConnState::Connected, Role::Primary);
        st.peers[0].out_of_sync_kib = 64;
        let (hold, _) = g.look(ms(0), &st, &n1(true, false, true));
        assert_eq!(
            hold.as_deref(),
            Some("volume r0: this copy is Inconsistent (resync from n1 running)")
        );
    }
}
