use super::*;
use crate::config::{LinkInfo, NodeInfo, Quorum, Timing};
use tandem_wire::{Key, Keyring};

const MS: u64 = 1_000_000;

fn cfg(local: u16, incarnation: u64, secret: &[u8]) -> BrainConfig {
    BrainConfig {
        cluster: "t".into(),
        cluster_id: 42,
        local: NodeId(local),
        nodes: vec![
            NodeInfo {
                id: NodeId(1),
                name: "n1".into(),
            },
            NodeInfo {
                id: NodeId(2),
                name: "n2".into(),
            },
        ],
        links: vec![
            LinkInfo {
                label: "eth0".into(),
            },
            LinkInfo {
                label: "eth1".into(),
            },
        ],
        timing: Timing::default(),
        keys: Keyring::single(Key::new(1, secret).unwrap()),
        incarnation,
        config_digest: 7,
        groups: vec![],
        quorum: Quorum::default(),
        witness: false,
        fencing: false,
        witness_arbiter: false,
        known_incarnations: vec![],
    }
}

fn t(ms: u64) -> Timestamp {
    Timestamp(ms * MS)
}

/// Runs `b`'s timers at `now` and returns what it sends.
fn tick(b: &mut Brain, now: Timestamp) -> Vec<Transmit> {
    b.handle_timeout(now);
    std::iter::from_fn(|| b.poll_transmit()).collect()
}

fn events(b: &mut Brain) -> Vec<String> {
    std::iter::from_fn(|| b.poll_event())
        .map(|e| e.to_string())
        .collect()
}

fn deliver(to: &mut Brain, now: Timestamp, tx: &[Transmit]) {
    for t in tx {
        to.handle_datagram(now, t.link, &t.payload);
    }
}

#[test]
fn two_nodes_see_each_other_then_one_dies() {
    let mut a = Brain::new(cfg(1, 100, b"k"), t(0));
    let mut b = Brain::new(cfg(2, 200, b"k"), t(0));
    for step in 0..5 {
        let now = t(step * 100);
        let ta = tick(&mut a, now);
        let tb = tick(&mut b, now);
        assert_eq!(ta.len(), 2, "one heartbeat per link");
        deliver(&mut b, now, &ta);
        deliver(&mut a, now, &tb);
    }
    assert_eq!(a.members(), vec![NodeId(1), NodeId(2)]);
    let ev = events(&mut a);
    assert!(ev.contains(&"Link n2:eth0 up".to_string()), "{ev:?}");
    assert!(ev.contains(&"Link n2:eth1 up".to_string()), "{ev:?}");
    assert!(
        ev.contains(&"n2 is up (incarnation 200)".to_string()),
        "{ev:?}"
    );

    // b goes silent after t=400. a warns at 700 and declares death at 900.
    let mut deaths = None;
    let mut now = t(400);
    while now < t(2000) {
        now = a.poll_timeout().unwrap();
        tick(&mut a, now);
        for e in events(&mut a) {
            if e.starts_with("n2 is dead") {
                deaths = Some(now);
            }
        }
        if deaths.is_some() {
            break;
        }
    }
    assert_eq!(
        deaths,
        Some(t(900)),
        "dead exactly deadtime after last heard"
    );
    assert_eq!(a.members(), vec![NodeId(1)]);
    assert_eq!(a.peer_state(NodeId(2)), Some(PeerState::Dead));
}

#[test]
fn warning_then_link_death_then_node_death_in_order() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut b = Brain::new(cfg(2, 2, b"k"), t(0));
    let tb = tick(&mut b, t(0));
    tick(&mut a, t(0));
    deliver(&mut a, t(0), &tb);
    events(&mut a);
    let mut log = Vec::new();
    let mut now = t(0);
    while now < t(600) {
        now = a.poll_timeout().unwrap();
        tick(&mut a, now);
        log.extend(events(&mut a));
    }
    assert_eq!(
        log,
        vec![
            "No heartbeat from n2 for 300 ms",
            "Link n2:eth0 dead (silent for 500 ms)",
            "Link n2:eth1 dead (silent for 500 ms)",
            "n2 is dead (no heartbeat for 500 ms)",
        ]
    );
}

