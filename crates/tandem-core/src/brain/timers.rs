//! The brain's timer table: one deadline per kind of timer, each armed by
//! the module that owns it (quinn-proto's `TimerTable` is the model).
//!
//! After every input the brain re-arms the table ([`Brain::arm_timers`]);
//! [`Brain::poll_timeout`] is the earliest armed deadline. Which timer
//! fires matters only for the statistics: [`Brain::handle_timeout`] runs
//! every concept's expiry at once.

use super::Brain;
use crate::time::Timestamp;

/// A kind of deadline the brain waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// The next heartbeat to send (module `heartbeats`).
    Heartbeat,
    /// A peer or one of its links turns late or dead (module `heartbeats`).
    PeerSilence,
    /// An operator's timed move expires (module `commands`).
    Settings,
    /// The arbitrator's vote ends, is renewed, or is asked for again
    /// (module `witness`).
    Witness,
    /// A failed fence is retried (module `fencing`).
    FenceRetry,
    /// A started resource's next monitor (module `reconcile`).
    Monitor,
    /// A resource's fail count expires (module `reconcile`).
    FailureExpiry,
}

impl Timer {
    /// Every kind, in table order.
    pub(super) const ALL: [Timer; 7] = [
        Timer::Heartbeat,
        Timer::PeerSilence,
        Timer::Settings,
        Timer::Witness,
        Timer::FenceRetry,
        Timer::Monitor,
        Timer::FailureExpiry,
    ];
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TimerTable {
    deadlines: [Option<Timestamp>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms `timer` at `at`, or disarms it (`None`).
    pub(super) fn set(&mut self, timer: Timer, at: Option<Timestamp>) {
        self.deadlines[timer as usize] = at;
    }

    /// The deadline of `timer`, if armed.
    pub(super) fn get(&self, timer: Timer) -> Option<Timestamp> {
        self.deadlines[timer as usize]
    }

    /// The earliest armed timer and its deadline.
    pub(super) fn next(&self) -> Option<(Timer, Timestamp)> {
        Timer::ALL
            .iter()
            .zip(self.deadlines)
            .filter_map(|(t, d)| Some((*t, d?)))
            .min_by_key(|&(_, d)| d)
    }
}

/// The earlier of two optional deadlines.
pub(super) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Brain {
    /// Re-arms every timer from the state of the module that owns it. Called
    /// at the end of every input.
    pub(super) fn arm_timers(&mut self) {
        let due = self.due_timers();
        for t in Timer::ALL {
            if due.get(t) != self.timers.get(t) {
                self.timers_armed_at[t as usize] = self.last_now;
            }
        }
        self.timers = due;
    }

    /// How late `now` is for the earliest deadline, if it is due: none
    /// when that deadline was already past when armed (a monitor that
    /// waited for another of its group's), which is no lateness of the
    /// driver's.
    pub(super) fn timer_lateness(&self, now: Timestamp) -> Option<std::time::Duration> {
        let (timer, due) = self.timers.next()?;
        (now >= due && due > self.timers_armed_at[timer as usize]).then(|| now.since(due))
    }

    /// Every deadline, as the owning modules see them now.
    fn due_timers(&self) -> TimerTable {
        let mut t = TimerTable::default();
        t.set(Timer::Heartbeat, self.heartbeat_deadline());
        t.set(Timer::PeerSilence, self.silence_deadline());
        t.set(Timer::Settings, self.settings.next_expiry());
        t.set(Timer::Witness, self.witness_deadline());
        t.set(Timer::FenceRetry, self.fence_retry_deadline());
        t.set(Timer::Monitor, self.monitor_deadline());
        t.set(Timer::FailureExpiry, self.failure_expiry_deadline());
        t
    }

    /// The next instant at which [`Brain::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        // Every input re-arms the table; tests and simulations (debug
        // builds) check that no state change went past it.
        debug_assert_eq!(self.timers, self.due_timers(), "timer table not re-armed");
        self.timers.next().map(|(_, at)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_armed_timer_wins_and_disarmed_ones_do_not_count() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Monitor, Some(Timestamp::from_nanos(50)));
        t.set(Timer::Heartbeat, Some(Timestamp::from_nanos(70)));
        assert_eq!(t.next(), Some((Timer::Monitor, Timestamp::from_nanos(50))));
        t.set(Timer::Monitor, None);
        assert_eq!(
            t.next(),
            Some((Timer::Heartbeat, Timestamp::from_nanos(70)))
        );
        assert_eq!(
            earliest(None, Some(Timestamp::from_nanos(3))),
            Some(Timestamp::from_nanos(3))
        );
    }
}
