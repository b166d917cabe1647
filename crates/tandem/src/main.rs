//! `tandem`: one binary for the daemon and every operator command.

use tandem::{cli, daemon};
use tandem_core::Command as Cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Default configuration file.
const DEFAULT_CONFIG: &str = "/etc/tandem/tandem.toml";

/// Exit code when no daemon is running (as documented in the README).
const EXIT_NOT_RUNNING: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "tandem",
    version,
    about = "High-availability cluster manager: authenticated heartbeats, membership, failover",
    long_about = "tandem runs one daemon per node. The daemons exchange signed UDP heartbeats on every \
configured link, agree on who is alive, and report it.\n\n\
Quick start on two machines n1 and n2:\n  \
tandem keygen /etc/tandem/authkey          # once, then copy the file to every node (mode 600)\n  \
$EDITOR /etc/tandem/tandem.toml            # cluster name, [[link]]s and [[node]]s (see docs/configuration.md)\n  \
tandem config check /etc/tandem/tandem.toml\n  \
tandem daemon                              # on every node (the node name defaults to the host name)\n  \
tandem status                              # who is online, late or dead, link by link\n\n\
Exit codes: 0 success, 1 error, 2 usage error, 3 no daemon running, 4 refused by the cluster's state (joining, shutting down, a peer reachable: nothing changed; try again), 5 no such group, node or selection."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the cluster daemon for this node (foreground; logs to stderr).
    Daemon {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Which configured node this is (default: the host name, as `uname -n`).
        #[arg(long)]
        node: Option<String>,
        /// Control socket path (default: `socket` from the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// State directory (default: `state_dir` from the configuration).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Run from Heartbeat's files instead: DIR/ha.cf, DIR/haresources and
        /// DIR/authkeys (e.g. /etc/ha.d), unchanged.
        #[arg(long, value_name = "DIR", conflicts_with = "config")]
        heartbeat_dir: Option<PathBuf>,
        /// Accept an authkeys file that selects `crc` (no authentication at all).
        #[arg(long)]
        allow_insecure_crc: bool,
    },
    /// Show the cluster as the local daemon sees it: nodes, links, counters.
    Status {
        /// Print JSON instead of a table (stable field names, for scripts and monitoring).
        #[arg(long)]
        json: bool,
        /// Configuration file, used to find the control socket.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Control socket path (overrides the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Move a resource group to NODE (stop there first, then start here), or
    /// clear an earlier move with --clear.
    Move {
        /// The group.
        group: String,
        /// Where it should run.
        node: Option<String>,
        /// Only for this long (e.g. 10m, 2h); then placement decides again.
        #[arg(long = "for", value_parser = tandem_config::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Remove the operator's preference for the group.
        #[arg(long, conflicts_with_all = ["node", "duration"])]
        clear: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Put NODE in standby: its groups move away and it runs nothing.
    Standby {
        /// The node.
        node: String,
        #[command(flatten)]
        target: Target,
    },
    /// Take NODE out of standby.
    Unstandby {
        /// The node.
        node: String,
        #[command(flatten)]
        target: Target,
    },
    /// Forget a group's failures and blocked state on every node (after
    /// fixing what failed).
    Cleanup {
        /// The group.
        group: String,
        #[command(flatten)]
        target: Target,
    },
    /// Move resource groups to this node (Heartbeat's hb_takeover): all,
    /// local (those that prefer this node) or foreign (those that prefer
    /// another node).
    Takeover {
        /// all, local or foreign.
        #[arg(default_value = "all", value_parser = ["all", "local", "foreign", "failback"])]
        which: String,
        #[command(flatten)]
        target: Target,
    },
    /// Move resource groups away from this node (Heartbeat's hb_standby):
    /// all, local or foreign.
    Release {
        /// all, local or foreign.
        #[arg(default_value = "all", value_parser = ["all", "local", "foreign", "failback"])]
        which: String,
        #[command(flatten)]
        target: Target,
    },
    /// Two-node cluster, witness unreachable, both nodes waiting: let NODE
    /// (run this on NODE itself) run the groups alone. Refused while the
    /// peer is reachable. Make sure the other node is really down first.
    ForcePrimary {
        /// This node's name.
        node: String,
        #[command(flatten)]
        target: Target,
    },
    /// Probe a URL every interval and print one JSON line per answer (used
    /// by the demo and the failover benchmark as the client).
    #[command(hide = true)]
    Probe {
        /// http://address/path, or tcp://address:port (a connection opening
        /// is an answer)
        url: String,
        /// Interval between probes.
        #[arg(long, default_value = "10ms", value_parser = tandem_config::parse_duration)]
        interval: std::time::Duration,
        /// Timeout of one probe.
        #[arg(long, default_value = "100ms", value_parser = tandem_config::parse_duration)]
        timeout: std::time::Duration,
        /// Count sample times from this wall-clock instant (milliseconds
        /// since 1970) instead of from the probe's own start, so another
        /// process can compare its times with the samples.
        #[arg(long, value_name = "MS")]
        epoch_unix_ms: Option<u64>,
    },
    /// Convert existing configuration: `tandem import heartbeat /etc/ha.d`
    /// prints the native tandem.toml equivalent to ha.cf + haresources +
    /// authkeys, with comments naming each source line, and lists on stderr
    /// what was dropped.
    Import {
        /// `heartbeat` (ha.cf, haresources, authkeys; DRBD files in the
        /// sibling drbd.d when haresources names drbddisk::R) or `drbd`
        /// (resource files, to [[volume]] tables).
        #[arg(value_parser = ["heartbeat", "drbd"])]
        from: String,
        /// The Heartbeat directory (/etc/ha.d or /etc/heartbeat), or a DRBD
        /// .res file or directory (/etc/drbd.d).
        dir: PathBuf,
    },
    /// Replicated volumes (DRBD's drbdadm, in tandem): create-md, up,
    /// primary [--force], secondary, connect [--discard-my-data],
    /// disconnect, invalidate, verify, status [--json], events, down.
    ///
    /// The workshop's steps: `tandem volume create-md r0` and `tandem volume
    /// up r0` on both nodes, `tandem volume primary --force r0` on the one
    /// whose data counts (a full sync to the other follows), then use the
    /// export (NBD, or the FUSE file) on the primary.
    Volume {
        #[command(subcommand)]
        action: cli::volume_args::VolumeAction,
        /// Configuration file.
        #[arg(long, short, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// This node's name (default: the host name).
        #[arg(long, global = true)]
        node: Option<String>,
        /// State directory (default: `state_dir` of the configuration), as
        /// given to `tandem daemon --state-dir`.
        #[arg(long, global = true)]
        state_dir: Option<PathBuf>,
        /// Read Heartbeat's files (ha.cf, haresources, authkeys) and the
        /// DRBD files in the sibling drbd.d instead of --config.
        #[arg(long, global = true)]
        heartbeat_dir: Option<PathBuf>,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run the arbitrator for a third machine (like corosync-qnetd): it gives
    /// a tie-breaking vote to one node at a time of each two-node cluster it
    /// serves, so a split where both nodes reach it still leaves one side
    /// acting.
    ///
    /// The file (TOML):
    ///
    ///   listen = "0.0.0.0:7695"     # UDP address and port (default shown)
    ///   vote = "2s"                 # how long a vote lasts; nodes renew it halfway
    ///   [[cluster]]                 # one per cluster served
    ///   name = "web"                # the cluster's name, as in its tandem.toml
    ///   key_file = "web.key"        # shared with the cluster's nodes (mode 600)
    ///
    /// On the nodes: [witness] kind = "arbiter", addresses = ["IP"], key_file = "...".
    #[command(verbatim_doc_comment)]
    Witness {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/tandem/witness.toml")]
        config: PathBuf,
    },
    /// Create a new random key file (mode 600) to copy to every node.
    Keygen {
        /// Where to write the key; refuses to overwrite an existing file.
        file: PathBuf,
    },
    /// Nagios/Icinga plugin: one line `TANDEM OK - 2/2 nodes online, 1/1
    /// groups started | perfdata`, then one line per problem. Exit 0 OK, 1
    /// WARNING (a node in standby or late, a move in force, failures, one
    /// link left, a volume out of sync), 2 CRITICAL (no quorum, waiting, a
    /// node dead, a group stopped, blocked or active twice, a resource
    /// failed, a peer's last link dead), 3 UNKNOWN (no daemon).
    Check {
        /// Warn when a resource's fail count reaches this.
        #[arg(long, default_value_t = 1)]
        fail_count: u32,
        /// Warn when a member was last heard longer ago than this (ms).
        #[arg(long, default_value_t = 300)]
        late_ms: u64,
        /// Only this node's own conditions (its state, standby, its links).
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Why GROUP runs where it runs, or why it does not run: each node's
    /// score, who may run it and why not, moves, auto-failback, quorum,
    /// witness, lease, a blocked stop, data not ready, in plain sentences.
    Explain {
        /// The group.
        group: String,
        #[command(flatten)]
        target: Target,
    },
    /// What the cluster would do, step by step, if something happened:
    /// the real brains in the deterministic simulator, brought to the
    /// state of the live cluster (or of a saved `tandem status --json`).
    /// Steps apply in this order: standby, move, cut-link, resource-fails,
    /// fail.
    Simulate {
        /// Start from this saved status document instead of the daemon's.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
        /// A node loses power.
        #[arg(long, value_name = "NODE")]
        fail: Vec<String>,
        /// A node's cable is pulled (on LINK only, or on every link).
        #[arg(long, value_name = "NODE[:LINK]")]
        cut_link: Vec<String>,
        /// A node goes to standby.
        #[arg(long, value_name = "NODE")]
        standby: Vec<String>,
        /// An operator moves a group.
        #[arg(long = "move", value_name = "GROUP:NODE")]
        moves: Vec<String>,
        /// A resource dies where it runs.
        #[arg(long, value_name = "GROUP/RESOURCE")]
        resource_fails: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// The cluster's event history: one timeline, merged from every node
    /// (over their HTTP API when `[http]` is set; nodes that cannot be
    /// reached are named), kept across restarts.
    History {
        /// Only events this recent (e.g. 30m, 1h).
        #[arg(long, value_parser = tandem_config::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only events about this group.
        #[arg(long)]
        group: Option<String>,
        /// Only events seen by, or about, this node.
        #[arg(long)]
        node: Option<String>,
        /// JSON instead of lines.
        #[arg(long)]
        json: bool,
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Which configured node this is (default: the host name).
        #[arg(long)]
        local: Option<String>,
        /// This node's state directory (default: from the configuration).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Print a shell completion script, e.g. `tandem completions bash >
    /// /usr/share/bash-completion/completions/tandem` (the package installs
    /// them for bash, zsh and fish).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (tandem(8) and one per subcommand) into DIR.
    #[command(hide = true)]
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
}

/// Which daemon a command talks to.
#[derive(clap::Args, Debug)]
struct Target {
    /// Configuration file, used to find the control socket.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Control socket path (overrides the configuration).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Target {
    fn socket(&self) -> PathBuf {
        cli::status::socket_path(&self.config, self.socket.as_deref())
    }
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Validate a configuration file and print every problem with file,
    /// line, column and a hint. Exit status 1 when the file is refused.
    ///
    /// Keys: cluster, key_file, socket, state_dir, realtime; [timing] preset (default|fast), keepalive,
    /// warntime, deadtime, initdead ("2", "2s", "500ms"); [[link]] name, kind
    /// (ucast|bcast|mcast), interface, port, group, ttl; [[node]] name, addresses
    /// = { LINK = "IP" }.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // --version also names the wire protocol: nodes speaking the same one
    // can run side by side during a rolling upgrade (docs/packaging.md).
    let version = format!(
        "{} (wire protocol {}, arbitrator protocol {})",
        env!("CARGO_PKG_VERSION"),
        tandem_wire::VERSION,
        tandem_wire::arbiter::ARBITER_VERSION
    );
    let matches = <Cli as clap::CommandFactory>::command()
        .version(version)
        .get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Daemon {
            config,
            node,
            socket,
            state_dir,
            heartbeat_dir,
            allow_insecure_crc,
        } => daemon::run(&daemon::Options {
            config,
            node,
            socket,
            state_dir,
            heartbeat_dir,
            allow_insecure_crc,
        }),
        Command::Status {
            json,
            config,
            socket,
        } => match cli::status::run(&config, socket.as_deref(), json) {
            Err(e) if cli::status::is_not_running(&e) => {
                eprintln!("tandem: {e:#}");
                return ExitCode::from(EXIT_NOT_RUNNING);
            }
            r => r,
        },
        Command::Config {
            action: ConfigAction::Check { file },
        } => cli::config_check(&file),
        Command::Keygen { file } => cli::keygen(&file),
        Command::Check {
            fail_count,
            late_ms,
            node,
            target,
        } => {
            let t = cli::check::Thresholds {
                fail_count,
                late_ms,
                node,
            };
            let verdict = match cli::status::fetch(&target.socket()) {
                Ok(s) => cli::check::evaluate(&s, &t),
                Err(e) => cli::check::unknown(&format!("{e:#}")),
            };
            println!("{}", verdict.text);
            return ExitCode::from(verdict.state as u8);
        }
        Command::Explain { group, target } => (|| {
            let cfg = tandem_config::load(&target.config)?.config;
            let st = cli::status::fetch(&target.socket())?;
            let text = cli::explain::explain(&cfg, &st, &group).map_err(anyhow::Error::msg)?;
            print!("{text}");
            Ok(())
        })(),
        Command::Simulate {
            snapshot,
            fail,
            cut_link,
            standby,
            moves,
            resource_fails,
            target,
        } => (|| {
            let cfg = tandem_config::load(&target.config)?.config;
            let st = match &snapshot {
                Some(f) => serde_json::from_str(&std::fs::read_to_string(f)?).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: not a `tandem status --json` document: {e}",
                        f.display()
                    )
                })?,
                None => cli::status::fetch(&target.socket())?,
            };
            let steps = cli::simulate::steps(&standby, &moves, &cut_link, &resource_fails, &fail)
                .map_err(anyhow::Error::msg)?;
            print!(
                "{}",
                cli::simulate::simulate(&cfg, &st, &steps).map_err(anyhow::Error::msg)?
            );
            Ok(())
        })(),
        Command::History {
            since,
            group,
            node,
            json,
            config,
            local,
            state_dir,
        } => cli::history::run(
            &config,
            &local.unwrap_or_else(daemon::hostname),
            state_dir.as_deref(),
            &cli::history::Query {
                since,
                group,
                node,
                json,
            },
        ),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            cli::generate::completions(&mut cmd, shell);
            Ok(())
        }
        Command::Man { dir } => {
            cli::generate::man_pages(&<Cli as clap::CommandFactory>::command(), &dir).map(|files| {
                for f in files {
                    println!("{}", f.display());
                }
            })
        }
        Command::Witness { config } => tandem::witness::run(&config),
        Command::Import { from, dir } if from == "drbd" => cli::import_drbd(&dir),
        Command::Import { dir, .. } => cli::import_heartbeat(&dir),
        Command::Volume {
            action,
            config,
            node,
            state_dir,
            heartbeat_dir,
        } => match &heartbeat_dir {
            Some(d) => cli::volume_args::dispatch(action, d, true, node.as_deref(), state_dir),
            None => cli::volume_args::dispatch(action, &config, false, node.as_deref(), state_dir),
        },
        Command::Move {
            group,
            node,
            duration,
            clear,
            target,
        } => {
            if node.is_none() && !clear {
                eprintln!("tandem: name the node to move {group} to, or pass --clear");
                return ExitCode::from(2);
            }
            cli::command(
                &target.socket(),
                Cmd::Move {
                    group,
                    node,
                    duration,
                },
            )
        }
        Command::Standby { node, target } => {
            cli::command(&target.socket(), Cmd::Standby { node, on: true })
        }
        Command::Unstandby { node, target } => {
            cli::command(&target.socket(), Cmd::Standby { node, on: false })
        }
        Command::Cleanup { group, target } => {
            cli::command(&target.socket(), Cmd::Cleanup { group })
        }
        Command::Takeover { which, target } => {
            cli::command(&target.socket(), Cmd::TakeOver { take: true, which })
        }
        Command::Release { which, target } => {
            cli::command(&target.socket(), Cmd::TakeOver { take: false, which })
        }
        Command::ForcePrimary { node, target } => {
            cli::command(&target.socket(), Cmd::ForcePrimary { node })
        }
        Command::Probe {
            url,
            interval,
            timeout,
            epoch_unix_ms,
        } => cli::probe::run(&url, interval, timeout, epoch_unix_ms),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            if let Some(r) = e.downcast_ref::<cli::Refused>() {
                ExitCode::from(r.exit_code())
            } else if cli::status::is_not_running(&e) {
                ExitCode::from(EXIT_NOT_RUNNING)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