#[test]
fn one_dead_link_does_not_kill_the_node() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut b = Brain::new(cfg(2, 2, b"k"), t(0));
    let mut log = Vec::new();
    for step in 0..30 {
        let now = t(step * 100);
        tick(&mut a, now);
        let tb = tick(&mut b, now);
        // Link 1 (eth1) is cut after 1 s.
        let kept: Vec<_> = tb
            .into_iter()
            .filter(|x| step < 10 || x.link == LinkId(0))
            .collect();
        deliver(&mut a, now, &kept);
        log.extend(events(&mut a));
    }
    assert!(
        log.iter().any(|e| e.starts_with("Link n2:eth1 dead")),
        "{log:?}"
    );
    assert!(!log.iter().any(|e| e.starts_with("n2 is dead")), "{log:?}");
    assert_eq!(a.peer_state(NodeId(2)), Some(PeerState::Online));
}

#[test]
fn never_heard_peer_dies_after_initdead() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut now = t(0);
    let mut log = Vec::new();
    while now < t(5000) && a.peer_state(NodeId(2)) == Some(PeerState::Pending) {
        now = a.poll_timeout().unwrap();
        tick(&mut a, now);
        log.extend(events(&mut a));
    }
    assert_eq!(now, t(3000));
    assert_eq!(
        log,
        vec!["n2 is dead (not heard within initdead 3.0 s of start-up)"]
    );
}

#[test]
fn restart_is_recognised_and_old_incarnation_refused() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut b = Brain::new(cfg(2, 50, b"k"), t(0));
    let old = tick(&mut b, t(0));
    deliver(&mut a, t(0), &old);
    let mut b2 = Brain::new(cfg(2, 60, b"k"), t(100));
    let new = tick(&mut b2, t(100));
    deliver(&mut a, t(100), &new);
    let ev = events(&mut a);
    assert!(
        ev.contains(&"n2 restarted (incarnation 50 -> 60)".to_string()),
        "{ev:?}"
    );
    // A capture from the old incarnation is now stale.
    let mut later_old = Brain::new(cfg(2, 50, b"k"), t(0));
    for _ in 0..3 {
        tick(&mut later_old, t(0));
    }
    let replay = tick(&mut later_old, t(400));
    deliver(&mut a, t(200), &replay);
    assert_eq!(a.stats().stale, 2);
    assert_eq!(a.peer_incarnation(NodeId(2)), Some(60));
}

#[test]
fn replay_wrong_key_unknown_sender_are_counted() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut b = Brain::new(cfg(2, 2, b"k"), t(0));
    let tb = tick(&mut b, t(0));
    deliver(&mut a, t(0), &tb);
    deliver(&mut a, t(10), &tb);
    assert_eq!(a.stats().accepted, 2);
    assert_eq!(a.stats().replayed, 2);

    let mut evil = Brain::new(cfg(2, 3, b"wrong"), t(0));
    deliver(&mut a, t(20), &tick(&mut evil, t(0)));
    assert_eq!(a.stats().bad_mac, 2);

    let mut c = cfg(3, 9, b"k");
    c.nodes.push(NodeInfo {
        id: NodeId(3),
        name: "n3".into(),
    });
    let mut stranger = Brain::new(c, t(0));
    let ts = tick(&mut stranger, t(0));
    let mut a2 = Brain::new(cfg(1, 1, b"k"), t(0));
    deliver(&mut a2, t(0), &ts);
    assert_eq!(a2.stats().unknown_sender, 2);

    // A packet from link 0 delivered on link 1.
    let mut b3 = Brain::new(cfg(2, 4, b"k"), t(0));
    let x = tick(&mut b3, t(0));
    a2.handle_datagram(t(0), LinkId(1), &x[0].payload);
    assert_eq!(a2.stats().wrong_link, 1);
    let ev = events(&mut a2);
    assert!(
        ev.iter()
            .any(|e| e.starts_with("Rejected datagram on eth0: unknown sender (1 so far)")),
        "{ev:?}"
    );
    assert_eq!(a2.stats().rejected(), 3);
}

#[test]
fn leave_is_immediate_departure() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut b = Brain::new(cfg(2, 2, b"k"), t(0));
    deliver(&mut a, t(0), &tick(&mut b, t(0)));
    b.leave(t(50));
    let bye: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert_eq!(bye.len(), 2);
    deliver(&mut a, t(50), &bye);
    assert_eq!(a.peer_state(NodeId(2)), Some(PeerState::Left));
    assert!(events(&mut a).contains(&"n2 left the cluster (clean shutdown)".to_string()));
    assert!(
        tick(&mut b, t(500)).is_empty(),
        "a leaving node sends nothing more"
    );
}

