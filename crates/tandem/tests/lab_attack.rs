//! Issue 12's adversarial drill: an attacker in a third namespace on the
//! heartbeat network (c2) sends, for 15 s and all at once, heartbeats it
//! captured (from before n1's restart and after), heartbeats signed with a
//! guessed key, malformed datagrams, and a flood of forgeries as fast as
//! it can, while the client probes the VIP every 10 ms. Nothing may
//! happen: no failover, no false death, no daemon restart; every kind of
//! rejected packet is counted by reason in status, and timers stay on
//! time (within 20 ms of any stall of the whole VM). (The figures at 60 s:
//! `bench/run.sh attack`, bench/README.md.) Needs root.

use std::time::Duration;

use tandem_lab::attacker::drill;
use tandem_lab::lab_cluster::{WebCluster, WebOptions};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

#[test]
fn forged_replayed_malformed_and_flooded_heartbeats_change_nothing() {
    // A stall of the whole VM (the hypervisor taking a vCPU; seen on this
    // machine up to 230 ms) makes timers late too: the per-CPU real-time
    // probe measures it, and it does not count against the daemon.
    let probe = tandem_lab::stall::Probe::start(Duration::from_millis(15));
    let mut w = WebCluster::new(
        EXE.as_ref(),
        &WebOptions {
            prefix: "tdatk".into(),
            subnet: 73,
            extra_hosts: vec!["c2".into()],
            ..WebOptions::default()
        },
    )
    .expect("lab (root needed)");
    w.start_all().unwrap();
    w.start_probe().unwrap();
    w.wait_served_by("n1", 5, Duration::from_secs(30)).unwrap();
    let r = drill(&mut w, 694, Duration::from_secs(15)).unwrap();
    let (realtime, stalls) = probe.stop();
    let machine_ms = stalls
        .iter()
        .filter(|_| realtime)
        .map(|s| s.gap.as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    println!("{r:#?}");
    assert!(
        r.flood.datagrams > 10_000,
        "the flood was weak: {:?}",
        r.flood
    );
    assert_eq!(r.answers_from_n2, 0, "a failover happened: {r:#?}");
    assert_eq!(r.deaths_logged, 0, "a node was declared dead: {r:#?}");
    assert!(r.same_processes, "a daemon restarted: {r:#?}");
    // The node loop outruns the flood: its timers are never late by more
    // than a few milliseconds beyond the longest machine-wide stall. (A
    // real-time node loop that waited on a preempted sender of its input
    // queue was late by 30 to 960 ms in half of the runs, which the probe,
    // preempting it, does not see: inbox.rs.)
    for (i, late) in r.lateness_ms.iter().enumerate() {
        assert!(
            *late <= 20.0 + machine_ms,
            "n{}'s timers were late by {late} ms (machine-wide stalls: {stalls:?}): {r:#?}",
            i + 1
        );
    }
    assert!(
        r.failed * 100 <= r.requests,
        "over 1 % of the client's requests failed: {r:#?}"
    );
    // n1's own heartbeats came back to it ("own"); n2 got n1's from its
    // old incarnation ("stale") and its current one again ("replayed").
    let expect: [&[&str]; 2] = [
        &[
            "bad_mac",
            "unknown_key",
            "wrong_cluster",
            "bad_magic",
            "truncated",
            "own",
        ],
        &[
            "bad_mac",
            "unknown_key",
            "wrong_cluster",
            "bad_magic",
            "truncated",
            "stale",
            "replayed",
        ],
    ];
    for (i, rej) in r.rejected.iter().enumerate() {
        for reason in expect[i] {
            assert!(
                rej.get(*reason).copied().unwrap_or(0) > 0,
                "n{}: no `{reason}` rejection counted: {rej:?}",
                i + 1
            );
        }
    }
    println!(
        "flood {:.0} datagrams/s; all attacks {:.0}/s; worst timer lateness {:?} ms",
        r.flood.rate(),
        r.flood.rate() + r.replays.rate() + r.forged.rate() + r.malformed.rate(),
        r.lateness_ms
    );
}
