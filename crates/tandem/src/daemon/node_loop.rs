//! The node loop, on a thread of its own (`tandem-node`): owns the brain
//! and the link sockets, and nothing else. It sleeps in one `poll` until a
//! datagram arrives, an [`Input`] wakes it, or the brain's next deadline;
//! feeds the brain; carries out what it asks (sending heartbeats itself,
//! handing agent, fence and witness work to their workers); logs what it
//! reports; and publishes a status snapshot for the control thread. No
//! agent, disk or API work ever runs here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use tandem_agents::Executor;
use tandem_core::{Brain, Event, MembershipStatus, Output, Timestamp};
use tandem_links::LinkSocket;

use super::inbox::{Input, Inputs};

/// Token of the waker an [`Input`] rings.
pub const WAKE: Token = Token(usize::MAX);

/// How often the status snapshot is refreshed when nothing happens.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// How soon a snapshot whose lock was held, or the input queue a sender
/// held, is tried again.
const RETRY: Duration = Duration::from_millis(1);

/// What the node loop shares with the control thread.
#[derive(Debug, Default)]
pub struct Shared {
    /// Latest membership snapshot and when it was taken.
    pub snapshot: Mutex<Option<(MembershipStatus, Instant)>>,
    /// Failed sends, total.
    pub send_errors: AtomicU64,
    /// Datagrams sent, total.
    pub sent_datagrams: AtomicU64,
    /// Bytes sent, total.
    pub sent_bytes: AtomicU64,
    /// The local volumes' latest status (from the volume watcher).
    pub volumes: Mutex<Vec<tandem_volumes::VolumeStatus>>,
    /// Alert deliveries (from the alert workers).
    pub alerts: super::alerts::AlertStats,
}

/// The node loop's parts.
pub struct NodeLoop {
    /// The brain.
    pub brain: Brain,
    /// One socket per link, indexed like the brain's links.
    pub links: Vec<LinkSocket>,
    /// The poller the sockets are registered with.
    pub poll: Poll,
    /// The daemon's clock epoch: brain timestamps count from here.
    pub epoch: Instant,
    /// Everything the workers, the control thread and the signal thread
    /// report.
    pub inputs: Inputs,
    /// Where snapshots go.
    pub shared: Arc<Shared>,
    /// Runs agent operations (on its own threads).
    pub executor: Executor,
    /// Longest a clean shutdown may take before the daemon exits anyway.
    pub shutdown_limit: Duration,
    /// Runs fence agents (on its worker thread).
    pub fencer: super::fence::Fencer,
    /// Mirrors the brain's lease into nftables (on a thread of its own).
    pub kernel_lease: Option<super::kernel_lease::KernelLease>,
    /// Probes witnesses (on its worker thread).
    pub prober: super::witness::Prober,
    /// The armed watchdog, petted by this thread as it loops.
    pub watchdog: Option<super::watchdog::Watchdog>,
    /// Keeps the peers' latest incarnations across restarts.
    pub peers_seen: super::known_peers::Recorder,
    /// The brain's latest lease (from [`Output::Lease`]).
    pub lease_want: Option<Timestamp>,
    /// The lease last handed to the kernel enforcer.
    pub lease_sent: Option<Timestamp>,
    /// Forwards the lease to this node's volumes (on a thread of its own).
    pub volume_lease: Option<super::volumes::VolumeLease>,
    /// Hands events to the API's event log without blocking.
    pub events: tandem_api::EventSink,
}

/// Datagrams read from one link before the loop runs its timers again.
const MAX_DATAGRAMS_PER_WAKE: usize = 64;

impl NodeLoop {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Carries out everything the brain asks, in its order, with one
    /// exhaustive match; returns whether anything was reported (the
    /// snapshot is then refreshed at once).
    fn flush(&mut self) -> bool {
        let mut reported = false;
        while let Some(out) = self.brain.poll() {
            match out {
                Output::Lease(until) => {
                    self.lease_want = until;
                    self.sync_lease();
                    if let Some(v) = &self.volume_lease {
                        v.set(until.map(|u| self.epoch + Duration::from_nanos(u.as_nanos())));
                    }
                }
                Output::Action(a) => self.executor.submit(a),
                Output::WitnessProbe { id } => self.prober.probe(id),
                Output::WitnessRelease => self.prober.release(),
                Output::Fence { id, node } => self.fencer.fence(id, node),
                Output::Transmit(t) => self.send(&t),
                Output::Event(e) => {
                    reported = true;
                    match &e {
                        Event::Joined { node, incarnation } | Event::Back { node, incarnation } => {
                            self.peers_seen.seen(node, *incarnation);
                        }
                        Event::Restarted { node, new, .. } => self.peers_seen.seen(node, *new),
                        _ => {}
                    }
                    // Structured fields for the journal (journal.rs).
                    let who = e.subject();
                    let (event, peer) = (e.kind(), who.node.unwrap_or(""));
                    let (group, resource) = (who.group.unwrap_or(""), who.resource.unwrap_or(""));
                    if e.is_warning() {
                        tracing::warn!(target: "tandem::membership", event, peer, group, resource, "{e}");
                    } else {
                        tracing::info!(target: "tandem::membership", event, peer, group, resource, "{e}");
                    }
                    self.events.send(e);
                }
            }
        }
        reported
    }

