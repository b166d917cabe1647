//! Shared fixtures of the simulation campaigns: the two-node group,
//! holder checks, and the seeds to run.

use std::time::Duration;

use tandem_core::{GroupSpec, NodeId};

use crate::Sim;

/// A resource named `name`: 5 s start/stop, monitored every second.
pub fn resource(name: &str) -> tandem_core::ResourceSpec {
    tandem_core::ResourceSpec {
        name: name.into(),
        start_timeout: Duration::from_secs(5),
        stop_timeout: Duration::from_secs(5),
        monitor_interval: Some(Duration::from_secs(1)),
        monitor_timeout: Duration::from_secs(1),
    }
}

/// The two-node group the witness and arbitrator campaigns use: `app`,
/// with resources `vip` and `app` ([`resource`]), preferring n1, no
/// auto-failback, moved after three failures.
pub fn two_node_app_group() -> GroupSpec {
    let r = resource;
    GroupSpec {
        name: "app".into(),
        resources: vec![r("vip"), r("app")],
        rules: tandem_core::PlacementRules {
            scores: vec![(NodeId(1), 100)],
            stickiness: 0,
            auto_failback: false,
        },
        migration_threshold: 3,
        failure_timeout: None,
        volumes: Vec::new(),
    }
}

/// The S3 group the data campaigns use: `db` = volume `r0` → `fs` → `pg`
/// ([`resource`]), preferring n1 (200) over n2 (100), auto-failback on.
pub fn s3_db_group() -> GroupSpec {
    let r = resource;
    GroupSpec {
        name: "db".into(),
        resources: vec![r("r0"), r("fs"), r("pg")],
        rules: tandem_core::PlacementRules {
            scores: vec![(NodeId(1), 200), (NodeId(2), 100)],
            stickiness: 0,
            auto_failback: true,
        },
        migration_threshold: 3,
        failure_timeout: None,
        volumes: vec!["r0".into()],
    }
}

/// Whether group 0's resources 0 and 1 both run on one node only: which.
pub fn sole_holder(s: &Sim) -> Option<usize> {
    let on = s.running_on(0, 1);
    (on.len() == 1 && s.running_on(0, 0) == on).then(|| on[0])
}

/// Seeds to run: `TANDEM_SIM_SEED=N` runs just N (to reproduce a failure),
/// otherwise `TANDEM_SIM_SEEDS=K` (default `default`) seeds from 1.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("TANDEM_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let k = std::env::var("TANDEM_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=k).collect()
}
