//! Leases: a holder serves its groups' addresses only under a lease it
//! renews while it may hold them; a daemon frozen past its lease goes silent
//! by itself (the kernel drops the traffic) and, on resuming, releases
//! everything first. Invariant: no two nodes serve a group with valid
//! leases at the same time.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::Duration;

use rand::Rng;
use tandem_core::{
    Event, GroupSpec, NodeId, PlacementRules, Quorum, ResourceSpec, Timestamp, Timing,
};
use tandem_sim::{LinkModel, Sim, seeds};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn sim(seed: u64, n: usize) -> Sim {
    sim_afb(seed, n, true)
}

fn sim_afb(seed: u64, n: usize, auto_failback: bool) -> Sim {
    sim_timed(seed, n, auto_failback, Timing::default(), ms(3))
}

fn sim_timed(seed: u64, n: usize, auto_failback: bool, t: Timing, delay_max: Duration) -> Sim {
    sim_lossy(seed, n, auto_failback, t, delay_max, 0.02)
}

fn sim_lossy(
    seed: u64,
    n: usize,
    auto_failback: bool,
    t: Timing,
    delay_max: Duration,
    loss: f64,
) -> Sim {
    let r = |name: &str| ResourceSpec {
        name: name.into(),
        start_timeout: ms(5000),
        stop_timeout: ms(5000),
        monitor_interval: Some(ms(1000)),
        monitor_timeout: ms(1000),
    };
    let g = GroupSpec {
        name: "web".into(),
        resources: vec![r("vip"), r("httpd")],
        rules: PlacementRules {
            scores: vec![(NodeId(1), 100)],
            stickiness: 0,
            auto_failback,
        },
        migration_threshold: 3,
        failure_timeout: None,
        volumes: Vec::new(),
    };
    let q = Quorum {
        enabled: n >= 3,
        votes: vec![],
        no_quorum: tandem_core::NoQuorumPolicy::Stop,
        wait_for_all: true,
    };
    let mut s = Sim::with_quorum(seed, n, 2, t, &[g], q);
    for l in 0..2 {
        s.set_link(
            l,
            LinkModel {
                loss,
                delay_min: ms(0),
                delay_max,
                ..LinkModel::default()
            },
        );
    }
    s.run_until(Timestamp::ZERO + ms(2000));
    s
}

#[test]
fn the_lease_is_renewed_without_gaps_in_steady_state() {
    for seed in seeds(30) {
        let mut s = sim(seed, 2 + (seed % 2) as usize);
        for _ in 0..5000 {
            s.run_for(ms(1));
            let until = s.brain(0).unwrap().lease_until();
            assert!(
                until.is_some_and(|u| u > s.now()),
                "seed {seed}: lease gap at {:?}",
                s.now()
            );
        }
    }
}

