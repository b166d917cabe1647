//! Seeded simulation campaigns for membership and failure detection.
//!
//! Each test runs many seeds; a failure names its seed, and
//! `TANDEM_SIM_SEED=<seed> cargo test -p tandem-sim <test>` replays it.
//! `TANDEM_SIM_SEEDS=<k>` runs more seeds.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::Duration;

use rand::Rng;
use tandem_core::{Event, NodeId, PeerState, Timestamp, Timing};
use tandem_sim::{LinkModel, Sim, seeds};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn at(d: Duration) -> Timestamp {
    Timestamp::ZERO + d
}

fn name(i: usize) -> String {
    format!("n{}", i + 1)
}

/// Death events naming `node`, reported by `by`, from `since` on.
fn deaths(sim: &Sim, by: usize, node: usize, since: Timestamp) -> Vec<Timestamp> {
    sim.events_of(by, since)
        .filter(|r| matches!(&r.event, Event::Dead { node: n, .. } if *n == name(node)))
        .map(|r| r.at)
        .collect()
}

fn any_death(sim: &Sim) -> Option<String> {
    sim.log
        .iter()
        .find(|r| matches!(r.event, Event::Dead { .. }))
        .map(|r| format!("at {:?} node {}: {}", r.at, name(r.node), r.event))
}

fn jittery() -> LinkModel {
    LinkModel {
        delay_min: ms(0),
        delay_max: ms(5),
        ..LinkModel::default()
    }
}

/// A crashed node is declared dead by every survivor no later than deadtime
/// plus one keepalive after the crash, and not before the crash.
#[test]
fn crash_is_detected_within_deadtime_plus_keepalive() {
    for seed in seeds(300) {
        let n = 2 + (seed % 4) as usize;
        let timing = Timing::default();
        let mut sim = Sim::new(seed, n, 2, timing);
        for l in 0..2 {
            let loss = sim.rng().random_range(0.0..0.05);
            sim.set_link(l, LinkModel { loss, ..jittery() });
        }
        let crash_at = ms(sim.rng().random_range(1000..5000));
        let victim = sim.rng().random_range(0..n);
        sim.run_until(at(crash_at));
        assert!(
            any_death(&sim).is_none(),
            "seed {seed}: false death before the crash: {:?}",
            any_death(&sim)
        );
        sim.crash(victim);
        sim.run_for(timing.deadtime * 3);
        for s in (0..n).filter(|&s| s != victim) {
            let d = deaths(&sim, s, victim, at(crash_at));
            assert_eq!(
                d.len(),
                1,
                "seed {seed}: {} saw {} die {:?}",
                name(s),
                name(victim),
                d
            );
            let after = d[0].since(at(crash_at));
            assert!(
                after <= timing.deadtime + timing.keepalive,
                "seed {seed}: {} declared {} dead {after:?} after the crash",
                name(s),
                name(victim)
            );
            assert_eq!(
                sim.brain(s).unwrap().peer_state(NodeId(victim as u16 + 1)),
                Some(PeerState::Dead)
            );
        }
    }
}

/// With loss a configuration tolerates (10 % on each of two links, or 50 %
/// on one link with the other clean), plus duplication and reordering, no
/// node is ever declared dead.
#[test]
fn tolerated_loss_duplication_and_reordering_cause_no_false_death() {
    for seed in seeds(150) {
        let n = 2 + (seed % 3) as usize;
        let mut sim = Sim::new(seed, n, 2, Timing::default());
        let base = LinkModel {
            duplicate: 0.1,
            delay_min: ms(0),
            delay_max: ms(60),
            ..LinkModel::default()
        };
        if seed % 2 == 0 {
            sim.set_link(0, LinkModel { loss: 0.10, ..base });
            sim.set_link(1, LinkModel { loss: 0.10, ..base });
        } else {
            sim.set_link(0, LinkModel { loss: 0.50, ..base });
            sim.set_link(1, base);
        }
        sim.run_until(at(Duration::from_secs(30)));
        assert!(
            any_death(&sim).is_none(),
            "seed {seed}: {:?}",
            any_death(&sim)
        );
        for i in 0..n {
            let b = sim.brain(i).unwrap();
            assert_eq!(
                b.members().len(),
                n,
                "seed {seed}: {} members {:?}",
                name(i),
                b.members()
            );
            assert!(
                b.stats().replayed > 0,
                "seed {seed}: duplicates were not recognised"
            );
            assert_eq!(b.stats().bad_mac + b.stats().malformed, 0);
        }
    }
}

