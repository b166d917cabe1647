use std::path::Path;

use super::*;
use crate::diagnostic::Diagnostic;
use crate::{ConfigError, parse};

const GOOD: &str = r#"
cluster = "web"
key_file = "authkey"

[timing]
keepalive = "100ms"
deadtime = 1

[[link]]
name = "lan"
kind = "ucast"
port = 7694

[[link]]
name = "backup"
kind = "mcast"
interface = "eth1"
group = "239.192.0.9"

[[node]]
name = "n1"
addresses = { lan = "198.18.0.11" }

[[node]]
name = "n2"
addresses = { lan = "198.18.0.12", backup = "198.18.1.12" }
"#;

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text, Path::new("/etc/tandem/tandem.toml")) {
        Err(ConfigError::Invalid(d)) => d,
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

#[test]
fn good_file_with_derived_defaults() {
    let l = parse(GOOD, Path::new("/etc/tandem/tandem.toml")).unwrap();
    let c = l.config;
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(c.cluster, "web");
    assert_eq!(c.key_file, PathBuf::from("/etc/tandem/authkey"));
    assert_eq!(c.timing.keepalive, Duration::from_millis(100));
    assert_eq!(c.timing.deadtime, Duration::from_secs(1));
    assert_eq!(c.timing.warntime, Duration::from_millis(600));
    assert_eq!(c.timing.initdead, Duration::from_secs(3));
    assert_eq!(c.links[0].port, 7694);
    assert_eq!(c.links[1].port, DEFAULT_PORT);
    assert_eq!(c.links[1].label(), "eth1");
    assert_eq!(
        c.links[1].kind,
        LinkKind::Mcast {
            group: "239.192.0.9".parse().unwrap(),
            ttl: 1
        }
    );
    assert_eq!(
        c.nodes[0].addresses,
        vec![Some("198.18.0.11".parse().unwrap()), None]
    );
    assert_eq!(c.node("n2").unwrap().0, 2);
    assert_eq!(c.socket, PathBuf::from("/run/tandem/tandem.sock"));
}

#[test]
fn defaults_are_sub_second() {
    let text = GOOD.replace("keepalive = \"100ms\"\ndeadtime = 1\n", "");
    let c = parse(&text, Path::new("t.toml")).unwrap().config;
    assert_eq!(c.timing, tandem_core::Timing::default());
    assert!(c.timing.deadtime < Duration::from_secs(1));
}

#[test]
fn digest_ignores_comments_and_local_paths() {
    let a = parse(GOOD, Path::new("/a/t.toml")).unwrap().config;
    let b = parse(
        &format!("# hello\n{GOOD}\nsocket = \"/tmp/x.sock\""),
        Path::new("/b/t.toml"),
    );
    // `socket` after tables belongs to the last [[node]]: an error, not a digest change.
    assert!(b.is_err());
    let b = parse(
        &format!("# hello\nsocket = \"/tmp/x.sock\"\n{GOOD}"),
        Path::new("/b/t.toml"),
    )
    .unwrap()
    .config;
    assert_eq!(a.digest(), b.digest());
    let c = parse(
        &GOOD.replace("deadtime = 1", "deadtime = 2"),
        Path::new("t.toml"),
    )
    .unwrap()
    .config;
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn syntax_error_has_line_and_column() {
    let d = errors("cluster = \"web\"\nkey_file = \n");
    assert_eq!(d[0].line, 2);
    let s = d[0].to_string();
    assert!(s.starts_with("/etc/tandem/tandem.toml:2:"), "{s}");
}

#[test]
fn unknown_key_is_refused_with_hint() {
    let d = errors(&GOOD.replace("cluster = \"web\"", "clustr = \"web\""));
    let s = d[0].to_string();
    assert!(s.contains("unknown field `clustr`"), "{s}");
    assert!(s.contains("hint:"), "{s}");
    assert_eq!(d[0].line, 2);
}

#[test]
fn every_problem_is_reported_at_its_place() {
    let bad = r#"cluster = "web"
key_file = "k"
[timing]
keepalive = "1s"
deadtime = "1500ms"
[[link]]
name = "lan"
kind = "udp"
[[link]]
name = "m"
kind = "mcast"
interface = "eth0"
group = "10.0.0.1"
[[node]]
name = "n1"
addresses = { lan = "198.18.0.11", wan = "1.2.3.4" }
[[node]]
name = "n1"
addresses = { lan = "banana" }
"#;
    let d = errors(bad);
    let lines: Vec<(usize, &str)> = d.iter().map(|d| (d.line, d.message.as_str())).collect();
    let has = |line: usize, needle: &str| {
        assert!(
            lines.iter().any(|(l, m)| *l == line && m.contains(needle)),
            "no `{needle}` at line {line} in {lines:#?}"
        )
    };
    has(
        5,
        "deadtime (1.5 s) must be at least 2 x keepalive + 5 ms (2.0 s)",
    );
    has(8, "unknown link kind `udp`");
    has(13, "not a multicast address");
    has(16, "unknown link `wan`");
    has(18, "node `n1` is defined twice");
    has(19, "not a usable IP address");
}

#[test]
fn timing_rules() {
    let with = |t: &str| GOOD.replace("keepalive = \"100ms\"\ndeadtime = 1\n", t);
    let d = errors(&with("warntime = \"50ms\"\n"));
    assert!(
        d[0].message.contains("warntime (50 ms) must lie between"),
        "{:?}",
        d[0]
    );
    let d = errors(&with("initdead = \"100ms\"\n"));
    assert!(
        d[0].message
            .contains("initdead (100 ms) must be at least deadtime"),
        "{:?}",
        d[0]
    );
    let d = errors(&with("keepalive = \"soon\"\n"));
    assert!(d[0].message.contains("invalid keepalive"), "{:?}", d[0]);
    assert_eq!(d[0].line, 6);
    let d = errors(&with("keepalive = -1\n"));
    assert!(d[0].message.contains("must be positive"), "{:?}", d[0]);
    let ok = parse(
        &with("keepalive = 2\ndeadtime = 10\ninitdead = 15\n"),
        Path::new("t"),
    )
    .unwrap();
    assert_eq!(ok.config.timing.warntime, Duration::from_secs(6));
}

/// The lease floor: deadtime ≥ 2 × keepalive + 5 ms, located at deadtime.
#[test]
fn deadtime_floor_for_the_lease() {
    let with = |t: &str| GOOD.replace("keepalive = \"100ms\"\ndeadtime = 1\n", t);
    let d = errors(&with(
        "keepalive = \"10ms\"\ndeadtime = \"24ms\"\ninitdead = 1\n",
    ));
    assert!(
        d[0].message
            .contains("deadtime (24 ms) must be at least 2 x keepalive + 5 ms (25 ms)"),
        "{:?}",
        d[0]
    );
    assert_eq!(d[0].line, 7);
    assert!(d[0].hint.as_deref().unwrap_or("").contains("Lease sizing"));
    let ok = parse(
        &with("keepalive = \"10ms\"\ndeadtime = \"25ms\"\ninitdead = 1\n"),
        Path::new("t"),
    )
    .unwrap();
    assert_eq!(ok.config.timing.deadtime, Duration::from_millis(25));
}

#[test]
fn timing_presets() {
    let with = |t: &str| GOOD.replace("keepalive = \"100ms\"\ndeadtime = 1\n", t);
    let fast = parse(&with("preset = \"fast\"\n"), Path::new("t")).unwrap();
    assert_eq!(fast.config.timing, Timing::fast());
    // Explicit values win; the rest derives from them.
    let tuned = parse(
        &with("preset = \"fast\"\ndeadtime = \"60ms\"\n"),
        Path::new("t"),
    )
    .unwrap();
    assert_eq!(tuned.config.timing.keepalive, Duration::from_millis(10));
    assert_eq!(tuned.config.timing.deadtime, Duration::from_millis(60));
    assert_eq!(tuned.config.timing.warntime, Duration::from_millis(36));
    let dflt = parse(&with("preset = \"default\"\n"), Path::new("t")).unwrap();
    assert_eq!(dflt.config.timing, Timing::default());
    let d = errors(&with("preset = \"turbo\"\n"));
    assert!(
        d[0].message.contains("unknown timing preset `turbo`"),
        "{:?}",
        d[0]
    );
    assert_eq!(d[0].line, 6);
}

#[test]
fn missing_essentials() {
    let d = errors("");
    let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.contains("missing `cluster`")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("missing `key_file`")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("no heartbeat link")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("no node")), "{msgs:?}");
}

