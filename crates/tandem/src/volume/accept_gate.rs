//! Who may start a replication handshake. Anyone on the network can open a
//! TCP connection to a volume's port (the key is checked only in the
//! hello), so the listener bounds what that costs: at most
//! [`MAX_IN_FLIGHT`] handshakes at once (each has a thread and a 5 s read
//! deadline) and [`MAX_IN_FLIGHT_PER_ADDRESS`] from one address (so one
//! host holding idle connections cannot take every slot from the real
//! peer), at most [`PER_ADDRESS`] new connections per second from one
//! address (a peer that keeps reconnecting, or a flood), and refusals are
//! logged at most once per [`WARN_EVERY`] with a count — never one line per
//! connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Handshakes under way at once, at most.
pub const MAX_IN_FLIGHT: usize = 8;
/// Handshakes under way at once from one address, at most.
pub const MAX_IN_FLIGHT_PER_ADDRESS: usize = 2;
/// New connections per second from one address, at most.
pub const PER_ADDRESS: u32 = 10;
/// Refusals are summed up in one log line at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// A handshake slot: released when dropped (the handshake thread ends).
#[derive(Debug)]
pub struct Ticket([Arc<AtomicUsize>; 2]);

impl Drop for Ticket {
    fn drop(&mut self) {
        for c in &self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Counts things to log, and says when a summary line is due.
#[derive(Debug, Default)]
pub struct Summary {
    count: u64,
    last: Option<Instant>,
}

impl Summary {
    /// Counts one; returns the count to log now (and resets it) if no line
    /// was logged in the last [`WARN_EVERY`].
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < WARN_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// The listener's admission state (one per listener; pure but for the
/// shared in-flight counter).
#[derive(Debug, Default)]
pub struct Gate {
    in_flight: Arc<AtomicUsize>,
    recent: HashMap<IpAddr, (Instant, u32)>,
    per_address: HashMap<IpAddr, Arc<AtomicUsize>>,
}

impl Gate {
    /// Whether a connection from `ip` at `now` may start a handshake.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Option<Ticket> {
        // Forget addresses quiet for a second: the map stays small.
        self.recent
            .retain(|_, (since, _)| now.duration_since(*since) < Duration::from_secs(1));
        let (since, n) = self.recent.entry(ip).or_insert((now, 0));
        if now.duration_since(*since) >= Duration::from_secs(1) {
            *since = now;
            *n = 0;
        }
        if *n >= PER_ADDRESS {
            return None;
        }
        *n += 1;
        self.per_address
            .retain(|_, c| c.load(Ordering::Acquire) > 0);
        let mine = self.per_address.entry(ip).or_default().clone();
        if self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT
            || mine.load(Ordering::Acquire) >= MAX_IN_FLIGHT_PER_ADDRESS
        {
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        mine.fetch_add(1, Ordering::AcqRel);
        Some(Ticket([self.in_flight.clone(), mine]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_is_limited_per_second_and_handshakes_at_once() {
        let mut g = Gate::default();
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::from([198, 18, 0, n]);
        for _ in 0..PER_ADDRESS {
            assert!(g.admit(ip(1), t0).is_some(), "refused below the limit");
        }
        assert!(g.admit(ip(1), t0).is_none(), "over the per-address rate");
        // One address holding idle handshakes gets two slots, not all.
        let mut held: Vec<Ticket> = (0..2).filter_map(|_| g.admit(ip(2), t0)).collect();
        assert_eq!(held.len(), 2);
        assert!(g.admit(ip(2), t0).is_none(), "over the per-address slots");
        // Many addresses: capped at MAX_IN_FLIGHT together.
        let mut n = 3;
        while held.len() < MAX_IN_FLIGHT {
            held.extend(g.admit(ip(n), t0));
            n += 1;
        }
        assert!(g.admit(ip(100), t0).is_none(), "over the in-flight cap");
        held.clear();
        assert!(g.admit(ip(100), t0).is_some());
        // A second later, the first address may again.
        assert!(g.admit(ip(1), t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn refusals_are_summed_up_not_logged_one_by_one() {
        let mut s = Summary::default();
        let t0 = Instant::now();
        assert_eq!(s.note(t0), Some(1));
        for i in 1..100 {
            assert_eq!(s.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(s.note(t0 + WARN_EVERY), Some(100));
    }
}
