//! The simulation loop: deliver datagrams, fire timers, and carry out
//! every brain output with one exhaustive `match` (`drain`).

use std::cmp::Reverse;
use std::time::Duration;

use rand::Rng;
use tandem_core::{Action, LinkId, Op, OpResult, Output, Timestamp};

use crate::{Delivery, OpKind, Record, Sim, What};

impl Sim {
    pub(crate) fn drain(&mut self, i: usize) {
        let now = self.now;
        let mut sends = Vec::new();
        let mut actions: Vec<Action> = Vec::new();
        let mut witness_probes: Vec<u64> = Vec::new();
        let mut fences: Vec<(u64, String)> = Vec::new();
        let mut release = false;
        if let Some(b) = self.nodes.get_mut(i).and_then(|n| n.brain.as_mut()) {
            while let Some(out) = b.poll() {
                match out {
                    // The simulated kernel enforces the brain's lease
                    // exactly: `serving` reads it from the brain.
                    Output::Lease(_) => {}
                    Output::Action(a) => actions.push(a),
                    Output::WitnessProbe { id } => witness_probes.push(id),
                    Output::WitnessRelease => release = true,
                    Output::Fence { id, node } => fences.push((id, node)),
                    Output::Transmit(t) => sends.push(t),
                    Output::Event(e) => self.log.push(Record {
                        at: now,
                        node: i,
                        event: e,
                    }),
                }
            }
        }
        for (id, victim) in fences {
            self.fence_request(i, id, &victim);
        }
        // Witness probes answer after a few milliseconds. Without any
        // witness configured in the simulation, every probe succeeds (the
        // two-node behaviour of plain Heartbeat).
        let any_witness = self.witness.iter().any(Option::is_some);
        if release {
            let reaches = !any_witness || self.witness.get(i).copied().flatten().unwrap_or(false);
            let incarnation = self.nodes.get(i).map_or(0, |n| n.incarnation);
            if reaches && let Some(a) = self.arbiter.as_mut() {
                self.arbiter_counters[i] += 1;
                a.release(
                    "sim",
                    &format!("n{}", i + 1),
                    incarnation,
                    self.arbiter_counters[i],
                );
            }
        }
        if self.arbiter.is_some() {
            // The arbitrator decides when the request arrives (2 ms); the
            // answer is back 2 ms later; the node counts its vote from when
            // it asked, minus 5 % for clock-rate differences.
            let reaches = !any_witness || self.witness.get(i).copied().flatten().unwrap_or(false);
            let incarnation = self.nodes.get(i).map_or(0, |n| n.incarnation);
            for id in witness_probes {
                let mut vote = tandem_core::Vote::NoAnswer;
                if reaches && let Some(a) = self.arbiter.as_mut() {
                    self.arbiter_counters[i] += 1;
                    let vote_for = a.vote();
                    let d = a.request(
                        now + Duration::from_millis(2),
                        "sim",
                        &format!("n{}", i + 1),
                        incarnation,
                        self.arbiter_counters[i],
                    );
                    vote = match d {
                        tandem_core::arbiter::Decision::Granted { .. } => {
                            tandem_core::Vote::Granted {
                                until: now + vote_for.mul_f64(0.95),
                            }
                        }
                        _ => tandem_core::Vote::Refused,
                    };
                }
                self.order += 1;
                self.queue.push(Reverse(Delivery {
                    at: now + Duration::from_millis(4),
                    order: self.order,
                    to: i,
                    what: What::Vote { id, vote },
                }));
            }
            witness_probes = Vec::new();
        }
        for id in witness_probes {
            let reachable = !any_witness || self.witness.get(i).copied().flatten().unwrap_or(false);
            self.order += 1;
            self.queue.push(Reverse(Delivery {
                at: now + Duration::from_millis(5),
                order: self.order,
                to: i,
                what: What::Witness { id, reachable },
            }));
        }
        for a in actions {
            let span = self.op_latency_max.as_nanos() as u64;
            let latency =
                Duration::from_millis(1) + Duration::from_nanos(self.rng.random_range(0..=span));
            self.order += 1;
            let op = match a.op {
                Op::Start => OpKind::Start,
                Op::Stop => OpKind::Stop,
                Op::Monitor => OpKind::Monitor,
            };
            self.queue.push(Reverse(Delivery {
                at: now + latency,
                order: self.order,
                to: i,
                what: What::OpDone {
                    id: a.id,
                    group: a.group,
                    resource: a.resource,
                    op,
                },
            }));
        }
        for t in sends {
            let l = usize::from(t.link.0);
            let model = self.link(l);
            for to in 0..self.nodes.len() {
                if to == i {
                    continue;
                }
                if !model.up
                    || self.blocked[i][to]
                    || self.unplugged[i].get(l).copied().unwrap_or(false)
                    || self.unplugged[to].get(l).copied().unwrap_or(false)
                    || self.rng.random_bool(model.loss.clamp(0.0, 1.0))
                {
                    self.dropped += 1;
                    continue;
                }
                let copies = if self.rng.random_bool(model.duplicate.clamp(0.0, 1.0)) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let span = model.delay_max.saturating_sub(model.delay_min).as_nanos() as u64;
                    let delay =
                        model.delay_min + Duration::from_nanos(self.rng.random_range(0..=span));
                    self.order += 1;
                    self.queue.push(Reverse(Delivery {
                        at: now + delay,
                        order: self.order,
                        to,
                        what: What::Datagram {
                            link: t.link.0,
                            bytes: t.payload.clone(),
                        },
                    }));
                }
            }
        }
    }

    pub(crate) fn next_timer(&self) -> Option<(Timestamp, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.frozen)
            .filter_map(|(i, n)| Some((n.brain.as_ref()?.poll_timeout()?, i)))
            .min()
    }

    /// Runs the simulation until time `until`.
    ///
    /// Panics if a brain livelocks: asks to be woken at a time that has
    /// passed, again and again, without the clock moving (a brain bug the
    /// real daemon would turn into a busy loop).
    pub fn run_until(&mut self, until: Timestamp) {
        let mut same_instant = 0u32;
        let mut last = self.now;
        loop {
            let next_delivery = self.queue.peek().map(|Reverse(d)| d.at);
            let next_timer = self.next_timer();
            let deliver_first = match (next_delivery, next_timer) {
                (Some(d), Some((t, _))) => d <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let at = if deliver_first {
                next_delivery
            } else {
                next_timer.map(|t| t.0)
            };
            let Some(at) = at else { break };
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            if self.now == last {
                same_instant += 1;
                assert!(
                    same_instant < 100_000,
                    "livelock at {:?}: a brain keeps asking to be woken in the past",
                    self.now
                );
            } else {
                same_instant = 0;
                last = self.now;
            }
            if deliver_first {
                let Some(Reverse(d)) = self.queue.pop() else {
                    break;
                };
                let now = self.now;
                let mut check = false;
                match d.what {
                    What::Datagram { link, bytes } => {
                        let Some(node) = self.nodes.get_mut(d.to) else {
                            continue;
                        };
                        let Some(brain) = node.brain.as_mut() else {
                            self.dropped += 1;
                            continue;
                        };
                        self.delivered += 1;
                        if node.frozen {
                            // The socket buffer holds it; bounded like a real one.
                            if node.inbox.len() < 4096 {
                                node.inbox.push((LinkId(link), bytes));
                            }
                            continue;
                        }
                        brain.handle_datagram(now, LinkId(link), &bytes);
                    }
                    What::Witness { id, reachable } => {
                        if let Some(node) = self.nodes.get_mut(d.to).filter(|n| !n.frozen)
                            && let Some(b) = node.brain.as_mut()
                        {
                            b.handle_witness_result(now, id, reachable);
                        }
                    }
                    What::FenceDone {
                        id,
                        victim,
                        ok,
                        record,
                    } => {
                        self.fence_done(d.to, id, victim, ok, record);
                        check = true;
                    }
                    What::Vote { id, vote } => {
                        if let Some(node) = self.nodes.get_mut(d.to).filter(|n| !n.frozen)
                            && let Some(b) = node.brain.as_mut()
                        {
                            b.handle_witness_vote(now, id, vote);
                        }
                    }
                    What::OpDone {
                        id,
                        group,
                        resource,
                        op,
                    } => {
                        if self.intercept(d.to, id, group, resource, op) {
                            continue;
                        }
                        let faults = self.faults.get(d.to).copied().unwrap_or_default();
                        let fail_start = self.rng.random_bool(faults.start_failure.clamp(0.0, 1.0));
                        let fail_stop = self.rng.random_bool(faults.stop_failure.clamp(0.0, 1.0));
                        let Some(node) = self.nodes.get_mut(d.to) else {
                            continue;
                        };
                        if node.brain.is_none() {
                            continue; // the daemon died meanwhile: nobody waits
                        }
                        let Some(run) = node
                            .running
                            .get_mut(group)
                            .and_then(|v| v.get_mut(resource))
                        else {
                            continue;
                        };
                        let result = match op {
                            OpKind::Start if fail_start => {
                                OpResult::Failed("simulated start failure".into())
                            }
                            OpKind::Start => {
                                *run = true;
                                check = true;
                                OpResult::Ok
                            }
                            OpKind::Stop if fail_stop => OpResult::TimedOut,
                            OpKind::Stop => {
                                *run = false;
                                OpResult::Ok
                            }
                            OpKind::Monitor if *run => OpResult::Ok,
                            OpKind::Monitor => OpResult::NotRunning,
                        };
                        if node.frozen {
                            node.results.push((id, result));
                            continue;
                        }
                        if let Some(b) = node.brain.as_mut() {
                            b.handle_op_result(now, id, result);
                        }
                    }
                }
                if check {
                    self.check_exclusive();
                }
                self.drain(d.to);
            } else if let Some((_, i)) = next_timer {
                let now = self.now;
                if let Some(b) = self.nodes[i].brain.as_mut() {
                    b.handle_timeout(now);
                }
                self.drain(i);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs the simulation for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs in 1 ms steps until `pred` holds or `limit` passes; returns how
    /// long it took.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now.since(start) <= limit {
            if pred(self) {
                return Some(self.now.since(start));
            }
            self.run_for(Duration::from_millis(1));
        }
        None
    }
}