#[test]
fn ucast_needs_addresses_bcast_needs_interface() {
    let text = GOOD.replace("addresses = { lan = \"198.18.0.11\" }", "");
    let d = errors(&text);
    assert!(
        d[0].message
            .contains("node `n1` has no address on unicast link `lan`"),
        "{:?}",
        d[0]
    );
    let text = GOOD.replace("kind = \"ucast\"", "kind = \"bcast\"");
    let d = errors(&text);
    assert!(
        d[0].message
            .contains("bcast link `lan` needs an `interface`"),
        "{:?}",
        d[0]
    );
}

#[test]
fn single_node_is_a_warning() {
    let text = GOOD.split("[[node]]\nname = \"n2\"").next().unwrap();
    let l = parse(text, Path::new("t")).unwrap();
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].message.contains("only one node"));
}

const GROUP: &str = r#"
[[group]]
name = "web"
prefer = { n1 = 200, n2 = 100 }
auto_failback = false
migration_threshold = 2
failure_timeout = "10m"

[[group.resource]]
name = "vip"
agent = "ipaddr"
params = { address = "198.18.0.200/24", interface = "eth0", label = "eth0:0" }
monitor = "2s"

[[group.resource]]
name = "httpd"
agent = "process"
params = { command = "python3 -m http.server 80" }
timeout = "5s"
check = { kind = "http", url = "http://127.0.0.1/", expect_body = "n1", interval = "1s", fall = 3, rise = 1 }

