//! Seeded simulation campaigns for resource groups: placement, failover,
//! switchover, monitor failures, blocked stops. The simulator plays the
//! agents and checks at every start that no resource ever runs on two
//! nodes at once. Replay a failing seed with `TANDEM_SIM_SEED=<seed>`.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::time::Duration;

use rand::Rng;
use tandem_core::{Command, GroupSpec, NodeId, PlacementRules, ResourceSpec, Timestamp, Timing};
use tandem_sim::{AgentFaults, LinkModel, Sim, seeds};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn resource(name: &str) -> ResourceSpec {
    ResourceSpec {
        name: name.into(),
        start_timeout: ms(5000),
        stop_timeout: ms(5000),
        monitor_interval: Some(ms(1000)),
        monitor_timeout: ms(1000),
    }
}

fn web(auto_failback: bool) -> GroupSpec {
    GroupSpec {
        name: "web".into(),
        resources: vec![resource("vip"), resource("httpd")],
        rules: PlacementRules {
            scores: vec![(NodeId(1), 200), (NodeId(2), 100)],
            stickiness: 0,
            auto_failback,
        },
        migration_threshold: 3,
        failure_timeout: None,
        volumes: Vec::new(),
    }
}

fn sim(seed: u64, n: usize, groups: &[GroupSpec]) -> Sim {
    let mut s = Sim::with_groups(seed, n, 2, Timing::default(), groups);
    for l in 0..2 {
        s.set_link(
            l,
            LinkModel {
                loss: 0.02,
                delay_min: ms(0),
                delay_max: ms(3),
                ..LinkModel::default()
            },
        );
    }
    s
}

fn at(d: Duration) -> Timestamp {
    Timestamp::ZERO + d
}

fn runs_on(s: &Sim, g: usize) -> Vec<usize> {
    s.running_on(g, 1)
}

/// The whole group runs on exactly node `i`.
fn settled_on(s: &Sim, i: usize) -> bool {
    s.running_on(0, 0) == vec![i] && s.running_on(0, 1) == vec![i]
}

/// Runs until `pred` holds (checked every millisecond) or `limit` passes;
/// returns how long it took.
fn until(s: &mut Sim, limit: Duration, pred: impl Fn(&Sim) -> bool) -> Option<Duration> {
    s.run_until_true(limit, pred)
}

