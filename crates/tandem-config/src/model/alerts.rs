//! `[[alert]]`: programs told about every cluster transition, in order,
//! with Pacemaker's alert environment (so its sample agents work) plus
//! tandem's own variables.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::check::Checker;
use super::{Alert, AlertAction};

/// What `kinds` may name: tandem's event kinds (Pacemaker's `node`,
/// `fencing` and `resource` among them).
pub const ALERT_KINDS: [&str; 12] = [
    "node", "link", "group", "resource", "quorum", "fencing", "witness", "lease", "settings",
    "operator", "volume", "packet",
];

/// Kinds alerted by default: all but rejected packets.
pub const DEFAULT_ALERT_KINDS: [&str; 11] = [
    "node", "link", "group", "resource", "quorum", "fencing", "witness", "lease", "settings",
    "operator", "volume",
];

/// Checks the `[[alert]]` tables.
pub(super) fn build_alerts(
    c: &mut Checker<'_>,
    raw: &[Spanned<crate::raw::RawAlert>],
    base: &Path,
) -> Vec<Alert> {
    let mut out = Vec::new();
    for spanned in raw {
        let at = spanned.span().start;
        let a = spanned.get_ref();
        let action = match (&a.program, &a.mail_to) {
            (Some(p), None) => AlertAction::Program(base.join(p.get_ref())),
            (None, Some(to)) => AlertAction::Mail {
                to: to.get_ref().clone(),
                subject: a.subject.as_ref().map(|s| s.get_ref().clone()),
                sendmail: a
                    .sendmail
                    .as_ref()
                    .map_or_else(|| "/usr/sbin/sendmail".into(), |s| base.join(s.get_ref())),
            },
            _ => {
                c.error(
                    at,
                    "an [[alert]] needs either `program` or `mail_to`",
                    Some("program = \"/usr/share/pacemaker/alerts/alert_file.sh.sample\", or mail_to = \"ops@example.com\"".to_string()),
                );
                continue;
            }
        };
        let mut kinds = Vec::new();
        match &a.kinds {
            None if a.mail_to.is_some() => kinds.push("group".to_string()),
            None => kinds.extend(DEFAULT_ALERT_KINDS.iter().map(|k| (*k).to_string())),
            Some(list) => {
                for k in list {
                    if ALERT_KINDS.contains(&k.get_ref().as_str()) {
                        kinds.push(k.get_ref().clone());
                    } else {
                        c.error(
                            k.span().start,
                            format!("alert kind `{}`?", k.get_ref()),
                            Some(format!("use some of: {}", ALERT_KINDS.join(", "))),
                        );
                    }
                }
            }
        }
        let timeout = c
            .time(&a.timeout, "timeout")
            .map_or(Duration::from_secs(30), |v| v.0);
        let retries = match &a.retries {
            None => 2,
            Some(r) => match u32::try_from(*r.get_ref()) {
                Ok(n) if n <= 10 => n,
                _ => {
                    c.error(
                        r.span().start,
                        "retries must be between 0 and 10",
                        Some("a failed delivery is retried after 1 s, 2 s, 4 s…".to_string()),
                    );
                    2
                }
            },
        };
        out.push(Alert {
            action,
            groups: a
                .groups
                .iter()
                .flatten()
                .map(|g| g.get_ref().clone())
                .collect(),
            recipient: a.recipient.as_ref().map(|r| r.get_ref().clone()),
            kinds,
            timeout,
            retries,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{ConfigError, parse};

    const HEAD: &str = "cluster = \"c\"\nkey_file = \"k\"\n[[link]]\nname = \"lan\"\nkind = \"ucast\"\n[[node]]\nname = \"n1\"\naddresses = { lan = \"198.18.0.11\" }\n[[node]]\nname = \"n2\"\naddresses = { lan = \"198.18.0.12\" }\n";

    #[test]
    fn defaults_and_mistakes() {
        let l = parse(
            &format!("{HEAD}[[alert]]\nprogram = \"/usr/local/bin/page\"\n"),
            Path::new("/etc/tandem/tandem.toml"),
        );
        let Ok(l) = l else { panic!("refused") };
        let a = &l.config.alerts[0];
        assert_eq!((a.retries, a.timeout.as_secs()), (2, 30));
        assert!(a.kinds.iter().any(|k| k == "node") && !a.kinds.iter().any(|k| k == "packet"));
        let e = parse(
            &format!("{HEAD}[[alert]]\nprogram = \"p\"\nkinds = [\"nodes\"]\nretries = 99\n"),
            Path::new("/etc/tandem/tandem.toml"),
        );
        let Err(ConfigError::Invalid(d)) = e else {
            panic!("accepted")
        };
        let text: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("alert kind `nodes`?") && t.contains("node, link, group")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("retries must be between 0 and 10")),
            "{text:?}"
        );
    }
}