[[group.resource]]
name = "dummy"
agent = "ocf:heartbeat:Dummy"
monitor = 0
"#;

#[test]
fn groups_parse_with_defaults() {
    let c = parse(&format!("{GOOD}{GROUP}"), Path::new("t"))
        .unwrap()
        .config;
    let g = &c.groups[0];
    assert_eq!(g.prefer, vec![("n1".into(), 200), ("n2".into(), 100)]);
    assert!(!g.auto_failback);
    assert_eq!(g.migration_threshold, 2);
    assert_eq!(g.failure_timeout, Some(Duration::from_secs(600)));
    assert!(matches!(g.resources[0].agent, crate::AgentKind::IpAddr(_)));
    assert_eq!(g.resources[0].params["label"], "eth0:0");
    assert_eq!(
        g.resources[0].monitor_interval,
        Some(Duration::from_secs(2))
    );
    assert_eq!(g.resources[0].start_timeout, Duration::from_secs(20));
    let h = &g.resources[1];
    assert_eq!(h.stop_timeout, Duration::from_secs(5));
    assert_eq!(
        h.monitor_interval,
        Some(Duration::from_secs(1)),
        "the check's interval"
    );
    let ch = h.check.as_ref().unwrap();
    assert_eq!((ch.rise, ch.fall), (1, 3));
    assert_eq!(
        ch.kind,
        crate::CheckKind::Http {
            url: "http://127.0.0.1/".into(),
            status: 200,
            body: Some("n1".into())
        }
    );
    assert_eq!(
        g.resources[2].agent,
        crate::AgentKind::Ocf {
            provider: "heartbeat".into(),
            kind: "Dummy".into()
        }
    );
    assert_eq!(g.resources[2].monitor_interval, None);
}

#[test]
fn group_errors_are_located() {
    let bad = GROUP
        .replace("n2 = 100", "n9 = 100")
        .replace("agent = \"process\"", "agent = \"daemon\"")
        .replace(", interface = \"eth0\"", "");
    let d = errors(&format!("{GOOD}{bad}"));
    let msgs: Vec<String> = d
        .iter()
        .map(|d| format!("{}: {}", d.line, d.message))
        .collect();
    let line = GOOD.matches('\n').count()
        + GROUP.lines().position(|l| l.starts_with("prefer")).unwrap()
        + 1;
    assert!(
        msgs.iter()
            .any(|m| m == &format!("{line}: group `web` prefers unknown node `n9`")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("unknown agent `daemon`")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("needs the parameter `interface`")),
        "{msgs:#?}"
    );
}

