//! Operations of one resource carried out by the caller instead of the
//! simulated agents (e.g. a `volume:` resource run against the simulated
//! replication engines, `cluster_volume`): the simulation hands them over
//! when they complete their latency, and takes the result back.

use tandem_core::{Op, OpResult};

use crate::{OpKind, Sim};

/// An operation waiting for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalOp {
    /// The node.
    pub node: usize,
    /// The action's id (for [`Sim::finish_external`]).
    pub id: u64,
    /// Start, stop or monitor.
    pub op: Op,
}

impl Sim {
    /// From now on, operations of resource `r` of group `g` are handed to
    /// the caller ([`Sim::take_external`]) instead of being simulated.
    pub fn set_external(&mut self, g: usize, r: usize) {
        self.external = Some((g, r));
    }

    pub(crate) fn intercept(
        &mut self,
        node: usize,
        id: u64,
        g: usize,
        r: usize,
        op: OpKind,
    ) -> bool {
        if self.external != Some((g, r)) {
            return false;
        }
        let op = match op {
            OpKind::Start => Op::Start,
            OpKind::Stop => Op::Stop,
            OpKind::Monitor => Op::Monitor,
        };
        self.pending_external.push(ExternalOp { node, id, op });
        true
    }

    /// The external operations due so far.
    pub fn take_external(&mut self) -> Vec<ExternalOp> {
        std::mem::take(&mut self.pending_external)
    }

    /// The result of external operation `op`; `running` says whether the
    /// resource now really runs there (checked for exclusivity).
    pub fn finish_external(&mut self, op: &ExternalOp, result: OpResult, running: bool) {
        let now = self.now;
        let Some((g, r)) = self.external else { return };
        let Some(node) = self.nodes.get_mut(op.node) else {
            return;
        };
        if node.brain.is_none() {
            return; // the daemon died meanwhile
        }
        if let Some(x) = node.running.get_mut(g).and_then(|v| v.get_mut(r)) {
            *x = running;
        }
        if node.frozen {
            node.results.push((op.id, result));
        } else if let Some(b) = node.brain.as_mut() {
            b.handle_op_result(now, op.id, result);
        }
        self.check_exclusive();
        self.drain(op.node);
    }

    /// Whether node `i`'s brain holds a running lease (its kernel would
    /// let its addresses and volumes serve).
    pub fn lease_valid(&self, i: usize) -> bool {
        self.nodes
            .get(i)
            .and_then(|n| n.brain.as_ref())
            .and_then(tandem_core::Brain::lease_until)
            .is_some_and(|u| u > self.now)
    }
}
