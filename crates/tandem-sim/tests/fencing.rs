//! Fencing, driven through the brain's one output type: when a node is
//! declared dead, its survivor fences it (the simulator plays the fence
//! agent: success powers the victim off) and starts nothing in its place
//! before the fence agent has said yes. Agents that fail or hang keep the
//! groups stopped, retried until they succeed.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::Duration;

use rand::Rng;
use tandem_core::{Event, Timestamp, Timing};
use tandem_sim::{FENCE_TIMEOUT, FenceAgent, Sim, seeds, sole_holder, two_node_app_group};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn sim(seed: u64, agent: FenceAgent) -> Sim {
    let mut s = Sim::with_groups(seed, 2, 1, Timing::default(), &[two_node_app_group()]);
    s.use_fencing(agent);
    s.run_until(Timestamp::ZERO + ms(2000));
    assert_eq!(sole_holder(&s), Some(0), "seed {seed}: n1 runs the group");
    s
}

/// Takes n1 out in one of three ways, chosen by the seed: powered off,
/// frozen, or cut off from n2 (then both sides fence, and the first agent
/// to finish wins). Returns when it happened.
fn fault(s: &mut Sim) -> Timestamp {
    let at = s.now();
    match s.rng().random_range(0..3) {
        0 => s.crash(0),
        1 => s.freeze(0),
        _ => s.partition(&[0]),
    }
    at
}

/// The one node still running, once the dust settled.
fn survivor(s: &Sim) -> usize {
    let up: Vec<usize> = (0..2).filter(|&i| s.brain(i).is_some()).collect();
    assert_eq!(up.len(), 1, "exactly one node survives fencing: {up:?}");
    up[0]
}

/// When n2 first took the group over after `since`.
fn n2_took_over(s: &Sim, since: Timestamp) -> Option<Timestamp> {
    s.events_of(1, since)
        .find(|r| matches!(r.event, Event::Acquiring { .. }))
        .map(|r| r.at)
}

#[test]
fn the_survivor_fences_first_and_starts_only_after_success() {
    for seed in seeds(100) {
        let mut s = sim(seed, FenceAgent::Succeeds);
        let at = fault(&mut s);
        s.run_for(ms(1500));
        let alive = survivor(&s);
        assert_eq!(sole_holder(&s), Some(alive), "seed {seed}");
        if alive == 1 {
            let fenced = s.fences().iter().find(|f| f.by == 1 && f.victim == 0);
            let (answered, ok) = fenced
                .and_then(|f| f.answered)
                .unwrap_or_else(|| panic!("seed {seed}: n1 was never fenced"));
            assert!(ok, "seed {seed}");
            let took = n2_took_over(&s, at).unwrap();
            assert!(
                took >= answered,
                "seed {seed}: n2 started at {took:?}, before the fence answered at {answered:?}"
            );
        }
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_failing_fence_agent_keeps_everything_stopped_and_is_retried() {
    for seed in seeds(100) {
        let mut s = sim(seed, FenceAgent::Fails);
        let at = fault(&mut s);
        s.run_for(ms(4000));
        assert_eq!(
            n2_took_over(&s, at),
            None,
            "seed {seed}: n2 started unfenced"
        );
        assert!(!s.running_on(0, 1).contains(&1), "seed {seed}");
        let tries = s.fences().iter().filter(|f| f.by == 1).count();
        assert!(tries >= 2, "seed {seed}: fencing not retried ({tries})");
        // The agent is repaired: the next try succeeds, and the survivor
        // runs the group.
        s.set_fence_agent(FenceAgent::Succeeds);
        s.run_for(ms(2000));
        assert_eq!(sole_holder(&s), Some(survivor(&s)), "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_hanging_fence_agent_keeps_everything_stopped_until_it_is_given_up() {
    for seed in seeds(50) {
        let mut s = sim(seed, FenceAgent::Hangs);
        let at = fault(&mut s);
        s.run_for(FENCE_TIMEOUT + ms(1500));
        assert_eq!(
            n2_took_over(&s, at),
            None,
            "seed {seed}: n2 started unfenced"
        );
        let given_up = s
            .fences()
            .iter()
            .filter(|f| f.by == 1 && f.answered.is_some_and(|(_, ok)| !ok))
            .count();
        assert!(given_up >= 1, "seed {seed}: the hang was never given up");
        s.set_fence_agent(FenceAgent::Succeeds);
        s.run_for(FENCE_TIMEOUT + ms(2000));
        assert_eq!(sole_holder(&s), Some(survivor(&s)), "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

/// Random faults and fence agents that change their mind: the group never
/// runs twice, and nothing starts in place of a node that was not fenced.
#[test]
fn random_faults_with_unreliable_fence_agents_never_run_a_group_twice() {
    for seed in seeds(200) {
        let mut s = sim(seed, FenceAgent::Succeeds);
        for _ in 0..15 {
            let wait = ms(s.rng().random_range(50..2000));
            let agent = match s.rng().random_range(0..4) {
                0 => FenceAgent::Fails,
                1 => FenceAgent::Hangs,
                _ => FenceAgent::Succeeds,
            };
            s.set_fence_agent(agent);
            let i = s.rng().random_range(0..2);
            match s.rng().random_range(0..6) {
                0 => s.partition(&[i]),
                1 => s.heal(),
                2 => {
                    s.freeze(i);
                    s.run_for(wait);
                    s.thaw(i);
                }
                3 if s.brain(i).is_none() => s.restart(i),
                _ => {}
            }
            s.run_for(wait);
            assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
        }
    }
}

/// Issue 12, finding 3, found by the campaign above (seed 3): a node that
/// boots cut off from its peer never hears it, declares it dead after
/// initdead, and used to start the groups without fencing it, while the
/// peer still ran them.
#[test]
fn a_node_booting_alone_fences_the_peer_it_never_heard() {
    for seed in seeds(50) {
        let mut s = sim(seed, FenceAgent::Succeeds);
        s.partition(&[1]);
        s.crash(1);
        // n1 declares n2 dead and fences it (already off) before it boots.
        s.run_for(ms(1000));
        s.restart(1);
        let booted = s.now();
        s.run_for(Timing::default().initdead + ms(1000));
        let fenced = s
            .fences()
            .iter()
            .find(|f| f.by == 1 && f.victim == 0 && f.asked >= booted)
            .and_then(|f| f.answered)
            .unwrap_or_else(|| panic!("seed {seed}: n2 never fenced the peer it never heard"));
        let took = n2_took_over(&s, booted).unwrap();
        assert!(
            took >= fenced.0,
            "seed {seed}: started before the fence answered"
        );
        assert_eq!(sole_holder(&s), Some(1), "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}