#[test]
fn arbiter_witness_and_watchdog() {
    let text = format!(
        "{GOOD}\n[witness]\nkind = \"arbiter\"\naddresses = [\"10.9.0.5\"]\nkey_file = \"arb.key\"\n\n[watchdog]\ntimeout = \"5s\"\n"
    );
    let c = parse(&text, Path::new("/etc/tandem/tandem.toml"))
        .unwrap()
        .config;
    let w = c.witness.unwrap();
    assert_eq!(
        w.kind,
        WitnessKind::Arbiter {
            port: 7695,
            key_file: PathBuf::from("/etc/tandem/arb.key")
        }
    );
    let wd = c.watchdog.unwrap();
    assert_eq!(wd.device, PathBuf::from("/dev/watchdog"));
    assert_eq!(wd.timeout, Duration::from_secs(5));
    // Without key_file, arbiter.key beside the heartbeat key, never the
    // heartbeat key itself (issue 12, finding 13).
    let text = format!("{GOOD}\n[witness]\nkind = \"arbiter\"\naddresses = [\"10.9.0.5\"]\n");
    let c = parse(&text, Path::new("/etc/tandem/tandem.toml"))
        .unwrap()
        .config;
    assert!(matches!(
        c.witness.unwrap().kind,
        WitnessKind::Arbiter { key_file, .. } if key_file == Path::new("/etc/tandem/arbiter.key")
    ));
}

#[test]
fn arbiter_and_watchdog_mistakes_are_located() {
    let two = format!(
        "{GOOD}\n[witness]\nkind = \"arbiter\"\naddresses = [\"10.9.0.5\", \"10.9.0.6\"]\n"
    );
    let d = errors(&two);
    assert!(d[0].message.contains("exactly one address"), "{d:?}");
    assert!(
        d[0].hint
            .as_deref()
            .unwrap_or("")
            .contains("tandem witness")
    );
    let key = format!("{GOOD}\n[witness]\naddresses = [\"10.9.0.5\"]\nkey_file = \"k\"\n");
    let d = errors(&key);
    assert!(
        d[0].message.contains("only for kind = \"arbiter\""),
        "{d:?}"
    );
    assert!(d[0].line > 25, "{d:?}");
    let short = format!("{GOOD}\n[watchdog]\ntimeout = \"500ms\"\n");
    let d = errors(&short);
    assert!(d[0].message.contains("at least 1s"), "{d:?}");
}

/// Issue 12, finding 14: huge integers overflowed the deadline arithmetic
/// (a panic); every time is capped at a day, with a located error.
#[test]
fn huge_times_are_located_errors_not_panics() {
    let with = |t: &str| GOOD.replace("keepalive = \"100ms\"\ndeadtime = 1\n", t);
    for text in [
        with("keepalive = 4000000000000000000\n"),
        with("deadtime = 1e300\n"),
        with("initdead = \"99999999s\"\n"),
    ] {
        let d = errors(&text);
        assert!(
            d.iter()
                .any(|d| d.message.contains("at most a day") && d.line == 6),
            "{d:?}"
        );
    }
    let group = format!(
        "{GOOD}\n[[group]]\nname = \"g\"\n[[group.resource]]\nname = \"r\"\nagent = \"process\"\nparams = {{ command = \"true\" }}\ntimeout = 9223372036854775807\n"
    );
    let d = errors(&group);
    assert!(
        d.iter().any(|d| d.message.contains("at most a day")),
        "{d:?}"
    );
}

#[test]
fn digest_is_pinned() {
    // The digest of GOOD under the canonical encoding documented on
    // `Config::digest`. If this changes, nodes running the previous
    // version report a configuration mismatch during a rolling upgrade:
    // change the encoding only with a note in docs/upgrading.md.
    let cfg = parse(GOOD, Path::new("t.toml")).unwrap().config;
    assert_eq!(format!("{:016x}", cfg.digest()), "5ff8858cdbad110c");
}

