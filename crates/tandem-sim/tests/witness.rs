//! Two-node clusters with a witness (scenario S5): at failover, only a node
//! that reaches the witness acts alone; one that cannot waits and runs
//! nothing; if neither can, both wait until an operator forces one.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::Duration;

use tandem_core::{Command, Timestamp, Timing};
use tandem_sim::{Sim, seeds, sole_holder, two_node_app_group};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn sim(seed: u64) -> Sim {
    let mut s = Sim::with_groups(seed, 2, 1, Timing::default(), &[two_node_app_group()]);
    s.run_until(Timestamp::ZERO + ms(2000));
    s
}

#[test]
fn only_the_side_that_reaches_the_witness_takes_over() {
    for seed in seeds(100) {
        let mut s = sim(seed);
        assert_eq!(sole_holder(&s), Some(0), "seed {seed}");
        // The cable between the rooms is cut; only n2 still reaches the router.
        s.set_witness(0, false);
        s.set_witness(1, true);
        s.partition(&[0]);
        s.run_for(Duration::from_secs(2));
        assert_eq!(
            sole_holder(&s),
            Some(1),
            "seed {seed}: {:?}",
            s.running_on(0, 1)
        );
        let st = s.brain(0).unwrap().status(s.now());
        assert!(
            st.waiting.unwrap().contains("witness unreachable"),
            "seed {seed}"
        );
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
        // The cable is back: n1 resynchronises as a normal member.
        s.heal();
        s.run_for(Duration::from_secs(1));
        assert!(s.brain(0).unwrap().waiting().is_none(), "seed {seed}");
        assert_eq!(
            sole_holder(&s),
            Some(1),
            "seed {seed}: no auto-failback configured"
        );
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn when_nobody_reaches_the_witness_both_wait_until_forced() {
    for seed in seeds(50) {
        let mut s = sim(seed);
        s.set_witness(0, false);
        s.set_witness(1, false);
        // Refused while the peer is reachable.
        let e = s
            .command(1, Command::ForcePrimary { node: "n2".into() })
            .unwrap_err();
        assert!(e.contains("reachable"), "seed {seed}: {e}");
        s.partition(&[0]);
        s.run_for(Duration::from_secs(2));
        assert_eq!(
            s.running_on(0, 0),
            Vec::<usize>::new(),
            "seed {seed}: both must wait"
        );
        let e = s
            .command(1, Command::ForcePrimary { node: "n1".into() })
            .unwrap_err();
        assert!(e.contains("on n1 itself"), "seed {seed}: {e}");
        s.command(1, Command::ForcePrimary { node: "n2".into() })
            .unwrap();
        s.run_for(Duration::from_millis(200));
        assert_eq!(sole_holder(&s), Some(1), "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_crashed_holder_is_replaced_when_the_witness_answers() {
    let t = Timing::default();
    for seed in seeds(50) {
        let mut s = sim(seed);
        s.set_witness(0, true);
        s.set_witness(1, true);
        s.crash(0);
        let took = s.run_until_true(t.deadtime + ms(200), |s| sole_holder(s) == Some(1));
        assert!(took.is_some(), "seed {seed}: no takeover");
    }
}
