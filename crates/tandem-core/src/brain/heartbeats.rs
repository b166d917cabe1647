//! Heartbeat packets, both ways: authenticating and merging what peers send
//! (membership, their views and group reports), and building this node's
//! own heartbeats on every link.

use super::MAX_INCARNATION_AHEAD_US;
use super::Transmit;
use crate::Brain;
use crate::Event;
use crate::LinkId;
use crate::PeerState;
use crate::RejectReason;
use crate::Timestamp;
use crate::membership::Admission;
use tandem_wire::{Echo, GroupReport, NodeState, Packet, PacketKind, ViewEntry};

impl Brain {
    /// Notices time that passed without the brain being run at all.
    pub(super) fn advance(&mut self, now: Timestamp) {
        // Before anything changes the timers: how late this input finds
        // the earliest deadline (a thawed node's first datagram comes
        // before its timers run).
        if let Some(late) = self.timer_lateness(now) {
            let late = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
            self.stats.max_timer_lateness_us = self.stats.max_timer_lateness_us.max(late);
        }
        let gap = now.since(self.last_now);
        let threshold = self.cfg.timing.keepalive * 2;
        if gap > threshold {
            self.stats.stalls += 1;
            let us = u64::try_from(gap.as_micros()).unwrap_or(u64::MAX);
            self.stats.longest_stall_us = self.stats.longest_stall_us.max(us);
            self.hold_until = now + self.cfg.timing.keepalive * 2;
            self.events.push_back(Event::Stalled { gap });
            // Frozen past its lease: another node may run our groups now.
            // Release everything before doing anything else.
            if self.lease.until.is_some_and(|u| u <= now)
                && self.groups.iter().any(|g| g.phase().is_active())
            {
                self.lease.lost = true;
                self.lease.until = None;
                self.events.push_back(Event::LeaseLost { gap });
            }
        }
        if now > self.last_now {
            self.last_now = now;
        }
    }

    pub(super) fn reject(&mut self, link: LinkId, reason: RejectReason) {
        let count = self.stats.count(reason);
        if count.is_power_of_two() {
            let link = self.link_label(link);
            self.events.push_back(Event::Rejected {
                reason,
                link,
                count,
            });
        }
    }

    /// Feeds a datagram received on `link` at `now`.
    pub(super) fn receive(&mut self, now: Timestamp, link: LinkId, data: &[u8]) {
        self.advance(now);
        let packet = match tandem_wire::decode(data, self.cfg.cluster_id, &self.cfg.keys) {
            Ok(p) => p,
            Err(e) => return self.reject(link, RejectReason::from_decode(&e)),
        };
        if packet.sender == self.cfg.local.0 {
            self.stats.own += 1;
            if packet.incarnation != self.cfg.incarnation
                && packet.incarnation > 0
                && self.stats.own.is_power_of_two()
            {
                let node = self.local_name().to_string();
                self.events.push_back(Event::DuplicateNode {
                    node,
                    incarnation: packet.incarnation,
                });
            }
            return;
        }
        if packet.link != link.0 {
            return self.reject(link, RejectReason::WrongLink);
        }
        // An incarnation far in the future would lock the real peer out
        // (its packets would look stale) until the clock caught up.
        let since_start = u64::try_from(now.since(self.started).as_micros()).unwrap_or(u64::MAX);
        let latest_plausible = self
            .cfg
            .incarnation
            .saturating_add(since_start)
            .saturating_add(MAX_INCARNATION_AHEAD_US);
        if packet.incarnation > latest_plausible {
            return self.reject(link, RejectReason::FutureIncarnation);
        }
        let Some(idx) = self.peers.iter().position(|p| p.id.0 == packet.sender) else {
            return self.reject(link, RejectReason::UnknownSender);
        };
        // A `Leave` is never the first packet accepted from an incarnation:
        // a captured one replayed later must not make a silent peer "left"
        // (not fenced, no witness asked).
        if packet.kind == PacketKind::Leave
            && self.peers[idx].incarnation != Some(packet.incarnation)
        {
            return self.reject(link, RejectReason::Stale);
        }
        let mut out = Vec::new();
        let peer = &mut self.peers[idx];
        let admission = peer.heard(
            now,
            usize::from(link.0),
            packet.incarnation,
            packet.seq,
            &mut out,
        );
        match admission {
            Admission::Replayed => return self.reject(link, RejectReason::Replayed),
            Admission::Stale => return self.reject(link, RejectReason::Stale),
            Admission::Accepted { gap } => {
                // Lateness: how much later than one keepalive after the
                // previous packet on this link (0 for early extra packets).
                if let Some(gap) = gap {
                    let late = gap.saturating_sub(self.cfg.timing.keepalive);
                    self.stats.heartbeat_lateness.observe(late);
                }
            }
        }
        self.stats.accepted += 1;
        self.stats.accepted_bytes += data.len() as u64;
        let fresh_state = packet.seq > peer.state_seq;
        // A peer whose lease rests on our acknowledgements asks for one at
        // once (once per keepalive/2, however many links carry it).
        let keepalive = self.cfg.timing.keepalive;
        let echo = fresh_state
            && packet.kind == PacketKind::Heartbeat
            && packet.echo == Echo::Wanted
            && peer
                .answered_at
                .is_none_or(|at| now.since(at) >= keepalive / 2);
        if echo {
            peer.answered_at = Some(now);
        }
        let settings = packet.settings;
        // A peer that takes back a grant it gave us waits until our view
        // shows we saw it: answer at once instead of at the next keepalive.
        let me = self.cfg.local.0;
        let mut ack = false;
        if fresh_state {
            ack = peer.groups.iter().any(|old| {
                old.target == me
                    && packet
                        .groups
                        .iter()
                        .any(|new| new.group == old.group && new.target != me)
            });
            peer.state_seq = packet.seq;
            peer.remote_state = packet.state;
            peer.view = packet.view;
            peer.groups = packet.groups;
            peer.settings_key = settings
                .as_ref()
                .map_or((0, 0), |w| (w.generation, w.origin));
        }
        let mismatch = packet.config_digest != self.cfg.config_digest;
        if mismatch && !peer.config_mismatch {
            out.push(Event::ConfigMismatch {
                node: peer.name.clone(),
            });
        }
        peer.config_mismatch = mismatch;
        if packet.kind == PacketKind::Leave {
            peer.left(&mut out);
        }
        self.events.extend(out);
        if let Some(w) = settings.filter(|w| self.settings.superseded_by(w)) {
            let nodes = u16::try_from(self.cfg.nodes.len()).unwrap_or(u16::MAX);
            self.settings.adopt(&w, now, self.cfg.groups.len(), nodes);
        }
        self.update_own_state();
        self.reconcile(now);
        if (ack || echo) && self.state != NodeState::Leaving {
            self.queue_packets(PacketKind::Heartbeat, Echo::Reply);
            // A node that holds nothing has no lease to renew: its answer
            // stands in for its next periodic heartbeat, so it still sends
            // one packet per keepalive. Its periodic ones go out only when
            // the asker's do not arrive: a quarter keepalive of slack, so
            // the asker's next heartbeat, jitter and all, comes first.
            if echo && !self.holds_groups() {
                self.next_send = now + keepalive + keepalive / 4;
            }
        }
    }

