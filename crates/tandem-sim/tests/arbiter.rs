//! Two-node clusters with an arbitrator (`tandem witness`): it gives its
//! vote to one node at a time, for a limited time. Unlike a plain witness,
//! a split where both nodes reach it still leaves one side acting: the
//! holder, which asks first. A holder that loses the arbitrator stops when
//! its vote lapses, and the other node gets the vote after that.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::Duration;

use rand::Rng;
use tandem_core::{Timestamp, Timing};
use tandem_sim::{Sim, seeds, sole_holder, two_node_app_group};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

const VOTE: Duration = Duration::from_secs(2);

fn sim(seed: u64) -> Sim {
    let mut s = Sim::with_groups(seed, 2, 1, Timing::default(), &[two_node_app_group()]);
    s.use_arbiter(VOTE);
    s.set_witness(0, true);
    s.set_witness(1, true);
    s.run_until(Timestamp::ZERO + ms(2000));
    s
}

#[test]
fn a_split_where_both_reach_the_arbiter_leaves_the_group_with_its_holder() {
    for seed in seeds(100) {
        let mut s = sim(seed);
        assert_eq!(sole_holder(&s), Some(0), "seed {seed}");
        s.partition(&[0]);
        s.run_for(ms(5000));
        assert_eq!(
            sole_holder(&s),
            Some(0),
            "seed {seed}: {:?}",
            s.running_on(0, 1)
        );
        assert_eq!(s.arbiter_holder(), Some(0), "seed {seed}");
        let w = s.brain(1).unwrap().waiting();
        assert!(
            w.as_ref().is_some_and(|w| w.contains("waiting")),
            "seed {seed}: {w:?}"
        );
        s.heal();
        s.run_for(ms(3000));
        assert_eq!(sole_holder(&s), Some(0), "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_crashed_holder_is_replaced_within_deadtime() {
    let t = Timing::default();
    for seed in seeds(50) {
        let mut s = sim(seed);
        s.crash(0);
        let took = s.run_until_true(t.deadtime + ms(200), |s| sole_holder(s) == Some(1));
        assert!(took.is_some(), "seed {seed}: no takeover");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_holder_that_loses_the_arbiter_stops_and_the_other_node_takes_over() {
    for seed in seeds(50) {
        let mut s = sim(seed);
        s.partition(&[0]);
        s.run_for(ms(2000));
        assert_eq!(sole_holder(&s), Some(0), "seed {seed}");
        // Now n1 cannot reach the arbitrator either: its renewals fail, its
        // vote lapses, it stops; n2 asks again every second and gets the
        // vote once the arbitrator's copy lapsed too.
        s.set_witness(0, false);
        let ok = s.run_until_true(ms(2 * VOTE.as_millis() as u64 + 3000), |s| {
            sole_holder(s) == Some(1)
        });
        assert!(
            ok.is_some(),
            "seed {seed}: n2 never took over: {:?}",
            s.running_on(0, 1)
        );
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
        let w = s.brain(0).unwrap().waiting();
        assert!(w.is_some(), "seed {seed}: n1 must wait");
    }
}

#[test]
fn random_splits_arbiter_outages_crashes_and_freezes_never_run_a_group_twice() {
    for seed in seeds(300) {
        let mut s = sim(seed);
        for _ in 0..25 {
            let wait = ms(s.rng().random_range(50..2500));
            let i = s.rng().random_range(0..2);
            match s.rng().random_range(0..7) {
                0 => s.partition(&[i]),
                1 => s.heal(),
                2 => {
                    let reach = s.rng().random_bool(0.6);
                    s.set_witness(i, reach);
                }
                3 => {
                    s.crash(i);
                    s.run_for(wait);
                    s.restart(i);
                }
                4 => {
                    s.freeze(i);
                    s.run_for(wait);
                    s.thaw(i);
                }
                _ => {}
            }
            s.run_for(wait);
            assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
        }
        // Everything healed: the group runs on exactly one node again.
        s.heal();
        s.set_witness(0, true);
        s.set_witness(1, true);
        let ok = s.run_until_true(ms(10_000), |s| sole_holder(s).is_some());
        assert!(
            ok.is_some(),
            "seed {seed}: nobody runs the group after healing"
        );
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_vote_no_longer_needed_is_given_back_so_the_next_failover_is_quick() {
    let t = Timing::default();
    for seed in seeds(50) {
        let mut s = sim(seed);
        // A split: n1 gets the vote and keeps the group.
        s.partition(&[0]);
        s.run_for(ms(1500));
        assert_eq!(s.arbiter_holder(), Some(0), "seed {seed}");
        // Healed: n1 gives the vote back at once.
        s.heal();
        let back = s.run_until_true(ms(1000), |s| s.arbiter_holder().is_none());
        assert!(back.is_some(), "seed {seed}: the vote was not given back");
        s.run_for(ms(200));
        // n1 crashes right after: n2 gets the vote without waiting for a lapse.
        s.crash(0);
        let took = s.run_until_true(t.deadtime + ms(200), |s| sole_holder(s) == Some(1));
        assert!(took.is_some(), "seed {seed}: no quick takeover");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}
