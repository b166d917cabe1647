use super::hacf::IGNORED;
use super::interfaces::{find_interface_v4, find_interface_v6};
use super::*;
use crate::{AgentKind, LinkKind};

const S1_HACF: &str = "keepalive 2
deadtime 10
initdead 15
bcast enp0s3
udpport 694
logfile /var/log/heartbeat.log
node srv
node srv-slave
auto_failback on
";

const S1_RES: &str = "srv 192.168.137.200/24/enp0s3 apache2\n";

const S4_HACF: &str = "use_logd on
keepalive 2
deadtime 30
warntime 10
initdead 120
udpport 694
ucast enp0s8 192.168.56.101
ucast enp0s8 192.168.56.102
auto_failback on
node SwapNginxActive
node SwapNginxPassive
";

fn auth() -> AuthKeys {
    parse_authkeys(
        "auth 1\n1 sha1 monClusterSecurise2025\n",
        Path::new("authkeys"),
    )
    .unwrap()
}

fn conv(cf: &str, res: Option<&str>) -> Result<HeartbeatConfig, ConfigError> {
    convert(
        Path::new("/etc/ha.d/ha.cf"),
        cf,
        res.map(|r| (Path::new("/etc/ha.d/haresources"), r)),
        auth(),
        Path::new("/etc/ha.d/authkeys"),
        &[(
            std::path::PathBuf::from("/etc/drbd.d/r0.res"),
            "resource r0 {\n  protocol C;\n  on srv { device /dev/drbd0; disk /dev/sda1; address 192.168.137.10:7788; meta-disk internal; }\n  on srv-slave { device /dev/drbd0; disk /dev/sda1; address 192.168.137.11:7788; meta-disk internal; }\n}\n".to_string(),
        )],
    )
}

