//! Bringing the rig up: metadata, daemons, the initial sync, a filesystem
//! on each volume, and the group started on n1.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Mode, VolumeCluster, text};

impl VolumeCluster {
    /// Sets everything up: metadata on both nodes, the daemons (both in
    /// standby meanwhile), the initial sync, ext4 (and the database), then
    /// lets the cluster run the group on n1.
    pub fn bring_up(&mut self) -> anyhow::Result<()> {
        let names = self.volume_names();
        for i in 0..2 {
            for v in names {
                self.vol_ok(i, &["create-md", v])?;
            }
        }
        for i in 0..2 {
            self.start(i)?;
        }
        for i in 0..2 {
            self.cluster
                .wait_for(i, Duration::from_secs(20), "joined", |s| {
                    s.membership.joined && s.membership.members.len() == 2
                })?;
        }
        for n in ["n1", "n2"] {
            self.tandem(0, &["standby", n])?;
        }
        for i in 0..2 {
            for v in names {
                self.wait_volume_of(i, v, "connected", Duration::from_secs(30), |s| {
                    s["peers"][0]["connection"] == "Connected"
                })?;
            }
        }
        self.cluster
            .wait_for(0, Duration::from_secs(10), "the group held back", |s| {
                s.membership.groups[0]
                    .data_hold_here
                    .as_deref()
                    .is_some_and(|h| h.contains("Inconsistent"))
            })
            .context("a fresh copy must hold the group back")?;
        for v in names {
            self.vol_ok(0, &["primary", "--force", v])?;
            self.wait_volume_of(1, v, "initial sync", Duration::from_secs(60), |s| {
                s["disk"] == "UpToDate"
            })?;
        }
        let d = self.dir.display();
        let f = self.export_file();
        let mut script = String::new();
        if self.mode == Mode::TwoVolumes {
            script.push_str(&format!(
                "L=$(losetup -f --show --direct-io=on {f}); mkfs.ext4 -q $L; mount $L {d}/logs; echo tandem > {d}/logs/hello; umount {d}/logs; losetup -d $L; ",
                f = self.export_file_of("r1").display()
            ));
        }
        script.push_str(&format!(
            "L=$(losetup -f --show --direct-io=on {f}); mkfs.ext4 -q $L; mount $L {d}/data; echo tandem > {d}/data/hello; ",
            f = f.display()
        ));
        if self.mode == (Mode::Native { postgres: true }) {
            script.push_str(&format!(
                "mkdir {d}/data/pg; chown postgres:postgres {d}/data/pg; cd /; setpriv --reuid=postgres --regid=postgres --init-groups {pg}/initdb -D {d}/data/pg --auth=trust -U postgres >/dev/null; echo 'host all all 0.0.0.0/0 trust' >> {d}/data/pg/pg_hba.conf; ",
                pg = crate::pg_client::postgres_bin()?.display()
            ));
        }
        script.push_str(&format!("umount {d}/data; losetup -d $L"));
        let o = self.in_volume_ns(0, &script)?;
        if !o.status.success() {
            bail!("mkfs on the volume: {}", text(&o));
        }
        for v in names {
            self.vol_ok(0, &["secondary", v])?;
        }
        for n in ["n1", "n2"] {
            self.tandem(0, &["unstandby", n])?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.started_on(0) || self.group_on(1) != ["n1"] {
            if Instant::now() > deadline {
                bail!("the group never started on n1:\n{}", self.log_tail(0));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.mode == (Mode::Native { postgres: true }) {
            let deadline = Instant::now() + Duration::from_secs(60);
            while self
                .psql("create table t (v int primary key)", Duration::from_secs(3))
                .is_none()
            {
                if Instant::now() > deadline {
                    bail!(
                        "the database never answered through the VIP:\n{}",
                        self.log_tail(0)
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }
}
