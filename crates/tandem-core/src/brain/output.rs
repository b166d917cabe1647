//! The brain's one output type: everything it asks its driver to do.
//!
//! Drivers (the daemon's node loop, the simulator) take outputs with
//! [`Brain::poll`] until it returns `None` and handle each with one
//! exhaustive `match`: a new kind of output is a compile error in every
//! driver until it is handled.

use super::Brain;
use crate::event::Event;
use crate::resources::Action;
use crate::time::Timestamp;

use super::Transmit;

/// One thing the brain asks its driver to do.
///
/// [`Brain::poll`] returns them in this order: the lease first (the kernel
/// must hold the new lease before a start is submitted: an IPv6
/// announcement from an unleased address is dropped), then agent
/// operations, witness and fencing work, datagrams, and last the events to
/// log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The lease now ends then (`None`: this node may not serve its groups'
    /// addresses at all). Mirror it into the kernel (`docs/safety.md`,
    /// "Lease sizing"). Only changes are reported.
    Lease(Option<Timestamp>),
    /// Run this agent operation; report with [`Brain::handle_op_result`].
    Action(Action),
    /// Probe the witness, or ask the arbitrator for its vote; report with
    /// [`Brain::handle_witness_result`] or [`Brain::handle_witness_vote`].
    WitnessProbe {
        /// Request id to report under.
        id: u64,
    },
    /// Tell the arbitrator this node no longer needs its vote.
    WitnessRelease,
    /// Power `node` off with the fence agent; report with
    /// [`Brain::handle_fence_result`].
    Fence {
        /// Request id to report under.
        id: u64,
        /// The node to fence.
        node: String,
    },
    /// Send this datagram to every peer on its link.
    Transmit(Transmit),
    /// Something happened: log it (its `Display` is the log line).
    Event(Event),
}

impl Brain {
    /// The next thing to do, if any (see [`Output`] for the order).
    pub fn poll(&mut self) -> Option<Output> {
        if self.lease.until != self.lease.reported {
            self.lease.reported = self.lease.until;
            return Some(Output::Lease(self.lease.until));
        }
        if let Some(a) = self.actions.pop_front() {
            return Some(Output::Action(a));
        }
        if let Some(id) = self.witness.requests.pop_front() {
            return Some(Output::WitnessProbe { id });
        }
        if std::mem::take(&mut self.witness.release) {
            return Some(Output::WitnessRelease);
        }
        if let Some((id, node)) = self.fencing.requests.pop_front() {
            return Some(Output::Fence {
                id,
                node: self.node_name(node),
            });
        }
        if let Some(t) = self.transmits.pop_front() {
            return Some(Output::Transmit(t));
        }
        self.events.pop_front().map(Output::Event)
    }
}
