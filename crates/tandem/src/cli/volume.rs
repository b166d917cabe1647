//! `tandem volume …`: replicated volumes, in drbdadm's words, so the DRBD
//! workshop's steps translate one to one: `create-md`, `up`, `primary
//! [--force]`, `secondary`, `connect [--discard-my-data]`, `disconnect`,
//! `invalidate`, `verify`, `status [--json]`, `events`, `down`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tandem_config::Config;

use crate::volume::control::{self, Answer, Command};
use crate::volume::store::MetaStore;

/// What every `tandem volume` command needs.
pub struct Target {
    /// The configuration.
    pub config: Config,
    /// Its path.
    pub path: PathBuf,
    /// This node's name.
    pub node: String,
}

impl Target {
    /// Loads `path` (a tandem.toml, or a Heartbeat directory when
    /// `heartbeat` is set); the node is `node` or the host name.
    pub fn load(path: &Path, node: Option<&str>, heartbeat: bool) -> anyhow::Result<Self> {
        let config = if heartbeat {
            tandem_config::legacy::load_dir(path)?.loaded.config
        } else {
            tandem_config::load(path)?.config
        };
        let node = crate::daemon::local_node(&config, path, node)?;
        Ok(Self {
            config,
            path: path.to_path_buf(),
            node,
        })
    }

    pub(crate) fn volume(&self, name: &str) -> anyhow::Result<&tandem_config::Volume> {
        self.config
            .volumes
            .iter()
            .find(|v| v.name == name)
            .with_context(|| {
                let known: Vec<&str> = self
                    .config
                    .volumes
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect();
                format!(
                    "no volume `{name}` in {} (volumes: {}); add a [[volume]] table",
                    self.path.display(),
                    known.join(", ")
                )
            })
    }

    pub(crate) fn socket(&self, name: &str) -> PathBuf {
        control::socket_path(&self.config.state_dir, name)
    }

    /// The volumes with a copy on this node.
    fn mine(&self) -> Vec<String> {
        self.config
            .volumes
            .iter()
            .filter(|v| v.node(&self.node).is_some())
            .map(|v| v.name.clone())
            .collect()
    }
}

/// `create-md NAME [--force]`.
pub fn create_md(t: &Target, name: &str, force: bool) -> anyhow::Result<()> {
    let v = t.volume(name)?;
    let (me, node) = v.node(&t.node).with_context(|| {
        format!(
            "volume {name} has no copy on {} ([volume.on.{}] is missing)",
            t.node, t.node
        )
    })?;
    let peers: Vec<u8> = (0..v.nodes.len() as u8)
        .filter(|i| *i as usize != me)
        .collect();
    let locator = crate::volume::store::locator_path(&t.config.state_dir, name);
    let (mut store, size) = MetaStore::open(
        &node.disk,
        &v.meta,
        peers.len(),
        v.al_extents,
        Some(locator),
    )?;
    if store.load(name).is_ok() && !force {
        bail!(
            "volume {name}: {} already holds tandem metadata; `create-md --force` overwrites it and forgets which copy is newest",
            node.disk.display()
        );
    }
    let meta = tandem_volumes::Metadata::create(size, me as u8, &peers, v.al_extents);
    store.create(&meta)?;
    println!(
        "{name}: metadata created on {} ({} MiB usable); the copy is inconsistent until `primary --force` on one node or a sync",
        node.disk.display(),
        size >> 20
    );
    Ok(())
}

/// `up NAME`: starts the volume's process and waits until it answers.
pub fn up(t: &Target, name: &str) -> anyhow::Result<()> {
    t.volume(name)?;
    let sock = t.socket(name);
    if control::request(&sock, &Command::Status).is_ok() {
        println!("{name}: already up");
        return Ok(());
    }
    crate::volume::launch::launch(
        &crate::volume::launch::Source::Config(t.path.clone()),
        &t.config.state_dir,
        &t.node,
        name,
    )?;
    println!(
        "{name}: up (log: {})",
        crate::volume::log_path(&t.config.state_dir, name).display()
    );
    Ok(())
}

/// Sends a command and prints its answer.
pub fn command(t: &Target, name: &str, cmd: Command) -> anyhow::Result<()> {
    t.volume(name)?;
    match control::request(&t.socket(name), &cmd)? {
        Answer::Done { message } => {
            println!("{message}");
            Ok(())
        }
        Answer::Refused { message } => bail!("{message}"),
        Answer::Events { lines } => {
            for l in lines {
                println!("{l}");
            }
            Ok(())
        }
        Answer::Status { status, .. } => {
            print!("{}", status.render());
            Ok(())
        }
    }
}

/// `status [NAME] [--json]`.
pub fn status(t: &Target, name: Option<&str>, json: bool) -> anyhow::Result<()> {
    let names = match name {
        Some(n) => {
            t.volume(n)?;
            vec![n.to_string()]
        }
        None => t.mine(),
    };
    let mut all = Vec::new();
    for n in names {
        match control::request(&t.socket(&n), &Command::Status) {
            Ok(Answer::Status { status, info }) => {
                if json {
                    all.push(status_json(&status, &info));
                } else {
                    print!("{}", status.render());
                }
            }
            Ok(_) => bail!("{n}: unexpected answer"),
            Err(_) if json => all.push(serde_json::json!({ "name": n, "role": "Down" })),
            Err(_) => println!("{n} role:Down (not up on this node; `tandem volume up {n}`)"),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

fn status_json(s: &tandem_volumes::VolumeStatus, info: &control::Info) -> serde_json::Value {
    let oos: u64 = s.peers.iter().map(|p| p.out_of_sync_kib).max().unwrap_or(0);
    let c = &s.counters;
    serde_json::json!({
        "name": s.name,
        "role": s.role,
        "disk": s.disk,
        "size": s.size,
        "device": info.device,
        "nbd": info.nbd,
        "peers": s.peers.iter().map(|p| serde_json::json!({
            "node": p.node,
            "connection": p.connection,
            "replication": p.replication,
            "role": p.role,
            "peer_disk": p.peer_disk,
            "done": p.done,
            "out_of_sync_kib": p.out_of_sync_kib,
            "resync_kib_s": p.resync_kib_s,
            "eta_seconds": p.eta_seconds,
            "protocol": p.protocol,
        })).collect::<Vec<_>>(),
        "ns": c.ns, "nr": c.nr, "dw": c.dw, "dr": c.dr, "al": c.al, "bm": c.bm,
        "lo": c.lo, "ap": c.ap,
        "pe": s.peers.iter().map(|p| p.pending).sum::<u64>(),
        "ua": s.peers.iter().map(|p| p.unacked).sum::<u64>(),
        "oos": oos,
        "suspended_for": s.suspended_for,
    })
}