    /// Whether anything of any group may run here (this node then has a
    /// lease to keep).
    pub(super) fn holds_groups(&self) -> bool {
        self.groups.iter().any(|g| g.phase().is_active())
    }

    pub(super) fn view(&self) -> Vec<ViewEntry> {
        let mut v = vec![ViewEntry {
            node: self.cfg.local.0,
            incarnation: self.cfg.incarnation,
            up: true,
            seen: 0,
        }];
        // "Up" in the view means heard within warntime: a peer that stops
        // getting through learns it (and loses quorum) before anyone
        // declares it dead.
        v.extend(self.peers.iter().map(|p| ViewEntry {
            node: p.id.0,
            incarnation: p.incarnation.unwrap_or(0),
            up: p.state == PeerState::Online,
            seen: p.state_seq,
        }));
        v
    }

    pub(super) fn group_reports(&self) -> Vec<GroupReport> {
        self.groups
            .iter()
            .zip(&self.cfg.groups)
            .enumerate()
            .map(|(i, (rt, spec))| GroupReport {
                group: u16::try_from(i).unwrap_or(u16::MAX),
                phase: rt.phase(),
                // A node releasing after a lost lease must not attract the
                // group back while it stops (stickiness): it reports itself
                // unavailable until it has released everything.
                banned: rt.banned(spec.migration_threshold) || self.lease.lost || self.data_held(i),
                stale: rt.data_stale,
                target: self.grants.get(i).and_then(|st| st.to).map_or(0, |n| n.0),
            })
            .collect()
    }

    /// Queues this node's heartbeats (or `Leave`s) on every link. While
    /// it holds groups, its heartbeats ask peers for an immediate answer
    /// (`Echo::Wanted`), so the lease counts from acknowledgements that are
    /// microseconds old (`docs/safety.md`, "Lease sizing").
    pub(super) fn queue_heartbeats(&mut self, kind: PacketKind) {
        let echo = if kind == PacketKind::Heartbeat && self.holds_groups() {
            Echo::Wanted
        } else {
            Echo::None
        };
        self.queue_packets(kind, echo);
    }

    fn queue_packets(&mut self, kind: PacketKind, echo: Echo) {
        self.update_grants();
        let view = self.view();
        let groups = self.group_reports();
        let settings = (self.settings.generation > 0).then(|| self.settings.to_wire(self.last_now));
        self.reported = (groups.clone(), self.settings_key());
        self.lease.prev_sent = self.lease.last_sent;
        self.lease.last_sent = self.last_now;
        for i in 0..self.cfg.links.len() {
            // One sequence across links: packets of different links can be
            // ordered, so a late packet never overrides a newer state.
            self.seq += 1;
            let packet = Packet {
                kind,
                link: u8::try_from(i).unwrap_or(u8::MAX),
                cluster: self.cfg.cluster_id,
                sender: self.cfg.local.0,
                incarnation: self.cfg.incarnation,
                seq: self.seq,
                state: self.state,
                view: view.clone(),
                config_digest: self.cfg.config_digest,
                groups: groups.clone(),
                settings: settings.clone(),
                echo,
            };
            self.stats.sent += 1;
            self.transmits.push_back(Transmit {
                link: LinkId(packet.link),
                payload: tandem_wire::encode(&packet, &self.cfg.keys),
            });
        }
        self.lease.sent_log.push_back((self.seq, self.last_now));
        while self.lease.sent_log.len() > 1
            && self
                .lease
                .sent_log
                .front()
                .is_some_and(|&(_, at)| self.last_now.since(at) > self.cfg.timing.deadtime * 2)
        {
            self.lease.sent_log.pop_front();
        }
    }

    /// When the next heartbeat is due (none once this node has left).
    pub(super) fn heartbeat_deadline(&self) -> Option<Timestamp> {
        (self.state != NodeState::Leaving).then_some(self.next_send)
    }

    /// When the next peer or link turns late or dead.
    pub(super) fn silence_deadline(&self) -> Option<Timestamp> {
        self.peers
            .iter()
            .filter_map(|p| p.next_deadline(self.started, &self.cfg.timing))
            .map(|d| d.max(self.hold_until))
            .min()
    }
}
