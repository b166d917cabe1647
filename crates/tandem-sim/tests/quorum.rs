//! Seeded campaigns for quorum (3 and 5 nodes): partitions symmetric and
//! asymmetric, one-way faults, crashes, loss. Invariant, checked by the
//! simulator at every start: no resource runs on two nodes. Liveness: a
//! crash of the active node with a majority left moves the group within
//! deadtime plus start time. Replay a seed with `TANDEM_SIM_SEED=<seed>`.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::Duration;

use rand::Rng;
use tandem_core::{GroupSpec, NodeId, PlacementRules, Quorum, ResourceSpec, Timestamp, Timing};
use tandem_sim::{LinkModel, Sim, seeds};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn group() -> GroupSpec {
    let r = |n: &str| ResourceSpec {
        name: n.into(),
        start_timeout: ms(5000),
        stop_timeout: ms(5000),
        monitor_interval: Some(ms(1000)),
        monitor_timeout: ms(1000),
    };
    GroupSpec {
        name: "db".into(),
        resources: vec![r("vip"), r("db")],
        rules: PlacementRules {
            scores: vec![(NodeId(1), 100)],
            stickiness: 50,
            auto_failback: true,
        },
        migration_threshold: 3,
        failure_timeout: None,
        volumes: Vec::new(),
    }
}

fn sim(seed: u64, n: usize, loss: f64) -> Sim {
    let q = Quorum {
        enabled: true,
        votes: vec![],
        no_quorum: tandem_core::NoQuorumPolicy::Stop,
        wait_for_all: true,
    };
    let mut s = Sim::with_quorum(seed, n, 2, Timing::default(), &[group()], q);
    for l in 0..2 {
        s.set_link(
            l,
            LinkModel {
                loss,
                delay_min: ms(0),
                delay_max: ms(3),
                ..LinkModel::default()
            },
        );
    }
    s
}

fn holder(s: &Sim) -> Option<usize> {
    let on = s.running_on(0, 1);
    (on.len() == 1 && s.running_on(0, 0) == on).then(|| on[0])
}

fn until(s: &mut Sim, limit: Duration, pred: impl Fn(&Sim) -> bool) -> Option<Duration> {
    s.run_until_true(limit, pred)
}

