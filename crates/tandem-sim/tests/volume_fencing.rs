//! `fencing = resource-and-stonith` (issue 11), seeded: the primary that
//! loses a peer whose copy could be promoted freezes its IO — no write or
//! flush acknowledged — until that peer is confirmed fenced (the cluster
//! says its copy is Outdated, or a fence agent powered it off), it
//! reconnects, or the operator resumes IO; a lapsed lease fails the frozen
//! IO instead. Engine alone (`VolumeSim`) and with the brains
//! (`ClusterVolumeSim`): a replication-only cut followed by the primary's
//! death within the outdate grace loses flushed writes with
//! `resource-only` (DRBD's window) and none with `resource-and-stonith`.
//! Replay a seed with `TANDEM_SIM_SEED=<seed>`.
#![allow(clippy::unwrap_used)] // test code panics on failure by design

use std::time::Duration;

use rand::Rng;
use tandem_sim::seeds;
use tandem_sim::volume::VolumeSim;
use tandem_sim::volume::cluster::ClusterVolumeSim;
use tandem_volumes::{ConnState, DiskState, Fencing, IoError, Protocol, ReplState};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// n1 primary and n2 in sync, the application writing on n1.
fn running(seed: u64, fencing: Fencing) -> VolumeSim {
    started(VolumeSim::new(seed, 2, 1 << 20, Protocol::C), seed, fencing)
}

fn started(mut s: VolumeSim, seed: u64, fencing: Fencing) -> VolumeSim {
    s.set_fencing(fencing);
    s.run_for(ms(20));
    assert!(s.promote(0, true));
    let deadline = s.now() + Duration::from_secs(10);
    while s.now() < deadline && !in_sync(&s) {
        s.run_for(ms(10));
    }
    assert!(in_sync(&s), "seed {seed}: never in sync\n{}", s.log_text());
    s.run_for(ms(100));
    s
}

fn in_sync(s: &VolumeSim) -> bool {
    s.volume(1).is_some_and(|v| {
        let st = v.status();
        st.disk == DiskState::UpToDate
            && st.peers[0].connection == ConnState::Connected
            && st.peers[0].replication == ReplState::Established
    })
}

fn suspended(s: &VolumeSim) -> Vec<String> {
    s.volume(0).map(|v| v.suspended_for()).unwrap_or_default()
}

#[test]
fn the_primarys_io_freezes_until_the_lost_peer_is_fenced() {
    for seed in seeds(10) {
        let mut s = running(seed, Fencing::ResourceAndStonith);
        s.cable(0, 1, false);
        s.run_for(ms(100));
        assert_eq!(suspended(&s), vec!["n2".to_string()], "seed {seed}");
        let render = s.volume(0).unwrap().status().render();
        assert!(render.contains("suspended:fencing(n2)"), "{render}");
        let done = (s.app.writes_done, s.app.flushes_done);
        s.run_for(ms(500));
        assert_eq!(
            (s.app.writes_done, s.app.flushes_done),
            done,
            "seed {seed}: IO acknowledged while suspended"
        );
        let r = s.with_volume(0, |v, now| v.peer_fenced(now, "n2", "its copy is Outdated"));
        assert_eq!(r, Some(Ok(true)), "seed {seed}");
        s.run_for(ms(300));
        assert!(suspended(&s).is_empty(), "seed {seed}");
        assert!(
            s.app.writes_done > done.0 + 10,
            "seed {seed}: IO did not resume"
        );
        assert!(
            s.log_text().contains("IO resumed"),
            "seed {seed}: {}",
            s.log_text()
        );
        assert!(
            s.converge(Duration::from_secs(20)),
            "seed {seed}: {:?}",
            s.violations
        );
    }
}

#[test]
fn the_peer_back_resumes_the_io_and_resyncs() {
    for seed in seeds(10) {
        let mut s = running(seed, Fencing::ResourceAndStonith);
        s.cable(0, 1, false);
        s.run_for(ms(100));
        assert!(!suspended(&s).is_empty(), "seed {seed}");
        let done = s.app.writes_done;
        s.cable(0, 1, true);
        s.run_for(ms(500));
        assert!(suspended(&s).is_empty(), "seed {seed}: {}", s.log_text());
        assert!(s.app.writes_done > done + 10, "seed {seed}");
        assert!(
            s.converge(Duration::from_secs(20)),
            "seed {seed}: {:?}",
            s.violations
        );
    }
}