    /// Sends a datagram to every destination of its link, counting.
    fn send(&self, t: &tandem_core::Transmit) {
        if let Some(link) = self.links.get(usize::from(t.link.0)) {
            let failed = link.send_all(&t.payload);
            let ok = (link.destinations.len() - failed) as u64;
            self.shared.sent_datagrams.fetch_add(ok, Ordering::Relaxed);
            self.shared
                .sent_bytes
                .fetch_add(ok * t.payload.len() as u64, Ordering::Relaxed);
            if failed > 0 {
                self.shared
                    .send_errors
                    .fetch_add(failed as u64, Ordering::Relaxed);
            }
        }
    }

    /// Hands one input to the brain (or starts the shutdown); `stopping`
    /// records when the shutdown began.
    fn handle(&mut self, input: Input, stopping: &mut Option<Instant>) {
        let now = self.now();
        match input {
            Input::OpDone { id, result } => self.brain.handle_op_result(now, id, result),
            Input::MainExited { key, detail } => self.brain.handle_main_exit(now, &key, detail),
            Input::Fenced { id, result } => {
                self.brain
                    .handle_fence_result(now, id, result.map_err(|e| e.to_string()));
            }
            Input::Witness { id, answer } => self.witness_answer(id, answer),
            Input::Command { command, reply } => {
                let _ = reply.send(self.brain.handle_command(now, command));
            }
            Input::DataReadiness { group, hold, stale } => {
                self.brain.handle_data_readiness(now, &group, hold, stale);
            }
            Input::Stop { signal } => {
                if stopping.is_none() {
                    tracing::info!("signal {signal} received: leaving the cluster");
                    *stopping = Some(Instant::now());
                    self.brain.leave(now);
                }
            }
        }
    }

    /// Hands a witness probe's answer to the brain.
    fn witness_answer(&mut self, id: u64, answer: super::witness::Answer) {
        use super::witness::Answer;
        use tandem_core::Vote;
        let now = self.now();
        match answer {
            Answer::Reachable(r) => self.brain.handle_witness_result(now, id, r),
            Answer::Granted(at) => {
                let nanos = at.saturating_duration_since(self.epoch).as_nanos();
                let until = Timestamp::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                self.brain
                    .handle_witness_vote(now, id, Vote::Granted { until });
            }
            Answer::Refused => self.brain.handle_witness_vote(now, id, Vote::Refused),
            Answer::NoAnswer => self.brain.handle_witness_vote(now, id, Vote::NoAnswer),
        }
    }

    /// Mirrors the brain's lease into the kernel: shortened at once;
    /// extended when the kernel's copy has less than two keepalives and two
    /// ticks left, or less than two thirds of the new lease; removed when
    /// the lease ends.
    fn sync_lease(&mut self) {
        let Some(k) = &self.kernel_lease else { return };
        let now = self.now();
        let want = self.lease_want;
        let refresh = match (want, self.lease_sent) {
            (None, None) => false,
            (None, Some(_)) | (Some(_), None) => true,
            (Some(u), Some(old)) => {
                let (left, new) = (old.since(now), u.since(now));
                // A shorter lease (an arbitrator's vote ending sooner)
                // reaches the kernel at once.
                u < old || (u > old && left < (new * 2 / 3).max(k.refresh_below))
            }
        };
        if refresh {
            k.set(want.map(|u| self.epoch + Duration::from_nanos(u.as_nanos())));
            self.lease_sent = want;
        }
    }