#[test]
fn a_minority_holder_stops_before_the_majority_starts() {
    let t = Timing::default();
    for seed in seeds(100) {
        let n = if seed % 2 == 0 { 3 } else { 5 };
        let mut s = sim(seed, n, 0.0);
        s.run_until(Timestamp::ZERO + ms(2000));
        assert_eq!(holder(&s), Some(0), "seed {seed}");
        // n1 (the holder) is cut off with fewer than half the nodes.
        let minority: Vec<usize> = (0..n / 2).collect();
        s.partition(&minority);
        let took = until(&mut s, Duration::from_secs(3), |s| {
            holder(s).is_some_and(|h| h >= n / 2)
        })
        .unwrap_or_else(|| panic!("seed {seed}: majority never took over"));
        assert!(
            took <= t.deadtime + t.keepalive + ms(100),
            "seed {seed}: {took:?}"
        );
        let st = s.brain(0).unwrap().status(s.now());
        assert!(!st.quorum.unwrap().quorate, "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
        // Heal: the preferred node gets it back, stop before start.
        s.heal();
        until(&mut s, Duration::from_secs(5), |s| holder(s) == Some(0))
            .unwrap_or_else(|| panic!("seed {seed}: no failback after heal"));
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn an_asymmetric_partition_never_makes_two_holders() {
    for seed in seeds(100) {
        let mut s = sim(seed, 3, 0.0);
        s.run_until(Timestamp::ZERO + ms(2000));
        assert_eq!(holder(&s), Some(0), "seed {seed}");
        // n1 and n3 stop hearing each other; n2 hears both: each of n1 and
        // n3 sees a "majority" of two, but n2 grants the group to one only.
        s.block(0, 2);
        s.block(2, 0);
        s.run_for(Duration::from_secs(3));
        assert_eq!(holder(&s), Some(0), "seed {seed}: {:?}", s.running_on(0, 1));
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
        // Now n1 crashes: n2 and n3 still form a majority and take over.
        s.crash(0);
        until(&mut s, Duration::from_secs(3), |s| {
            holder(s).is_some_and(|h| h > 0)
        })
        .unwrap_or_else(|| panic!("seed {seed}: no takeover after the crash"));
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn crash_of_the_holder_with_a_majority_left_moves_the_group() {
    let t = Timing::default();
    for seed in seeds(100) {
        let n = 3 + 2 * (seed % 2) as usize;
        let mut s = sim(seed, n, 0.02);
        s.run_until(Timestamp::ZERO + ms(2000));
        s.crash(0);
        let took = until(&mut s, Duration::from_secs(3), |s| holder(s).is_some())
            .unwrap_or_else(|| panic!("seed {seed}: no takeover"));
        assert!(
            took <= t.deadtime + t.keepalive + s.op_latency_max * 2 + ms(20),
            "seed {seed}: {took:?}"
        );
        // A second crash leaves 1 of 3 (or 3 of 5).
        let h = holder(&s).unwrap();
        s.crash(h);
        s.run_for(Duration::from_secs(2));
        if n == 3 {
            assert_eq!(
                holder(&s),
                None,
                "seed {seed}: a lone node of three must not run it"
            );
        } else {
            assert!(
                holder(&s).is_some(),
                "seed {seed}: three of five keep quorum"
            );
        }
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

/// Plays the seeded random schedule of partitions, blocks, heals,
/// crashes, restarts and moves used by the campaign below; `trace` prints
/// each step (for `dump`).
fn random_schedule(seed: u64, trace: bool) -> (Sim, f64) {
    let n = 3 + 2 * (seed % 2) as usize;
    let loss = [0.0, 0.05, 0.2, 0.5][(seed % 4) as usize];
    let mut s = sim(seed, n, loss);
    s.run_until(Timestamp::ZERO + ms(1500));
    let mut down = vec![false; n];
    for _ in 0..20 {
        let wait = ms(s.rng().random_range(100..1500));
        s.run_for(wait);
        let i = s.rng().random_range(0..n);
        let t = s.now().as_nanos() / 1_000_000;
        let say = |what: String| {
            if trace {
                println!("{t} {what}");
            }
        };
        match s.rng().random_range(0..6) {
            0 => {
                let k = s.rng().random_range(1..n);
                let mut side: Vec<usize> = (0..n).collect();
                for j in (1..n).rev() {
                    let x = s.rng().random_range(0..=j);
                    side.swap(j, x);
                }
                side.truncate(k);
                say(format!("PARTITION {side:?}"));
                s.partition(&side);
            }
            1 => {
                let j = s.rng().random_range(0..n);
                if i != j {
                    say(format!("BLOCK {i}->{j}"));
                    s.block(i, j);
                }
            }
            2 => {
                say("HEAL".into());
                s.heal();
            }
            3 if !down[i] && down.iter().filter(|d| **d).count() + 1 < n => {
                say(format!("CRASH {i}"));
                s.crash(i);
                down[i] = true;
            }
            4 if down[i] => {
                say(format!("RESTART {i}"));
                s.restart(i);
                down[i] = false;
            }
            5 if !down[i] => {
                let to = format!("n{}", s.rng().random_range(1..=n));
                say(format!("MOVE via {i} to {to}"));
                let _ = s.command(
                    i,
                    tandem_core::Command::Move {
                        group: "db".into(),
                        node: Some(to),
                        duration: None,
                    },
                );
            }
            _ => {}
        }
    }
    (s, loss)
}

/// Random partitions (symmetric and one-way), heals, crashes, restarts and
/// moves on 3 or 5 nodes with up to 50 % loss: never two holders.
#[test]
fn never_two_holders_under_random_partitions() {
    for seed in seeds(400) {
        let (s, loss) = random_schedule(seed, false);
        assert!(
            s.violations.is_empty(),
            "seed {seed} (loss {loss}): {:?}",
            s.violations
        );
    }
}

/// Seed 1161 (5 % loss) once showed a grant race: a node granted a group to
/// n2, then, as n1 came back, to n1, before n2's start reached it; both
/// started. Grants are now taken back only once the peer has seen the
/// withdrawal (wire version 2).
#[test]
fn the_grant_race_of_seed_1161_stays_fixed() {
    let (s, loss) = random_schedule(1161, false);
    assert_eq!(loss, 0.05);
    assert!(s.violations.is_empty(), "{:?}", s.violations);
}

#[test]
#[ignore = "debugging aid: TANDEM_SIM_SEED=N cargo test -p tandem-sim --test quorum dump -- --ignored --nocapture"]
fn dump() {
    let seed: u64 = std::env::var("TANDEM_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let from: u64 = std::env::var("FROM_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let to: u64 = std::env::var("TO_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let (s, _) = random_schedule(seed, true);
    for r in &s.log {
        let t = r.at.as_nanos() / 1_000_000;
        if t >= from && t <= to {
            println!("{t} n{} {}", r.node + 1, r.event);
        }
    }
    println!("{:?}", s.violations);
}
