//! The files the rig writes: a native tandem.toml, or Heartbeat's and
//! DRBD's files for each node.

use super::VolumeCluster;

impl VolumeCluster {
    /// The command that starts PostgreSQL on the mounted volume.
    pub(super) fn postgres_command(&self) -> anyhow::Result<String> {
        let d = self.dir.display();
        // The lab's nodes share one PID space: the lock file's PID may be
        // the other node's postmaster (frozen side) or a zombie left by a
        // power-off (this sandbox's PID 1 may not reap), which PostgreSQL
        // takes for a live postmaster here. On separate machines neither
        // exists; a lock whose PID is not in this node's network namespace
        // is stale.
        Ok(format!(
            "P={d}/data/pg/postmaster.pid; p=$(head -1 $P 2>/dev/null); if [ -n \\\"$p\\\" ] && {{ grep -qs '^State:.*Z' /proc/$p/status || [ \\\"$(readlink /proc/$p/ns/net)\\\" != \\\"$(readlink /proc/self/ns/net)\\\" ]; }}; then rm -f $P; fi; exec setpriv --reuid=postgres --regid=postgres --init-groups {}/postgres -D {d}/data/pg -c listen_addresses=* -c unix_socket_directories= -c port=5432",
            crate::pg_client::postgres_bin()?.display()
        ))
    }

    pub(super) fn write_native(&self, subnet: u8, postgres: bool) -> anyhow::Result<()> {
        let d = self.dir.display();
        let vip = &self.vip;
        let pg = if postgres {
            format!(
                r#"
[[group.resource]]
name = "pg"
agent = "process"
params = {{ command = "{}", stop_signal = "INT" }}
check = {{ kind = "tcp", address = "127.0.0.1:5432", interval = "1s", timeout = "500ms" }}
monitor = "1s"
timeout = "30s"
"#,
                self.postgres_command()?
            )
        } else {
            String::new()
        };
        let config = format!(
            r#"cluster = "vol{subnet}"
key_file = "authkey"
state_dir = "state"
realtime = true

[[link]]
name = "lan"
kind = "ucast"
interface = "eth0"

[[node]]
name = "n1"
addresses = {{ lan = "198.18.{subnet}.11" }}

[[node]]
name = "n2"
addresses = {{ lan = "198.18.{subnet}.12" }}

[[volume]]
name = "r0"
export = "{d}/export"
device = "{d}/drbd0"
after_sb_0pri = "discard-zero-changes"
after_sb_1pri = "discard-secondary"
[volume.handlers]
"initial-split-brain" = "echo $TANDEM_HANDLER $DRBD_RESOURCE $DRBD_PEER $DRBD_PEER_ADDRESS >> {d}/handlers.log"
[volume.on.n1]
address = "198.18.{subnet}.11"
disk = "{d}/n1.img"
[volume.on.n2]
address = "198.18.{subnet}.12"
disk = "{d}/n2.img"

[[group]]
name = "db"
prefer = {{ n1 = 200, n2 = 100 }}
auto_failback = true

[[group.resource]]
name = "r0"
agent = "volume:r0"
monitor = "2s"
timeout = "30s"

[[group.resource]]
name = "fs"
agent = "ocf:heartbeat:Filesystem"
params = {{ device = "{d}/drbd0", directory = "{d}/data", fstype = "ext4" }}
monitor = "10s"
timeout = "30s"
{pg}
[[group.resource]]
name = "vip"
agent = "ipaddr"
params = {{ address = "{vip}/24", interface = "eth0" }}
monitor = "1s"
"#
        );
        std::fs::write(&self.cluster.config, config)?;
        Ok(())
    }

    /// S3's second volume: r1, protocol A, for logs (mounted at DIR/logs),
    /// in the group after r0's filesystem and before the address.
    pub(super) fn add_log_volume(&self, subnet: u8) -> anyhow::Result<()> {
        let d = self.dir.display();
        let config = std::fs::read_to_string(&self.cluster.config)?;
        let resources = format!(
            r#"[[group.resource]]
name = "r1"
agent = "volume:r1"
monitor = "2s"
timeout = "30s"

[[group.resource]]
name = "logs"
agent = "ocf:heartbeat:Filesystem"
params = {{ device = "{d}/drbd1", directory = "{d}/logs", fstype = "ext4" }}
monitor = "10s"
timeout = "30s"

[[group.resource]]
name = "vip""#
        );
        let vip = "[[group.resource]]\nname = \"vip\"";
        anyhow::ensure!(config.contains(vip), "no vip resource in the lab's config");
        let mut config = config.replacen(vip, &resources, 1);
        config.push_str(&format!(
            r#"
[[volume]]
name = "r1"
protocol = "A"
export = "{d}/export1"
device = "{d}/drbd1"
[volume.on.n1]
address = "198.18.{subnet}.11:7790"
disk = "{d}/n1-r1.img"
[volume.on.n2]
address = "198.18.{subnet}.12:7790"
disk = "{d}/n2-r1.img"
"#
        ));
        std::fs::write(&self.cluster.config, config)?;
        Ok(())
    }

    /// Each node's /etc/ha.d and /etc/drbd.d, as S1's and S3's users
    /// write them: only addresses and paths are the lab's.
    pub(super) fn write_heartbeat(&self, subnet: u8) -> anyhow::Result<()> {
        let d = self.dir.display();
        for n in ["n1", "n2"] {
            let ha = self.dir.join(n).join("ha.d");
            let drbd = self.dir.join(n).join("drbd.d");
            std::fs::create_dir_all(&ha)?;
            std::fs::create_dir_all(&drbd)?;
            std::fs::write(
                ha.join("ha.cf"),
                "keepalive 100ms\ndeadtime 1\nwarntime 500ms\ninitdead 2\nucast eth0 198.18.SUB.11\nucast eth0 198.18.SUB.12\nnode n1\nnode n2\nauto_failback on\n"
                    .replace("SUB", &subnet.to_string()),
            )?;
            std::fs::write(
                ha.join("haresources"),
                format!(
                    "n1 drbddisk::r0 Filesystem::/dev/drbd0::{d}/data::ext4 IPaddr::{}/24/eth0\n",
                    self.vip
                ),
            )?;
            std::fs::write(
                ha.join("authkeys"),
                "auth 1\n1 sha1 monClusterSecurise2025\n",
            )?;
            std::fs::set_permissions(
                ha.join("authkeys"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )?;
            std::fs::write(
                drbd.join("r0.res"),
                format!(
                    "resource r0 {{\n    protocol C;\n    on n1 {{ device /dev/drbd0; disk {d}/n1.img; address 198.18.{subnet}.11:7788; meta-disk internal; }}\n    on n2 {{ device /dev/drbd0; disk {d}/n2.img; address 198.18.{subnet}.12:7788; meta-disk internal; }}\n}}\n"
                ),
            )?;
        }
        std::fs::create_dir_all("/etc/ha.d")?;
        std::fs::create_dir_all("/etc/drbd.d")?;
        Ok(())
    }
}
