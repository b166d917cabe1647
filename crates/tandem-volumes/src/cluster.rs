//! What a node does about its volumes given the cluster's view — the glue
//! between the brain and the replication engine, as a pure state machine
//! (status and view in, actions and a readiness verdict out), so the
//! daemon's watcher and the simulator run the same rules:
//!
//! - **Readiness**: a group with volumes may start here only while every
//!   one of its volumes is UpToDate here, and no live peer runs the group
//!   without this copy replicating from it (a node back from a freeze
//!   still calls its copy UpToDate; the group must not come back to it
//!   before it resynced); otherwise the verdict says why (`volume r0: this
//!   copy is Outdated (resync from n2 running)`).
//! - **Forget a dead peer**: once the cluster declares a peer dead or gone,
//!   its replication connection is dropped at once (once per death), so a
//!   promotion need not wait for the volume's own ping timeout.
//! - **Outdate when a peer runs the group without this copy**: when a peer
//!   stays a live member running a group that uses the volume while this
//!   copy is not connected to it, for longer than the grace period, that
//!   peer is (or may be) writing without this copy — a replication-only
//!   partition, or this node returning from a freeze to find the group
//!   moved: this copy outdates itself (resource-level fencing from the
//!   secondary's side), so it can never be promoted with stale data; a
//!   resync from that peer makes it UpToDate again. (Found by the seeded
//!   brain + volume simulation: a thawed old primary, refused as a sync
//!   target, demoted without ever seeing the new primary connected, and
//!   was promoted on its stale copy when that primary froze in turn.)
//! - **Release IO frozen for fencing** (`resource-and-stonith`): a primary
//!   whose IO waits for a peer lets it go on once that peer's heartbeats
//!   say its copy is Outdated or Inconsistent, or the cluster declared it
//!   dead and a fence agent powered it off.

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
    /// Reports its copy of a group using this volume durably unfit
    /// (Outdated or Inconsistent): it cannot be promoted before it resynced.
    pub stale: bool,
    /// Declared dead and powered off by a fence agent since.
    pub fenced: bool,
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
    /// IO suspended for `peer` (`resource-and-stonith`) may go on: the
    /// cluster confirmed it cannot be promoted with data missing.
    PeerFenced {
        /// The peer.
        peer: String,
        /// How that was confirmed.
        how: String,
    },
}

/// Whether a copy in this state is durably unfit to be promoted: it must
/// resync first, whatever happens to the other nodes (what a node reports
/// as `stale` in its heartbeats).
pub fn is_stale(st: &VolumeStatus) -> bool {
    matches!(st.disk, DiskState::Outdated | DiskState::Inconsistent)
}

/// The glue's memory, per (volume, peer).
#[derive(Clone, Debug)]
pub struct Glue {
    grace: Duration,
    /// Since when the peer runs the group while this copy is not
    /// connected to it.
    unreplicated: BTreeMap<(String, String), Timestamp>,
    /// Peers already forgotten during their current death.
    forgotten: BTreeMap<(String, String), bool>,
}

