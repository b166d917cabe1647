//! DRBD options carried over beyond the basics: the dynamic resync
//! controller (`c-plan-ahead`, `c-fill-target`, `c-delay-target`,
//! `c-max-rate` in `disk {}`) as a tandem volume's `c_*` keys, and DRBD 9's
//! `connection { host a; host b; net { protocol A; } }` blocks as
//! `[[volume.connection]]` tables.

use super::drbd::Stmt;

/// The `[[volume.connection]]` table of a `connection` block naming two
/// hosts and a protocol (`at`: its `file:line`); `None` otherwise.
pub(super) fn connection_table(s: &Stmt, at: &str) -> Option<String> {
    let body = s.body.as_deref()?;
    let hosts: Vec<&String> = body
        .iter()
        .filter(|h| h.key == "host")
        .filter_map(|h| h.args.first())
        .collect();
    let protocol = body
        .iter()
        .filter(|n| n.key == "net")
        .flat_map(|n| n.body.as_deref().unwrap_or(&[]))
        .find(|o| o.key == "protocol")
        .and_then(|o| o.args.first())?;
    let [a, b] = hosts.as_slice() else {
        return None;
    };
    Some(format!(
        "[[volume.connection]]  # {at}\nhosts = [{a:?}, {b:?}]\nprotocol = {protocol:?}\n"
    ))
}

/// The TOML lines for `options` (key, value, where as `file:line`). DRBD
/// counts plan-ahead and delay-target in tenths of a second and the fill
/// target in 512-byte sectors unless a unit is given; with any of them but
/// no `c-plan-ahead`, DRBD's default (2 s) turns the controller on.
pub(super) fn controller_lines(options: &[(String, String, String)]) -> String {
    let mut out = String::new();
    let tenths = |v: &str| v.parse::<u64>().ok().map(|n| format!("{}ms", n * 100));
    if !options.is_empty() && !options.iter().any(|(k, _, _)| k == "c-plan-ahead") {
        out.push_str("c_plan_ahead = \"2s\"  # DRBD's default, the controller being configured\n");
    }
    for (k, v, at) in options {
        let (key, value) = match k.as_str() {
            "c-plan-ahead" => ("c_plan_ahead", tenths(v)),
            "c-delay-target" => ("c_delay_target", tenths(v)),
            "c-fill-target" => {
                let sectors = v.strip_suffix('s').unwrap_or(v).parse::<u64>().ok();
                let sized = v.ends_with(['k', 'K', 'm', 'M', 'g', 'G']);
                (
                    "c_fill_target",
                    sectors
                        .map(|s| format!("{}K", s / 2))
                        .or(sized.then(|| v.clone())),
                )
            }
            _ => ("c_max_rate", Some(v.clone())),
        };
        match value {
            Some(x) => out.push_str(&format!("{key} = {x:?}  # {at}\n")),
            None => out.push_str(&format!("# {k} {v} not understood  # {at}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drbds_units_become_tandems() {
        let o = |k: &str, v: &str| (k.to_string(), v.to_string(), "r0.res:3".to_string());
        let t = controller_lines(&[
            o("c-plan-ahead", "20"),
            o("c-fill-target", "100s"),
            o("c-delay-target", "10"),
            o("c-max-rate", "100M"),
        ]);
        for line in [
            "c_plan_ahead = \"2000ms\"  # r0.res:3",
            "c_fill_target = \"50K\"  # r0.res:3",
            "c_delay_target = \"1000ms\"  # r0.res:3",
            "c_max_rate = \"100M\"  # r0.res:3",
        ] {
            assert!(t.lines().any(|l| l == line), "no `{line}` in\n{t}");
        }
        let t = controller_lines(&[o("c-fill-target", "1M")]);
        assert!(t.contains("c_plan_ahead = \"2s\""), "{t}");
        assert!(t.contains("c_fill_target = \"1M\""), "{t}");
        assert_eq!(controller_lines(&[]), "");
    }

    #[test]
    fn a_connection_block_becomes_a_connection_table() {
        let st = |key: &str, args: &[&str], body: Option<Vec<Stmt>>| Stmt {
            key: key.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            body,
            at: 0,
        };
        let block = st(
            "connection",
            &[],
            Some(vec![
                st("host", &["alpha"], None),
                st("host", &["charlie", "address", "10.0.0.3:7789"], None),
                st("net", &[], Some(vec![st("protocol", &["A"], None)])),
            ]),
        );
        assert_eq!(
            connection_table(&block, "r0.res:7").as_deref(),
            Some(
                "[[volume.connection]]  # r0.res:7\nhosts = [\"alpha\", \"charlie\"]\nprotocol = \"A\"\n"
            )
        );
        // Without a protocol of its own: nothing to carry over.
        let plain = st(
            "connection",
            &[],
            Some(vec![
                st("host", &["alpha"], None),
                st("host", &["bravo"], None),
            ]),
        );
        assert_eq!(connection_table(&plain, "r0.res:9"), None);
    }
}
