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
}

impl Operator {
    /// An operator surface over the node loop's snapshot and inbox.
    pub fn new(shared: Arc<Shared>, info: DaemonInfo, inbox: Inbox) -> Self {
        Self {
            shared,
            info,
            inbox: Mutex::new(inbox),
        }
    }

    /// Answers one control-socket request.
    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::Status => match self.snapshot() {
                Ok(s) => Response::Status(Box::new(s)),
                Err(message) => Response::Error { message },
            },
            Request::Command(command) => self.apply(command),
        }
    }

    /// Hands `command` to the brain and waits for its answer.
    pub fn apply(&self, command: Command) -> Response {
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

    fn command(&self, command: Command) -> Response {
        self.apply(command)
    }
}
