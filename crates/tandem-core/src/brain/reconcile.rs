//! The resource lifecycle: compares where each group should run with what
//! runs here, and asks the driver for probes, starts, stops and monitors;
//! results come back through [`Brain::handle_op_result`].

use super::WitnessState;
use crate::Action;
use crate::Brain;
use crate::Event;
use crate::NoQuorumPolicy;
use crate::NodeId;
use crate::Op;
use crate::OpResult;
use crate::ResourceKey;
use crate::ResourceState;
use crate::Timestamp;
use tandem_wire::{GroupPhase, NodeState, PacketKind};

impl Brain {
    pub(super) fn emit(&mut self, now: Timestamp, g: usize, r: usize, op: Op) {
        let spec = &self.cfg.groups[g].resources[r];
        let timeout = match op {
            Op::Start => spec.start_timeout,
            Op::Stop => spec.stop_timeout,
            Op::Monitor => spec.monitor_timeout,
        };
        let id = self.next_op;
        self.next_op += 1;
        let rt = &mut self.groups[g].resources[r];
        rt.pending = Some((id, op));
        match op {
            Op::Start => rt.state = ResourceState::Starting,
            Op::Stop => {
                rt.state = ResourceState::Stopping;
                rt.next_monitor = None;
            }
            Op::Monitor => {}
        }
        if op != Op::Monitor {
            self.events.push_back(Event::OpStarted {
                group: self.cfg.groups[g].name.clone(),
                resource: spec.name.clone(),
                op,
            });
        }
        self.op_started.push((id, now));
        let key = crate::resources::ResourceKey {
            group: self.cfg.groups[g].name.clone(),
            resource: self.cfg.groups[g].resources[r].name.clone(),
        };
        self.actions.push_back(Action {
            id,
            key,
            group: g,
            resource: r,
            op,
            timeout,
        });
    }

    /// Decides the next operation of every idle group, then announces any
    /// change of our groups' phases at once (peers waiting to start a group
    /// we stop learn it within a round trip, not a keepalive).
    pub(super) fn reconcile(&mut self, now: Timestamp) {
        if self.lease.lost
            && self
                .groups
                .iter()
                .all(|g| matches!(g.phase(), GroupPhase::Stopped | GroupPhase::Blocked))
        {
            self.lease.lost = false;
        }
        self.update_grants();
        for g in 0..self.groups.len() {
            self.apply_cleanups(g);
            self.reconcile_group(now, g);
        }
        self.finish_leave_if_done();
        self.renew_lease(now);
        if self.state != NodeState::Leaving
            && (self.group_reports(), self.settings_key()) != self.reported
        {
            self.queue_heartbeats(PacketKind::Heartbeat);
        }
    }

    pub(super) fn apply_cleanups(&mut self, g: usize) {
        let wanted = self.settings.cleanups.get(&g).copied().unwrap_or(0);
        let rt = &mut self.groups[g];
        if wanted > rt.cleanups_applied {
            rt.cleanups_applied = wanted;
            rt.blocked_on = None;
            rt.restart_from = None;
            for r in &mut rt.resources {
                r.fail_count = 0;
                r.last_failure = None;
                r.last_error = None;
                if r.state == ResourceState::Blocked {
                    // It may still run: probe it again.
                    r.state = ResourceState::Unknown;
                }
            }
        }
    }

