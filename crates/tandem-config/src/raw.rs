//! The configuration as written, before validation: every field keeps its
//! position in the file so errors can point at it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub cluster: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub socket: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    pub realtime: Option<bool>,
    #[serde(default)]
    pub timing: RawTiming,
    #[serde(default, rename = "link")]
    pub links: Vec<Spanned<RawLink>>,
    #[serde(default, rename = "node")]
    pub nodes: Vec<Spanned<RawNode>>,
    #[serde(default, rename = "group")]
    pub groups: Vec<Spanned<RawGroup>>,
    pub quorum: Option<Spanned<RawQuorum>>,
    pub witness: Option<Spanned<RawWitness>>,
    pub fencing: Option<Spanned<RawFencing>>,
    pub watchdog: Option<Spanned<RawWatchdog>>,
    pub control: Option<Spanned<RawControl>>,
    pub http: Option<Spanned<RawHttp>>,
    #[serde(default, rename = "alert")]
    pub alerts: Vec<Spanned<RawAlert>>,
    #[serde(default, rename = "volume")]
    pub volumes: Vec<Spanned<RawVolume>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVolume {
    pub name: Spanned<String>,
    pub disk: Option<Spanned<String>>,
    pub meta: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<String>>,
    pub export: Option<Spanned<String>>,
    pub nbd: Option<Spanned<String>>,
    pub al_extents: Option<Spanned<i64>>,
    pub device: Option<Spanned<String>>,
    pub after_sb_0pri: Option<Spanned<String>>,
    pub after_sb_1pri: Option<Spanned<String>>,
    pub after_sb_2pri: Option<Spanned<String>>,
    /// `dont-care`, `resource-only` (default) or `resource-and-stonith`.
    pub fencing: Option<Spanned<String>>,
    /// Resync compares checksums first.
    pub csums: Option<Spanned<bool>>,
    /// Resync rate limit per peer: KiB/s, or with a K/M/G suffix.
    pub resync_rate: Option<Spanned<String>>,
    /// Resync rate while the application writes.
    pub resync_min_rate: Option<Spanned<String>>,
    /// DRBD's dynamic resync controller: how far ahead it plans (enables it).
    pub c_plan_ahead: Option<Spanned<String>>,
    /// Controller: data kept in flight (K/M/G).
    pub c_fill_target: Option<Spanned<String>>,
    /// Controller: the link's delay kept in flight.
    pub c_delay_target: Option<Spanned<String>>,
    /// Controller: the most it resyncs per second.
    pub c_max_rate: Option<Spanned<String>>,
    #[serde(default)]
    pub handlers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub on: BTreeMap<String, Spanned<RawVolumeNode>>,
    /// Per-connection settings (`[[volume.connection]]`).
    #[serde(default, rename = "connection")]
    pub connections: Vec<Spanned<RawVolumeConnection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVolumeConnection {
    /// The two nodes it joins.
    pub hosts: Spanned<Vec<String>>,
    /// Its replication protocol.
    pub protocol: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVolumeNode {
    pub address: Spanned<String>,
    pub disk: Option<Spanned<String>>,
    pub device: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub admin_group: Option<Spanned<String>>,
    pub read_group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    pub program: Option<Spanned<String>>,
    pub mail_to: Option<Spanned<String>>,
    pub subject: Option<Spanned<String>>,
    pub sendmail: Option<Spanned<String>>,
    pub groups: Option<Vec<Spanned<String>>>,
    pub recipient: Option<Spanned<String>>,
    pub kinds: Option<Vec<Spanned<String>>>,
    pub timeout: Option<Spanned<RawTime>>,
    pub retries: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub on: BTreeMap<String, Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub tokens_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWatchdog {
    pub device: Option<Spanned<String>>,
    pub timeout: Option<Spanned<RawTime>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFencing {
    pub agent: Spanned<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub action: Option<String>,
    pub timeout: Option<Spanned<RawTime>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWitness {
    pub addresses: Vec<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<RawTime>>,
    pub key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuorum {
    pub policy: Option<Spanned<String>>,
    pub no_quorum: Option<Spanned<String>>,
    pub wait_for_all: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub name: Spanned<String>,
    #[serde(default)]
    pub prefer: BTreeMap<String, Spanned<i64>>,
    pub auto_failback: Option<bool>,
    pub stickiness: Option<Spanned<i64>>,
    pub migration_threshold: Option<Spanned<i64>>,
    pub failure_timeout: Option<Spanned<RawTime>>,
    #[serde(default, rename = "resource")]
    pub resources: Vec<Spanned<RawResource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResource {
    pub name: Spanned<String>,
    pub agent: Spanned<String>,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<toml::Value>>,
    pub monitor: Option<Spanned<RawTime>>,
    pub timeout: Option<Spanned<RawTime>>,
    pub start_timeout: Option<Spanned<RawTime>>,
    pub stop_timeout: Option<Spanned<RawTime>>,
    pub monitor_timeout: Option<Spanned<RawTime>>,
    pub check: Option<Spanned<RawCheck>>,
    pub native: Option<Spanned<bool>>,
    pub watch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    pub kind: Spanned<String>,
    pub address: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<i64>>,
    pub expect_body: Option<String>,
    pub command: Option<Spanned<String>>,
    pub interval: Option<Spanned<RawTime>>,
    pub timeout: Option<Spanned<RawTime>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTiming {
    pub preset: Option<Spanned<String>>,
    pub keepalive: Option<Spanned<RawTime>>,
    pub warntime: Option<Spanned<RawTime>>,
    pub deadtime: Option<Spanned<RawTime>>,
    pub initdead: Option<Spanned<RawTime>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawTime {
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub interface: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub group: Option<Spanned<String>>,
    pub ttl: Option<Spanned<i64>>,
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub name: Spanned<String>,
    pub votes: Option<Spanned<i64>>,
    #[serde(default)]
    pub addresses: BTreeMap<String, Spanned<String>>,
}