#[test]
fn a_daemon_frozen_past_its_lease_goes_silent_then_releases_everything() {
    let t = Timing::default();
    for seed in seeds(100) {
        let n = 2 + (seed % 2) as usize;
        let mut s = sim(seed, n);
        assert_eq!(s.running_on(0, 0), vec![0], "seed {seed}");
        let freeze = t.deadtime * 3 + ms(s.rng().random_range(0..500));
        let frozen_at = s.now();
        s.freeze(0);
        s.run_for(freeze);
        // Someone else serves now, and n1's lease ran out long ago.
        assert!(
            s.brain(0).unwrap().lease_until().unwrap() < s.now(),
            "seed {seed}"
        );
        let others: Vec<usize> = s.running_on(0, 1).into_iter().filter(|&i| i != 0).collect();
        assert_eq!(others.len(), 1, "seed {seed}: {:?}", s.running_on(0, 1));
        s.thaw(0);
        s.run_for(ms(300));
        let lost = s
            .events_of(0, frozen_at)
            .any(|r| matches!(r.event, Event::LeaseLost { .. }));
        assert!(lost, "seed {seed}: no LeaseLost after the thaw");
        // It released first; with auto-failback the group may come back to
        // it later, through the normal stop-before-start protocol.
        s.run_for(ms(2000));
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

/// Without auto-failback the group settles on the survivor at once: the
/// thawed node does not attract it back while it releases.
#[test]
fn after_a_freeze_the_group_settles_on_the_survivor() {
    for seed in seeds(50) {
        let mut s = sim_afb(seed, 2, false);
        s.freeze(0);
        s.run_for(ms(1500));
        s.thaw(0);
        s.run_for(ms(3000));
        assert_eq!(s.running_on(0, 0), vec![1], "seed {seed}");
        assert_eq!(s.running_on(0, 1), vec![1], "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

/// Runs `s` for `steps` ms, checking node `i`'s lease every ms: it never
/// lapses; returns the least it had left.
fn lowest_lease(s: &mut Sim, i: usize, steps: usize, what: &str) -> Duration {
    let mut lowest = Duration::MAX;
    for _ in 0..steps {
        s.run_for(ms(1));
        let until = s.brain(i).unwrap().lease_until();
        assert!(
            until.is_some_and(|u| u > s.now()),
            "{what}: lease gap at {:?}",
            s.now()
        );
        lowest = lowest.min(until.unwrap().since(s.now()));
    }
    lowest
}

fn lease_lost_since(s: &Sim, i: usize, since: Timestamp) -> bool {
    s.events_of(i, since)
        .any(|r| matches!(r.event, Event::LeaseLost { .. }))
}

/// Issue 17: at the fast timings the lease used to last 15 ms and lapse
/// between refreshes (one 4 ms kernel tick, a late refresh). Sized from the
/// takeover bound and renewed by peers' immediate answers, it never lapses
/// in steady state: on a clean network it always has more than a refresh
/// period and a tick left (the kernel's copy, one 4 ms tick shorter, may
/// end a tick early); with 2 % loss on each link it still never lapses.
#[test]
fn at_fast_timings_the_lease_never_runs_low_in_steady_state() {
    let t = Timing::fast();
    for seed in seeds(30) {
        for loss in [0.0, 0.02] {
            let n = 2 + (seed % 2) as usize;
            let mut s = sim_lossy(seed, n, true, t, ms(1), loss);
            let from = s.now();
            let lowest = lowest_lease(&mut s, 0, 3000, &format!("seed {seed}, loss {loss}"));
            // 24.5 ms from the last acknowledged heartbeat, which is at most
            // a keepalive and two 1 ms transits old without loss.
            if loss == 0.0 {
                assert!(
                    lowest >= ms(12),
                    "seed {seed}: only {lowest:?} left at worst"
                );
            }
            assert!(!lease_lost_since(&s, 0, from), "seed {seed}");
            assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
        }
    }
}

/// A scheduling hiccup shorter than what the lease has left at worst (a
/// VM's vCPU descheduled for 10 ms at the fast timings, where the lease has
/// 12 ms left just before an answer) is not a freeze: the lease is still
/// valid when the daemon runs again, so it releases nothing.
#[test]
fn a_hiccup_shorter_than_the_takeover_bound_releases_nothing() {
    let t = Timing::fast();
    for seed in seeds(100) {
        let mut s = sim_timed(seed, 2, true, t, ms(1));
        assert_eq!(s.running_on(0, 0), vec![0], "seed {seed}");
        let from = s.now();
        for _ in 0..5 {
            let gap = ms(s.rng().random_range(1..30));
            s.run_for(gap);
            let hiccup = ms(s.rng().random_range(1..=10));
            s.freeze(0);
            s.run_for(hiccup);
            s.thaw(0);
        }
        s.run_for(ms(200));
        assert!(!lease_lost_since(&s, 0, from), "seed {seed}");
        assert_eq!(s.running_on(0, 0), vec![0], "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

/// The longer lease is still safe: frozen past deadtime at the fast
/// timings, the holder's lease has lapsed before any peer starts the group
/// (checked by the simulator at every step), and it releases on thawing.
#[test]
fn at_fast_timings_a_frozen_holder_lapses_before_a_peer_starts() {
    let t = Timing::fast();
    for seed in seeds(100) {
        let n = 2 + (seed % 2) as usize;
        let mut s = sim_timed(seed, n, true, t, ms(1));
        assert_eq!(s.running_on(0, 0), vec![0], "seed {seed}");
        let frozen_at = s.now();
        s.freeze(0);
        let extra = ms(s.rng().random_range(0..200));
        s.run_for(t.deadtime * 2 + ms(100) + extra);
        let others: Vec<usize> = s.running_on(0, 1).into_iter().filter(|&i| i != 0).collect();
        assert_eq!(others.len(), 1, "seed {seed}: {:?}", s.running_on(0, 1));
        s.thaw(0);
        s.run_for(ms(100));
        assert!(lease_lost_since(&s, 0, frozen_at), "seed {seed}");
        s.run_for(ms(1000));
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

/// Immediate answers cost no extra packets where nothing is held: the
/// standby's answer stands in for its periodic heartbeat, so at 100
/// heartbeats a second it still sends 100 a second per link; the holder
/// sends its own 100.
#[test]
fn answers_keep_one_heartbeat_per_keepalive() {
    let t = Timing::fast();
    for seed in seeds(10) {
        let mut s = sim_lossy(seed, 2, true, t, ms(1), 0.0);
        assert_eq!(s.running_on(0, 0), vec![0], "seed {seed}");
        let sent = |s: &Sim, i: usize| s.brain(i).unwrap().stats().sent;
        let before = [sent(&s, 0), sent(&s, 1)];
        s.run_for(ms(1000));
        // Two links: 200 packets a second each, give or take one round.
        for (i, b) in before.into_iter().enumerate() {
            let n = sent(&s, i) - b;
            assert!((196..=204).contains(&n), "seed {seed}: node {i} sent {n}");
        }
    }
}

/// Alone after a failover no peer acknowledges anything, so the lease
/// counts from the heartbeat before the last one sent; the survivor then
/// sends every keepalive/2, and at the fast preset its lease never has
/// less than 14 ms left (the kernel's copy, a tick shorter and possibly a
/// tick early, stays alive). Seen failing with sends every keepalive: 4.5
/// ms left, and the lab client saw timeouts on the survivor.
#[test]
fn alone_after_a_failover_the_lease_stays_ahead() {
    let t = Timing::fast();
    for seed in seeds(30) {
        let mut s = sim_lossy(seed, 2, true, t, ms(1), 0.0);
        assert_eq!(s.running_on(0, 0), vec![0], "seed {seed}");
        s.crash(0);
        s.run_for(ms(300));
        assert_eq!(s.running_on(0, 1), vec![1], "seed {seed}");
        let lowest = lowest_lease(&mut s, 1, 2000, &format!("seed {seed}"));
        assert!(
            lowest >= ms(14),
            "seed {seed}: only {lowest:?} left at worst"
        );
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}