    pub(super) fn reconcile_group(&mut self, now: Timestamp, g: usize) {
        // Remember any member that reports the group blocked (in a report
        // that saw our latest settings, so not from before a cleanup).
        let key = self.settings_key();
        for p in &self.peers {
            if p.state.is_member()
                && p.settings_key == key
                && p.groups
                    .iter()
                    .any(|r| usize::from(r.group) == g && r.phase == GroupPhase::Blocked)
            {
                self.groups[g].blocked_on = Some(p.id);
            }
        }
        let rt = &self.groups[g];
        if rt.busy() || rt.phase() == GroupPhase::Blocked {
            return;
        }
        // Probe what is unknown first (e.g. left over by a crashed daemon).
        if let Some(r) = rt
            .resources
            .iter()
            .position(|r| r.state == ResourceState::Unknown)
        {
            return self.emit(now, g, r, Op::Monitor);
        }
        if self.state == NodeState::Starting {
            return; // wait until every peer is heard or initdead has passed
        }
        let (target, elsewhere) = self.target(g);
        let blocked = self.groups[g].blocked_on.is_some();
        // Starting from Stopped needs nothing active or blocked elsewhere and
        // the peers' agreement; a group already active here stays while
        // placement wants it here (another node that also runs it is not
        // its target, so that one stops).
        let quorate = self.has_quorum();
        if !quorate && self.cfg.quorum.no_quorum == NoQuorumPolicy::Freeze {
            return;
        }
        // While the witness is being asked, a holder keeps what runs (its
        // lease is not renewed meanwhile, so its addresses go silent if the
        // answer is slow) but starts nothing; a refusal stops it.
        let may_hold = (quorate || self.cfg.quorum.no_quorum == NoQuorumPolicy::Ignore)
            && self.witness_keeps()
            && !self.lease.lost;
        let want = may_hold
            && target == Some(self.cfg.local)
            && (self.groups[g].phase() != GroupPhase::Stopped
                || (!elsewhere
                    && !blocked
                    && self.witness_allows()
                    && self.grants[g].to == Some(self.cfg.local)
                    && !self.fencing_pending()
                    && self.start_allowed()
                    && self.peers_agree(g)));
        let rt = &mut self.groups[g];
        let n = rt.resources.len();
        if let Some(k) = rt.restart_from {
            // Restart in place: stop the failed resource and those after it.
            if want
                && let Some(r) = (k..n)
                    .rev()
                    .find(|&r| rt.resources[r].state != ResourceState::Stopped)
            {
                return self.emit(now, g, r, Op::Stop);
            }
            rt.restart_from = None;
        }
        let rt = &self.groups[g];
        if want {
            if let Some(r) = rt
                .resources
                .iter()
                .position(|r| r.state != ResourceState::Started)
            {
                if rt.resources[r].state == ResourceState::Failed {
                    return self.emit(now, g, r, Op::Stop);
                }
                if !rt.acquiring {
                    self.groups[g].releasing = false;
                    self.groups[g].acquiring = true;
                    let reason = self.acquire_reason(g);
                    self.events.push_back(Event::Acquiring {
                        group: self.cfg.groups[g].name.clone(),
                        reason,
                    });
                }
                self.emit(now, g, r, Op::Start)
            }
        } else if let Some(r) = rt
            .resources
            .iter()
            .rposition(|r| r.state != ResourceState::Stopped)
        {
            if !rt.releasing {
                let reason = self.release_reason(g, target);
                self.events.push_back(Event::Releasing {
                    group: self.cfg.groups[g].name.clone(),
                    reason,
                });
            }
            self.groups[g].acquiring = false;
            self.groups[g].releasing = true;
            self.emit(now, g, r, Op::Stop)
        }
    }

    /// Why this node takes `g` over: a failover when a peer that last
    /// reported it active is no longer a member, a move when an operator
    /// asked for this node, placement otherwise (start-up, failback, a
    /// peer's standby or failures).
    pub(super) fn acquire_reason(&self, g: usize) -> String {
        let held_by_lost_peer = self.peers.iter().find(|p| {
            !p.state.is_member()
                && p.groups
                    .iter()
                    .any(|r| usize::from(r.group) == g && r.phase.is_active())
        });
        if let Some(p) = held_by_lost_peer {
            let state = format!("{:?}", p.state).to_lowercase();
            format!("failover: {} is {state}", p.name)
        } else if self.settings.moved_to(g) == Some(self.cfg.local) {
            "move: an operator moved it here".into()
        } else {
            "placement: this node is its best place now".into()
        }
    }

    pub(super) fn release_reason(&self, g: usize, target: Option<NodeId>) -> String {
        let spec = &self.cfg.groups[g];
        if self.lease.lost {
            "lease lost while this daemon was frozen".into()
        } else if self.leaving {
            "shutting down".into()
        } else if self.settings.standby.contains(&self.cfg.local) {
            "this node is in standby".into()
        } else if self.groups[g].banned(spec.migration_threshold) {
            "too many failures here".into()
        } else if let Some(why) = self.groups[g]
            .data_hold
            .clone()
            .filter(|_| self.data_held(g))
        {
            why
        } else if self.groups[g].blocked_on.is_some() {
            "blocked on another node".into()
        } else if self.witness.state == WitnessState::Unreachable {
            if self.cfg.witness_arbiter {
                "the arbitrator's vote is not ours".into()
            } else {
                "witness unreachable".into()
            }
        } else if !self.has_quorum() {
            let (present, total) = self.quorum_votes();
            format!("no quorum: {present} of {total} votes")
        } else if let Some(t) = target.filter(|t| *t != self.cfg.local) {
            if self.settings.moved_to(g) == Some(t) {
                format!("moved to {} by an operator", self.node_name(t))
            } else {
                format!("{} is preferred", self.node_name(t))
            }
        } else {
            "another node runs it".into()
        }
    }