#[test]
fn a_lapsed_lease_fails_the_frozen_io_and_resume_io_forces_it_on() {
    let mut s = running(1, Fencing::ResourceAndStonith);
    s.cable(0, 1, false);
    s.run_for(ms(100));
    assert!(!suspended(&s).is_empty());
    // The operator's `resume-io`.
    let done = s.app.writes_done;
    assert_eq!(s.with_volume(0, |v, now| v.resume_io(now)), Some(true));
    s.run_for(ms(200));
    assert!(s.app.writes_done > done + 10);
    // Frozen again on the next loss; the lease lapses: the waiting IO
    // fails (EIO to the application), and the volume can demote.
    s.cable(0, 1, true);
    s.run_for(ms(500));
    s.cable(0, 1, false);
    s.run_for(ms(100));
    assert!(!suspended(&s).is_empty());
    s.app.stopped = true;
    let failed = s.app.failed;
    s.with_volume(0, |v, now| v.fail_suspended(now, &IoError::LeaseLapsed));
    s.run_for(ms(50));
    assert!(s.app.failed > failed, "nothing failed");
    assert!(
        s.try_demote(0),
        "demotion refused after the frozen IO failed"
    );
    assert!(suspended(&s).is_empty());
}

#[test]
fn resource_only_writes_on_without_the_peer() {
    let mut s = running(1, Fencing::ResourceOnly);
    s.cable(0, 1, false);
    s.run_for(ms(100));
    let done = s.app.writes_done;
    s.run_for(ms(300));
    assert!(suspended(&s).is_empty());
    assert!(s.app.writes_done > done + 10);
}

/// A replication-only cut (the heartbeats still flow), then the primary's
/// power-off within the outdate grace; returns the violations seen.
fn cut_then_primary_dies(seed: u64, fencing: Fencing) -> Vec<String> {
    let mut c = ClusterVolumeSim::s3(seed, fencing);
    c.run_for(ms(4000));
    let Some(p) = c.vs.primary() else {
        return vec![format!("seed {seed}: nothing primary after 4 s")];
    };
    c.vs.cable(0, 1, false);
    let d = c.sim.rng().random_range(300..1500);
    c.run_for(ms(d));
    if fencing == Fencing::ResourceAndStonith {
        let frozen = c.vs.volume(p).is_some_and(|v| v.io_suspended());
        assert!(frozen, "seed {seed}: the primary's IO is not suspended");
    }
    c.power_off(p);
    c.run_for(ms(8000));
    let mut v = c.all_violations();
    let heir = 1 - p;
    if !c.promotions.iter().any(|(_, n)| *n == heir) {
        v.push(format!("seed {seed}: n{} was never promoted", heir + 1));
    }
    v
}

#[test]
fn with_resource_and_stonith_the_survivor_holds_every_flushed_write() {
    for seed in seeds(8) {
        let v = cut_then_primary_dies(seed, Fencing::ResourceAndStonith);
        assert!(v.is_empty(), "seed {seed}: {v:?}");
    }
}

#[test]
fn with_resource_only_the_same_schedule_loses_flushed_writes() {
    // DRBD's documented window, shown so the option's worth is measured:
    // most schedules lose writes the application had flushed.
    let runs = seeds(8);
    let lost = runs
        .iter()
        .filter(|s| {
            cut_then_primary_dies(**s, Fencing::ResourceOnly)
                .iter()
                .any(|v| v.contains("a completed flush covered"))
        })
        .count();
    assert!(
        lost * 2 >= runs.len(),
        "only {lost} of {} schedules lost flushed writes",
        runs.len()
    );
}

#[test]
fn after_the_grace_the_outdated_peer_releases_the_frozen_primary() {
    // Nothing dies: the peer outdates itself after the grace, its
    // heartbeats say so, and the primary's IO goes on.
    let mut c = ClusterVolumeSim::s3(3, Fencing::ResourceAndStonith);
    c.run_for(ms(4000));
    let p = c.vs.primary().unwrap();
    c.vs.cable(0, 1, false);
    c.run_for(ms(500));
    assert!(c.vs.volume(p).unwrap().io_suspended());
    let done = c.vs.app.writes_done;
    c.run_for(ms(4000));
    let v = c.vs.volume(p).unwrap();
    assert!(!v.io_suspended(), "{}", c.vs.log_text());
    assert_eq!(c.vs.volume(1 - p).unwrap().disk(), DiskState::Outdated);
    assert!(c.vs.app.writes_done > done + 10);
    assert!(
        c.vs.log_text().contains("as its heartbeats say"),
        "{}",
        c.vs.log_text()
    );
}

