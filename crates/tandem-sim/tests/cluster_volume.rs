//! Brains and replication engines together (issue 11), seeded: a two-node
//! cluster whose group `db` = volume r0 (protocol C) → fs → pg, the
//! application writing on the primary while its brain holds the lease,
//! under random power-offs and returns, operator moves, and daemon freezes.
//! Invariants (`tandem_sim::volume::cluster`): never two primaries holding
//! a lease, never a promotion of a copy that is not UpToDate, no resource
//! on two nodes at once, no acknowledged write lost, identical copies
//! after healing. Replay a seed with `TANDEM_SIM_SEED=<seed>`.
#![allow(clippy::unwrap_used)] // test code panics on failure by design

use std::time::Duration;

use rand::Rng;
use tandem_core::Command;
use tandem_sim::seeds;
use tandem_sim::volume::cluster::ClusterVolumeSim;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cluster(seed: u64) -> ClusterVolumeSim {
    ClusterVolumeSim::s3(seed, tandem_volumes::Fencing::ResourceOnly)
}

fn check(c: &ClusterVolumeSim, seed: u64, when: &str) {
    c.assert_clean(seed, when);
}

#[test]
fn the_group_starts_where_the_data_is_and_fails_over_without_losing_a_write() {
    for seed in seeds(10) {
        let mut c = cluster(seed);
        c.run_for(ms(4000));
        assert_eq!(c.vs.primaries(), vec![0], "seed {seed}: not promoted on n1");
        assert_eq!(c.sim.running_on(0, 2), vec![0], "seed {seed}");
        // n1 loses power mid-load: n2 promotes (its copy was in sync).
        c.power_off(0);
        c.run_for(ms(3000));
        assert_eq!(c.vs.primaries(), vec![1], "seed {seed}: no failover");
        assert_eq!(c.sim.running_on(0, 2), vec![1], "seed {seed}");
        // n1 returns: it resyncs, then auto_failback takes the group back.
        c.power_on(0);
        c.run_for(ms(8000));
        assert_eq!(c.vs.primaries(), vec![0], "seed {seed}: no failback");
        check(&c, seed, "after failover and failback");
        assert!(
            c.vs.converge(Duration::from_secs(20)),
            "seed {seed}: {:?}",
            c.vs.violations
        );
        check(&c, seed, "at the end");
    }
}

#[test]
fn random_power_offs_moves_and_freezes_keep_every_invariant() {
    for seed in seeds(8) {
        let mut c = cluster(seed);
        c.run_for(ms(4000));
        let mut down = [false; 2];
        let mut frozen = [false; 2];
        for _ in 0..15 {
            let step = c.sim.rng().random_range(0..6);
            let i = c.sim.rng().random_range(0..2usize);
            match step {
                0 if !down[1 - i] && !down[i] => {
                    c.power_off(i);
                    down[i] = true;
                }
                1 if down[i] => {
                    c.power_on(i);
                    down[i] = false;
                }
                2 => {
                    let node = format!("n{}", 2 - i);
                    let _ = c.sim.command(
                        i,
                        Command::Move {
                            group: "db".into(),
                            node: Some(node),
                            duration: None,
                        },
                    );
                }
                3 if !down[i] && !frozen[i] => {
                    c.sim.freeze(i);
                    frozen[i] = true;
                }
                4 if frozen[i] => {
                    c.sim.thaw(i);
                    frozen[i] = false;
                }
                _ => {}
            }
            let wait = c.sim.rng().random_range(300..2500);
            c.run_for(ms(wait));

            check(&c, seed, "during the schedule");
        }
        c.heal_all(&frozen);
        c.run_for(ms(10_000));
        check(&c, seed, "after healing");
        assert!(
            !c.promotions.is_empty(),
            "seed {seed}: nothing ever promoted"
        );
        let converged = c.vs.converge(Duration::from_secs(30));
        assert!(
            converged,
            "seed {seed}: {:?}\nvolume log:\n{}\ncluster log:\n{}",
            c.vs.violations,
            c.vs.log_text(),
            c.sim
                .log
                .iter()
                .map(|r| format!("{:?} n{} {}", r.at, r.node + 1, r.event))
                .collect::<Vec<_>>()
                .join("\n")
        );
        check(&c, seed, "at the end");
    }
}
