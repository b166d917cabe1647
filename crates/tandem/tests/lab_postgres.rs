//! Scenario S3 end to end (issue 11): Debian's PostgreSQL on a replicated
//! volume, run by tandem on two namespaced nodes. Group `db` = `volume:r0`
//! (promote) → the real `ocf:heartbeat:Filesystem` (ext4 on the loop
//! device the volume agent points `drbd0` at) → PostgreSQL → VIP. A client
//! in a third namespace inserts rows through the VIP and records every
//! acknowledged commit; the primary is powered off mid-load; the other
//! node takes over; every acknowledged row must be there. The old primary
//! returns, resyncs, and (auto_failback) takes the group back only once
//! its copy is UpToDate, with the data intact. Also: a frozen primary's
//! daemon: once the peer has promoted, the frozen side's export refuses
//! writes. Needs root, PostgreSQL (postgresql), psql, resource-agents and
//! kmod; fails with a clear message otherwise.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tandem_lab::pg_client::Ledger;
use tandem_lab::volume_cluster::{Mode, VolumeCluster as Rig, text};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

fn rig(prefix: &str, subnet: u8) -> Rig {
    let mut r = Rig::new(
        Path::new(EXE),
        prefix,
        subnet,
        Mode::Native { postgres: true },
    )
    .expect("the PostgreSQL lab");
    r.bring_up().expect("bring up");
    r
}

