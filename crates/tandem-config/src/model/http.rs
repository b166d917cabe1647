//! `[http]`: the HTTP API, web console, Prometheus metrics and health
//! endpoints for load balancers. Off unless the section is present.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use toml::Spanned;

use super::check::Checker;
use super::{Http, Node, Tls};

/// Default listening address: loopback only, so nothing is exposed by
/// merely adding `[http]`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7080";

/// Checks `[http]`.
pub(super) fn build_http(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<crate::raw::RawHttp>>,
    nodes: &[Node],
    base: &Path,
) -> Option<Http> {
    let raw = raw.as_ref()?;
    let at = raw.span().start;
    let h = raw.get_ref();
    let mut addr = |v: &Spanned<String>, what: &str| -> Option<SocketAddr> {
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                c.error(
                    v.span().start,
                    format!("{what} `{}` is not an address and port", v.get_ref()),
                    Some("write it like \"0.0.0.0:7080\" or \"[::]:7080\"".to_string()),
                );
                None
            }
        }
    };
    let listen = match &h.listen {
        Some(v) => addr(v, "listen"),
        None => DEFAULT_LISTEN.parse().ok(),
    };
    let mut listen_on = BTreeMap::new();
    for (node, v) in &h.on {
        if let Some(a) = addr(v, &format!("on.{node}")) {
            listen_on.insert(node.clone(), a);
        }
    }
    for (node, v) in &h.on {
        if !nodes.iter().any(|n| &n.name == node) {
            c.error(
                v.span().start,
                format!("[http] on.{node}: no node is called {node}"),
                Some("use the name of a [[node]]".to_string()),
            );
        }
    }
    let tls = match (&h.cert, &h.key) {
        (Some(cert), Some(key)) => Some(Tls {
            cert: base.join(cert.get_ref()),
            key: base.join(key.get_ref()),
        }),
        (None, None) => None,
        (Some(v), None) | (None, Some(v)) => {
            c.error(
                v.span().start,
                "[http] needs both `cert` and `key` for TLS",
                Some("give both PEM files, or neither for plain HTTP".to_string()),
            );
            None
        }
    };
    let tokens_file = h.tokens_file.as_ref().map(|f| base.join(f.get_ref()));
    if tokens_file.is_none() {
        c.warn(
            at,
            "[http] has no tokens_file: the API is read-only (status, console, metrics, health)",
            Some(
                "to allow changes from the console or API, add tokens_file = \"/etc/tandem/http-tokens\" (lines `NAME TOKEN`)"
                    .to_string(),
            ),
        );
    }
    Some(Http {
        listen: listen?,
        listen_on,
        tls,
        tokens_file,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{ConfigError, parse};

    const HEAD: &str = r#"
cluster = "web"
key_file = "authkey"
[[link]]
name = "lan"
kind = "ucast"
[[node]]
name = "n1"
addresses = { lan = "198.18.0.11" }
[[node]]
name = "n2"
addresses = { lan = "198.18.0.12" }
"#;

    fn errors(text: &str) -> Vec<String> {
        match parse(
            &format!("{HEAD}{text}"),
            Path::new("/etc/tandem/tandem.toml"),
        ) {
            Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn off_unless_present_and_loopback_by_default() {
        let c = parse(HEAD, Path::new("/etc/tandem/tandem.toml")).map(|l| l.config);
        assert!(c.is_ok_and(|c| c.http.is_none()));
        let l = parse(
            &format!("{HEAD}[http]\non = {{ n2 = \"0.0.0.0:9000\" }}\n"),
            Path::new("/etc/tandem/tandem.toml"),
        );
        let Ok(l) = l else { panic!("refused") };
        let h = l.config.http.unwrap_or_else(|| panic!("no [http]"));
        assert_eq!(h.listen_for("n1").to_string(), "127.0.0.1:7080");
        assert_eq!(h.listen_for("n2").to_string(), "0.0.0.0:9000");
        assert!(
            l.warnings
                .iter()
                .any(|w| w.to_string().contains("read-only"))
        );
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let e = errors("[http]\nlisten = \"7080\"\n");
        assert!(
            e.iter().any(|d| d.contains("tandem.toml:14:10")
                && d.contains("not an address and port")
                && d.contains("0.0.0.0:7080")),
            "{e:?}"
        );
        let e = errors("[http]\non = { n3 = \"0.0.0.0:7080\" }\n");
        assert!(
            e.iter().any(|d| d.contains("no node is called n3")),
            "{e:?}"
        );
        let e = errors("[http]\ncert = \"c.pem\"\n");
        assert!(
            e.iter().any(|d| d.contains("both `cert` and `key`")),
            "{e:?}"
        );
        let e = errors("[http]\nport = 7080\n");
        assert!(e.iter().any(|d| d.contains("port")), "{e:?}");
    }
}