#[test]
fn a_stalled_node_notices_and_holds_back_deaths() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut b = Brain::new(cfg(2, 2, b"k"), t(0));
    for step in 0..5 {
        let now = t(step * 100);
        tick(&mut a, now);
        deliver(&mut a, now, &tick(&mut b, now));
    }
    events(&mut a);
    // a is frozen from 400 to 3400 ms; b keeps sending, and its packets are
    // waiting in a's socket when a resumes.
    let mut backlog = Vec::new();
    for step in 5..34 {
        backlog.extend(tick(&mut b, t(step * 100)));
    }
    tick(&mut a, t(3400));
    let ev = events(&mut a);
    assert!(
        ev[0].starts_with("This node was not scheduled for 3.0 s"),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| e.contains("is dead")), "{ev:?}");
    assert_eq!(a.stats().stalls, 1);
    assert_eq!(a.stats().longest_stall_us, 3_000_000);
    deliver(&mut a, t(3401), &backlog);
    tick(&mut a, t(3600));
    assert_eq!(a.peer_state(NodeId(2)), Some(PeerState::Online));
}

/// Whatever reaches a stalled brain first — an agent's result, a fence or
/// witness answer, a data report, a command — it notices the stall before
/// acting on it (a holder frozen past its lease must release before
/// anything renews the lease).
#[test]
fn every_input_notices_a_stall_first() {
    type Input = fn(&mut Brain, Timestamp);
    let inputs: [(&str, Input); 6] = [
        ("op result", |b, now| {
            b.handle_op_result(now, 999, OpResult::Ok)
        }),
        ("fence result", |b, now| {
            b.handle_fence_result(now, 999, Ok(()))
        }),
        ("witness result", |b, now| {
            b.handle_witness_result(now, 999, true)
        }),
        ("data readiness", |b, now| {
            b.handle_data_readiness(now, "none", None, false)
        }),
        ("main exit", |b, now| {
            let key = ResourceKey {
                group: "none".into(),
                resource: "none".into(),
            };
            b.handle_main_exit(now, &key, String::new())
        }),
        ("command", |b, now| {
            let _ = b.handle_command(
                now,
                Command::Standby {
                    node: "n1".into(),
                    on: false,
                },
            );
        }),
    ];
    for (what, input) in inputs {
        let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
        tick(&mut a, t(0));
        tick(&mut a, t(100));
        events(&mut a);
        input(&mut a, t(3100));
        let ev = events(&mut a);
        assert!(
            ev.first()
                .is_some_and(|e| e.starts_with("This node was not scheduled for 3.0 s")),
            "{what}: {ev:?}"
        );
        assert_eq!(a.stats().stalls, 1, "{what}");
    }
}

#[test]
fn status_snapshot_names_everything() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut b = Brain::new(cfg(2, 2, b"k"), t(0));
    tick(&mut a, t(0));
    deliver(&mut a, t(0), &tick(&mut b, t(0)));
    let s = a.status(t(250));
    assert_eq!(s.members, vec!["n1", "n2"]);
    assert_eq!(s.nodes[1].last_heard_ms, Some(250));
    assert_eq!(s.nodes[1].links[0].name, "eth0");
    assert_eq!(s.nodes[1].sees, vec!["n2"], "b had heard nobody yet");
    assert_eq!(s.uptime_ms, 250);
}

#[test]
fn config_mismatch_is_reported_once() {
    let mut a = Brain::new(cfg(1, 1, b"k"), t(0));
    let mut other = cfg(2, 2, b"k");
    other.config_digest = 8;
    let mut b = Brain::new(other, t(0));
    deliver(&mut a, t(0), &tick(&mut b, t(0)));
    deliver(&mut a, t(100), &tick(&mut b, t(100)));
    let ev = events(&mut a);
    assert_eq!(
        ev.iter()
            .filter(|e| e.contains("different configuration"))
            .count(),
        1
    );
}