/// After a partition heals, every node sees every node again within two
/// keepalives plus the network delay, and views agree.
#[test]
fn membership_converges_after_partition_heals() {
    for seed in seeds(200) {
        let n = 3 + (seed % 3) as usize;
        let timing = Timing::default();
        let mut sim = Sim::new(seed, n, 1, timing);
        sim.set_link(0, jittery());
        sim.run_until(at(ms(1000)));
        let k = sim.rng().random_range(1..n);
        let side: Vec<usize> = (0..k).collect();
        // Symmetric or, one seed in three, one-way.
        if seed % 3 == 0 {
            for &a in &side {
                for b in k..n {
                    sim.block(b, a);
                }
            }
        } else {
            sim.partition(&side);
        }
        let cut = sim.now();
        let apart = ms(sim.rng().random_range(800..4000));
        sim.run_for(apart);
        // Every node that stopped hearing another declared it dead.
        for a in &side {
            for b in k..n {
                assert_eq!(
                    deaths(&sim, *a, b, cut).len(),
                    1,
                    "seed {seed}: {} never saw {} die",
                    name(*a),
                    name(b)
                );
            }
        }
        sim.heal();
        let healed = sim.now();
        sim.run_for(timing.keepalive * 2 + ms(10));
        for i in 0..n {
            let b = sim.brain(i).unwrap();
            assert_eq!(
                b.members().len(),
                n,
                "seed {seed}: {} sees {:?} {:?} after heal at {healed:?}",
                name(i),
                b.members(),
                sim.now()
            );
        }
        // Views agree: each node's heartbeat view lists everyone as up.
        sim.run_for(timing.keepalive * 2);
        let view0 = sim.brain(0).unwrap().status(sim.now());
        for node in &view0.nodes {
            assert_eq!(
                node.sees.len(),
                n,
                "seed {seed}: {} reports {:?}",
                node.name,
                node.sees
            );
        }
    }
}

/// A node frozen for longer than deadtime is declared dead by the others;
/// on resuming it reports the time it lost, does not declare its peers dead
/// (their heartbeats were waiting in its socket), and is seen back at once.
#[test]
fn frozen_node_sees_the_time_it_lost() {
    for seed in seeds(200) {
        let n = 2 + (seed % 3) as usize;
        let timing = Timing::default();
        let mut sim = Sim::new(seed, n, 2, timing);
        sim.set_link(0, jittery());
        sim.set_link(1, jittery());
        let start = ms(sim.rng().random_range(1000..3000));
        sim.run_until(at(start));
        let victim = sim.rng().random_range(0..n);
        let freeze = ms(sim.rng().random_range(1200..6000));
        let frozen_at = sim.now();
        sim.freeze(victim);
        sim.run_for(freeze);
        sim.thaw(victim);
        let thawed = sim.now();
        sim.run_for(timing.keepalive * 3);
        let stalls: Vec<Duration> = sim
            .events_of(victim, thawed)
            .filter_map(|r| match r.event {
                Event::Stalled { gap } => Some(gap),
                _ => None,
            })
            .collect();
        assert_eq!(stalls.len(), 1, "seed {seed}: stalls {stalls:?}");
        assert!(
            stalls[0] >= freeze && stalls[0] <= freeze + timing.keepalive,
            "seed {seed}: frozen {freeze:?}, reported {:?}",
            stalls[0]
        );
        assert!(
            sim.events_of(victim, frozen_at)
                .all(|r| !matches!(r.event, Event::Dead { .. })),
            "seed {seed}: the thawed node declared a peer dead"
        );
        for s in (0..n).filter(|&s| s != victim) {
            assert_eq!(deaths(&sim, s, victim, frozen_at).len(), 1, "seed {seed}");
            let back = sim
                .events_of(s, thawed)
                .find(|r| matches!(&r.event, Event::Back { node, .. } if *node == name(victim)));
            let back = back.unwrap_or_else(|| {
                panic!("seed {seed}: {} never saw {} back", name(s), name(victim))
            });
            assert!(
                back.at.since(thawed) <= timing.keepalive + ms(10),
                "seed {seed}: back after {:?}",
                back.at.since(thawed)
            );
        }
    }
}

