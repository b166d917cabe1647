//! OCF resource agents and LSB init scripts.
//!
//! OCF: `/usr/lib/ocf/resource.d/PROVIDER/TYPE ACTION` with `OCF_ROOT`,
//! `OCF_RESOURCE_INSTANCE`, `OCF_RESKEY_<param>` and
//! `OCF_RESKEY_CRM_meta_timeout` (milliseconds); exit codes per the OCF
//! resource agent API: 0 success, 7 not running, 1–6 errors, 8/9 promoted.
//! LSB: `SCRIPT start|stop|status`, status 0 running, 3 not running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_core::{Op, OpResult};

use crate::exec::{Exit, run};

/// Root of OCF agents.
pub const OCF_ROOT: &str = "/usr/lib/ocf";

/// Maps an OCF exit code for `op` to a result (a pure, table-tested function).
pub fn ocf_result(op: Op, code: i32, output: &str) -> OpResult {
    let why = |name: &str| {
        if output.is_empty() {
            format!("{name} (exit {code})")
        } else {
            format!("{name} (exit {code}): {}", last_line(output))
        }
    };
    match (op, code) {
        (_, 0) => OpResult::Ok,
        (Op::Monitor, 7) => OpResult::NotRunning,
        (Op::Stop, 7) => OpResult::Ok,
        (Op::Monitor, 8) => OpResult::Ok,
        (_, 1) => OpResult::Failed(why("generic error")),
        (_, 2) => OpResult::Failed(why("invalid argument")),
        (_, 3) => OpResult::Failed(why("unimplemented action")),
        (_, 4) => OpResult::Failed(why("insufficient privileges")),
        (_, 5) => OpResult::Failed(why("not installed")),
        (_, 6) => OpResult::Failed(why("not configured")),
        (_, 7) => OpResult::Failed(why("not running")),
        _ => OpResult::Failed(why("failed")),
    }
}

/// Maps an LSB exit code for `op` to a result.
pub fn lsb_result(op: Op, code: i32, output: &str) -> OpResult {
    match (op, code) {
        (_, 0) => OpResult::Ok,
        (Op::Monitor, 3) => OpResult::NotRunning,
        // LSB: stopping a stopped service succeeds; some scripts say 5/7.
        (Op::Stop, 5 | 7) => OpResult::Ok,
        _ => OpResult::Failed(if output.is_empty() {
            format!("exit {code}")
        } else {
            format!("exit {code}: {}", last_line(output))
        }),
    }
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

fn exit_to(op: Op, exit: Exit, map: fn(Op, i32, &str) -> OpResult) -> OpResult {
    match exit {
        Exit::Code(c, out) => map(op, c, &out),
        Exit::Signal(s) => OpResult::Failed(format!("killed by signal {s}")),
        Exit::TimedOut => OpResult::TimedOut,
        Exit::SpawnFailed(e) => OpResult::Failed(e),
    }
}

/// Runs an OCF agent action.
pub fn ocf(
    provider: &str,
    kind: &str,
    instance: &str,
    params: &BTreeMap<String, String>,
    op: Op,
    timeout: Duration,
) -> OpResult {
    let path = Path::new(OCF_ROOT)
        .join("resource.d")
        .join(provider)
        .join(kind);
    let action = match op {
        Op::Start => "start",
        Op::Stop => "stop",
        Op::Monitor => "monitor",
    };
    let mut env: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.clone()))
        .collect();
    env.insert("OCF_ROOT".into(), OCF_ROOT.into());
    env.insert("OCF_RESOURCE_INSTANCE".into(), instance.into());
    env.insert("OCF_RESOURCE_TYPE".into(), kind.into());
    env.insert("OCF_RESOURCE_PROVIDER".into(), provider.into());
    env.insert("OCF_RA_VERSION_MAJOR".into(), "1".into());
    env.insert("OCF_RA_VERSION_MINOR".into(), "1".into());
    env.insert(
        "OCF_RESKEY_CRM_meta_timeout".into(),
        timeout.as_millis().to_string(),
    );
    let path = path.to_string_lossy().to_string();
    exit_to(op, run(&path, &[action], &env, timeout), ocf_result)
}

/// Timeouts and monitor interval an OCF agent recommends in its meta-data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OcfDefaults {
    /// `<action name="start" timeout=…>`.
    pub start: Option<Duration>,
    /// `<action name="stop" timeout=…>`.
    pub stop: Option<Duration>,
    /// `<action name="monitor" timeout=…>`.
    pub monitor_timeout: Option<Duration>,
    /// `<action name="monitor" interval=…>` (0 or absent: none).
    pub monitor_interval: Option<Duration>,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &tag[at..];
    Some(&rest[..rest.find('"')?])
}

/// Reads the `<actions>` of an OCF agent's meta-data (pure).
pub fn parse_meta_data(xml: &str) -> OcfDefaults {
    let mut d = OcfDefaults::default();
    for tag in xml.split("<action ").skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let time = |n: &str| {
            attr(tag, n)
                .and_then(|v| tandem_config::parse_duration(v).ok())
                .filter(|t| !t.is_zero())
        };
        match attr(tag, "name") {
            Some("start") => d.start = time("timeout"),
            Some("stop") => d.stop = time("timeout"),
            Some("monitor") | Some("status") if d.monitor_timeout.is_none() => {
                d.monitor_timeout = time("timeout");
                d.monitor_interval = time("interval");
            }
            _ => {}
        }
    }
    d
}

