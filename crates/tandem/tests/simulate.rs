//! `tandem simulate`: a golden test from the captured status document, and
//! a prediction checked against reality — `--fail n1` from the live
//! cluster's status predicts the very decisions n2 then takes when n1 is
//! killed. Needs no root.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_lab::loopback_cluster::LocalCluster;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn simulate(args: &[&str]) -> String {
    let out = Command::new(EXE)
        .arg("simulate")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn golden_steps_from_a_saved_status() {
    let cfg = golden("explain.toml");
    let snap = golden("status.json");
    let got = simulate(&[
        "--config",
        cfg.to_str().unwrap(),
        "--snapshot",
        snap.to_str().unwrap(),
        "--move",
        "web:n2",
        "--fail",
        "n2",
    ]);
    let path = golden("simulate-move-then-fail.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    assert_eq!(got, std::fs::read_to_string(&path).unwrap(), "got:\n{got}");
    // Without a witness, a cut cable runs the group twice: said plainly.
    let cut = simulate(&[
        "--config",
        cfg.to_str().unwrap(),
        "--snapshot",
        snap.to_str().unwrap(),
        "--cut-link",
        "n2",
    ]);
    assert!(
        cut.contains("then: web on n1 and n2 (ACTIVE TWICE"),
        "{cut}"
    );
    let bad = Command::new(EXE)
        .args([
            "simulate",
            "--config",
            cfg.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--move",
            "web",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("write GROUP:NODE"));
}

/// The decisions in a text (simulated lines or log lines), digits masked.
fn decisions(lines: impl Iterator<Item = String>) -> Vec<String> {
    let keep = [
        "n1 is dead",
        "Taking over resource group",
        "Starting web/",
        "Started web/",
        "Acquisition completed",
    ];
    lines
        .filter_map(|l| {
            keep.iter()
                .find_map(|k| l.find(k).map(|i| l[i..].to_string()))
        })
        .map(|l| {
            l.chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect::<String>()
        })
        .map(|l| l.replace("###", "#").replace("##", "#"))
        .collect()
}

#[test]
fn fail_n1_predicts_what_the_cluster_then_does() {
    let s = 69;
    let text = std::fs::read_to_string(golden("explain.toml"))
        .unwrap()
        .replace("127.0.68.", &format!("127.0.{s}."));
    let nodes = vec![
        ("n1".to_string(), format!("127.0.{s}.11"), None),
        ("n2".to_string(), format!("127.0.{s}.12"), None),
    ];
    let mut c = LocalCluster::from_config(EXE.as_ref(), &text, nodes).unwrap();
    c.start_all().unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    while !c.status(1).is_ok_and(|st| {
        st.membership.groups[0].active_on == ["n1"] && st.membership.members.len() == 2
    }) {
        assert!(Instant::now() < end, "web never ran on n1");
        std::thread::sleep(Duration::from_millis(50));
    }
    let predicted = simulate(&[
        "--config",
        c.config.to_str().unwrap(),
        "--socket",
        c.nodes[1].socket.to_str().unwrap(),
        "--fail",
        "n1",
    ]);
    assert!(predicted.contains("then: web on n2"), "{predicted}");
    let predicted = decisions(
        predicted
            .lines()
            .filter(|l| l.contains(" n2: "))
            .map(str::to_string),
    );
    let before = std::fs::read_to_string(&c.nodes[1].log).unwrap().len();
    c.kill(0).unwrap();
    while !c.status(1).is_ok_and(|st| {
        st.membership.groups[0].active_on == ["n2"]
            && st.membership.groups[0].phase_here == "started"
    }) {
        assert!(
            Instant::now() < end + Duration::from_secs(10),
            "web never moved to n2"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&c.nodes[1].log).unwrap();
    let real = decisions(log[before..].lines().map(str::to_string));
    assert!(!predicted.is_empty());
    assert_eq!(
        predicted, real,
        "the simulation predicted\n{predicted:#?}\nbut n2 did\n{real:#?}"
    );
}
