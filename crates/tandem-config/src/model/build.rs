//! From TOML text to a validated [`Config`]: the cluster, key, paths and
//! timings here; links, nodes, groups, quorum, witness and fencing from
//! their own modules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_core::Timing;

use super::check::{Checker, min_deadtime, ms, valid_name};
use super::{Config, Control, alerts, fencing, http, links, nodes, quorum, volumes};
use crate::diagnostic::{Diagnostic, Severity};
use crate::raw::RawConfig;
use crate::{ConfigError, Loaded};

pub(crate) fn build(text: &str, file: &Path) -> Result<Loaded, ConfigError> {
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let msg = e.message().trim().to_string();
            let hint = if msg.contains("unknown field") {
                Some("check the spelling; `tandem config check --help` lists every key".into())
            } else {
                None
            };
            return Err(ConfigError::Invalid(vec![Diagnostic::at(
                Severity::Error,
                file,
                text,
                at,
                msg,
                hint,
            )]));
        }
    };
    let mut c = Checker {
        text,
        file,
        out: Vec::new(),
    };

    let cluster = match &raw.cluster {
        Some(s) if valid_name(s.get_ref()) => s.get_ref().clone(),
        Some(s) => {
            c.error(
                s.span().start,
                format!("invalid cluster name `{}`", s.get_ref()),
                Some("use 1-64 letters, digits, '-', '_' or '.'".to_string()),
            );
            String::new()
        }
        None => {
            c.error(
                0,
                "missing `cluster` (the cluster's name)",
                Some("add a line such as: cluster = \"web\"".to_string()),
            );
            String::new()
        }
    };

    let base = file.parent().unwrap_or(Path::new(""));
    let key_file = match &raw.key_file {
        Some(k) if !k.get_ref().is_empty() => base.join(k.get_ref()),
        Some(k) => {
            c.error(k.span().start, "key_file is empty", None);
            PathBuf::new()
        }
        None => {
            c.error(
                0,
                "missing `key_file` (the shared secret that signs heartbeats)",
                Some(
                    "add: key_file = \"/etc/tandem/authkey\" and create it with `tandem keygen /etc/tandem/authkey`"
                        .to_string(),
                ),
            );
            PathBuf::new()
        }
    };
    let socket = raw.socket.as_ref().map_or_else(
        || PathBuf::from("/run/tandem/tandem.sock"),
        |s| base.join(s.get_ref()),
    );
    let state_dir = raw.state_dir.as_ref().map_or_else(
        || PathBuf::from("/var/lib/tandem"),
        |s| base.join(s.get_ref()),
    );

    // Timings: a preset, then defaults derived from whatever the operator
    // did set.
    let t = &raw.timing;
    let preset = t.preset.as_ref().and_then(|p| match p.get_ref().as_str() {
        "default" => Some(Timing::default()),
        "fast" => Some(Timing::fast()),
        other => {
            c.error(
                p.span().start,
                format!("unknown timing preset `{other}`"),
                Some(
                    "use preset = \"default\" (keepalive 100 ms, deadtime 500 ms) or \"fast\" (keepalive 10 ms, deadtime 25 ms)"
                        .into(),
                ),
            );
            None
        }
    });
    let keepalive = c.time(&t.keepalive, "keepalive");
    let deadtime = c.time(&t.deadtime, "deadtime");
    let warntime = c.time(&t.warntime, "warntime");
    let initdead = c.time(&t.initdead, "initdead");
    let ka = keepalive.map_or(
        preset.map_or(Duration::from_millis(100), |p| p.keepalive),
        |v| v.0,
    );
    let dt = deadtime.map_or(
        preset
            .filter(|_| keepalive.is_none())
            .map_or(ka * 5, |p| p.deadtime),
        |v| v.0,
    );
    let wt = warntime.map_or(
        preset
            .filter(|_| keepalive.is_none() && deadtime.is_none())
            .map_or(dt * 3 / 5, |p| p.warntime),
        |v| v.0,
    );
    let id = initdead.map_or(
        preset
            .filter(|_| deadtime.is_none())
            .map_or((dt * 2).max(Duration::from_secs(3)), |p| p.initdead),
        |v| v.0,
    );
    let dt_at = deadtime.or(keepalive).map_or(0, |v| v.1);
    if dt < min_deadtime(ka) {
        c.error(
            dt_at,
            format!(
                "deadtime ({}) must be at least {} ({}) with keepalive {}",
                ms(dt),
                super::check::MIN_DEADTIME_RULE,
                ms(min_deadtime(ka)),
                ms(ka)
            ),
            Some(format!(
                "set deadtime to at least {}: the lease under which a node serves must outlast the wait for the next acknowledgement and a tick of the kernel's timer (docs/safety.md, \"Lease sizing\")",
                ms(min_deadtime(ka))
            )),
        );
    }
    if wt <= ka || wt >= dt {
        c.error(
            warntime.or(deadtime).map_or(0, |v| v.1),
            format!(
                "warntime ({}) must lie between keepalive ({}) and deadtime ({})",
                ms(wt),
                ms(ka),
                ms(dt)
            ),
            Some("remove warntime to get 3/5 of deadtime".to_string()),
        );
    }
    if id < dt {
        c.error(
            initdead.map_or(0, |v| v.1),
            format!(
                "initdead ({}) must be at least deadtime ({})",
                ms(id),
                ms(dt)
            ),
            Some(
                "initdead covers nodes booting at different speeds; make it 2 x deadtime or more"
                    .to_string(),
            ),
        );
    }
    let timing = Timing {
        keepalive: ka,
        warntime: wt,
        deadtime: dt,
        initdead: id,
    };

    let links = links::build_links(&mut c, &raw, text);
    let nodes = nodes::build_nodes(&mut c, &raw, text, &links);
    let groups = crate::groups::build_groups(&mut c, &raw.groups, &nodes);
    let quorum = quorum::build_quorum(&mut c, raw.quorum.as_ref(), &nodes);
    let fencing = fencing::build_fencing(&mut c, &raw.fencing, base);
    let witness = quorum::build_witness(&mut c, &raw.witness, &nodes, &key_file, base);
    let watchdog = fencing::build_watchdog(&mut c, &raw.watchdog, base);
    let volumes = volumes::build_volumes(&mut c, &raw.volumes, &nodes, base);
    volumes::check_volume_agents(&mut c, &raw.groups, &volumes);
    if raw.fencing.is_none() {
        volumes::check_stonith_fencing(&mut c, &raw.volumes);
    }
    let http = http::build_http(&mut c, &raw.http, &nodes, base);
    let alerts = alerts::build_alerts(&mut c, &raw.alerts, base);

    let (errors, warnings): (Vec<_>, Vec<_>) = c
        .out
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(ConfigError::Invalid(all));
    }
    Ok(Loaded {
        config: Config {
            cluster,
            key_file,
            socket,
            state_dir,
            realtime: raw.realtime.unwrap_or(true),
            timing,
            links,
            nodes,
            groups,
            quorum,
            witness,
            fencing,
            watchdog,
            volumes,
            http,
            alerts,
            control: Control {
                admin_group: raw
                    .control
                    .as_ref()
                    .and_then(|c| c.get_ref().admin_group.as_ref())
                    .map(|g| g.get_ref().clone()),
                read_group: raw
                    .control
                    .as_ref()
                    .and_then(|c| c.get_ref().read_group.as_ref())
                    .map(|g| g.get_ref().clone()),
            },
        },
        warnings,
    })
}