impl Glue {
    /// A primary peer may stay a live member this long after its
    /// replication connection broke before this copy outdates itself.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            unreplicated: BTreeMap::new(),
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
        // A live peer runs the group and this copy does not replicate from
        // it: whatever this copy's own state says, it may be behind.
        let mut behind_of: Option<String> = None;
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
            if st.suspended_for.contains(&p.node)
                && let Some(v) = view
            {
                let how = if v.stale {
                    Some("its copy is Outdated or Inconsistent, as its heartbeats say")
                } else if v.gone && v.fenced {
                    Some("declared dead and powered off by a fence agent")
                } else {
                    None
                };
                if let Some(how) = how {
                    actions.push(GlueAction::PeerFenced {
                        peer: p.node.clone(),
                        how: how.into(),
                    });
                }
            }
            let active_elsewhere = view.is_some_and(|v| v.member && v.runs_its_group);
            // Past the handshake: a connection refused at every handshake
            // (this side a primary that would have to be the target)
            // replicates nothing.
            let replicating = connected
                && !matches!(
                    p.replication,
                    crate::ReplState::Off | crate::ReplState::Handshake
                );
            if replicating || !active_elsewhere {
                self.unreplicated.remove(&key);
            } else {
                behind_of = Some(p.node.clone());
                let since = *self.unreplicated.entry(key.clone()).or_insert(now);
                if now.since(since) > self.grace
                    && st.role == Role::Secondary
                    && st.disk == DiskState::UpToDate
                {
                    actions.push(GlueAction::Outdate {
                        peer: p.node.clone(),
                    });
                    self.unreplicated.remove(&key);
                }
            }
        }
        if let Some(peer) = behind_of {
            return (
                Some(format!(
                    "volume {}: {peer} runs the group and this copy is not replicating from it (it may be behind)",
                    st.name
                )),
                actions,
            );
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

    pub(super) fn status(disk: DiskState, conn: ConnState, peer_role: Role) -> VolumeStatus {
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
                pending: 0,
                unacked: 0,
                protocol: crate::Protocol::C,
            }],
            counters: Counters::default(),
            current: Uuid::default(),
            size: 1 << 20,
            suspended_for: Vec::new(),
        }
    }

    fn n1(member: bool, gone: bool, runs: bool) -> Vec<PeerView> {
        vec![PeerView {
            name: "n1".into(),
            member,
            gone,
            runs_its_group: runs,
            stale: false,
            fenced: false,
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
        // Once per episode.
        assert_eq!(g.look(ms(2300), &cut, &n1(true, false, true)).1, vec![]);
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
    fn frozen_io_is_released_by_a_stale_or_fenced_peer_only() {
        let mut g = Glue::new(Duration::from_secs(2));
        let mut st = status(DiskState::UpToDate, ConnState::Connecting, Role::Unknown);
        st.role = Role::Primary;
        st.suspended_for = vec!["n1".into()];
        let view = |member: bool, gone: bool, stale: bool, fenced: bool| {
            vec![PeerView {
                name: "n1".into(),
                member,
                gone,
                runs_its_group: false,
                stale,
                fenced,
            }]
        };
        let released = |a: &[GlueAction]| {
            a.iter()
                .any(|x| matches!(x, GlueAction::PeerFenced { peer, .. } if peer == "n1"))
        };
        // A live member not yet outdated, or dead but not fenced: no.
        assert!(!released(
            &g.look(ms(0), &st, &view(true, false, false, false)).1
        ));
        assert!(!released(
            &g.look(ms(10), &st, &view(false, true, false, false)).1
        ));
        // Stale by its heartbeats, or dead and fenced: yes.
        assert!(released(
            &g.look(ms(20), &st, &view(true, false, true, false)).1
        ));
        assert!(released(
            &g.look(ms(30), &st, &view(false, true, false, true)).1
        ));
        // Nothing to release when IO does not wait for it.
        st.suspended_for.clear();
        assert!(!released(
            &g.look(ms(40), &st, &view(true, false, true, false)).1
        ));
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

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn a_copy_never_connected_to_where_the_group_runs_outdates_itself() {
        let mut g = Glue::new(Duration::from_secs(2));
        let mut st =
            super::tests::status(DiskState::UpToDate, ConnState::Connecting, Role::Unknown);
        let peers = vec![PeerView {
            name: "n1".into(),
            member: true,
            gone: false,
            runs_its_group: true,
            stale: false,
            fenced: false,
        }];
        // This node was primary (just thawed): no outdate while primary.
        st.role = Role::Primary;
        assert_eq!(g.look(Timestamp::from_nanos(0), &st, &peers).1, vec![]);
        assert_eq!(
            g.look(Timestamp::from_nanos(2_500_000_000), &st, &peers).1,
            vec![]
        );
        // Demoted, still not connected to the node running the group.
        st.role = Role::Secondary;
        assert_eq!(
            g.look(Timestamp::from_nanos(2_600_000_000), &st, &peers).1,
            vec![GlueAction::Outdate { peer: "n1".into() }]
        );
    }
}