    /// Publishes the status snapshot unless a reader holds its lock:
    /// this real-time thread never waits for a normal-priority one, which
    /// CPU load may keep off the processor while it holds the lock (a
    /// priority inversion). Returns whether it was published; if not, the
    /// loop tries again within a millisecond.
    fn publish(&self, now: Timestamp) -> bool {
        let snap = self.brain.status(now);
        match self.shared.snapshot.try_lock() {
            Ok(mut guard) => {
                *guard = Some((snap, Instant::now()));
                true
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
            Err(std::sync::TryLockError::Poisoned(_)) => true,
        }
    }

    /// Registers the sockets and runs until `stop` is set, then sends a
    /// `Leave` on every link.
    pub fn run(mut self) -> std::io::Result<()> {
        for (i, l) in self.links.iter_mut().enumerate() {
            self.poll
                .registry()
                .register(&mut l.socket, Token(i), Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 2048];
        let mut last_publish: Option<Instant> = None;
        // A snapshot to publish: something was reported, or its lock was
        // held at the last try.
        let mut publish_pending = false;
        let mut stopping: Option<Instant> = None;
        // Links whose socket may still hold datagrams: the poller is
        // edge-triggered, so a socket left unread must be read again
        // without waiting for a new event.
        let mut backlog = vec![false; self.links.len()];
        // Half the brain's stall threshold (two keepalives): a stall it
        // reports may be split over two of the meter's phases.
        let mut meter = super::loop_meter::LoopMeter::new(self.brain.config().timing.keepalive);
        loop {
            // Inputs a sender was still queueing (held the queue): taken
            // after a short sleep that lets it finish (inbox.rs).
            let mut inputs_held = false;
            loop {
                match self.inputs.take() {
                    Ok(Some(input)) => self.handle(input, &mut stopping),
                    Ok(None) => break,
                    Err(super::inbox::Busy) => {
                        inputs_held = true;
                        break;
                    }
                }
            }
            let now = self.now();
            if let Some(since) = stopping
                && (self.brain.has_left() || since.elapsed() > self.shutdown_limit)
            {
                self.flush();
                let _ = self.publish(self.now());
                if let Some(k) = &self.kernel_lease {
                    k.remove();
                }
                if let Some(w) = self.watchdog.take() {
                    w.disarm();
                }
                return Ok(());
            }
            if self.brain.poll_timeout().is_some_and(|d| d <= now) {
                self.brain.handle_timeout(now);
            }
            // The kernel lease first: a start about to be submitted must
            // find its addresses leased (an IPv6 announcement sent from an
            // unleased address is refused by the lease rules).
            self.sync_lease();
            let reported = self.flush();
            if reported
                || publish_pending
                || last_publish.is_none_or(|t| t.elapsed() >= PUBLISH_EVERY)
            {
                publish_pending = !self.publish(now);
                if !publish_pending {
                    last_publish = Some(Instant::now());
                }
            }
            if let Some(w) = &mut self.watchdog {
                w.pet();
            }
            let mut wait = self
                .brain
                .poll_timeout()
                .map(|d| Duration::from_nanos(d.as_nanos().saturating_sub(self.now().as_nanos())));
            if let Some(w) = &self.watchdog {
                wait = Some(wait.map_or(w.due_in(), |d| d.min(w.due_in())));
            }
            if publish_pending || inputs_held {
                wait = Some(wait.map_or(RETRY, |w| w.min(RETRY)));
            }
            // Unread datagrams: turn again at once — unless a sender holds
            // the input queue, which may need this CPU to finish: the
            // datagrams wait a millisecond in the socket then.
            if backlog.iter().any(|b| *b) && !inputs_held {
                wait = Some(Duration::ZERO);
            }
            meter.before_wait(wait);
            let polled = self.poll.poll(&mut events, wait);
            meter.after_wait();
            if let Err(e) = polled {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut changed = false;
            for ev in events.iter() {
                if let Some(b) = backlog.get_mut(ev.token().0) {
                    *b = true;
                }
            }
            for (i, link) in self.links.iter().enumerate() {
                if !std::mem::take(&mut backlog[i]) {
                    continue;
                }
                // A bounded batch per link and wake-up: under a flood of
                // datagrams (junk needs no key) timers, sends, lease
                // refreshes and the watchdog still get their turn.
                let (mut errors, mut read) = (0, 0);
                while errors < 64 {
                    if read == MAX_DATAGRAMS_PER_WAKE {
                        backlog[i] = true;
                        break;
                    }
                    match link.socket.recv_from(&mut buf) {
                        Ok((n, _from)) => {
                            read += 1;
                            let at = self.now();
                            self.brain.handle_datagram(at, link.id, &buf[..n]);
                            changed = true;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        // ICMP errors from earlier sends surface here once
                        // each; they say nothing about queued datagrams, so
                        // read on (the poller is edge-triggered).
                        Err(_) => errors += 1,
                    }
                }
            }
            // The lease a datagram renewed reaches the kernel in `flush`
            // (`Output::Lease` comes first).
            // Published at the top of the next turn, which follows at once.
            if changed && self.flush() {
                publish_pending = true;
            }
        }
    }
}
