//! Brains and replication engines together (issue 11): a [`Sim`] of the
//! cluster whose group's first resource is a `volume:` resource, carried
//! out against a [`VolumeSim`] of the same nodes — start promotes, stop
//! demotes, monitor reads the role — with the daemon's own glue rules
//! (`tandem_volumes::cluster::Glue`: readiness, forgetting dead peers,
//! outdating after a replication-only partition) and the application
//! writing only where the brain holds its lease. Both run on one clock,
//! in 1 ms steps.
//!
//! Invariants (collected in [`ClusterVolumeSim::violations`], plus the
//! volume simulation's own: no acknowledged protocol-C write lost, no
//! flushed data lost, identical copies after healing):
//! - never two primaries that both hold a brain's lease;
//! - a copy the cluster promotes holds every write a completed flush
//!   covered (checked before each promotion);
//! - the cluster never promotes a copy that is not UpToDate;
//! - a resource never runs on two nodes at once (the brain simulation's).

use std::time::Duration;

use tandem_core::{Op, OpResult, PeerState, Timestamp};
use tandem_volumes::cluster::{Glue, GlueAction, PeerView};
use tandem_volumes::{DiskState, Role};

use super::VolumeSim;
use crate::{ExternalOp, Sim};

/// How long a start or stop of the volume is retried (as the daemon does
/// while the old primary is still demoting).
const OP_PATIENCE: Duration = Duration::from_secs(5);

/// How long a primary's writes are held after its lease lapsed before
/// they fail and it demotes itself (the volume process's `LAPSE_HOLD`).
const LAPSE_HOLD: Duration = Duration::from_millis(500);

/// See the module documentation.
pub struct ClusterVolumeSim {
    /// The brains (group 0, resource 0 is the volume).
    pub sim: Sim,
    /// The engines of volume `r0`, node `i` beside brain `i`.
    pub vs: VolumeSim,
    glue: Vec<Glue>,
    grace: Duration,
    reported: Vec<Option<(Option<String>, bool)>>,
    retrying: Vec<(ExternalOp, Timestamp)>,
    /// Every invariant of the combination broken.
    pub violations: Vec<String>,
    /// Successful promotions by the cluster: (time, node).
    pub promotions: Vec<(Timestamp, usize)>,
    /// Per node: since when its primary volume has had no lease.
    lapsed_since: Vec<Option<Timestamp>>,
}

impl ClusterVolumeSim {
    /// Wraps `sim` (whose group 0 starts with the volume resource) and
    /// `vs` (the same number of nodes, its copies already in sync and
    /// secondary). `grace` is the glue's outdate grace.
    pub fn new(mut sim: Sim, vs: VolumeSim, grace: Duration) -> Self {
        sim.set_external(0, 0);
        let n = vs.len();
        Self {
            sim,
            vs,
            glue: (0..n).map(|_| Glue::new(grace)).collect(),
            grace,
            reported: vec![None; n],
            retrying: Vec::new(),
            violations: Vec::new(),
            promotions: Vec::new(),
            lapsed_since: vec![None; n],
        }
    }

    /// S3 on two nodes: group `db` ([`crate::s3_db_group`]) over volume
    /// r0 (1 MiB, protocol C, in sync after its initial resync, both
    /// secondary), the split-brain policies DRBD users run under a
    /// cluster manager (one side wrote nothing, or one side is primary:
    /// resolved), `fencing` as given — with `resource-and-stonith`, the
    /// brains fence dead nodes too (a fence agent that powers them off), as
    /// that policy assumes — and an outdate grace of 2 s.
    pub fn s3(seed: u64, fencing: tandem_volumes::Fencing) -> Self {
        use tandem_volumes::split_brain::{NoPrimary, OnePrimary, Policies, TwoPrimaries};
        let mut vs = VolumeSim::new(seed, 2, 1 << 20, tandem_volumes::Protocol::C);
        vs.set_fencing(fencing);
        // The initial sync (`primary --force` on n1), then both secondary.
        let ok = vs.promote(0, true) && vs.converge(Duration::from_secs(20)) && vs.demote(0);
        vs.set_split_brain(Policies {
            zero: NoPrimary::DiscardZeroChanges,
            one: OnePrimary::DiscardSecondary,
            two: TwoPrimaries::Disconnect,
        });
        let mut sim = Sim::with_groups(
            seed,
            2,
            1,
            tandem_core::Timing::default(),
            &[crate::s3_db_group()],
        );
        if fencing == tandem_volumes::Fencing::ResourceAndStonith {
            sim.use_fencing(crate::FenceAgent::Succeeds);
        }
        let mut c = Self::new(sim, vs, Duration::from_secs(2));
        if !ok {
            c.violations
                .push(format!("seed {seed}: the initial sync failed"));
        }
        c
    }

