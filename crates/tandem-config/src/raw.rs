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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTiming {
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub name: Spanned<String>,
    #[serde(default)]
    pub addresses: BTreeMap<String, Spanned<String>>,
}
