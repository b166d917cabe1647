//! Simulated fence agents: the brain asks to fence a dead node
//! ([`tandem_core::Output::Fence`]); the simulator plays the agent. A
//! successful fence powers the victim off (it crashes, its resources stop)
//! before the brain hears the outcome, as a real power switch would; an
//! agent whose own node is powered off meanwhile dies with it.

use std::cmp::Reverse;
use std::time::Duration;

use crate::{Delivery, Sim, What};

/// How the simulated fence agent behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FenceAgent {
    /// Powers the victim off and reports success after
    /// [`FENCE_LATENCY`].
    #[default]
    Succeeds,
    /// Reports failure after [`FENCE_LATENCY`]; the victim stays as it is.
    Fails,
    /// Never answers; the daemon's timeout reports a failure after
    /// [`FENCE_TIMEOUT`].
    Hangs,
}

/// How long a fence agent takes to answer.
pub const FENCE_LATENCY: Duration = Duration::from_millis(50);
/// After how long a hanging fence agent is given up (the daemon's timeout).
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(2);

/// One fence request the simulator played.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceRecord {
    /// When the request was made.
    pub asked: tandem_core::Timestamp,
    /// Who asked (node index).
    pub by: usize,
    /// Who was to be fenced (node index).
    pub victim: usize,
    /// When the outcome was reported, and whether it was a success.
    pub answered: Option<(tandem_core::Timestamp, bool)>,
}

impl Sim {
    /// Turns fencing on for every node (call before running), with `agent`
    /// as their fence agent.
    pub fn use_fencing(&mut self, agent: FenceAgent) {
        self.fencing = true;
        self.fence_agent = agent;
        for i in 0..self.nodes.len() {
            let cfg = self.node_config(i);
            self.nodes[i].brain = Some(tandem_core::Brain::new(cfg, self.now));
        }
    }

    /// Changes how the fence agent behaves from now on.
    pub fn set_fence_agent(&mut self, agent: FenceAgent) {
        self.fence_agent = agent;
    }

    /// Every fence request so far, in order.
    pub fn fences(&self) -> &[FenceRecord] {
        &self.fence_log
    }

    /// Node `by` asks to fence `victim` (a node name) under `id`.
    pub(crate) fn fence_request(&mut self, by: usize, id: u64, victim: &str) {
        let Some(v) = victim
            .strip_prefix('n')
            .and_then(|k| k.parse::<usize>().ok())
            .and_then(|k| k.checked_sub(1))
        else {
            return;
        };
        self.fence_log.push(FenceRecord {
            asked: self.now,
            by,
            victim: v,
            answered: None,
        });
        let (delay, ok) = match self.fence_agent {
            FenceAgent::Succeeds => (FENCE_LATENCY, true),
            FenceAgent::Fails => (FENCE_LATENCY, false),
            FenceAgent::Hangs => (FENCE_TIMEOUT, false),
        };
        self.order += 1;
        self.queue.push(Reverse(Delivery {
            at: self.now + delay,
            order: self.order,
            to: by,
            what: What::FenceDone {
                id,
                victim: v,
                ok,
                record: self.fence_log.len() - 1,
            },
        }));
    }

    /// A fence agent's outcome reaches node `to`: on success the victim is
    /// powered off first.
    pub(crate) fn fence_done(
        &mut self,
        to: usize,
        id: u64,
        victim: usize,
        ok: bool,
        record: usize,
    ) {
        // A node powered off while its fence agent ran took the agent with
        // it: the victim is spared (in a split where both sides fence, the
        // first agent to finish wins).
        if self.nodes.get(to).is_none_or(|n| n.brain.is_none()) {
            return;
        }
        if self.nodes.get(to).is_some_and(|n| n.frozen) {
            // The agent's answer waits in the daemon's channel.
            self.order += 1;
            self.queue.push(Reverse(Delivery {
                at: self.now + Duration::from_millis(1),
                order: self.order,
                to,
                what: What::FenceDone {
                    id,
                    victim,
                    ok,
                    record,
                },
            }));
            return;
        }
        if ok {
            self.crash(victim);
        }
        if let Some(r) = self.fence_log.get_mut(record) {
            r.answered = Some((self.now, ok));
        }
        let now = self.now;
        if let Some(b) = self.nodes.get_mut(to).and_then(|n| n.brain.as_mut()) {
            let result = if ok {
                Ok(())
            } else if self.fence_agent == FenceAgent::Hangs {
                Err("fence agent timed out".to_string())
            } else {
                Err("fence agent failed".to_string())
            };
            b.handle_fence_result(now, id, result);
        }
    }
}
