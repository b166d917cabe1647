//! Placement knows where the data is (issue 11): a group with a volume
//! never starts on a node whose copy its daemon has not reported ready
//! (UpToDate); it runs where the data is, returns to its preferred node
//! (auto_failback) only once that node's copy is ready again, and after a
//! failure stays stopped rather than start on a copy that is not current.
//! The status says why. Seeded, with a lossy network.

use std::time::Duration;

use tandem_core::{GroupSpec, Timing};
use tandem_sim::{LinkModel, Sim};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn db() -> GroupSpec {
    tandem_sim::s3_db_group()
}

/// Where every resource of the group runs.
fn on(s: &Sim) -> Vec<usize> {
    let v = s.running_on(0, 0);
    if (1..3).all(|r| s.running_on(0, r) == v) {
        v
    } else {
        vec![99]
    }
}

#[test]
fn a_group_runs_only_where_its_data_is_ready() {
    for seed in tandem_sim::seeds(20) {
        let mut s = Sim::with_groups(seed, 2, 1, Timing::default(), &[db()]);
        s.set_link(
            0,
            LinkModel {
                loss: 0.02,
                delay_min: ms(0),
                delay_max: ms(3),
                ..LinkModel::default()
            },
        );
        let ctx = |s: &Sim, what: &str| format!("seed {seed}: {what}; running on {:?}", on(s));
        // Nobody has reported: nothing starts, the status says why.
        s.run_for(ms(4000));
        assert!(
            on(&s).is_empty(),
            "{}",
            ctx(&s, "started before any readiness")
        );
        let st = s.brain(0).map(|b| b.status(s.now())).expect("n1");
        assert!(
            st.groups[0]
                .data_hold_here
                .as_deref()
                .is_some_and(|h| h.contains("waiting for the state of volume r0")),
            "{}",
            ctx(&s, "no reason in the status")
        );
        // Only n2's copy is ready: it runs there, although n1 is preferred.
        s.set_data_readiness(1, "db", None);
        s.set_data_readiness(0, "db", Some("volume r0: this copy is Inconsistent"));
        s.run_for(ms(3000));
        assert_eq!(on(&s), vec![1], "{}", ctx(&s, "not on the ready node"));
        // n1 is ready: auto_failback brings it home.
        s.set_data_readiness(0, "db", None);
        s.run_for(ms(3000));
        assert_eq!(on(&s), vec![0], "{}", ctx(&s, "no failback once ready"));
        // n2's copy falls behind, then n1 dies: the group does not start on
        // n2 until its copy is ready again.
        s.set_data_readiness(1, "db", Some("volume r0: this copy is Outdated"));
        s.run_for(ms(500));
        s.crash(0);
        s.run_for(ms(3000));
        assert!(
            on(&s).is_empty(),
            "{}",
            ctx(&s, "started on an outdated copy")
        );
        s.set_data_readiness(1, "db", None);
        s.run_for(ms(3000));
        assert_eq!(on(&s), vec![1], "{}", ctx(&s, "not started once ready"));
    }
}
