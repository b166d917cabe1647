//! DRBD's dynamic resync controller (`c-plan-ahead`, `c-fill-target`,
//! `c-delay-target`, `c-max-rate`; replication.md §1.11), on the sync
//! source. Every [`INTERVAL`] it decides how many KiB the resync may read
//! and send in the next one: what the target acknowledged in the last
//! interval, plus a correction towards the amount it wants in flight —
//! `fill_target`, or, with no fill target, what the link carried in
//! `delay_target` at the measured rate (so the resync keeps a bounded queue
//! on the link and application writes behind it wait about that long) —
//! spread over `plan_ahead`, never more than `max_rate`.

use std::collections::VecDeque;
use std::time::Duration;

use tandem_core::Timestamp;

/// The controller's settings (a volume's `c_*` keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// How far ahead a correction is spread (DRBD's default 2 s).
    pub plan_ahead: Duration,
    /// KiB to keep in flight; 0: use `delay_target`.
    pub fill_target_kib: u64,
    /// With no fill target: keep what the link carries in this long in
    /// flight.
    pub delay_target: Duration,
    /// Never faster than this many KiB/s (`None`: unlimited).
    pub max_rate_kib: Option<u64>,
}

/// The step of the controller (DRBD's `RS_MAKE_REQS_INTV`).
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The rate a resync starts at before anything was measured, KiB/s.
const START_RATE_KIB: i64 = 1024;

/// A controller's state for one resync.
#[derive(Clone, Debug, Default)]
pub(super) struct Controller {
    /// Corrections planned for the coming steps (KiB).
    plan: VecDeque<i64>,
    plan_total: i64,
    /// KiB acknowledged since the last step.
    acked_kib: u64,
    /// KiB this step may still read, and all it could at its start.
    budget_kib: i64,
    step_kib: i64,
    /// When the next step runs (`None`: not started).
    next_step: Option<Timestamp>,
}

impl Controller {
    /// The target acknowledged `kib` more.
    pub(super) fn acked(&mut self, kib: u64) {
        self.acked_kib += kib;
    }

    /// When the next step is due, once started.
    pub(super) fn next_step(&self) -> Option<Timestamp> {
        self.next_step
    }

    /// Runs the step if due at `now` (`in_flight_kib` sent and not
    /// acknowledged). If anything more may be read in this step, takes up
    /// to `kib` (whole 4 KiB blocks, at least one) from the budget and
    /// returns how much, with its share of the interval (the step's budget
    /// goes out evenly, not in one burst).
    pub(super) fn take(
        &mut self,
        cfg: &ControllerConfig,
        now: Timestamp,
        in_flight_kib: u64,
        kib: u64,
    ) -> Option<(u64, Duration)> {
        if self.next_step.is_none_or(|t| now >= t) {
            self.step(cfg, now, in_flight_kib);
        }
        if self.budget_kib <= 0 {
            return None;
        }
        // At most what is left of the step's budget and an eighth of the
        // step (a step's budget goes out in pieces spread over it, so one
        // big request never queues a step's worth at once), in whole
        // blocks, one at least.
        let left = u64::try_from(self.budget_kib).unwrap_or(0) / 4 * 4;
        let piece = u64::try_from(self.step_kib / 8).unwrap_or(0) / 4 * 4;
        let kib = kib.min(left).min(piece).max(4.min(kib));
        self.budget_kib -= kib as i64;
        let share = kib as u128 * INTERVAL.as_nanos() / self.step_kib.max(1) as u128;
        Some((
            kib,
            Duration::from_nanos(u64::try_from(share).unwrap_or(u64::MAX)),
        ))
    }

    fn step(&mut self, cfg: &ControllerConfig, now: Timestamp, in_flight_kib: u64) {
        let steps = (cfg.plan_ahead.as_nanos() / INTERVAL.as_nanos()).max(1) as usize;
        let started = self.next_step.is_some();
        if self.plan.len() != steps {
            self.plan = std::iter::repeat_n(0, steps).collect();
            self.plan_total = 0;
        }
        let acked = self.acked_kib as i64;
        let interval_s = INTERVAL.as_secs_f64();
        let want = if !started {
            // DRBD starts as if at a rate, over the whole plan.
            (START_RATE_KIB as f64 * interval_s) as i64 * steps as i64
        } else if cfg.fill_target_kib > 0 {
            cfg.fill_target_kib as i64
        } else {
            // What arrived per interval, kept in flight for delay_target.
            (acked as f64 * cfg.delay_target.as_secs_f64() / interval_s) as i64
        };
        let correction = want - in_flight_kib as i64 - self.plan_total;
        let per_step = correction / steps as i64;
        for c in self.plan.iter_mut() {
            *c += per_step;
        }
        self.plan_total += per_step * steps as i64;
        let now_corr = self.plan.pop_front().unwrap_or(0);
        self.plan.push_back(0);
        self.plan_total -= now_corr;
        let mut req = (acked + now_corr).max(0);
        if let Some(max) = cfg.max_rate_kib {
            req = req.min((max as f64 * interval_s) as i64);
        }
        // Something always moves: one block per step at least.
        self.budget_kib = req.max(4);
        self.step_kib = self.budget_kib;
        self.acked_kib = 0;
        self.next_step = Some(now + INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link carrying `link_kib_per_step` KiB per step; the resync sends
    /// whatever the controller allows. Returns the KiB sent after the
    /// first 6 s (once settled) and the longest queue on the link then.
    fn run(cfg: ControllerConfig, link_kib_per_step: u64, steps: u64) -> (u64, u64) {
        let mut c = Controller::default();
        let mut queue: u64 = 0;
        let mut sent_total = 0;
        let mut max_queue = 0;
        for k in 0..steps {
            let now = Timestamp::ZERO + INTERVAL * k as u32;
            // The link drains a step's worth; the target acknowledges it.
            let drained = queue.min(link_kib_per_step);
            queue -= drained;
            c.acked(drained);
            // What waits on the link when this step's sending begins.
            if k >= 60 {
                max_queue = max_queue.max(queue);
            }
            while c.take(&cfg, now, queue, 4).is_some() {
                queue += 4;
                if k >= 60 {
                    sent_total += 4;
                }
            }
        }
        (sent_total, max_queue)
    }

    #[test]
    fn the_delay_target_keeps_the_queue_short_at_the_links_rate() {
        // 10 MiB/s: 1024 KiB per step; 20 ms of delay target ≈ 205 KiB.
        let cfg = ControllerConfig {
            plan_ahead: Duration::from_secs(2),
            fill_target_kib: 0,
            delay_target: Duration::from_millis(20),
            max_rate_kib: None,
        };
        let (sent, queue) = run(cfg, 1024, 200);
        assert!(sent >= 140 * 1024 * 9 / 10, "sent {sent} KiB in 14 s");
        // Once settled, the backlog stays near the target (205 KiB),
        // never the seconds' worth a fixed window can pile up.
        assert!(queue <= 400, "backlog {queue} KiB");
    }

    #[test]
    fn the_max_rate_caps_every_step() {
        let cfg = ControllerConfig {
            plan_ahead: Duration::from_secs(2),
            fill_target_kib: 4096,
            delay_target: Duration::ZERO,
            max_rate_kib: Some(1024),
        };
        let (sent, _) = run(cfg, 100_000, 110);
        assert!(sent <= 50 * 104, "sent {sent} KiB in 5 s at most 1 MiB/s");
        assert!(sent >= 45 * 100, "sent only {sent} KiB");
    }
}