    pub(super) fn expire_failures(&mut self, now: Timestamp) {
        for (rt, spec) in self.groups.iter_mut().zip(&self.cfg.groups) {
            if let Some(ft) = spec.failure_timeout {
                for r in &mut rt.resources {
                    if r.fail_count > 0 && r.last_failure.is_some_and(|t| t + ft <= now) {
                        r.fail_count = 0;
                        r.last_failure = None;
                    }
                }
            }
        }
    }

    pub(super) fn schedule_monitors(&mut self, now: Timestamp) {
        if self.lease.lost {
            return; // a monitor would re-announce the address
        }
        for g in 0..self.groups.len() {
            if self.groups[g].busy() {
                continue;
            }
            let due = self.groups[g].resources.iter().position(|r| {
                r.state == ResourceState::Started && r.next_monitor.is_some_and(|t| t <= now)
            });
            if let Some(r) = due {
                self.groups[g].resources[r].next_monitor = None;
                self.emit(now, g, r, Op::Monitor);
            }
        }
    }

    /// Feeds the outcome of the operation `id` (from an [`Output::Action`]).
    pub(super) fn op_result(&mut self, now: Timestamp, id: u64, result: OpResult) {
        self.advance(now);
        let Some((g, r)) = self.groups.iter().enumerate().find_map(|(g, rt)| {
            rt.resources
                .iter()
                .position(|x| x.pending.is_some_and(|(pid, _)| pid == id))
                .map(|r| (g, r))
        }) else {
            return; // unknown or stale id: ignore
        };
        let started = self
            .op_started
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(now, |(_, t)| *t);
        self.op_started.retain(|(i, _)| *i != id);
        let spec = self.cfg.groups[g].clone();
        let rspec = &spec.resources[r];
        let threshold = spec.migration_threshold.max(1);
        let Some((_, op)) = self.groups[g].resources[r].pending.take() else {
            return;
        };
        let detail = |res: &OpResult| match res {
            OpResult::Ok => "ok".to_string(),
            OpResult::NotRunning => "not running".to_string(),
            OpResult::Failed(m) => m.clone(),
            OpResult::TimedOut => format!(
                "timed out after {}",
                crate::time::human(match op {
                    Op::Start => rspec.start_timeout,
                    Op::Stop => rspec.stop_timeout,
                    Op::Monitor => rspec.monitor_timeout,
                })
            ),
        };
        let d = detail(&result);
        let names = (spec.name.clone(), rspec.name.clone());
        let res = &mut self.groups[g].resources[r];
        match (op, &result) {
            (Op::Start, OpResult::Ok) => {
                res.state = ResourceState::Started;
                res.next_monitor = rspec.monitor_interval.map(|i| now + i);
                self.events.push_back(Event::OpDone {
                    group: names.0.clone(),
                    resource: names.1,
                    op,
                    took: now.since(started),
                });
                if self.groups[g]
                    .resources
                    .iter()
                    .all(|x| x.state == ResourceState::Started)
                {
                    self.events.push_back(Event::Acquired { group: names.0 });
                }
            }
            (Op::Start, _) => {
                res.state = ResourceState::Failed;
                res.fail_count = threshold;
                res.last_failure = Some(now);
                res.last_error = Some(d.clone());
                self.events.push_back(Event::StartFailed {
                    group: names.0,
                    resource: names.1,
                    detail: d,
                });
            }
            (Op::Stop, OpResult::Ok | OpResult::NotRunning) => {
                res.state = ResourceState::Stopped;
                res.next_monitor = None;
                self.events.push_back(Event::OpDone {
                    group: names.0.clone(),
                    resource: names.1,
                    op,
                    took: now.since(started),
                });
                if self.groups[g]
                    .resources
                    .iter()
                    .all(|x| x.state == ResourceState::Stopped)
                {
                    self.groups[g].releasing = false;
                    self.events.push_back(Event::Released { group: names.0 });
                }
            }
            (Op::Stop, _) => {
                res.state = ResourceState::Blocked;
                res.last_error = Some(d.clone());
                self.groups[g].blocked_on = Some(self.cfg.local);
                self.events.push_back(Event::StopFailed {
                    group: names.0,
                    resource: names.1,
                    detail: d,
                });
            }
            (Op::Monitor, _) if res.state == ResourceState::Unknown => {
                // A probe: what runs here since before this daemon started?
                res.state = match result {
                    OpResult::Ok => ResourceState::Started,
                    OpResult::NotRunning => ResourceState::Stopped,
                    _ => ResourceState::Failed,
                };
                res.next_monitor = (res.state == ResourceState::Started)
                    .then(|| rspec.monitor_interval.map(|i| now + i))
                    .flatten();
            }
            (Op::Monitor, OpResult::Ok) => {
                res.next_monitor = if std::mem::take(&mut res.recheck) {
                    Some(now) // its main process left meanwhile: look again
                } else {
                    rspec.monitor_interval.map(|i| now + i)
                };
            }
            (Op::Monitor, _) => self.monitor_failed(now, g, r, d),
        }
        self.update_own_state();
        self.reconcile(now);
    }

