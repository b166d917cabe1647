//! `tandem check`'s verdict in the states a live drill does not reach
//! cheaply — no quorum, a waiting node, a blocked stop, a group active
//! twice, dead links (one of two, and the last one), a late node, a volume
//! out of sync — from the captured status document changed into each.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::path::Path;

use serde_json::{Value, json};
use tandem::cli::check::{State, Thresholds, evaluate};

fn status(change: impl FnOnce(&mut Value)) -> tandem_control::Status {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/status.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut v);
    serde_json::from_value(v).unwrap()
}

fn verdict(change: impl FnOnce(&mut Value)) -> (State, String) {
    let v = evaluate(&status(change), &Thresholds::default());
    (v.state, v.text)
}

/// A case: the state expected, a reason it gives, and the change.
type Case = (State, &'static str, Box<dyn FnOnce(&mut Value)>);

fn link(name: &str, state: &str) -> Value {
    json!({"name": name, "state": state, "last_heard_ms": 50})
}

#[test]
fn each_state_and_its_reason() {
    let (st, text) = verdict(|_| {});
    assert_eq!(st, State::Ok, "{text}");
    let cases: Vec<Case> = vec![
        (
            State::Critical,
            "no quorum: 1 of 3 votes (need 2)",
            Box::new(|v: &mut Value| {
                v["membership"]["quorum"] = json!({"present": 1, "needed": 2, "total": 3, "quorate": false, "no_quorum": "stop"});
            }),
        ),
        (
            State::Critical,
            "n1 waits: the witness is unreachable",
            Box::new(|v: &mut Value| {
                v["membership"]["waiting"] = json!("the witness is unreachable");
            }),
        ),
        (
            State::Critical,
            "group web is blocked on n2",
            Box::new(|v: &mut Value| {
                v["membership"]["groups"][0]["blocked_on"] = json!("n2");
            }),
        ),
        (
            State::Critical,
            "group web is active on n1 and n2",
            Box::new(|v: &mut Value| {
                v["membership"]["groups"][0]["active_on"] = json!(["n1", "n2"]);
            }),
        ),
        (
            State::Warning,
            "link n2:lo is dead",
            Box::new(|v: &mut Value| {
                v["membership"]["nodes"][1]["links"] =
                    json!([link("lo", "dead"), link("bond", "up")]);
            }),
        ),
        (
            State::Warning,
            "only one link left to n2",
            Box::new(|v: &mut Value| {
                v["membership"]["nodes"][1]["links"] =
                    json!([link("lo", "dead"), link("bond", "up")]);
            }),
        ),
        (
            State::Critical,
            "link n2:lo is dead",
            Box::new(|v: &mut Value| {
                v["membership"]["nodes"][1]["links"] = json!([link("lo", "dead")]);
            }),
        ),
        (
            State::Warning,
            "node n2 is late",
            Box::new(|v: &mut Value| {
                v["membership"]["nodes"][1]["state"] = json!("late");
            }),
        ),
        (
            State::Warning,
            "n2 last heard 900 ms ago",
            Box::new(|v: &mut Value| {
                v["membership"]["nodes"][1]["last_heard_ms"] = json!(900);
            }),
        ),
        (
            State::Critical,
            "resource web/daemon failed on n1",
            Box::new(|v: &mut Value| {
                v["membership"]["groups"][0]["resources"][0]["state"] = json!("failed");
            }),
        ),
        (
            State::Warning,
            "volume r0 is out of sync with n2 (2048 KiB",
            Box::new(|v: &mut Value| {
                v["volumes"] = json!([{
                    "name": "r0", "role": "Primary", "disk": "UpToDate", "size": 1048576,
                    "current": 1,
                    "counters": {"ns": 0, "nr": 0, "dw": 0, "dr": 0, "al": 0, "bm": 0, "lo": 0, "ap": 0, "meta_writes": 0},
                    "peers": [{"node": "n2", "connection": "Connected", "replication": "SyncSource", "role": "Secondary",
                               "peer_disk": "Inconsistent", "done": 40.0, "out_of_sync_kib": 2048, "resync_kib_s": null,
                               "eta_seconds": null, "pending": 0, "unacked": 0, "protocol": "C"}]
                }]);
            }),
        ),
    ];
    for (want, reason, change) in cases {
        let (st, text) = verdict(change);
        assert_eq!(st, want, "{text}");
        assert!(text.contains(reason), "{reason:?} not in:\n{text}");
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with(&format!(
                "TANDEM {} - ",
                ["OK", "WARNING", "CRITICAL", "UNKNOWN"][want as usize]
            )),
            "{first}"
        );
        assert!(first.contains(" | nodes_online="), "{first}");
    }
}
