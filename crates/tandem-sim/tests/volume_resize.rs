//! `resize` (issue 10): the operator grows every node's backing disk, runs
//! resize on one node, and the volume grows everywhere while the
//! application writes; the new area is resynced from the source (the
//! primary), so every copy ends identical, and the application then writes
//! across the whole new size. Seeded: `TANDEM_SIM_SEED=N` replays one seed.

use std::time::Duration;

use tandem_sim::volume::{TrapAction, VolumeSim};
use tandem_volumes::{Message, Protocol, VolumeError};

const SIZE: u64 = 64 * 4096;
const GROWN: u64 = 96 * 4096;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn started(seed: u64, n: usize) -> VolumeSim {
    let mut s = VolumeSim::new_with(seed, n, SIZE, Protocol::C, |c| {
        c.ping_interval = ms(200);
        c.ping_timeout = ms(100);
    });
    s.run_for(ms(20));
    assert!(s.promote(0, true), "seed {seed}: primary --force refused");
    s.run_for(ms(300));
    s
}

fn fail(seed: u64, s: &VolumeSim, what: &str) -> String {
    format!("seed {seed}: {what}\n{:?}\n{}", s.violations, s.log_text())
}

fn size_of(s: &VolumeSim, i: usize) -> Option<u64> {
    s.volume(i).map(|v| v.status().size)
}

/// Grows the volume from node `from` while the application writes, then
/// writes across the new size and checks every copy.
fn grow_while_writing(seed: u64, n: usize, from: usize) {
    let mut s = started(seed, n);
    s.run_for(ms(100));
    // Not before the disks grew.
    let r = s.resize(from, false);
    assert!(
        matches!(&r, Some(Err(VolumeError::WrongState { what, .. })) if what.contains("grow the backing disk")),
        "{r:?}"
    );
    for i in 0..n {
        s.grow_backing(i, GROWN);
    }
    assert_eq!(
        s.resize(from, false),
        Some(Ok(())),
        "{}",
        fail(seed, &s, "resize")
    );
    let deadline = s.now() + Duration::from_secs(5);
    while s.now() < deadline && (0..n).any(|i| size_of(&s, i) != Some(GROWN)) {
        s.run_for(ms(5));
    }
    for i in 0..n {
        assert_eq!(
            size_of(&s, i),
            Some(GROWN),
            "{}",
            fail(seed, &s, &format!("n{} did not grow", i + 1))
        );
    }
    s.app_grow(GROWN);
    s.run_for(ms(300));
    assert!(
        s.converge(Duration::from_secs(20)),
        "{}",
        fail(seed, &s, "no convergence after the resize")
    );
    let log = s.log_text();
    assert!(
        log.contains("is resynced from here to every peer"),
        "{}",
        fail(seed, &s, "the primary was not the source")
    );
    assert!(
        s.app.writes_done > 50,
        "seed {seed}: only {} writes",
        s.app.writes_done
    );
}

#[test]
fn a_resize_from_the_primary_grows_both_nodes_and_resyncs_the_new_area() {
    for seed in tandem_sim::volume::seeds_for_volumes(20) {
        grow_while_writing(seed, 2, 0);
    }
}

#[test]
fn a_resize_from_a_secondary_grows_every_node_of_three() {
    for seed in tandem_sim::volume::seeds_for_volumes(20) {
        grow_while_writing(seed, 3, 2);
    }
}

#[test]
fn a_resize_is_refused_while_a_peer_is_away_and_limited_by_the_smallest_disk() {
    let mut s = started(1, 2);
    s.grow_backing(0, GROWN);
    s.cable(0, 1, false);
    s.run_for(ms(400));
    let r = s.resize(0, false);
    assert!(
        matches!(&r, Some(Err(VolumeError::WrongState { what, .. })) if what.contains("every peer connected")),
        "{r:?}"
    );
    s.cable(0, 1, true);
    s.run_for(ms(400));
    // n2's disk did not grow: nothing changes, and the reason names it.
    assert_eq!(s.resize(0, false), Some(Ok(())));
    s.run_for(ms(100));
    assert_eq!(size_of(&s, 0), Some(SIZE));
    assert!(
        s.log_text().contains("n2's backing disk holds"),
        "{}",
        s.log_text()
    );
    // n2's grows by less than n1's: the volume takes the smaller.
    s.grow_backing(1, SIZE + 8 * 4096);
    assert_eq!(s.resize(0, true), Some(Ok(())));
    s.run_for(ms(200));
    assert_eq!(size_of(&s, 0), Some(SIZE + 8 * 4096));
    assert_eq!(size_of(&s, 1), Some(SIZE + 8 * 4096));
    assert!(s.log_text().contains("--assume-clean"));
}

/// A node that loses power as the resize reaches it (its grow never
/// completes) catches up at its next connection: the bigger side marks
/// the area the other lacks and waits; the smaller grows to its size
/// and says hello again; the resync then covers the new area.
fn crash_in_the_middle(seed: u64, victim: usize) {
    let mut s = started(seed, 2);
    s.run_for(ms(100));
    for i in 0..2 {
        s.grow_backing(i, GROWN);
    }
    s.on_message(
        victim,
        |m| matches!(m, Message::Resize { .. }),
        TrapAction::CrashAfter(victim),
    );
    let from = 1 - victim;
    assert_eq!(s.resize(from, false), Some(Ok(())));
    s.run_for(ms(300));
    assert!(
        s.trap_fired(),
        "seed {seed}: the resize never reached n{}",
        victim + 1
    );
    // The survivor grew: the checks from now on cover the new size.
    s.app_grow(GROWN);
    if victim == 0 {
        // The primary is gone: n2 grew and takes over.
        assert!(s.promote(1, false), "{}", fail(seed, &s, "promote n2"));
        s.run_for(ms(200));
    }
    s.restart(victim);
    s.run_for(ms(500));
    for i in 0..2 {
        assert_eq!(
            size_of(&s, i),
            Some(GROWN),
            "{}",
            fail(seed, &s, &format!("n{} did not catch up", i + 1))
        );
    }
    s.run_for(ms(300));
    assert!(
        s.converge(Duration::from_secs(20)),
        "{}",
        fail(seed, &s, "no convergence after the catch-up")
    );
    assert!(s.log_text().contains("missed a resize"), "{}", s.log_text());
}

#[test]
fn a_secondary_that_crashed_in_the_middle_of_a_resize_catches_up() {
    for seed in tandem_sim::volume::seeds_for_volumes(20) {
        crash_in_the_middle(seed, 1);
    }
}

#[test]
fn a_primary_that_crashed_in_the_middle_of_a_resize_catches_up() {
    for seed in tandem_sim::volume::seeds_for_volumes(20) {
        crash_in_the_middle(seed, 0);
    }
}
