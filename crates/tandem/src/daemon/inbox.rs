//! The node loop's one input queue: every thread that has something for
//! the brain (agent results, fence outcomes, witness answers, operator
//! commands, signals) sends an [`Input`] through an [`Inbox`], which also
//! wakes the node loop's poller. The node loop takes them as [`Inputs`] and
//! handles them with one exhaustive `match`.
//!
//! Why not a channel: the node loop runs `SCHED_RR`, its senders do not,
//! and a lock-free channel's receiver *spins* while a sender it overtook
//! finishes writing. A sender preempted on the node loop's CPU half-way
//! through a send then never gets that CPU back from the spinning
//! real-time thread, until the kernel's real-time throttling stops it
//! after 950 ms — the node loop was seen stuck up to 959 ms that way in
//! the flood drill (its meter: "909 ms running, 51 ms runnable but not
//! run"), long enough to lose its lease. Here senders push under a plain
//! lock, and the node loop only ever *tries* that lock: when a sender holds
//! it, the loop sleeps a millisecond in its poller (letting the sender run)
//! and tries again.

use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, TryLockError};

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

/// What senders have queued, and whether the node loop still takes it.
#[derive(Debug, Default)]
struct Pending {
    inputs: VecDeque<Input>,
    closed: bool,
}

/// The sending side, cloned into every thread that reports to the node
/// loop.
#[derive(Clone, Debug)]
pub struct Inbox {
    pending: Arc<Mutex<Pending>>,
    waker: Arc<mio::Waker>,
}

impl Inbox {
    /// A queue whose sends wake `waker`; the [`Inputs`] go to the node
    /// loop.
    pub fn new(waker: Arc<mio::Waker>) -> (Self, Inputs) {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let inputs = Inputs {
            pending: pending.clone(),
            batch: VecDeque::new(),
        };
        (Self { pending, waker }, inputs)
    }

    /// Hands `input` to the node loop and wakes it. After the node loop
    /// has ended, inputs are dropped (an operator command's reply channel
    /// with them, so its sender learns there is no answer).
    pub fn send(&self, input: Input) {
        let queued = {
            // A sender that panicked while pushing left a whole queue.
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if !p.closed {
                p.inputs.push_back(input);
            }
            !p.closed
        };
        if queued {
            let _ = self.waker.wake();
        }
    }
}

/// The node loop's side of the [`Inbox`]: takes what was sent, in order,
/// without ever waiting for a sender.
#[derive(Debug)]
pub struct Inputs {
    pending: Arc<Mutex<Pending>>,
    /// Taken from the queue, not yet handled; swapped with the queue's
    /// (empty) buffer, so taking allocates nothing.
    batch: VecDeque<Input>,
}

impl Inputs {
    /// The next input, in the order sent; `Ok(None)` when there is none;
    /// `Err(Busy)` when a sender holds the queue right now (try again
    /// after a short sleep, so that it can finish).
    pub fn take(&mut self) -> Result<Option<Input>, Busy> {
        if self.batch.is_empty() {
            let mut p = match self.pending.try_lock() {
                Ok(p) => p,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => return Err(Busy),
            };
            std::mem::swap(&mut p.inputs, &mut self.batch);
        }
        Ok(self.batch.pop_front())
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.closed = true;
        p.inputs.clear();
    }
}

/// A sender holds the [`Inbox`]'s queue at this instant.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox() -> (Inbox, Inputs, mio::Poll) {
        let poll = mio::Poll::new().expect("poller");
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let (inbox, inputs) = Inbox::new(waker);
        (inbox, inputs, poll)
    }

    fn stop(signal: i32) -> Input {
        Input::Stop { signal }
    }

    fn signal_of(i: Option<Input>) -> Option<i32> {
        match i {
            Some(Input::Stop { signal }) => Some(signal),
            _ => None,
        }
    }

    #[test]
    fn inputs_come_out_in_the_order_sent_across_batches() {
        let (inbox, mut inputs, _poll) = inbox();
        inbox.send(stop(1));
        inbox.send(stop(2));
        assert_eq!(signal_of(inputs.take().unwrap()), Some(1));
        inbox.send(stop(3));
        assert_eq!(signal_of(inputs.take().unwrap()), Some(2));
        assert_eq!(signal_of(inputs.take().unwrap()), Some(3));
        assert_eq!(signal_of(inputs.take().unwrap()), None);
    }

    /// The node loop's bug this queue mends: a sender stopped half-way
    /// (here: holding the queue) must not keep the node loop waiting.
    #[test]
    fn a_sender_holding_the_queue_never_makes_the_node_loop_wait() {
        let (inbox, mut inputs, _poll) = inbox();
        inbox.send(stop(1));
        // A sender stopped for 300 ms half-way through a send.
        let (held_tx, held) = std::sync::mpsc::channel();
        let pending = inbox.pending.clone();
        let sender = std::thread::spawn(move || {
            let _guard = pending.lock().unwrap();
            held_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        });
        held.recv().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(inputs.take().map(signal_of), Err(Busy));
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        sender.join().unwrap();
        assert_eq!(signal_of(inputs.take().unwrap()), Some(1));
    }

    #[test]
    fn after_the_node_loop_ends_a_command_learns_there_is_no_answer() {
        let (inbox, inputs, _poll) = inbox();
        let (reply, answer) = std::sync::mpsc::channel();
        inbox.send(Input::Command {
            command: Command::Standby {
                node: "n1".into(),
                on: true,
            },
            reply: reply.clone(),
        });
        drop(inputs);
        inbox.send(Input::Command {
            command: Command::Standby {
                node: "n1".into(),
                on: true,
            },
            reply,
        });
        assert_eq!(
            answer.recv_timeout(std::time::Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "a reply channel outlived the loop"
        );
    }
}