/// Issue 12, finding 1: an incarnation far in the future (u64::MAX, say)
/// would lock the real peer out. More than a day ahead is refused.
#[test]
fn an_incarnation_from_the_future_is_refused() {
    let day = MAX_INCARNATION_AHEAD_US;
    let mut a = Brain::new(cfg(1, 1_000, b"k"), t(0));
    let mut forged = Brain::new(cfg(2, u64::MAX, b"k"), t(0));
    let tx = tick(&mut forged, t(0));
    deliver(&mut a, t(0), &tx);
    assert_eq!(a.stats().future_incarnation, 2);
    assert_eq!(a.members(), vec![NodeId(1)]);
    // A peer whose clock is an hour ahead is still a peer.
    let mut b = Brain::new(cfg(2, 1_000 + day / 24, b"k"), t(0));
    let tx = tick(&mut b, t(100));
    deliver(&mut a, t(100), &tx);
    assert_eq!(a.members(), vec![NodeId(1), NodeId(2)]);
    assert_eq!(a.stats().future_incarnation, 2);
}

/// Issue 12, finding 2: a restarted node accepted packets from any older
/// incarnation of a peer. Incarnations seen before the restart (kept by the
/// daemon) are the floor; and a `Leave` is never the first packet accepted
/// from an incarnation, so a replayed old `Leave` cannot make a silent peer
/// "left" (unfenced, no witness asked).
#[test]
fn old_incarnations_and_a_first_leave_are_refused_after_a_restart() {
    // n2 ran as incarnation 200 before; n1 restarted and remembers it.
    let mut old_n2 = Brain::new(cfg(2, 200, b"k"), t(0));
    let captured = tick(&mut old_n2, t(0));
    old_n2.leave(t(10));
    let captured_leave: Vec<Transmit> = std::iter::from_fn(|| old_n2.poll_transmit()).collect();
    assert!(!captured_leave.is_empty());

    let mut c = cfg(1, 1_000, b"k");
    c.known_incarnations = vec![(NodeId(2), 300)];
    let mut a = Brain::new(c, t(0));
    // Captures from incarnation 200 are stale now.
    deliver(&mut a, t(100), &captured);
    deliver(&mut a, t(100), &captured_leave);
    assert_eq!(a.stats().stale, 4);
    assert_eq!(a.members(), vec![NodeId(1)]);

    // The current incarnation (300): its Leave, replayed before anything
    // else from it was heard, is refused; its heartbeats are accepted.
    let mut n2 = Brain::new(cfg(2, 300, b"k"), t(0));
    let hb = tick(&mut n2, t(200));
    n2.leave(t(210));
    let leave: Vec<Transmit> = std::iter::from_fn(|| n2.poll_transmit()).collect();
    deliver(&mut a, t(220), &leave);
    assert_eq!(a.stats().stale, 6);
    assert!(
        !events(&mut a)
            .iter()
            .any(|e| e.contains("n2") && e.contains("left")),
        "a first Leave made n2 left"
    );
    deliver(&mut a, t(230), &hb);
    assert_eq!(a.members(), vec![NodeId(1), NodeId(2)]);
    // Heard once, its Leave counts (a clean stop).
    deliver(&mut a, t(240), &leave);
    assert!(a.members() == vec![NodeId(1)], "{:?}", a.members());
}

/// Issue 12, finding 15: a settings generation adopted from a peer (a key
/// holder could send u64::MAX) overflowed on the next operator command.
#[test]
fn a_huge_settings_generation_from_a_peer_does_not_overflow() {
    let mut a = Brain::new(cfg(1, 100, b"k"), t(0));
    // Alone past initdead: joined, so commands are taken.
    for ms in [0, 1000, 2000, 3000, 3500] {
        tick(&mut a, t(ms));
    }
    a.settings.generation = u64::MAX;
    let r = a.handle_command(
        t(3600),
        Command::Standby {
            node: "n2".into(),
            on: true,
        },
    );
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(a.settings.generation, u64::MAX);
}

#[test]
fn a_huge_cleanup_count_from_a_peer_does_not_overflow() {
    let mut c = cfg(1, 100, b"k");
    c.groups = vec![crate::GroupSpec {
        name: "web".into(),
        resources: vec![],
        rules: crate::PlacementRules::default(),
        migration_threshold: 3,
        failure_timeout: None,
        volumes: vec![],
    }];
    let mut a = Brain::new(c, t(0));
    for ms in [0, 1000, 2000, 3000, 3500] {
        tick(&mut a, t(ms));
    }
    a.settings.cleanups.insert(0, u32::MAX);
    let r = a.handle_command(
        t(3600),
        Command::Cleanup {
            group: "web".into(),
        },
    );
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(a.settings.cleanups.get(&0), Some(&u32::MAX));
}
