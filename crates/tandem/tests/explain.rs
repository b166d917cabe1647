//! `tandem explain` golden tests: a real status document (captured from two
//! daemons, `tests/golden/status.json`) changed into the common situations,
//! each explanation compared with its expected text
//! (`tests/golden/explain-*.txt`; `UPDATE_GOLDEN=1` rewrites them). And the
//! command itself against real daemons on loopback. Needs no root.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::path::Path;

use serde_json::{Value, json};

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn config(extra: &str) -> tandem_config::Config {
    let text = std::fs::read_to_string(golden("explain.toml"))
        .unwrap()
        .replace("stickiness = 50", extra);
    tandem_config::parse(&text, Path::new("explain.toml"))
        .unwrap()
        .config
}

fn status(change: impl FnOnce(&mut Value)) -> tandem_control::Status {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(golden("status.json")).unwrap()).unwrap();
    change(&mut v);
    serde_json::from_value(v).unwrap()
}

fn check(name: &str, cfg: &tandem_config::Config, st: &tandem_control::Status) {
    let got = tandem::cli::explain::explain(cfg, st, "web").unwrap();
    let path = golden(&format!("explain-{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(got, want, "explain-{name}.txt differs; got:\n{got}");
}

fn group(v: &mut Value) -> &mut Value {
    &mut v["membership"]["groups"][0]
}

#[test]
fn the_common_situations() {
    let cfg = config("stickiness = 50");
    check("runs-where-preferred", &cfg, &status(|_| {}));
    check(
        "standby",
        &cfg,
        &status(|v| {
            v["membership"]["standby"] = json!(["n1"]);
            *group(v) = json!({"name": "web", "active_on": ["n2"], "target": "n2", "phase_here": "stopped", "blocked_on": null, "moved_to": null, "banned_on": [], "resources": [{"name": "daemon", "state": "stopped", "fail_count": 0, "last_error": null}]});
        }),
    );
    check(
        "moved",
        &cfg,
        &status(|v| {
            group(v)["moved_to"] = json!("n2");
            group(v)["target"] = json!("n2");
        }),
    );
    check(
        "banned-after-failures",
        &cfg,
        &status(|v| {
            let g = group(v);
            g["banned_on"] = json!(["n1"]);
            g["active_on"] = json!(["n2"]);
            g["target"] = json!("n2");
            g["phase_here"] = json!("stopped");
            g["resources"][0] = json!({"name": "daemon", "state": "stopped", "fail_count": 2, "last_error": "exited with code 1"});
        }),
    );
    check(
        "peer-dead-no-quorum-blocked",
        &cfg,
        &status(|v| {
            v["membership"]["members"] = json!(["n1"]);
            v["membership"]["nodes"][1]["state"] = json!("dead");
            v["membership"]["quorum"] = json!({"present": 1, "needed": 2, "total": 3, "quorate": false, "no_quorum": "stop"});
            let g = group(v);
            g["blocked_on"] = json!("n2");
            g["active_on"] = json!([]);
            g["target"] = Value::Null;
        }),
    );
    check(
        "waiting-for-witness",
        &cfg,
        &status(|v| {
            v["membership"]["members"] = json!(["n2"]);
            v["membership"]["local"] = json!("n2");
            v["membership"]["nodes"][0]["state"] = json!("dead");
            v["membership"]["waiting"] = json!("the witness 198.51.100.1 is unreachable");
            v["membership"]["lease_ms"] = Value::Null;
            group(v)["active_on"] = json!([]);
            group(v)["target"] = Value::Null;
        }),
    );
    let no_failback = config("stickiness = 0\nauto_failback = false");
    check(
        "no-auto-failback",
        &no_failback,
        &status(|v| {
            group(v)["active_on"] = json!(["n2"]);
            group(v)["target"] = json!("n2");
            group(v)["phase_here"] = json!("stopped");
        }),
    );
    assert!(
        tandem::cli::explain::explain(&cfg, &status(|_| {}), "db")
            .unwrap_err()
            .contains("no group is called db (groups: web)")
    );
}