#[test]
fn volumes_parse_with_defaults_and_locate_their_errors() {
    let text = format!(
        "{GOOD}\n[[volume]]\nname = \"r0\"\ndisk = \"r0.img\"\nnbd = \"unix:r0.sock\"\n[volume.on.n1]\naddress = \"198.18.0.11\"\n[volume.on.n2]\naddress = \"198.18.0.12:7800\"\ndisk = \"/srv/r0.img\"\n"
    );
    let cfg = parse(&text, Path::new("/etc/tandem/tandem.toml"))
        .unwrap()
        .config;
    let v = &cfg.volumes[0];
    assert_eq!(v.protocol, crate::ReplicationProtocol::C);
    assert_eq!(v.meta, crate::MetaPlace::Internal);
    assert_eq!(v.nodes[0].address.to_string(), "198.18.0.11:7789");
    assert_eq!(v.nodes[0].disk, Path::new("/etc/tandem/r0.img"));
    assert_eq!(v.nodes[1].disk, Path::new("/srv/r0.img"));
    assert_eq!(
        v.nbd,
        Some(crate::NbdListen::Unix("/etc/tandem/r0.sock".into()))
    );
    // The digest covers volumes, and is unchanged without them.
    let plain = parse(GOOD, Path::new("/etc/tandem/tandem.toml"))
        .unwrap()
        .config;
    assert_ne!(plain.digest(), cfg.digest());

    let bad = format!(
        "{GOOD}\n[[volume]]\nname = \"r0\"\nprotocol = \"D\"\n[volume.on.n1]\naddress = \"nowhere\"\n[volume.on.n9]\naddress = \"198.18.0.9\"\n"
    );
    let d = errors(&bad);
    let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    let all = text.join("\n");
    assert!(all.contains("unknown protocol `D`"), "{all}");
    assert!(all.contains("`nowhere` is not an address"), "{all}");
    assert!(all.contains("`n9` is not a configured [[node]]"), "{all}");
    assert!(d.iter().all(|d| d.line > 0), "{all}");
}

#[test]
fn volume_fencing_parses_and_warns_without_fence_agents() {
    let vol = "\n[[volume]]\nname = \"r0\"\ndisk = \"r0.img\"\nfencing = \"resource-and-stonith\"\n[volume.on.n1]\naddress = \"198.18.0.11\"\n[volume.on.n2]\naddress = \"198.18.0.12\"\n";
    let loaded = parse(
        &format!("{GOOD}{vol}"),
        Path::new("/etc/tandem/tandem.toml"),
    )
    .unwrap();
    assert_eq!(
        loaded.config.volumes[0].fencing,
        tandem_volumes::Fencing::ResourceAndStonith
    );
    let w: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("no [fencing] agent") && w.contains("resume-io r0")),
        "{w:?}"
    );
    let bad = format!("{GOOD}{}", vol.replace("resource-and-stonith", "stonith"));
    let all: Vec<String> = errors(&bad).iter().map(|d| d.to_string()).collect();
    assert!(
        all.iter()
            .any(|d| d.contains("fencing: unknown policy `stonith`")
                && d.contains("resource-and-stonith")),
        "{all:?}"
    );
}

#[test]
fn limits_agree_with_what_a_heartbeat_carries() {
    // 33 groups: more than a heartbeat's settings lists carry.
    let mut text = GOOD.to_string();
    for i in 0..33 {
        text.push_str(&format!(
            "\n[[group]]\nname = \"g{i}\"\n[[group.resource]]\nname = \"p\"\nagent = \"process\"\nparams = {{ command = \"true\" }}\n"
        ));
    }
    let all: Vec<String> = errors(&text).iter().map(|d| d.to_string()).collect();
    assert!(
        all.iter().any(|d| d.contains("at most 32 groups")),
        "{all:?}"
    );
    // 32 nodes with 32 groups: the views would be cut.
    let mut text =
        "cluster = \"big\"\nkey_file = \"k\"\n[[link]]\nname = \"lan\"\nkind = \"ucast\"\n"
            .to_string();
    for n in 1..=32 {
        text.push_str(&format!(
            "[[node]]\nname = \"n{n}\"\naddresses = {{ lan = \"198.18.0.{n}\" }}\n"
        ));
    }
    for i in 0..32 {
        text.push_str(&format!(
            "[[group]]\nname = \"g{i}\"\n[[group.resource]]\nname = \"p\"\nagent = \"process\"\nparams = {{ command = \"true\" }}\n"
        ));
    }
    let all: Vec<String> = errors(&text).iter().map(|d| d.to_string()).collect();
    assert!(
        all.iter().any(|d| d.contains("do not fit one heartbeat")),
        "{all:?}"
    );
    // 32 nodes and 8 groups fit.
    assert!(tandem_wire::view_room(32, 8) >= 32);
}