#[test]
fn a_silent_link_is_found_within_two_seconds_while_writes_wait() {
    // A firewall dropping the replication packets: no connection error,
    // only silence. With writes waiting the primary pings after 1 s and
    // drops the link 0.5 s later (not at the 10 s idle ping); the
    // secondary pings a primary after 1 s of silence too.
    for seed in seeds(5) {
        // DRBD's pings: every 10 s when idle, answered within 0.5 s.
        let s = VolumeSim::new_with(seed, 2, 1 << 20, Protocol::C, |_| {});
        let mut s = started(s, seed, Fencing::ResourceAndStonith);
        s.silence(0, 1, true);
        let cut = s.now();
        let deadline = cut + Duration::from_secs(5);
        // The secondary notices too (it pings a silent primary after 1 s):
        // its copy must be outdated soon, so the primary's IO can go on.
        let secondary_noticed = |s: &VolumeSim| {
            s.volume(1)
                .is_some_and(|v| v.status().peers[0].connection != ConnState::Connected)
        };
        while s.now() < deadline && (suspended(&s).is_empty() || !secondary_noticed(&s)) {
            s.run_for(ms(10));
        }
        let found = s.now().since(cut);
        assert!(
            !suspended(&s).is_empty()
                && secondary_noticed(&s)
                && found <= Duration::from_millis(1600),
            "seed {seed}: the silent link was found after {found:?}\n{}",
            s.log_text()
        );
        s.silence(0, 1, false);
        s.run_for(ms(500));
        assert!(suspended(&s).is_empty(), "seed {seed}: {}", s.log_text());
        assert!(
            s.converge(Duration::from_secs(20)),
            "seed {seed}: {:?}",
            s.violations
        );
    }
}

#[test]
fn random_partitions_cuts_power_offs_and_freezes_keep_every_invariant() {
    // The campaign of `cluster_volume.rs` with what resource-only cannot
    // survive added: full partitions (an arbitrator picks the side that
    // keeps the lease) and replication-only cuts; with
    // resource-and-stonith no promoted copy ever lacks a flushed write.
    for seed in seeds(8) {
        let mut c = ClusterVolumeSim::s3(seed, Fencing::ResourceAndStonith);
        c.sim.use_arbiter(ms(2000));
        c.run_for(ms(4000));
        let (mut down, mut frozen) = ([false; 2], [false; 2]);
        for _ in 0..15 {
            let i = c.sim.rng().random_range(0..2usize);
            match c.sim.rng().random_range(0..8) {
                0 if !down[0] && !down[1] => {
                    c.power_off(i);
                    down[i] = true;
                }
                1 if down[i] => {
                    c.power_on(i);
                    down[i] = false;
                }
                2 if !frozen[i] && !down[i] => {
                    c.sim.freeze(i);
                    frozen[i] = true;
                }
                3 if frozen[i] => {
                    c.sim.thaw(i);
                    frozen[i] = false;
                }
                4 => {
                    c.sim.partition(&[i]);
                    c.vs.partition(&[i]);
                }
                5 => c.vs.cable(0, 1, false),
                6 => {
                    c.sim.heal();
                    c.vs.heal();
                }
                _ => {
                    let node = format!("n{}", 2 - i);
                    let _ = c.sim.command(
                        i,
                        tandem_core::Command::Move {
                            group: "db".into(),
                            node: Some(node),
                            duration: None,
                        },
                    );
                }
            }
            let wait = c.sim.rng().random_range(300..2500);
            c.run_for(ms(wait));
            for i in 0..2 {
                // Powered off by a fence agent.
                if c.is_down(i) {
                    down[i] = true;
                    frozen[i] = false;
                }
            }
            c.assert_clean(seed, "during the schedule");
        }
        c.heal_all(&frozen);
        c.run_for(ms(10_000));
        c.assert_clean(seed, "after healing");
        assert!(
            c.vs.converge(Duration::from_secs(30)),
            "seed {seed}: {:?}\n{}",
            c.vs.violations,
            c.vs.log_text()
        );
    }
}