    /// The group's name.
    fn group(&self) -> String {
        self.sim
            .brain(0)
            .or_else(|| self.sim.brain(1))
            .map(|b| b.status(self.sim.now()).groups[0].name.clone())
            .unwrap_or_else(|| "db".into())
    }

    /// Runs `d` in 1 ms steps.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.sim.now() + d;
        while self.sim.now() < end {
            self.step();
        }
    }

    /// One millisecond of both simulations, then the glue between them.
    pub fn step(&mut self) {
        let t = self.sim.now() + Duration::from_millis(1);
        self.sim.run_until(t);
        // A node a fence agent powered off loses its volume too.
        for i in 0..self.vs.len() {
            if self.sim.brain(i).is_none() && self.vs.is_up(i) {
                self.vs.crash(i);
                self.retrying.retain(|(op, _)| op.node != i);
                self.glue[i] = Glue::new(self.grace);
                self.reported[i] = None;
            }
        }
        let mut ops = std::mem::take(&mut self.retrying);
        ops.extend(
            self.sim
                .take_external()
                .into_iter()
                .map(|op| (op, t + OP_PATIENCE)),
        );
        for (op, deadline) in ops {
            self.carry_out(op, deadline);
        }
        self.vs.run_until(t);
        self.glue_all(t);
        self.gate_writes();
        self.lapse_leases(t);
        self.check();
    }

    /// What the volume process does on its own when its node's lease
    /// lapses (`check_lease`): after the hold, IO frozen for fencing fails
    /// and the volume demotes itself as soon as nothing is in flight.
    fn lapse_leases(&mut self, now: Timestamp) {
        for i in 0..self.vs.len() {
            let primary = self.vs.volume(i).is_some_and(|v| v.role() == Role::Primary);
            if !primary || self.sim.lease_valid(i) {
                self.lapsed_since[i] = None;
                continue;
            }
            let since = *self.lapsed_since[i].get_or_insert(now);
            if now.since(since) >= LAPSE_HOLD {
                self.vs.with_volume(i, |v, now| {
                    v.fail_suspended(now, &tandem_volumes::IoError::LeaseLapsed);
                });
                if self.vs.try_demote(i) {
                    self.lapsed_since[i] = None;
                }
            }
        }
    }

    fn carry_out(&mut self, op: ExternalOp, deadline: Timestamp) {
        let i = op.node;
        if !self.vs.is_up(i) || self.sim.brain(i).is_none() {
            return;
        }
        let now = self.sim.now();
        let (role, disk) = self
            .vs
            .volume(i)
            .map(|v| (v.role(), v.disk()))
            .unwrap_or((Role::Secondary, DiskState::Diskless));
        match op.op {
            Op::Start => {
                if !self.sim.lease_valid(i) {
                    return self.retry_or_fail(op, deadline, "this node holds no lease yet");
                }
                if role != Role::Primary {
                    // What the application finds where the cluster starts
                    // it: every write a completed flush covered (writes
                    // acknowledged without a flush may be lost with the
                    // cache of a node that crashed alone).
                    self.vs.check_flushed(i, "at a promotion by the cluster");
                }
                if role == Role::Primary || self.vs.promote(i, false) {
                    if disk != DiskState::UpToDate {
                        self.violations.push(format!(
                            "{now:?}: the cluster promoted n{} whose copy was {disk:?}",
                            i + 1
                        ));
                    }
                    self.promotions.push((now, i));
                    self.sim.finish_external(&op, OpResult::Ok, true);
                } else {
                    self.retry_or_fail(op, deadline, "promotion refused");
                }
            }
            Op::Stop => {
                if role != Role::Primary || self.vs.try_demote(i) {
                    self.sim.finish_external(&op, OpResult::Ok, false);
                } else {
                    self.retry_or_fail(op, deadline, "demotion refused");
                }
            }
            Op::Monitor => {
                let r = match (role, disk) {
                    (Role::Primary, DiskState::UpToDate) => OpResult::Ok,
                    (Role::Primary, d) => OpResult::Failed(format!("primary, but {d:?}")),
                    _ => OpResult::NotRunning,
                };
                let running = r == OpResult::Ok;
                self.sim.finish_external(&op, r, running);
            }
        }
    }

    fn retry_or_fail(&mut self, op: ExternalOp, deadline: Timestamp, why: &str) {
        if self.sim.now() < deadline {
            self.retrying.push((op, deadline));
        } else {
            self.sim
                .finish_external(&op, OpResult::Failed(why.into()), false);
        }
    }

    /// Each live node's glue: readiness to its brain, forget and outdate
    /// to its engine.
    fn glue_all(&mut self, now: Timestamp) {
        let group = self.group();
        for i in 0..self.vs.len() {
            // The glue runs in the daemon: a frozen daemon's glue is frozen
            // too (its volume process is not).
            if !self.sim.running(i) {
                continue;
            }
            let (Some(b), Some(v)) = (self.sim.brain(i), self.vs.volume(i)) else {
                continue;
            };
            let view = b.status(now);
            let st = v.status();
            let peers: Vec<PeerView> = st
                .peers
                .iter()
                .map(|p| {
                    let node = view.nodes.iter().find(|n| n.name == p.node);
                    let state = node.map(|n| n.state);
                    let g = view.groups.iter().find(|g| g.name == group);
                    PeerView {
                        name: p.node.clone(),
                        member: state.is_some_and(PeerState::is_member),
                        gone: matches!(state, Some(PeerState::Dead | PeerState::Left)),
                        runs_its_group: g.is_some_and(|g| g.active_on.contains(&p.node)),
                        stale: g.is_some_and(|g| g.stale_on.contains(&p.node)),
                        fenced: node.is_some_and(|n| n.fenced),
                    }
                })
                .collect();
            let stale = tandem_volumes::cluster::is_stale(&st);
            let (hold, actions) = self.glue[i].look(now, &st, &peers);
            for a in actions {
                self.vs.with_volume(i, |v, now| match a {
                    GlueAction::Forget { peer } => {
                        let _ = v.forget(now, &peer);
                    }
                    GlueAction::Outdate { .. } => {
                        let _ = v.outdate(now);
                    }
                    GlueAction::PeerFenced { peer, how } => {
                        let _ = v.peer_fenced(now, &peer, &how);
                    }
                });
            }
            let state = (hold, stale);
            if self.reported[i].as_ref() != Some(&state) {
                self.sim
                    .set_data_state(i, &group, state.0.as_deref(), stale);
                self.reported[i] = Some(state);
            }
        }
    }

    /// The application writes only on a primary whose brain holds its
    /// lease (the volume process holds writes when the lease lapses).
    fn gate_writes(&mut self) {
        let p = self.vs.primary();
        self.vs.app.stopped = !p.is_some_and(|p| self.sim.lease_valid(p));
    }

    fn check(&mut self) {
        let both: Vec<usize> = self
            .vs
            .primaries()
            .into_iter()
            .filter(|&i| self.sim.lease_valid(i))
            .collect();
        if both.len() > 1 {
            self.violations.push(format!(
                "{:?}: two primaries hold a lease: {both:?}",
                self.sim.now()
            ));
        }
    }

    /// Power-off of node `i`: its brain and its engine.
    pub fn power_off(&mut self, i: usize) {
        self.sim.crash(i);
        self.vs.crash(i);
        self.retrying.retain(|(op, _)| op.node != i);
        self.glue[i] = Glue::new(self.grace);
        self.reported[i] = None;
    }

    /// Power-on of node `i`.
    pub fn power_on(&mut self, i: usize) {
        self.vs.restart(i);
        self.sim.restart(i);
    }

    /// Whether node `i` is powered off (by the schedule or a fence agent).
    pub fn is_down(&self, i: usize) -> bool {
        self.sim.brain(i).is_none()
    }

    /// Ends every fault: networks healed, frozen daemons thawed, nodes
    /// powered back on.
    pub fn heal_all(&mut self, frozen: &[bool]) {
        self.sim.heal();
        self.vs.heal();
        for i in 0..self.vs.len() {
            if frozen.get(i).copied().unwrap_or(false) {
                self.sim.thaw(i);
            }
            if self.is_down(i) {
                self.power_on(i);
            }
        }
    }

    /// Every invariant broken so far: the combination's, the volume
    /// simulation's and the brain simulation's.
    pub fn all_violations(&self) -> Vec<String> {
        let mut v = self.violations.clone();
        v.extend(self.vs.violations.iter().cloned());
        v.extend(self.sim.violations.iter().cloned());
        v
    }

    /// Panics with `when` and the first violations if any, both logs on
    /// stderr first when `TANDEM_SIM_LOG` is set.
    pub fn assert_clean(&self, seed: u64, when: &str) {
        let v = self.all_violations();
        if v.is_empty() {
            return;
        }
        if std::env::var_os("TANDEM_SIM_LOG").is_some() {
            eprintln!("{}", self.vs.log_text());
            for r in &self.sim.log {
                eprintln!("{:?} n{} {}", r.at, r.node + 1, r.event);
            }
        }
        panic!(
            "seed {seed} {when}: {:?}\n{}",
            &v[..v.len().min(3)],
            self.vs.log_text()
        );
    }
}