#[test]
fn volume_agents_policies_handlers_and_stop_signals_are_checked() {
    let vol = "\n[[volume]]\nname = \"r0\"\ndisk = \"/d\"\nafter_sb_0pri = \"discard-zero-changes\"\nafter_sb_1pri = \"discard-secondary\"\n[volume.handlers]\n\"split-brain\" = \"/bin/true\"\n[volume.on.n1]\naddress = \"198.18.0.11\"\n[volume.on.n2]\naddress = \"198.18.0.12\"\n";
    let group = "\n[[group]]\nname = \"db\"\n[[group.resource]]\nname = \"r0\"\nagent = \"volume:r0\"\n[[group.resource]]\nname = \"pg\"\nagent = \"process\"\nparams = { command = \"postgres\", stop_signal = \"INT\" }\n";
    let ok = parse(&format!("{GOOD}{vol}{group}"), Path::new("/t.toml")).expect("valid");
    let v = &ok.config.volumes[0];
    assert_eq!(
        v.split_brain.one,
        tandem_volumes::split_brain::OnePrimary::DiscardSecondary
    );
    assert_eq!(v.handlers["split-brain"], "/bin/true");
    let e = errors(&format!("{GOOD}{group}"));
    assert!(
        e.iter().any(|d| d
            .message
            .contains("uses volume `r0`, which no [[volume]] defines")),
        "{e:?}"
    );
    let e = errors(&format!(
        "{GOOD}{}{group}",
        vol.replace("discard-secondary", "discard-everything")
            .replace("\"split-brain\"", "\"split\"")
    ));
    assert!(
        e.iter()
            .any(|d| d.message.contains("after_sb_1pri: unknown policy")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|d| d.message.contains("unknown handler `split`")),
        "{e:?}"
    );
    let e = errors(&format!(
        "{GOOD}{vol}{}",
        group.replace("\"INT\"", "\"KILLME\"")
    ));
    assert!(
        e.iter()
            .any(|d| d.message.contains("unknown stop_signal `KILLME`")),
        "{e:?}"
    );
}

#[test]
fn resync_rates_read_as_drbd_writes_them() {
    use super::volumes::parse_rate;
    assert_eq!(parse_rate("250"), Some(250));
    assert_eq!(parse_rate("40M"), Some(40 * 1024));
    assert_eq!(parse_rate("100k"), Some(100));
    assert_eq!(parse_rate("1G"), Some(1024 * 1024));
    for bad in ["", "0", "M", "fast", "-5", "40 MB"] {
        assert_eq!(parse_rate(bad), None, "{bad}");
    }
    let vol = "\n[[volume]]\nname = \"r0\"\ndisk = \"r0.img\"\nresync_rate = \"fast\"\n[volume.on.n1]\naddress = \"198.18.0.11\"\n[volume.on.n2]\naddress = \"198.18.0.12\"\n";
    let all: Vec<String> = errors(&format!("{GOOD}{vol}"))
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        all.iter()
            .any(|d| d.contains("resync_rate: `fast` is not a rate") && d.contains("40M")),
        "{all:?}"
    );
}