/// Every acknowledged row is in the table; every row in it was sent.
fn check_rows(rig: &Rig, l: &Ledger, when: &str) -> usize {
    // Polled: one select may meet the address just moved (seen once in a
    // local run, not reproduced in seven); a lasting failure still fails.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failed = 0;
    let rows = loop {
        match rig.psql("select v from t order by v", Duration::from_secs(5)) {
            Some(rows) => break rows,
            None if Instant::now() < deadline => failed += 1,
            None => panic!("{when}: no select through the VIP succeeded in 20 s"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if failed > 0 {
        println!("{when}: {failed} select(s) through the VIP failed before one answered");
    }
    let present: std::collections::BTreeSet<i64> =
        rows.lines().filter_map(|x| x.parse().ok()).collect();
    let l = l.lock().expect("ledger");
    let lost: Vec<i64> = l
        .iter()
        .filter(|(v, a, _)| *a && !present.contains(v))
        .map(|x| x.0)
        .collect();
    assert!(lost.is_empty(), "{when}: acknowledged rows lost: {lost:?}");
    let sent: std::collections::BTreeSet<i64> = l.iter().map(|x| x.0).collect();
    let phantom: Vec<&i64> = present.iter().filter(|v| !sent.contains(v)).collect();
    assert!(phantom.is_empty(), "{when}: rows nobody sent: {phantom:?}");
    let acked = l.iter().filter(|x| x.1).count();
    let unacked_present = l
        .iter()
        .filter(|(v, a, _)| !*a && present.contains(v))
        .count();
    println!(
        "{when}: {} rows present, {acked} acknowledged (all present), {unacked_present} unacknowledged that committed anyway",
        present.len()
    );
    present.len()
}

/// The drills run one at a time: each runs two daemons, two volumes and
/// PostgreSQL, and a power-off's cleanup must not meet the other's mounts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn postgres_survives_power_off_and_fails_back_after_resync() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut rig = rig("tdpg", 81);
    let mut client = rig.insert_client(Duration::from_secs(3)).expect("client");
    let ledger = client.ledger.clone();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    while client.acked_after(t0) < 40 {
        assert!(
            Instant::now() < deadline,
            "the client got no steady acknowledgements"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Power off the primary mid-load.
    let off = Instant::now();
    rig.power_off(0).expect("power off n1");
    let deadline = off + Duration::from_secs(60);
    while client.acked_after(off) < 30 {
        assert!(
            Instant::now() < deadline,
            "n2 never took over:\n{}",
            rig.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let failover = client.longest_gap(off);
    assert_eq!(rig.group_on(1), vec!["n2".to_string()]);
    check_rows(&rig, &ledger, "after the power-off");
    // n1 returns: it resyncs, and only then takes the group back.
    let back = Instant::now();
    rig.power_on(0).expect("power n1 on");
    let deadline = back + Duration::from_secs(90);
    loop {
        if rig.group_on(0).contains(&"n1".to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group never came back to n1:\n{}",
            rig.log_tail(0)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&rig.cluster.nodes[0].log).unwrap_or_default();
    assert!(
        log.contains("db: not startable here: volume r0"),
        "n1 must have held the group back while its copy was not UpToDate:\n{}",
        rig.log_tail(0)
    );
    let moved = Instant::now();
    let deadline = moved + Duration::from_secs(60);
    while client.acked_after(moved) < 20 {
        assert!(
            Instant::now() < deadline,
            "no acknowledgement after the failback:\n{}",
            rig.log_tail(0)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    client.stop();
    let failback = client.longest_gap(back);
    let rows = check_rows(&rig, &ledger, "after the failback");
    assert!(rows >= 90, "too few rows: {rows}");
    let figures = format!(
        "{{\"power_off_outage_ms\": {}, \"failback_outage_ms\": {}, \"rows\": {rows}}}",
        failover.as_millis(),
        failback.as_millis()
    );
    println!(
        "postgres drill: client outage on power-off {failover:?}, on failback (planned switchover) {failback:?}"
    );
    if let Some(out) = std::env::var_os("TANDEM_BENCH_OUT") {
        std::fs::write(out, figures).expect("write figures");
    }
}

#[test]
fn a_frozen_primary_stops_writing_before_its_peer_promotes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rig = rig("tdpf", 82);
    assert_eq!(
        rig.psql(
            "insert into t values (1) returning v",
            Duration::from_secs(3)
        )
        .as_deref(),
        Some("1")
    );
    // Freeze n1's daemon (not its volume process, nor PostgreSQL) well
    // past its lease: nothing renews the volume's lease any more.
    rig.cluster.signal(0, libc::SIGSTOP).expect("SIGSTOP n1");
    let frozen = Instant::now();
    let deadline = frozen + Duration::from_secs(60);
    while !(rig.group_on(1) == vec!["n2".to_string()]
        && rig
            .psql(
                "insert into t values (2) returning v",
                Duration::from_secs(3),
            )
            .as_deref()
            == Some("2"))
    {
        assert!(
            Instant::now() < deadline,
            "n2 never took over:\n{}",
            rig.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // n2 is primary now. The frozen side's export takes no write: the
    // application there gets an I/O error, not a silent acceptance.
    let d = rig.dir.display();
    let o = rig
        .in_volume_ns(
            0,
            &format!("dd if=/dev/zero of={d}/export/r0 bs=4096 count=1 seek=1000 oflag=direct conv=notrunc 2>&1"),
        )
        .expect("nsenter");
    assert!(
        !o.status.success(),
        "a write on the frozen primary's export was accepted after n2 promoted: {}",
        text(&o)
    );
    let s = rig.vstatus(0);
    assert_eq!(
        s["role"], "Secondary",
        "n1's volume must have demoted itself: {s:#}"
    );
    let vlog = std::fs::read_to_string(rig.state(0).join("volumes/r0.log")).unwrap_or_default();
    assert!(vlog.contains("lost the cluster's lease"), "{vlog}");
    println!("frozen side refused the write: {}", text(&o).trim());
    // n1 wakes up: it releases what it ran, rejoins, and (auto_failback)
    // takes the group back with n2's rows.
    rig.cluster.signal(0, libc::SIGCONT).expect("SIGCONT n1");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(rig.group_on(0) == vec!["n1".to_string()]
        && rig
            .psql(
                "select count(*) from t where v in (1, 2)",
                Duration::from_secs(3),
            )
            .as_deref()
            == Some("2"))
    {
        assert!(
            Instant::now() < deadline,
            "n1 never took the group back with both rows:\n{}\n{}",
            rig.log_tail(0),
            rig.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
