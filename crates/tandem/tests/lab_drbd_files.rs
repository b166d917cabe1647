//! S1's and S3's users change nothing (issue 11): Heartbeat's ha.cf,
//! authkeys and a haresources line `n1 drbddisk::r0
//! Filesystem::/dev/drbd0::DIR::ext4 IPaddr::VIP/24/eth0`, with the
//! workshop's DRBD resource file (protocol C, `meta-disk internal`, two
//! `on` sections, port 7788) in the sibling drbd.d, each node reading its
//! own copies at /etc/ha.d and /etc/drbd.d. `tandem daemon --heartbeat-dir
//! /etc/ha.d` runs the volume, `/dev/drbd0` and the real Filesystem agent;
//! a file written on n1 is on n2 after n1 is powered off. Needs root,
//! resource-agents, kmod, e2fsprogs.

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_lab::volume_cluster::{Mode, VolumeCluster, text};

const EXE: &str = env!("CARGO_BIN_EXE_tandem");

#[test]
fn heartbeat_and_drbd_files_run_unchanged_and_fail_over() {
    let mut c = VolumeCluster::new(Path::new(EXE), "tdhf", 83, Mode::Heartbeat).expect("lab");
    c.bring_up().expect("bring up");
    // `tandem status` shows the volume on both nodes.
    let st = c.tandem(0, &["status"]).expect("status");
    assert!(
        st.contains("Volume r0: Primary UpToDate on n1")
            && st.contains("Connected Established Secondary UpToDate"),
        "{st}"
    );
    // The group runs on n1 with /dev/drbd0 mounted where haresources says.
    let d = c.dir.display().to_string();
    let o = c
        .in_volume_ns(
            0,
            &format!("grep -q ' {d}/data ext4 ' /proc/mounts; cat {d}/data/hello; echo written-on-n1 > {d}/data/note; sync"),
        )
        .expect("nsenter");
    assert!(
        o.status.success() && text(&o).contains("tandem"),
        "n1 does not have the volume mounted: {}\n{}",
        text(&o),
        c.log_tail(0)
    );
    assert!(
        std::fs::read_link("/dev/drbd0").is_ok(),
        "/dev/drbd0 must point at the primary's loop device"
    );
    c.power_off(0).expect("power off n1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = c
            .in_volume_ns(1, &format!("cat {d}/data/note"))
            .expect("nsenter");
        if o.status.success() && text(&o).contains("written-on-n1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 never mounted the volume with n1's file: {}\n{}",
            text(&o),
            c.log_tail(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.group_on(1), vec!["n2".to_string()]);
}
