//! The node loop's one input channel: every thread that has something for
//! the brain (agent results, fence outcomes, witness answers, operator
//! commands, signals) sends an [`Input`] through an [`Inbox`], which also
//! wakes the node loop's poller. The node loop handles them with one
//! exhaustive `match`.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use tandem_core::{Command, CommandError, OpResult, ResourceKey};

use super::fence::FenceError;
use super::witness::Answer;

/// Something for the node loop.
#[derive(Debug)]
pub enum Input {
    /// An agent operation finished.
    OpDone {
        /// The action's id.
        id: u64,
        /// Its outcome.
        result: OpResult,
    },
    /// A started resource's main process exited and none took its place
    /// (`tandem_agents::watch`).
    MainExited {
        /// The resource.
        key: ResourceKey,
        /// What happened, for the log.
        detail: String,
    },
    /// A fence request finished.
    Fenced {
        /// The request's id.
        id: u64,
        /// Its outcome.
        result: Result<(), FenceError>,
    },
    /// A witness probe or vote request finished.
    Witness {
        /// The request's id.
        id: u64,
        /// The answer.
        answer: Answer,
    },
    /// An operator command, with where to send the brain's answer.
    Command {
        /// The command.
        command: Command,
        /// Where the answer goes (the control connection waits on it).
        reply: Sender<Result<String, CommandError>>,
    },
    /// Whether this node's copy of a group's data (its volumes) is ready
    /// (`hold: None`) or why not.
    DataReadiness {
        /// The group.
        group: String,
        /// Why it may not start here.
        hold: Option<String>,
        /// The copy is durably unfit (Outdated or Inconsistent).
        stale: bool,
    },
    /// SIGTERM or SIGINT: leave the cluster and stop.
    Stop {
        /// The signal number.
        signal: i32,
    },
}

/// The sending side, cloned into every thread that reports to the node
/// loop.
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: Sender<Input>,
    waker: Arc<mio::Waker>,
}

impl Inbox {
    /// A channel whose sends wake `waker`; the receiver goes to the node
    /// loop.
    pub fn new(waker: Arc<mio::Waker>) -> (Self, Receiver<Input>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (Self { tx, waker }, rx)
    }

    /// Hands `input` to the node loop and wakes it. After the node loop
    /// has ended, inputs are dropped.
    pub fn send(&self, input: Input) {
        if self.tx.send(input).is_ok() {
            let _ = self.waker.wake();
        }
    }
}