/// Runs `AGENT meta-data` and reads its recommended timeouts.
pub fn ocf_meta_data(provider: &str, kind: &str) -> Option<OcfDefaults> {
    let path = Path::new(OCF_ROOT)
        .join("resource.d")
        .join(provider)
        .join(kind);
    let env = BTreeMap::from([("OCF_ROOT".to_string(), OCF_ROOT.to_string())]);
    match run(
        &path.to_string_lossy(),
        &["meta-data"],
        &env,
        Duration::from_secs(5),
    ) {
        Exit::Code(0, out) => Some(parse_meta_data(&out)),
        _ => None,
    }
}

/// Finds an LSB script: an absolute path, else `/etc/ha.d/resource.d/NAME`,
/// else `/etc/init.d/NAME` (Heartbeat's lookup order).
pub fn lsb_path(script: &str) -> Option<PathBuf> {
    if script.starts_with('/') {
        return Some(PathBuf::from(script));
    }
    ["/etc/ha.d/resource.d", "/etc/init.d"]
        .iter()
        .map(|d| Path::new(d).join(script))
        .find(|p| p.is_file())
}

/// Heartbeat R1's ownership test on `status` output (ResourceManager's
/// `we_own_resource`): "not running" means stopped; "running" or "OK" means
/// running; anything else means stopped.
pub fn r1_status(output: &str) -> OpResult {
    if output.contains("not running") {
        OpResult::NotRunning
    } else if output.contains("running") || output.contains("OK") {
        OpResult::Ok
    } else {
        OpResult::NotRunning
    }
}

/// Runs an LSB script action, with optional leading arguments (Heartbeat's
/// `NAME::ARG::ARG` form passes them before the action). With `r1`, the
/// status is read from the output as Heartbeat's haresources did.
pub fn lsb(script: &str, args: &[String], op: Op, timeout: Duration, r1: bool) -> OpResult {
    let Some(path) = lsb_path(script) else {
        return OpResult::Failed(format!(
            "no script `{script}` in /etc/ha.d/resource.d or /etc/init.d"
        ));
    };
    let action = match op {
        Op::Start => "start",
        Op::Stop => "stop",
        Op::Monitor => "status",
    };
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.push(action);
    let path = path.to_string_lossy().to_string();
    let exit = run(&path, &argv, &BTreeMap::new(), timeout);
    match (r1, op, exit) {
        (true, Op::Monitor, Exit::Code(_, out)) => r1_status(&out),
        (_, _, exit) => exit_to(op, exit, lsb_result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_defaults() {
        let xml = r#"<actions>
<action name="start"        timeout="25s" />
<action name="stop"         timeout="30" />
<action name="monitor"      timeout="15s" interval="10s" depth="0" />
<action name="meta-data"    timeout="5s" />
</actions>"#;
        let d = parse_meta_data(xml);
        assert_eq!(d.start, Some(Duration::from_secs(25)));
        assert_eq!(d.stop, Some(Duration::from_secs(30)));
        assert_eq!(d.monitor_timeout, Some(Duration::from_secs(15)));
        assert_eq!(d.monitor_interval, Some(Duration::from_secs(10)));
        assert_eq!(parse_meta_data("garbage"), OcfDefaults::default());
    }

    #[test]
    fn exit_code_tables() {
        assert_eq!(ocf_result(Op::Monitor, 0, ""), OpResult::Ok);
        assert_eq!(ocf_result(Op::Monitor, 7, ""), OpResult::NotRunning);
        assert_eq!(ocf_result(Op::Stop, 7, ""), OpResult::Ok);
        assert_eq!(
            ocf_result(Op::Start, 7, ""),
            OpResult::Failed("not running (exit 7)".into())
        );
        assert_eq!(
            ocf_result(Op::Start, 5, "x\nbinary missing\n"),
            OpResult::Failed("not installed (exit 5): binary missing".into())
        );
        assert_eq!(lsb_result(Op::Monitor, 3, ""), OpResult::NotRunning);
        assert_eq!(
            lsb_result(Op::Monitor, 1, "dead"),
            OpResult::Failed("exit 1: dead".into())
        );
        assert_eq!(lsb_result(Op::Stop, 0, ""), OpResult::Ok);
    }

    #[test]
    fn lsb_script_with_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("svc");
        let state = dir.path().join("state");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nS={}\ncase \"$2\" in start) echo \"$1\" > $S;; stop) rm -f $S;; status) [ -f $S ] && exit 0; exit 3;; esac\n",
                state.display()
            ),
        )
        .unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&script).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let p = script.to_string_lossy().to_string();
        let args = vec!["hello".to_string()];
        let t = Duration::from_secs(5);
        assert_eq!(lsb(&p, &args, Op::Monitor, t, false), OpResult::NotRunning);
        assert_eq!(lsb(&p, &args, Op::Start, t, false), OpResult::Ok);
        assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "hello");
        assert_eq!(lsb(&p, &args, Op::Monitor, t, false), OpResult::Ok);
        assert_eq!(lsb(&p, &args, Op::Stop, t, false), OpResult::Ok);
        assert_eq!(lsb(&p, &args, Op::Monitor, t, false), OpResult::NotRunning);
        assert!(matches!(
            lsb("no-such-script-xyz", &[], Op::Start, t, false),
            OpResult::Failed(_)
        ));
        assert_eq!(r1_status("apache2 is running (pid 12)"), OpResult::Ok);
        assert_eq!(r1_status("apache2 is not running"), OpResult::NotRunning);
        assert_eq!(r1_status("Status: OK"), OpResult::Ok);
        assert_eq!(r1_status("??"), OpResult::NotRunning);
    }
}