#[test]
fn start_up_places_the_group_on_the_preferred_node_only() {
    for seed in seeds(100) {
        let n = 2 + (seed % 2) as usize;
        let mut s = sim(seed, n, &[web(true)]);
        s.run_until(at(ms(4000)));
        assert!(
            settled_on(&s, 0),
            "seed {seed}: runs on {:?}",
            runs_on(&s, 0)
        );
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn power_off_fails_over_within_deadtime_plus_start_and_fails_back() {
    let t = Timing::default();
    for seed in seeds(150) {
        let mut s = sim(seed, 2, &[web(true)]);
        s.run_until(at(ms(2000)));
        assert!(settled_on(&s, 0), "seed {seed}");
        s.crash(0);
        let took = until(&mut s, Duration::from_secs(3), |s| settled_on(s, 1));
        let bound = t.deadtime + t.keepalive + s.op_latency_max * 2 + ms(10);
        let took = took.unwrap_or_else(|| panic!("seed {seed}: no failover"));
        assert!(
            took <= bound,
            "seed {seed}: failover took {took:?} > {bound:?}"
        );
        // n1 returns; auto_failback on: the group goes back, stop before start.
        s.restart(0);
        until(&mut s, Duration::from_secs(6), |s| settled_on(s, 0))
            .unwrap_or_else(|| panic!("seed {seed}: no failback"));
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn without_auto_failback_the_group_stays() {
    for seed in seeds(50) {
        let mut s = sim(seed, 2, &[web(false)]);
        s.run_until(at(ms(2000)));
        s.crash(0);
        until(&mut s, Duration::from_secs(3), |s| settled_on(s, 1)).unwrap();
        s.restart(0);
        s.run_for(Duration::from_secs(6));
        assert!(settled_on(&s, 1), "seed {seed}: {:?}", runs_on(&s, 0));
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn moves_standby_and_clean_leave_switch_over_stop_before_start() {
    for seed in seeds(100) {
        let mut s = sim(seed, 2, &[web(true)]);
        s.run_until(at(ms(2000)));
        let mv = |node: &str| Command::Move {
            group: "web".into(),
            node: Some(node.into()),
            duration: None,
        };
        // Twenty moves back and forth, each issued on a random node.
        for k in 0..20 {
            let to = (k + 1) % 2;
            let via = s.rng().random_range(0..2);
            s.command(via, mv(&format!("n{}", to + 1))).unwrap();
            let took = until(&mut s, Duration::from_secs(2), |s| settled_on(s, to))
                .unwrap_or_else(|| panic!("seed {seed}: move {k} to n{} never completed", to + 1));
            // A monitor under way, stop (2 ops) then start (2 ops), each at
            // most 21 ms, messages, and one lost update (a keepalive).
            assert!(took <= ms(250), "seed {seed}: move {k} took {took:?}");
        }
        s.command(
            1,
            Command::Move {
                group: "web".into(),
                node: None,
                duration: None,
            },
        )
        .unwrap();
        until(&mut s, Duration::from_secs(2), |s| settled_on(s, 0)).unwrap();
        // Standby the active node, then bring it back.
        s.command(
            1,
            Command::Standby {
                node: "n1".into(),
                on: true,
            },
        )
        .unwrap();
        until(&mut s, Duration::from_secs(2), |s| settled_on(s, 1)).unwrap();
        s.command(
            0,
            Command::Standby {
                node: "n1".into(),
                on: false,
            },
        )
        .unwrap();
        until(&mut s, Duration::from_secs(2), |s| settled_on(s, 0)).unwrap();
        // A clean daemon stop on the active node moves the group.
        s.leave(0);
        until(&mut s, Duration::from_secs(2), |s| settled_on(s, 1)).unwrap();
        assert!(s.brain(0).unwrap().has_left());
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_watched_service_is_restarted_at_once_not_at_the_next_monitor() {
    for seed in seeds(50) {
        // Monitors every 60 s: a restart within 400 ms came from the exit
        // report, not from a monitor.
        let mut g = web(true);
        g.resources[1].monitor_interval = Some(ms(60_000));
        let mut s = sim(seed, 2, &[g]);
        s.run_until(at(ms(2000)));
        until(&mut s, Duration::from_secs(2), |s| settled_on(s, 0)).unwrap();
        let died = s.now();
        s.kill_resource_seen(0, 0, 1);
        until(&mut s, Duration::from_millis(400), |s| {
            s.is_running(0, 0, 1)
        })
        .unwrap_or_else(|| panic!("seed {seed}: not restarted at once"));
        assert!(s.now().since(died) < Duration::from_millis(400));
        let st = s.brain(0).unwrap().status(s.now());
        assert_eq!(st.groups[0].resources[1].fail_count, 1, "seed {seed}");
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_killed_service_restarts_in_place_then_moves_at_the_threshold() {
    for seed in seeds(50) {
        let mut s = sim(seed, 2, &[web(true)]);
        s.run_until(at(ms(2000)));
        for failure in 1..=3 {
            s.kill_resource(0, 0, 1);
            if failure < 3 {
                // Detected by the next monitor (1 s), restarted in place.
                until(&mut s, Duration::from_millis(1500), |s| {
                    !s.is_running(0, 0, 1)
                })
                .unwrap();
                until(&mut s, Duration::from_secs(2), |s| settled_on(s, 0)).unwrap_or_else(|| {
                    panic!("seed {seed}: not restarted after failure {failure}")
                });
                let st = s.brain(0).unwrap().status(s.now());
                assert_eq!(st.groups[0].resources[1].fail_count, failure, "seed {seed}");
            }
        }
        until(&mut s, Duration::from_secs(3), |s| settled_on(s, 1))
            .unwrap_or_else(|| panic!("seed {seed}: not moved at the threshold"));
        let st = s.brain(1).unwrap().status(s.now());
        assert_eq!(st.groups[0].banned_on, vec!["n1"], "seed {seed}");
        // Cleanup lifts the ban: auto_failback brings it home.
        s.command(
            1,
            Command::Cleanup {
                group: "web".into(),
            },
        )
        .unwrap();
        until(&mut s, Duration::from_secs(3), |s| settled_on(s, 0)).unwrap();
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

#[test]
fn a_failed_stop_blocks_the_group_everywhere_until_cleanup() {
    for seed in seeds(50) {
        let mut s = sim(seed, 2, &[web(true)]);
        s.run_until(at(ms(2000)));
        s.set_faults(
            0,
            AgentFaults {
                stop_failure: 1.0,
                ..AgentFaults::default()
            },
        );
        s.command(
            1,
            Command::Move {
                group: "web".into(),
                node: Some("n2".into()),
                duration: None,
            },
        )
        .unwrap();
        s.run_for(Duration::from_secs(3));
        // The stop of httpd "timed out": it may still run on n1; n2 must not start anything.
        assert!(
            s.running_on(0, 1) == vec![0] && s.running_on(0, 0) == vec![0],
            "seed {seed}"
        );
        let st = s.brain(1).unwrap().status(s.now());
        assert_eq!(
            st.groups[0].blocked_on.as_deref(),
            Some("n1"),
            "seed {seed}"
        );
        // Even if n1 then dies, n2 does not start the group (no fencing yet).
        s.crash(0);
        s.run_for(Duration::from_secs(2));
        assert!(s.running_on(0, 0).is_empty(), "seed {seed}");
        // The operator checked n1 and clears it: n2 takes over.
        s.command(
            1,
            Command::Cleanup {
                group: "web".into(),
            },
        )
        .unwrap();
        until(&mut s, Duration::from_secs(2), |s| settled_on(s, 1)).unwrap();
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

/// Random schedules of moves, standby, clean stops, power-offs, restarts and
/// service kills on 2 or 3 nodes with lossy links: no resource ever runs on
/// two nodes, and the group ends up running on exactly one node.
#[test]
fn never_two_actives_under_random_schedules() {
    for seed in seeds(150) {
        let n = 2 + (seed % 2) as usize;
        let mut s = sim(seed, n, &[web(seed % 3 != 0)]);
        s.run_until(at(ms(1500)));
        let mut down = vec![false; n];
        for _ in 0..25 {
            let wait = ms(s.rng().random_range(50..1500));
            s.run_for(wait);
            let i = s.rng().random_range(0..n);
            let node = format!("n{}", i + 1);
            let alive: Vec<usize> = (0..n).filter(|&k| !down[k]).collect();
            let via = alive[s.rng().random_range(0..alive.len())];
            match s.rng().random_range(0..8) {
                0 | 1 => {
                    let _ = s.command(
                        via,
                        Command::Move {
                            group: "web".into(),
                            node: Some(node),
                            duration: None,
                        },
                    );
                }
                2 => {
                    let _ = s.command(
                        via,
                        Command::Move {
                            group: "web".into(),
                            node: None,
                            duration: None,
                        },
                    );
                }
                3 => {
                    let on = s.rng().random_bool(0.5);
                    let _ = s.command(via, Command::Standby { node, on });
                }
                4 if alive.len() > 1 && !down[i] => {
                    s.crash(i);
                    down[i] = true;
                }
                5 if down[i] => {
                    s.restart(i);
                    down[i] = false;
                }
                6 if !down[i] => {
                    if s.rng().random_bool(0.5) {
                        s.kill_resource_seen(i, 0, 1);
                    } else {
                        s.kill_resource(i, 0, 1);
                    }
                }
                7 if alive.len() > 1 && !down[i] => {
                    s.leave(i);
                    s.run_for(ms(300));
                    s.crash(i);
                    down[i] = true;
                }
                _ => {}
            }
        }
        // Heal everything: every node up, no standby, no move, no failures.
        for (i, d) in down.iter().enumerate() {
            if *d {
                s.restart(i);
            }
        }
        s.run_for(ms(1000));
        for i in 0..n {
            let _ = s.command(
                0,
                Command::Standby {
                    node: format!("n{}", i + 1),
                    on: false,
                },
            );
        }
        let _ = s.command(
            0,
            Command::Move {
                group: "web".into(),
                node: None,
                duration: None,
            },
        );
        let _ = s.command(
            0,
            Command::Cleanup {
                group: "web".into(),
            },
        );
        let ok = until(&mut s, Duration::from_secs(8), |s| {
            let on = s.running_on(0, 0);
            on.len() == 1 && s.running_on(0, 1) == on
        });
        assert!(
            ok.is_some(),
            "seed {seed}: ends on {:?}/{:?}",
            s.running_on(0, 0),
            s.running_on(0, 1)
        );
        assert!(s.violations.is_empty(), "seed {seed}: {:?}", s.violations);
    }
}

/// The brain's timer lateness measures its driver only: the simulator
/// runs every deadline on time, so it stays zero, even though a group's
/// two monitors, due together, run one after the other (the second's
/// deadline is past when the first one's result arms it: CI read that as
/// up to 70 ms of lateness under load).
#[test]
fn serialised_monitors_are_not_timer_lateness() {
    for seed in seeds(5) {
        let mut s = sim(seed, 2, &[web(false)]);
        s.op_latency_max = ms(40);
        s.run_for(Duration::from_secs(20));
        assert!(
            !s.running_on(0, 1).is_empty(),
            "seed {seed}: the group never started"
        );
        for i in 0..2 {
            let late = s.brain(i).map_or(0, |b| b.stats().max_timer_lateness_us);
            assert_eq!(late, 0, "seed {seed}: n{} reports {late} µs", i + 1);
        }
        // A node frozen for 150 ms finds its next heartbeat (due within a
        // keepalive, 100 ms) 50 to 150 ms late, monitors and all.
        s.freeze(1);
        s.run_for(ms(150));
        s.thaw(1);
        s.run_for(ms(10));
        let late = s.brain(1).map_or(0, |b| b.stats().max_timer_lateness_us);
        assert!(
            (50_000..=150_000).contains(&late),
            "seed {seed}: a 150 ms freeze reads {late} µs"
        );
    }
}