#[test]
fn a_three_node_volume_takes_a_protocol_per_connection() {
    let three = format!(
        "{GOOD}\n[[node]]\nname = \"n3\"\naddresses = {{ lan = \"198.18.0.13\" }}\n[[volume]]\nname = \"r0\"\ndisk = \"r0.img\"\n[volume.on.n1]\naddress = \"198.18.0.11\"\n[volume.on.n2]\naddress = \"198.18.0.12\"\n[volume.on.n3]\naddress = \"198.18.0.13\"\n"
    );
    let text =
        format!("{three}[[volume.connection]]\nhosts = [\"n3\", \"n1\"]\nprotocol = \"A\"\n");
    let cfg = parse(&text, Path::new("/etc/tandem/tandem.toml"))
        .unwrap()
        .config;
    let v = &cfg.volumes[0];
    use crate::ReplicationProtocol::{A, C};
    assert_eq!(v.protocol_between("n1", "n2"), C);
    assert_eq!(v.protocol_between("n1", "n3"), A);
    assert_eq!(v.protocol_between("n3", "n1"), A);
    assert_eq!(v.protocol_between("n2", "n3"), C);
    let bad = format!(
        "{three}[[volume.connection]]\nhosts = [\"n1\"]\nprotocol = \"A\"\n[[volume.connection]]\nhosts = [\"n1\", \"n4\"]\nprotocol = \"A\"\n[[volume.connection]]\nhosts = [\"n1\", \"n2\"]\nprotocol = \"A\"\n[[volume.connection]]\nhosts = [\"n2\", \"n1\"]\nprotocol = \"Z\"\n"
    );
    let d = errors(&bad);
    let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    let all = all.join("\n");
    assert!(all.contains("a connection joins two nodes, not 1"), "{all}");
    assert!(
        all.contains("connection to `n4`, which holds no copy"),
        "{all}"
    );
    assert!(all.contains("the connection n2–n1 is given twice"), "{all}");
    assert!(all.contains("unknown protocol `Z`"), "{all}");
    assert!(d.iter().all(|d| d.line > 0), "{all}");
}

#[test]
fn the_dynamic_resync_controller_is_configured_by_drbds_c_keys() {
    let vol = |keys: &str| {
        format!(
            "{GOOD}\n[[volume]]\nname = \"r0\"\ndisk = \"r0.img\"\n{keys}[volume.on.n1]\naddress = \"198.18.0.11\"\n[volume.on.n2]\naddress = \"198.18.0.12\"\n"
        )
    };
    let cfg = |keys: &str| {
        parse(&vol(keys), Path::new("/etc/tandem/tandem.toml"))
            .unwrap()
            .config
            .volumes[0]
            .controller
    };
    assert_eq!(cfg(""), None);
    assert_eq!(cfg("c_plan_ahead = \"0s\"\n"), None);
    let c = cfg("c_plan_ahead = \"2s\"\nc_delay_target = \"20ms\"\nc_max_rate = \"40M\"\n")
        .expect("on");
    assert_eq!(c.plan_ahead, std::time::Duration::from_secs(2));
    assert_eq!(c.fill_target_kib, 0);
    assert_eq!(c.delay_target, std::time::Duration::from_millis(20));
    assert_eq!(c.max_rate_kib, Some(40 * 1024));
    let c =
        cfg("c_plan_ahead = \"1s\"\nc_fill_target = \"256K\"\nc_max_rate = \"0\"\n").expect("on");
    assert_eq!((c.fill_target_kib, c.max_rate_kib), (256, None));
    let d = errors(&vol("c_fill_target = \"256K\"\n"));
    let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    let all = all.join("\n");
    assert!(all.contains("off without c_plan_ahead"), "{all}");
    let d = errors(&vol("c_plan_ahead = \"soon\"\nc_max_rate = \"fast\"\n"));
    let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    let all = all.join("\n");
    assert!(all.contains("c_plan_ahead"), "{all}");
    assert!(all.contains("`fast` is not a size"), "{all}");
    assert!(d.iter().all(|d| d.line > 0), "{all}");
    let d = errors(&vol("nbd = \"nowhere\"\n"));
    let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    let all = all.join("\n");
    assert!(
        all.contains("nbd `nowhere` is neither unix:PATH nor HOST:PORT")
            && all.contains("unix:/run/tandem/r0.nbd"),
        "{all}"
    );
}
