//! What operators reach the daemon through: the control socket and the
//! HTTP API both read the node loop's published snapshot (never the brain)
//! and hand commands to the node loop through the inbox, waiting a few
//! seconds for the brain's answer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_control::{DaemonInfo, Request, Response, Status};
use tandem_core::Command;

use super::inbox::{Inbox, Input};
use super::node_loop::Shared;

/// How long a command waits for the brain's answer.
const COMMAND_WAIT: Duration = Duration::from_secs(5);

/// The daemon's side of the control socket and the HTTP API.
pub struct Operator {
    shared: Arc<Shared>,
    info: DaemonInfo,
    inbox: Mutex<Inbox>,
    /// Where each command is recorded, with who asked (history, alerts).
    events: tandem_api::EventSink,
}

impl Operator {
    /// An operator surface over the node loop's snapshot and inbox.
    pub fn new(
        shared: Arc<Shared>,
        info: DaemonInfo,
        inbox: Inbox,
        events: tandem_api::EventSink,
    ) -> Self {
        Self {
            shared,
            info,
            inbox: Mutex::new(inbox),
            events,
        }
    }

    /// Answers one control-socket request from `caller`.
    pub fn handle(&self, req: Request, caller: &tandem_control::Caller) -> Response {
        match req {
            Request::Status => match self.snapshot() {
                Ok(s) => Response::Status(Box::new(s)),
                Err(message) => Response::Error { message },
            },
            Request::Command(command) => self.apply(command, &caller.describe()),
        }
    }

    /// Hands `command` (asked by `by`) to the brain, waits for its answer,
    /// and records both in the event history.
    pub fn apply(&self, command: Command, by: &str) -> Response {
        let what = describe(&command);
        let response = self.ask(command);
        let outcome = match &response {
            Response::Done { message } => message.clone(),
            Response::Refused { message, .. } => format!("refused: {message}"),
            Response::Error { message } => format!("failed: {message}"),
            Response::Status(_) => String::new(),
        };
        tracing::info!(target: "tandem::audit", "{by}: {what}: {outcome}");
        self.events.send(tandem_core::Event::Operator {
            by: by.to_string(),
            command: what,
            outcome,
        });
        response
    }

    fn ask(&self, command: Command) -> Response {
        let (reply, answer) = std::sync::mpsc::channel();
        if let Ok(inbox) = self.inbox.lock() {
            inbox.send(Input::Command { command, reply });
        }
        match answer.recv_timeout(COMMAND_WAIT) {
            Ok(Ok(message)) => Response::Done { message },
            Ok(Err(e)) => Response::Refused {
                kind: tandem_control::refusal_kind(&e).to_string(),
                message: e.to_string(),
            },
            Err(_) => Response::Error {
                message: "the daemon did not answer in time".into(),
            },
        }
    }

    /// The status document, its "ago" fields aged to now.
    pub fn snapshot(&self) -> Result<Status, String> {
        let shared = &self.shared;
        let snap = shared.snapshot.lock().ok().and_then(|g| g.clone());
        let Some((mut membership, taken)) = snap else {
            return Err("the daemon is starting; try again in a moment".into());
        };
        // The snapshot may be up to one refresh old: age its "ago" fields.
        let age = u64::try_from(taken.elapsed().as_millis()).unwrap_or(0);
        membership.uptime_ms += age;
        membership.lease_ms = membership.lease_ms.map(|l| l.saturating_sub(age));
        for n in &mut membership.nodes {
            if !n.local {
                n.last_heard_ms = n.last_heard_ms.map(|v| v + age);
                for l in &mut n.links {
                    l.last_heard_ms = l.last_heard_ms.map(|v| v + age);
                }
            }
        }
        let mut daemon = self.info.clone();
        daemon.send_errors = shared.send_errors.load(Ordering::Relaxed);
        daemon.sent_datagrams = shared.sent_datagrams.load(Ordering::Relaxed);
        daemon.sent_bytes = shared.sent_bytes.load(Ordering::Relaxed);
        daemon.alerts_delivered = shared.alerts.delivered.load(Ordering::Relaxed);
        daemon.alerts_failed = shared.alerts.failed.load(Ordering::Relaxed);
        let volumes = shared.volumes.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(Status {
            daemon,
            membership,
            volumes,
        })
    }
}

impl tandem_api::Backend for Operator {
    fn status(&self) -> Result<Status, String> {
        self.snapshot()
    }

    fn command(&self, command: Command, by: &str) -> Response {
        self.apply(command, by)
    }
}

/// A command in the words of the CLI.
fn describe(c: &Command) -> String {
    match c {
        Command::Move {
            group,
            node: Some(n),
            duration,
        } => match duration {
            Some(d) => format!("move {group} to {n} for {} s", d.as_secs()),
            None => format!("move {group} to {n}"),
        },
        Command::Move {
            group, node: None, ..
        } => format!("clear the move of {group}"),
        Command::Standby { node, on: true } => format!("standby {node}"),
        Command::Standby { node, on: false } => format!("unstandby {node}"),
        Command::Cleanup { group } => format!("cleanup {group}"),
        Command::ForcePrimary { node } => format!("force-primary {node}"),
        Command::TakeOver { take: true, which } => format!("takeover {which}"),
        Command::TakeOver { take: false, which } => format!("release {which}"),
    }
}
