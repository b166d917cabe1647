//! The engine's inbox. Every thread of the volume process (FUSE and NBD
//! requests, disk workers, peer readers, the control socket) hands the
//! engine its inputs here, and whoever hands one in runs the engine itself
//! when no other thread is running it (a combining lock): the input is
//! handled on the sender's own thread, with no wake-up of an engine thread
//! on the way. On small virtual machines a wake-up costs 15–45 µs, and a
//! replicated commit used to take about ten of them (bench/README.md
//! "volumes").
//!
//! Inputs are handled one at a time, in the order they were queued (each
//! sender's own inputs in the order it sent them). A sender that finds the
//! engine busy leaves its input queued: the thread running the engine
//! looks again after letting go. The engine thread itself only keeps time
//! (timeouts, lease checks): it sleeps until the engine's next deadline and
//! is woken early when a deadline moves closer or the volume stops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering, fence};
use std::sync::mpsc::{Receiver, SendError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Input, Runner, lease};

/// What an [`Inbox`] runs: the volume's engine ([`Core`]), or a test's.
pub trait Engine: Send + 'static {
    /// What it is told.
    type Input: Send + 'static;
    /// Handles one input.
    fn handle(&mut self, input: Self::Input);
    /// Runs due timeouts and the like (on every wake-up of the engine
    /// thread).
    fn tick(&mut self);
    /// Whether it has stopped (inputs are no longer taken).
    fn stopped(&self) -> bool;
    /// How long it may sleep before its next [`Engine::tick`].
    fn wait(&self) -> Duration;
}

/// The engine and where it reads its inputs.
struct Running<E: Engine> {
    engine: E,
    inputs: Receiver<E::Input>,
}

impl<E: Engine> Running<E> {
    /// Handles every queued input; returns how many were taken.
    fn drain(&mut self) -> i64 {
        let mut n = 0;
        while !self.engine.stopped() {
            let Ok(input) = self.inputs.try_recv() else {
                break;
            };
            n += 1;
            self.engine.handle(input);
        }
        n
    }
}

struct Shared<E: Engine> {
    /// Inputs queued and not yet taken. Counted after the input is queued,
    /// so it can dip below zero for a moment.
    queued: AtomicI64,
    /// `None` until the engine starts, and again once it stopped.
    running: Mutex<Option<Running<E>>>,
    /// The engine thread (woken for an earlier deadline, or to stop).
    timer: OnceLock<std::thread::Thread>,
    /// When the engine thread means to wake, in ns after `base`.
    wake_at: AtomicU64,
    base: Instant,
}

/// Where the engine's inputs go (cloned into every thread that has any).
pub struct Inbox<E: Engine = Core> {
    tx: Sender<E::Input>,
    shared: Arc<Shared<E>>,
}

impl<E: Engine> Clone for Inbox<E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The engine thread's end of an [`Inbox`].
pub struct Timer<E: Engine = Core> {
    shared: Arc<Shared<E>>,
    inputs: Receiver<E::Input>,
}

/// A new inbox, and the engine thread's end of it.
pub fn inbox<E: Engine>() -> (Inbox<E>, Timer<E>) {
    let (tx, inputs) = std::sync::mpsc::channel();
    let shared = Arc::new(Shared {
        queued: AtomicI64::new(0),
        running: Mutex::new(None),
        timer: OnceLock::new(),
        wake_at: AtomicU64::new(0),
        base: Instant::now(),
    });
    (
        Inbox {
            tx,
            shared: shared.clone(),
        },
        Timer { shared, inputs },
    )
}

impl<E: Engine> Inbox<E> {
    /// Queues `input` and, if no other thread is running the engine,
    /// handles it (and whatever else is queued) on this thread. An error
    /// gives the input back: the engine has stopped.
    pub fn send(&self, input: E::Input) -> Result<(), SendError<E::Input>> {
        self.tx.send(input)?;
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        self.shared.pump();
        Ok(())
    }
}