    /// A started resource found failed (a monitor, or its main process
    /// seen exiting): restart in place below the migration threshold, else
    /// the group moves.
    fn monitor_failed(&mut self, now: Timestamp, g: usize, r: usize, detail: String) {
        let spec = &self.cfg.groups[g];
        let threshold = spec.migration_threshold.max(1);
        let res = &mut self.groups[g].resources[r];
        if res.state != ResourceState::Started {
            return;
        }
        res.state = ResourceState::Failed;
        res.fail_count += 1;
        res.last_failure = Some(now);
        res.last_error = Some(detail.clone());
        let count = res.fail_count;
        if count < threshold {
            self.groups[g].restart_from = Some(r);
        }
        self.events.push_back(Event::MonitorFailed {
            group: spec.name.clone(),
            resource: spec.resources[r].name.clone(),
            detail,
            count,
            threshold,
        });
    }

    /// The daemon saw the main process of `key` exit, and no other process
    /// took its place (a reload or re-exec keeps one): a failed monitor,
    /// at once. While an operation of the resource is under way it decides
    /// instead (a monitor is followed by another at once; a stop is
    /// expected to end the process).
    pub(super) fn main_exited(&mut self, now: Timestamp, key: &ResourceKey, detail: String) {
        self.advance(now);
        let Some((g, r)) = self.cfg.groups.iter().enumerate().find_map(|(g, spec)| {
            (spec.name == key.group)
                .then(|| spec.resources.iter().position(|x| x.name == key.resource))
                .flatten()
                .map(|r| (g, r))
        }) else {
            return;
        };
        let res = &mut self.groups[g].resources[r];
        match res.pending {
            Some((_, Op::Monitor)) => res.recheck = true,
            Some(_) => {}
            None => {
                self.monitor_failed(now, g, r, detail);
                self.update_own_state();
                self.reconcile(now);
            }
        }
    }

    /// When the next monitor of a started resource is due (groups with an
    /// operation under way wait for it).
    pub(super) fn monitor_deadline(&self) -> Option<Timestamp> {
        self.groups
            .iter()
            .filter(|rt| !rt.busy())
            .flat_map(|rt| &rt.resources)
            .filter(|r| r.state == ResourceState::Started)
            .filter_map(|r| r.next_monitor)
            .min()
    }

    /// When the next fail count expires (groups with a `failure_timeout`).
    pub(super) fn failure_expiry_deadline(&self) -> Option<Timestamp> {
        self.groups
            .iter()
            .zip(&self.cfg.groups)
            .filter_map(|(rt, spec)| {
                let ft = spec.failure_timeout?;
                rt.resources
                    .iter()
                    .filter(|r| r.fail_count > 0)
                    .filter_map(|r| r.last_failure.map(|t| t + ft))
                    .min()
            })
            .min()
    }
}