fn errors(r: Result<HeartbeatConfig, ConfigError>) -> Vec<String> {
    match r {
        Err(ConfigError::Invalid(d)) => d
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{}:{}: {}", d.file.display(), d.line, d.message))
            .collect(),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn s1_files_unchanged() {
    let h = conv(S1_HACF, Some(S1_RES)).unwrap();
    let c = &h.loaded.config;
    assert_eq!(c.timing.keepalive, Duration::from_secs(2));
    assert_eq!(c.timing.deadtime, Duration::from_secs(10));
    assert_eq!(c.timing.warntime, Duration::from_secs(5));
    assert_eq!(c.timing.initdead, Duration::from_secs(15));
    assert_eq!(c.links.len(), 1);
    assert_eq!(c.links[0].kind, LinkKind::Bcast);
    assert_eq!(c.links[0].interface.as_deref(), Some("enp0s3"));
    assert_eq!(c.links[0].port, 694);
    assert_eq!(
        c.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        vec!["srv", "srv-slave"]
    );
    let g = &c.groups[0];
    assert_eq!(g.prefer, vec![("srv".to_string(), 100)]);
    assert!(g.auto_failback);
    assert!(matches!(g.resources[0].agent, AgentKind::IpAddr(_)));
    assert_eq!(g.resources[0].params["address"], "192.168.137.200/24");
    assert_eq!(g.resources[0].params["interface"], "enp0s3");
    assert_eq!(g.resources[0].params["label"], "enp0s3:0");
    assert_eq!(
        g.resources[1].agent,
        AgentKind::Lsb {
            script: "apache2".into()
        }
    );
    assert_eq!(
        h.extras.logfile,
        Some(PathBuf::from("/var/log/heartbeat.log"))
    );
    assert!(h.toml.contains("# ha.cf line 2"), "{}", h.toml);
    assert!(
        h.toml
            .contains("# haresources line 1: srv 192.168.137.200/24/enp0s3 apache2")
    );
    // The import is itself a valid native file.
    crate::parse(&h.toml, Path::new("t.toml")).unwrap();
}

#[test]
fn s4_unicast_and_ignored_directives() {
    let h = conv(
        S4_HACF,
        Some("SwapNginxActive 192.168.56.200/24/enp0s8 nginx\n"),
    )
    .unwrap();
    let c = &h.loaded.config;
    assert_eq!(c.timing.initdead, Duration::from_secs(120));
    assert_eq!(c.timing.warntime, Duration::from_secs(10));
    assert_eq!(c.links.len(), 1, "both ucast lines make one link");
    assert_eq!(c.links[0].kind, LinkKind::Ucast);
    assert_eq!(c.links[0].peers.len(), 2);
    assert_eq!(
        c.nodes[0].name, "swapnginxactive",
        "names are matched case-insensitively"
    );
    let warned: Vec<&str> = h
        .loaded
        .warnings
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        warned
            .iter()
            .any(|w| w.starts_with("`use_logd` is ignored")),
        "{warned:?}"
    );
}

#[test]
fn every_heartbeat_directive_is_accepted() {
    let mut cf = String::from(S1_HACF);
    for (d, _) in IGNORED {
        cf.push_str(&format!("{d} something\n"));
    }
    cf.push_str("mcast enp0s3 239.0.0.1 694 1 0\nucast enp0s3 10.0.0.2\nping 10.0.0.254\nping_group routers 10.0.0.1 10.0.0.2\ndebugfile /var/log/ha-debug\nwarntime 3500ms\nwatchdog /dev/watchdog\n");
    let h = conv(&cf, Some(S1_RES)).unwrap();
    assert_eq!(h.loaded.config.links.len(), 3);
    let wd = h.loaded.config.watchdog.as_ref().unwrap();
    assert_eq!(wd.device, std::path::Path::new("/dev/watchdog"));
    assert_eq!(wd.timeout, Duration::from_secs(10));
    assert_eq!(h.extras.ping.len(), 3);
    assert_eq!(h.loaded.config.timing.warntime, Duration::from_millis(3500));
    let ignored = h
        .loaded
        .warnings
        .iter()
        .filter(|d| d.message.contains("is ignored"))
        .count();
    assert_eq!(ignored, IGNORED.len());
}

#[test]
fn resource_forms() {
    let res = "srv 10.0.0.170/24/eth0 Filesystem::/dev/sda1::/data1::ext2 \\\n  drbddisk::r0 MailTo::ops@example.com::failover IPaddr2::10.0.0.5/24/eth0 httpd::a::b\n";
    let h = conv(S1_HACF, Some(res)).unwrap();
    let r = &h.loaded.config.groups[0].resources;
    assert_eq!(r.len(), 5, "MailTo is an alert, not a resource");
    assert_eq!(
        r[1].agent,
        AgentKind::Ocf {
            provider: "heartbeat".into(),
            kind: "Filesystem".into()
        }
    );
    assert_eq!(r[1].params["directory"], "/data1");
    assert_eq!(r[1].params["fstype"], "ext2");
    // drbddisk::r0 is the volume r0, read from /etc/drbd.d/r0.res.
    assert_eq!(r[2].agent, AgentKind::Volume { name: "r0".into() });
    let v = &h.loaded.config.volumes[0];
    assert_eq!(v.name, "r0");
    assert_eq!(v.nodes[1].address.to_string(), "192.168.137.11:7788");
    assert_eq!(
        v.nodes[0].device.as_deref(),
        Some(std::path::Path::new("/dev/drbd0"))
    );
    assert_eq!(r[3].params["label"], "eth0:1");
    assert_eq!(r[4].params["args"], "a::b");
    // MailTo::ops@example.com::failover mails this group's takeovers and
    // releases through the alert path.
    let a = &h.loaded.config.alerts[0];
    assert_eq!(
        a.action,
        crate::AlertAction::Mail {
            to: "ops@example.com".into(),
            subject: Some("failover".into()),
            sendmail: "/usr/sbin/sendmail".into(),
        }
    );
    assert_eq!(a.groups, vec![h.loaded.config.groups[0].name.clone()]);
    assert_eq!(a.kinds, vec!["group".to_string()]);
}

#[test]
fn errors_name_file_and_line() {
    let e = errors(conv(
        &S1_HACF.replace("deadtime 10", "deadtime ten"),
        Some(S1_RES),
    ));
    assert!(
        e.iter()
            .any(|m| m == "/etc/ha.d/ha.cf:2: `ten` is not a time"),
        "{e:?}"
    );
    let e = errors(conv(
        &S1_HACF.replace("deadtime 10", "deadtime 3"),
        Some(S1_RES),
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("ha.cf:2: deadtime (3000ms) must be more than twice keepalive")),
        "{e:?}"
    );
    let e = errors(conv(
        S1_HACF,
        Some("srvx 192.168.137.200/24/enp0s3 apache2\n"),
    ));
    assert!(e.iter().any(|m| m.contains("haresources:1: unknown node `srvx` (ha.cf nodes: srv, srv-slave)")), "{e:?}");
    let e = errors(conv(&format!("{S1_HACF}frobnicate yes\n"), Some(S1_RES)));
    assert!(
        e.iter()
            .any(|m| m.contains("ha.cf:10: unknown directive `frobnicate`")),
        "{e:?}"
    );
    let e = errors(conv(
        &S1_HACF.replace("bcast enp0s3", "mcast enp0s3 1.2.3.4 694 1 0"),
        Some(S1_RES),
    ));
    assert!(
        e.iter().any(|m| m.contains("malformed mcast line")),
        "{e:?}"
    );
}

#[test]
fn authkeys_rules() {
    let p = Path::new("/etc/ha.d/authkeys");
    let a = parse_authkeys("# keys\nauth 2\n1 md5 old\n2 sha1 new secret\n", p).unwrap();
    assert_eq!(a.send, 2);
    assert_eq!(a.keys[1], (2, AuthMethod::Sha1, b"new secret".to_vec()));
    let e = errors(parse_authkeys("auth 2\n1 sha1 x\n", p).map(|_| unreachable!()));
    assert!(
        e.iter()
            .any(|m| m.contains("authkeys:1: `auth 2` selects key 2, which no line defines")),
        "{e:?}"
    );
    let e = errors(parse_authkeys("1 sha1 x\n", p).map(|_| unreachable!()));
    assert!(e.iter().any(|m| m.contains("no `auth N` line")), "{e:?}");
    let e = errors(parse_authkeys("auth 1\n1 sha256 x\n", p).map(|_| unreachable!()));
    assert!(e.iter().any(|m| m.contains("unknown method")), "{e:?}");
    assert_eq!(
        parse_authkeys("auth 1\n1 crc\n", p).unwrap().method(),
        Some(AuthMethod::Crc)
    );
    assert!(looks_like_authkeys("auth 1\n1 sha1 x\n"));
    assert!(!looks_like_authkeys("0123abcd\n"));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("authkeys");
    std::fs::write(&f, "auth 1\n1 sha1 x\n").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let e = load_authkeys(&f).unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
    assert!(matches!(
        load_authkeys(&dir.path().join("none")),
        Err(ConfigError::Invalid(_) | ConfigError::Io { .. })
    ));
}

#[test]
fn routing_tables_name_the_longest_matching_interface() {
    let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth1\t008012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    let got = find_interface_v4("198.18.128.12".parse().unwrap(), v4);
    assert_eq!(got, Some(("eth1".to_string(), 24)));
    assert_eq!(find_interface_v4("10.0.0.1".parse().unwrap(), v4), None);
    let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
fd000000000000000000000000000000 70 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth2\n\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0\n";
    assert_eq!(
        find_interface_v6("fd00::12".parse().unwrap(), v6),
        Some(("eth2".to_string(), 112))
    );
    assert_eq!(
        find_interface_v6("fd00::1:0:12".parse().unwrap(), v6),
        Some(("eth0".to_string(), 64))
    );
    assert_eq!(find_interface_v6("2001:db8::1".parse().unwrap(), v6), None);
}

/// Issue 12, finding 11: authkeys errors quoted the line with its secret.
#[test]
fn authkeys_errors_never_show_a_secret() {
    let p = Path::new("/etc/ha.d/authkeys");
    for text in [
        "auth 1\n1 sha256 TOPSECRET\n",
        "auth 1\n1 TOPSECRET\n",
        "auth 1\n1 sha1 TOPSECRET\n1 sha1 TOPSECRET\n",
        "auth 1\nTOPSECRET\n",
    ] {
        let Err(ConfigError::Invalid(d)) = parse_authkeys(text, p) else {
            panic!("accepted {text:?}");
        };
        for x in &d {
            let shown = x.to_string();
            assert!(!shown.contains("TOPSECRET"), "{shown}");
        }
    }
}