impl<E: Engine> Shared<E> {
    /// Runs the engine on the calling thread while inputs are queued and
    /// nobody else runs it.
    fn pump(&self) {
        loop {
            // Pairs with the fence of a sender whose `try_lock` failed
            // while we held the lock: one of us sees the other's input.
            fence(Ordering::SeqCst);
            if self.queued.load(Ordering::SeqCst) <= 0 {
                return;
            }
            let Ok(mut guard) = self.running.try_lock() else {
                return;
            };
            let Some(running) = guard.as_mut() else {
                return;
            };
            if running.engine.stopped() {
                return;
            }
            let taken = running.drain();
            self.queued.fetch_sub(taken, Ordering::SeqCst);
            let (stop, wait) = (running.engine.stopped(), running.engine.wait());
            drop(guard);
            let due = self.nanos(Instant::now() + wait);
            if (stop || due < self.wake_at.load(Ordering::SeqCst))
                && let Some(t) = self.timer.get()
            {
                t.unpark();
            }
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl<E: Engine> Timer<E> {
    /// Runs `engine` until it stops, then hands it back; `None` if it
    /// panicked on another thread (the lock is poisoned). This thread
    /// handles what is queued when nobody else does, and the ticks.
    pub fn run(self, engine: E) -> Option<E> {
        let shared = &self.shared;
        let _ = shared.timer.set(std::thread::current());
        if let Ok(mut g) = shared.running.lock() {
            *g = Some(Running {
                engine,
                inputs: self.inputs,
            });
        }
        loop {
            let wait = {
                let Ok(mut guard) = shared.running.lock() else {
                    return None;
                };
                let running = guard.as_mut()?;
                let taken = running.drain();
                shared.queued.fetch_sub(taken, Ordering::SeqCst);
                running.engine.tick();
                if running.engine.stopped() {
                    return guard.take().map(|r| r.engine);
                }
                let wait = running.engine.wait();
                let due = shared.nanos(Instant::now() + wait);
                shared.wake_at.store(due, Ordering::SeqCst);
                wait
            };
            shared.pump();
            std::thread::park_timeout(wait.max(Duration::from_micros(50)));
        }
    }
}

/// Which peers the engine wants connections to (read by the dialers).
pub type Wants = Arc<Mutex<BTreeMap<u8, bool>>>;

/// The volume process's engine as an inbox runs it.
pub struct Core {
    /// The engine and its IO.
    pub(super) runner: Runner,
    /// Read by the dialers.
    pub(super) wants: Wants,
}

impl Engine for Core {
    type Input = Input;

    fn handle(&mut self, input: Input) {
        self.runner.handle(input);
        self.runner.step(&self.wants);
    }

    fn tick(&mut self) {
        self.runner.step(&self.wants);
    }

    fn stopped(&self) -> bool {
        self.runner.stop
    }

    fn wait(&self) -> Duration {
        self.runner.wait()
    }
}

impl Runner {
    /// How long the engine may sleep: until its next timeout, at most
    /// 200 ms (5 ms while a lapsed lease, held writes or a demotion wait).
    pub(super) fn wait(&self) -> Duration {
        let mut wait = self
            .vol
            .poll_timeout()
            .map_or(Duration::from_millis(200), |t| {
                Duration::from_nanos(t.as_nanos().saturating_sub(self.now().as_nanos()))
                    .min(Duration::from_millis(200))
            });
        if self.managed && self.lapsed_since.is_none() {
            let left = self.lease_until.saturating_sub(lease::mono_now());
            wait = wait.min(Duration::from_nanos(left));
        }
        if self.lapsed_since.is_some() || !self.held.is_empty() || self.demotion.pending() {
            wait = wait.min(Duration::from_millis(5));
        }
        wait
    }

    /// What follows every input and every wake-up: due timeouts, the
    /// lease, the engine's outputs, parked answers and a waiting demotion.
    pub(super) fn step(&mut self, wants: &std::sync::Mutex<BTreeMap<u8, bool>>) {
        let now = self.now();
        if self.vol.poll_timeout().is_some_and(|t| t <= now) {
            self.vol.handle_timeout(now);
        }
        self.check_lease();
        self.flush(wants);
        self.release_parked();
        self.retry_demotion();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// Records what it handles; stops on `u64::MAX`.
    struct Log {
        seen: Vec<(u64, u64)>,
        handled: Arc<AtomicU64>,
        ticks: Arc<AtomicU64>,
        stop: bool,
        wait: Duration,
        /// Time each input takes (so that inputs queue up behind it).
        work: Duration,
        gate: Gate,
    }

    /// Holds the engine in [`Engine::wait`]: between its last look at the
    /// queue and letting go.
    #[derive(Default)]
    struct Gate {
        entered: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        go: Mutex<Option<Receiver<()>>>,
    }

    impl Engine for Log {
        type Input = (u64, u64);
        fn handle(&mut self, (from, n): (u64, u64)) {
            if n == u64::MAX {
                self.stop = true;
            } else {
                self.seen.push((from, n));
                self.handled.fetch_add(1, Ordering::SeqCst);
                let t = Instant::now();
                while t.elapsed() < self.work {
                    std::hint::spin_loop();
                }
            }
        }
        fn tick(&mut self) {
            self.ticks.fetch_add(1, Ordering::SeqCst);
        }
        fn stopped(&self) -> bool {
            self.stop
        }
        fn wait(&self) -> Duration {
            // The first time after input (1, 0): say so, then hold the
            // engine until told to go on.
            if self.seen.first() == Some(&(1, 0)) {
                let entered = self.gate.entered.lock().ok().and_then(|mut e| e.take());
                if let Some(entered) = entered {
                    let _ = entered.send(());
                    let _ = self.gate.go.lock().map(|g| g.as_ref().map(Receiver::recv));
                }
            }
            self.wait
        }
    }

    /// Polls `done` until it holds, failing with `what` after 20 s.
    fn poll_until(done: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        }
    }

    fn log(wait: Duration) -> (Log, Arc<AtomicU64>) {
        let ticks = Arc::new(AtomicU64::new(0));
        let log = Log {
            seen: Vec::new(),
            handled: Arc::default(),
            ticks: ticks.clone(),
            stop: false,
            wait,
            work: Duration::ZERO,
            gate: Gate::default(),
        };
        (log, ticks)
    }

    #[test]
    fn every_input_is_handled_once_in_each_senders_order() {
        const SENDERS: u64 = 6;
        const EACH: u64 = 20_000;
        let (inbox, timer) = inbox::<Log>();
        // The engine thread sleeps for an hour: the senders do the work.
        let (mut engine, ticks) = log(Duration::from_secs(3600));
        engine.work = Duration::from_micros(2);
        let handled = engine.handled.clone();
        let engine = std::thread::spawn(move || timer.run(engine));
        let senders: Vec<_> = (0..SENDERS)
            .map(|from| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    for n in 0..EACH {
                        inbox.send((from, n)).expect("running");
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().expect("sender");
        }
        // Nobody sends now and the engine thread sleeps: everything must
        // have been handled already, none left queued.
        poll_until(
            || handled.load(Ordering::SeqCst) >= SENDERS * EACH,
            "an input was left queued",
        );
        inbox.send((0, u64::MAX)).expect("running");
        poll_until(|| engine.is_finished(), "the stop was left queued");
        let log = engine.join().expect("engine").expect("not poisoned");
        assert_eq!(log.seen.len() as u64, SENDERS * EACH);
        let mut next = vec![0u64; SENDERS as usize];
        for (from, n) in log.seen {
            assert_eq!(n, next[from as usize], "sender {from} out of order");
            next[from as usize] += 1;
        }
        assert!(
            ticks.load(Ordering::SeqCst) <= 3,
            "the engine thread did the work"
        );
        assert!(
            inbox.send((0, 1)).is_err(),
            "a stopped engine refuses input"
        );
    }

    #[test]
    fn the_engine_thread_ticks_on_its_deadline_and_stops_when_told() {
        let (inbox, timer) = inbox::<Log>();
        let (engine, ticks) = log(Duration::from_millis(1));
        let engine = std::thread::spawn(move || timer.run(engine));
        poll_until(
            || ticks.load(Ordering::SeqCst) >= 20,
            "the engine thread never ticked",
        );
        inbox.send((0, u64::MAX)).expect("running");
        let log = engine.join().expect("engine").expect("not poisoned");
        assert!(log.stop);
    }

    #[test]
    fn an_input_left_to_a_busy_engine_is_handled_by_its_holder() {
        let (inbox, timer) = inbox::<Log>();
        let (mut engine, ticks) = log(Duration::from_secs(3600));
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        engine.gate = Gate {
            entered: Mutex::new(Some(entered_tx)),
            go: Mutex::new(Some(go_rx)),
        };
        let handled = engine.handled.clone();
        let engine = std::thread::spawn(move || timer.run(engine));
        // Once the engine thread has had its first turn and let go, the
        // holder (almost always this thread, else the engine thread's
        // look after letting go) handles input (1, 0), then stops in
        // `wait`, holding the engine, past its last look at the queue.
        poll_until(
            || ticks.load(Ordering::SeqCst) > 0 && inbox.shared.running.try_lock().is_ok(),
            "the engine thread never started",
        );
        let holder = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.send((1, 0)).expect("running"))
        };
        entered
            .recv_timeout(Duration::from_secs(20))
            .expect("nobody ran the engine");
        // Finds the engine busy: queued, left to the holder.
        inbox.send((2, 0)).expect("running");
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        go.send(()).expect("holder waiting");
        holder.join().expect("holder");
        poll_until(
            || handled.load(Ordering::SeqCst) >= 2,
            "the input was left queued",
        );
        inbox.send((0, u64::MAX)).expect("running");
        let log = engine.join().expect("engine").expect("not poisoned");
        assert_eq!(log.seen, vec![(1, 0), (2, 0)]);
    }
}