/// A crashed node that restarts is recognised by its new incarnation, and
/// packets of its old incarnation are refused.
#[test]
fn restart_is_recognised_by_incarnation() {
    for seed in seeds(100) {
        let timing = Timing::default();
        let mut sim = Sim::new(seed, 3, 1, timing);
        sim.set_link(0, jittery());
        sim.run_until(at(ms(1500)));
        let victim = (seed % 3) as usize;
        let old = sim.brain(victim).unwrap().config().incarnation;
        sim.crash(victim);
        // Restart before or after the others noticed.
        let down = ms(sim.rng().random_range(50..1500));
        sim.run_for(down);
        let restarted = sim.now();
        sim.restart(victim);
        sim.run_for(ms(500));
        for s in (0..3).filter(|&s| s != victim) {
            let b = sim.brain(s).unwrap();
            assert_eq!(
                b.peer_state(NodeId(victim as u16 + 1)),
                Some(PeerState::Online),
                "seed {seed}"
            );
            assert_eq!(
                b.peer_incarnation(NodeId(victim as u16 + 1)),
                Some(old + 1),
                "seed {seed}"
            );
            let saw = sim.events_of(s, restarted).any(|r| {
                matches!(&r.event, Event::Restarted { node, .. } | Event::Back { node, .. } if *node == name(victim))
            });
            assert!(
                saw,
                "seed {seed}: restart of {} not reported by {}",
                name(victim),
                name(s)
            );
        }
    }
}

/// One link cut for good: nodes stay members over the other link; the cut
/// link is reported dead for every peer.
#[test]
fn a_cut_link_is_not_a_dead_node() {
    for seed in seeds(100) {
        let n = 2 + (seed % 3) as usize;
        let mut sim = Sim::new(seed, n, 2, Timing::default());
        sim.set_link(0, jittery());
        sim.set_link(1, jittery());
        sim.run_until(at(ms(1000)));
        let cut = (seed % 2) as usize;
        sim.set_link(
            cut,
            LinkModel {
                up: false,
                ..jittery()
            },
        );
        sim.run_for(Duration::from_secs(5));
        assert!(
            any_death(&sim).is_none(),
            "seed {seed}: {:?}",
            any_death(&sim)
        );
        let dead_links = sim
            .log
            .iter()
            .filter(|r| matches!(&r.event, Event::LinkDead { link, .. } if *link == format!("eth{cut}")))
            .count();
        assert_eq!(dead_links, n * (n - 1), "seed {seed}");
    }
}

/// The same seed gives the same run, event for event.
#[test]
fn runs_are_reproducible() {
    let run = |seed| {
        let mut sim = Sim::new(seed, 3, 2, Timing::default());
        sim.set_link(
            0,
            LinkModel {
                loss: 0.3,
                duplicate: 0.2,
                ..jittery()
            },
        );
        sim.run_until(at(ms(2000)));
        sim.crash(1);
        sim.run_for(ms(2000));
        (sim.log.clone(), sim.delivered, sim.dropped)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).1, run(8).1);
}
