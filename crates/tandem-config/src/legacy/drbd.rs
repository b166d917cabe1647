//! DRBD resource files (`/etc/drbd.d/*.res`, `global_common.conf`)
//! turned into `[[volume]]` tables: `tandem import drbd`, and
//! `--heartbeat-dir` when haresources names `drbddisk::r0`. The output
//! names the source line of every value; what tandem does not carry over
//! is listed in the notes, never silently dropped. Secrets
//! (`shared-secret`) are never copied: replication is authenticated with
//! the cluster key.
//!
//! Grammar (drbd.conf(5)): statements `word args… ;` and sections
//! `word args… { … }`, `#` comments, double-quoted strings.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Severity};

/// One statement or section.
#[derive(Clone, Debug)]
pub(super) struct Stmt {
    pub(super) key: String,
    pub(super) args: Vec<String>,
    pub(super) body: Option<Vec<Stmt>>,
    /// Byte offset in its file.
    pub(super) at: usize,
}

/// Parses one file.
fn parse(text: &str, file: &Path) -> Result<Vec<Stmt>, Diagnostic> {
    let mut toks: Vec<(String, usize, bool)> = Vec::new(); // (text, offset, quoted)
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if matches!(c, b'{' | b'}' | b';') {
            toks.push(((c as char).to_string(), i, false));
            i += 1;
        } else if c == b'"' {
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                match b.get(i) {
                    None => {
                        return Err(Diagnostic::at(
                            Severity::Error,
                            file,
                            text,
                            start,
                            "unterminated string",
                            Some("close it with \"".into()),
                        ));
                    }
                    Some(b'"') => break,
                    Some(b'\\') if i + 1 < b.len() => {
                        i += 1;
                        s.push(b[i] as char);
                    }
                    Some(_) => {
                        let ch = text[i..].chars().next().unwrap_or(' ');
                        s.push(ch);
                        i += ch.len_utf8() - 1;
                    }
                }
                i += 1;
            }
            i += 1;
            toks.push((s, start, true));
        } else {
            let start = i;
            while i < b.len()
                && !b[i].is_ascii_whitespace()
                && !matches!(b[i], b'{' | b'}' | b';' | b'#' | b'"')
            {
                i += 1;
            }
            toks.push((text[start..i].to_string(), start, false));
        }
    }
    let mut pos = 0;
    let out = block(&toks, &mut pos, text, file, None)?;
    Ok(out)
}

fn block(
    toks: &[(String, usize, bool)],
    pos: &mut usize,
    text: &str,
    file: &Path,
    opened: Option<(usize, &str)>,
) -> Result<Vec<Stmt>, Diagnostic> {
    let nested = opened.is_some();
    let err = |at: usize, m: &str, h: &str| {
        Diagnostic::at(Severity::Error, file, text, at, m, Some(h.to_string()))
    };
    let mut out = Vec::new();
    loop {
        let Some((t, at, quoted)) = toks.get(*pos) else {
            if let Some((at, key)) = opened {
                return Err(err(
                    at,
                    &format!("`{key}` is opened here but never closed"),
                    "add the missing `}` (or a missing `;` made a statement swallow the next one)",
                ));
            }
            return Ok(out);
        };
        if t == "}" && !quoted {
            if !nested {
                return Err(err(*at, "unexpected `}`", "remove it"));
            }
            *pos += 1;
            return Ok(out);
        }
        if (t == "{" || t == ";") && !quoted {
            return Err(err(
                *at,
                &format!("unexpected `{t}`"),
                "a statement starts with a keyword",
            ));
        }
        let key = t.clone();
        let start = *at;
        *pos += 1;
        let mut args = Vec::new();
        loop {
            let Some((t, at, quoted)) = toks.get(*pos) else {
                return Err(err(
                    start,
                    &format!("`{key}` is not finished"),
                    "end it with `;`",
                ));
            };
            *pos += 1;
            match (t.as_str(), quoted) {
                (";", false) => {
                    out.push(Stmt {
                        key,
                        args,
                        body: None,
                        at: start,
                    });
                    break;
                }
                ("{", false) => {
                    let body = block(toks, pos, text, file, Some((start, &key)))?;
                    out.push(Stmt {
                        key,
                        args,
                        body: Some(body),
                        at: start,
                    });
                    break;
                }
                ("}", false) => {
                    return Err(err(
                        *at,
                        &format!("`{key}` is not finished"),
                        "end it with `;`",
                    ));
                }
                _ => args.push(t.clone()),
            }
        }
    }
}

/// A `[[volume]]` (or several) made from DRBD files.
#[derive(Clone, Debug, Default)]
pub struct DrbdImport {
    /// The TOML, with comments naming the source lines.
    pub toml: String,
    /// What was dropped or mapped (warnings located in the DRBD files).
    pub notes: Vec<Diagnostic>,
    /// The resources imported.
    pub names: Vec<String>,
}

/// Reads DRBD files: a `.res` file, or a directory (`*.res` and
/// `global_common.conf`, as `/etc/drbd.d`).
pub fn read(path: &Path) -> Result<Vec<(PathBuf, String)>, crate::ConfigError> {
    let io = |p: &Path, source| crate::ConfigError::Io {
        path: p.to_path_buf(),
        source,
    };
    if !path.is_dir() {
        let t = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
        return Ok(vec![(path.to_path_buf(), t)]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| io(path, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "res")
                || p.file_name().is_some_and(|n| n == "global_common.conf")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
            Ok((p, t))
        })
        .collect()
}

/// Converts the resources of `files` (all of them, or only those named in
/// `only`) to `[[volume]]` tables for the cluster nodes `nodes` (ha.cf or
/// tandem.toml names; an `on` host that is not one is an error).
pub fn import(
    files: &[(PathBuf, String)],
    only: Option<&[String]>,
    nodes: Option<&[String]>,
) -> Result<DrbdImport, Vec<Diagnostic>> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (p, t) in files {
        match parse(t, p) {
            Ok(s) => parsed.push((p, t, s)),
            Err(d) => errors.push(d),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // `common { … }` sections give defaults to every resource.
    let common: Vec<Stmt> = parsed
        .iter()
        .flat_map(|(_, _, s)| s.iter().filter(|x| x.key == "common"))
        .flat_map(|c| c.body.clone().unwrap_or_default())
        .collect();
    let mut out = DrbdImport::default();
    for (file, text, stmts) in &parsed {
        for r in stmts.iter().filter(|s| s.key == "resource") {
            let Some(name) = r.args.first() else {
                errors.push(Diagnostic::at(
                    Severity::Error,
                    file,
                    text,
                    r.at,
                    "resource without a name",
                    None,
                ));
                continue;
            };
            if only.is_some_and(|o| !o.contains(name)) {
                continue;
            }
            let mut ctx = Ctx {
                file,
                text,
                out: &mut out,
                errors: &mut errors,
            };
            ctx.resource(name, r, &common, nodes);
        }
    }
    if let Some(o) = only {
        for n in o {
            if !out.names.contains(n) {
                let list: Vec<String> =
                    files.iter().map(|(p, _)| p.display().to_string()).collect();
                errors.push(Diagnostic::at(
                    Severity::Error,
                    Path::new(list.first().map_or("drbd.d", String::as_str)),
                    "",
                    0,
                    format!("no DRBD resource `{n}` in {}", list.join(", ")),
                    Some(format!("define `resource {n} {{ … }}` in a .res file")),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    out: &'a mut DrbdImport,
    errors: &'a mut Vec<Diagnostic>,
}

/// The per-node values of a resource.
#[derive(Default)]
struct OnNode {
    name: String,
    address: Option<(SocketAddr, usize)>,
    disk: Option<(String, usize)>,
    device: Option<(String, usize)>,
    meta: Option<(String, usize)>,
}

impl Ctx<'_> {
    fn line(&self, at: usize) -> String {
        let n = self.text[..at.min(self.text.len())].matches('\n').count() + 1;
        format!("{}:{n}", self.file.display())
    }

    fn error(&mut self, at: usize, m: String, hint: Option<String>) {
        self.errors.push(Diagnostic::at(
            Severity::Error,
            self.file,
            self.text,
            at,
            m,
            hint,
        ));
    }

    fn note(&mut self, at: usize, m: String) {
        self.out.notes.push(Diagnostic::at(
            Severity::Warning,
            self.file,
            self.text,
            at,
            m,
            None,
        ));
    }

    /// `device`, `disk`, `meta-disk`, `address` of a section (resource,
    /// `on`, or `volume`), over `into`.
    fn node_values(&mut self, s: &[Stmt], into: &mut OnNode) {
        for x in s {
            match x.key.as_str() {
                "device" => {
                    let d = match x.args.as_slice() {
                        [m, n] if m == "minor" => format!("/dev/drbd{n}"),
                        [d, ..] => d.clone(),
                        [] => continue,
                    };
                    into.device = Some((d, x.at));
                }
                "disk" if x.body.is_none() => {
                    if let Some(d) = x.args.first() {
                        into.disk = Some((d.clone(), x.at));
                    }
                }
                "meta-disk" | "flexible-meta-disk" => {
                    if let Some(m) = x.args.first() {
                        into.meta = Some((m.clone(), x.at));
                        if x.args.len() > 1 && m != "internal" {
                            self.note(x.at, format!("meta-disk index {} dropped: tandem keeps one volume's metadata per file", x.args[1]));
                        }
                    }
                }
                "address" => {
                    let a = x.args.last().map(String::as_str).unwrap_or("");
                    let parsed = a
                        .parse::<SocketAddr>()
                        .ok()
                        .or_else(|| a.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 7788)));
                    match parsed {
                        Some(sa) => into.address = Some((sa, x.at)),
                        None => self.error(
                            x.at,
                            format!("`{a}` is not an address"),
                            Some("write address IP:PORT, e.g. address 10.0.0.1:7788".into()),
                        ),
                    }
                }
                "node-id" => {}
                _ => {}
            }
        }
    }

    fn resource(&mut self, name: &str, r: &Stmt, common: &[Stmt], nodes: Option<&[String]>) {
        let body = r.body.clone().unwrap_or_default();
        let mut all: Vec<Stmt> = common.to_vec();
        all.extend(body.iter().cloned());
        let mut toml = String::new();
        let _ = writeln!(toml, "\n[[volume]]  # {}: resource {name}", self.line(r.at));
        let _ = writeln!(toml, "name = {name:?}");
        let mut defaults = OnNode::default();
        let mut sections: Vec<&Stmt> = Vec::new();
        let volumes: Vec<&Stmt> = all.iter().filter(|s| s.key == "volume").collect();
        if volumes.len() > 1 {
            self.error(
                volumes[1].at,
                format!(
                    "resource {name} has {} volumes; a tandem volume holds one device",
                    volumes.len()
                ),
                Some("split it into one resource per volume".into()),
            );
            return;
        }
        self.node_values(&all, &mut defaults);
        if let Some(v) = volumes.first() {
            self.node_values(v.body.as_deref().unwrap_or(&[]), &mut defaults);
        }
        let mut protocol: Option<(String, usize)> = None;
        let mut al: Option<(String, usize)> = None;
        let mut sb: [Option<(String, usize)>; 3] = [None, None, None];
        let mut fencing: Option<(String, usize)> = None;
        let mut csums: Option<(String, usize)> = None;
        let mut rate: Option<(String, usize)> = None;
        let mut min_rate: Option<(String, usize)> = None;
        let mut controller: Vec<(String, String, String)> = Vec::new();
        let mut connections = String::new();
        let mut handlers: Vec<(String, String, usize)> = Vec::new();
        for s in &all {
            let single = matches!(
                s.key.as_str(),
                "protocol" | "device" | "address" | "meta-disk"
            );
            if single && (s.body.is_some() || s.args.len() > 3) {
                self.error(
                    s.at,
                    format!(
                        "`{} {}` runs into what follows",
                        s.key,
                        s.args.first().map_or("", String::as_str)
                    ),
                    Some(format!(
                        "a `;` is missing after `{} {}`",
                        s.key,
                        s.args.first().map_or("", String::as_str)
                    )),
                );
                return;
            }
            match s.key.as_str() {
                "protocol" => protocol = s.args.first().map(|p| (p.clone(), s.at)),
                "on" => sections.push(s),
                "net" | "disk" | "syncer" | "options" | "startup" | "handlers"
                    if s.body.is_some() =>
                {
                    for o in s.body.as_deref().unwrap_or(&[]) {
                        let v = o.args.first().cloned().unwrap_or_default();
                        match (s.key.as_str(), o.key.as_str()) {
                            ("net", "protocol") => protocol = Some((v, o.at)),
                            ("disk" | "syncer", "al-extents") => al = Some((v, o.at)),
                            ("disk" | "syncer", "resync-rate" | "rate") => rate = Some((v, o.at)),
                            ("disk" | "syncer", "c-min-rate") => min_rate = Some((v, o.at)),
                            ("disk", k @ ("c-plan-ahead" | "c-fill-target" | "c-delay-target" | "c-max-rate")) => controller.push((k.to_string(), v, self.line(o.at))),
                            ("net", "after-sb-0pri") => sb[0] = Some((v, o.at)),
                            ("net", "after-sb-1pri") => sb[1] = Some((v, o.at)),
                            ("net", "after-sb-2pri") => sb[2] = Some((v, o.at)),
                            ("handlers", h) => handlers.push((h.to_string(), v, o.at)),
                            ("net", "shared-secret") => self.note(o.at, "shared-secret not copied: replication is authenticated with the cluster's key_file".into()),
                            ("net", "cram-hmac-alg") => self.note(o.at, format!("cram-hmac-alg {v}: replication frames carry a keyed BLAKE3 MAC instead")),
                            ("net", "csums-alg") => csums = Some((v, o.at)),
                            ("net", "verify-alg") => self.note(o.at, format!("verify-alg {v}: `tandem volume verify` compares xxh3-64 digests")),
                            ("net" | "disk", "fencing") => match v.as_str() {
                                "dont-care" | "resource-only" | "resource-and-stonith" => fencing = Some((v, o.at)),
                                _ => self.note(o.at, format!("fencing {v}: unknown; tandem's default (resource-only) applies")),
                            },
                            ("net", "allow-two-primaries") if v == "yes" => self.error(o.at, "allow-two-primaries: tandem never runs two primaries (no cluster filesystem on a tandem volume)".into(), Some("remove it".into())),
                            ("disk", "on-io-error") => self.note(o.at, format!("on-io-error {v}: tandem detaches a failing disk (DRBD's default) and calls local-io-error")),
                            (_, k) => self.note(o.at, format!("{}.{k} {v}: not carried over", s.key)),
                        }
                    }
                }
                "volume" | "device" | "disk" | "meta-disk" | "flexible-meta-disk" | "address" => {}
                "connection" if s.body.is_some() => {
                    match super::drbd_options::connection_table(s, &self.line(s.at)) {
                        Some(t) => connections.push_str(&t),
                        None => self.note(
                            s.at,
                            "connection: every copy connects to every other".into(),
                        ),
                    }
                }
                "connection-mesh" | "connection" => self.note(
                    s.at,
                    format!("{}: every copy connects to every other", s.key),
                ),
                other => self.note(s.at, format!("`{other}` not carried over")),
            }
        }
        if let Some((p, at)) = &protocol {
            let _ = writeln!(toml, "protocol = {p:?}  # {}", self.line(*at));
        }
        let _ = writeln!(
            toml,
            "# DRBD has no export: the volume is the file EXPORT/{name}, and `device` a loop device on it while primary."
        );
        let _ = writeln!(toml, "export = \"/run/tandem/export\"");
        if sections.len() < 2 {
            self.error(r.at, format!("resource {name} has {} `on` section(s); a tandem volume has two or three nodes", sections.len()), Some("add `on HOST { address IP:PORT; }` for each node".into()));
            return;
        }
        let mut on_nodes = Vec::new();
        for on in sections {
            let mut n = OnNode {
                name: on.args.first().cloned().unwrap_or_default(),
                address: None,
                disk: defaults.disk.clone(),
                device: defaults.device.clone(),
                meta: defaults.meta.clone(),
            };
            let ob = on.body.clone().unwrap_or_default();
            self.node_values(&ob, &mut n);
            for v in ob.iter().filter(|s| s.key == "volume") {
                self.node_values(v.body.as_deref().unwrap_or(&[]), &mut n);
            }
            if let Some(list) = nodes
                && !list.contains(&n.name)
            {
                self.error(
                    on.at,
                    format!("`on {}`: not a cluster node ({})", n.name, list.join(", ")),
                    Some(
                        "the `on` names are the nodes' host names, as in ha.cf's node lines".into(),
                    ),
                );
                continue;
            }
            on_nodes.push((on.at, n));
        }
        // One meta setting per volume: the resource's, or the first node's.
        let meta = on_nodes.iter().find_map(|(_, n)| n.meta.clone());
        for (_, n) in &on_nodes {
            if let (Some((m, at)), Some((first, _))) = (&n.meta, &meta)
                && m != first
            {
                self.note(*at, format!("meta-disk {m} on {}: tandem has one meta setting per volume; {first} is used", n.name));
            }
        }
        if let Some((m, at)) = meta {
            let _ = writeln!(toml, "meta = {m:?}  # {}", self.line(at));
        }
        if let Some((a, at)) = &al {
            let _ = writeln!(toml, "al_extents = {a}  # {}", self.line(*at));
        }
        for (i, v) in sb.iter().enumerate() {
            if let Some((p, at)) = v {
                let _ = writeln!(toml, "after_sb_{i}pri = {p:?}  # {}", self.line(*at));
            }
        }
        if let Some((f, at)) = &fencing {
            let _ = writeln!(toml, "fencing = {f:?}  # {}", self.line(*at));
        }
        if let Some((r, at)) = &rate {
            let _ = writeln!(toml, "resync_rate = {r:?}  # {}", self.line(*at));
        }
        if let Some((r, at)) = &min_rate {
            let _ = writeln!(toml, "resync_min_rate = {r:?}  # {}", self.line(*at));
        }
        toml.push_str(&super::drbd_options::controller_lines(&controller));
        if let Some((alg, at)) = &csums {
            let _ = writeln!(toml, "csums = true  # {}", self.line(*at));
            self.note(
                *at,
                format!("csums-alg {alg}: the resync compares xxh3-64 digests"),
            );
        }
        if !handlers.is_empty() {
            let _ = writeln!(toml, "[volume.handlers]");
            for (h, cmd, at) in &handlers {
                let _ = writeln!(toml, "{h:?} = {cmd:?}  # {}", self.line(*at));
            }
        }
        for (at, n) in &on_nodes {
            let _ = writeln!(toml, "[volume.on.{:?}]  # {}", n.name, self.line(*at));
            match &n.address {
                Some((a, at)) => {
                    let _ = writeln!(toml, "address = \"{a}\"  # {}", self.line(*at));
                }
                None => self.error(
                    *at,
                    format!("`on {}` has no address", n.name),
                    Some("add address IP:PORT;".into()),
                ),
            }
            match &n.disk {
                Some((d, at)) => {
                    let _ = writeln!(toml, "disk = {d:?}  # {}", self.line(*at));
                }
                None => self.error(
                    *at,
                    format!("`on {}` has no disk", n.name),
                    Some("add disk /dev/…;".into()),
                ),
            }
            if let Some((d, at)) = &n.device {
                let _ = writeln!(toml, "device = {d:?}  # {}", self.line(*at));
            }
        }
        toml.push_str(&connections);
        self.out.toml.push_str(&toml);
        self.out.names.push(name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "resource r0 {\n    protocol C;\n    on node1 { device /dev/drbd0; disk /dev/sda1; address 172.28.0.11:7788; meta-disk internal; }\n    on node2 { device /dev/drbd0; disk /dev/sda1; address 172.28.0.12:7788; meta-disk internal; }\n}\n";

    fn one(text: &str) -> Result<DrbdImport, Vec<Diagnostic>> {
        import(
            &[(PathBuf::from("/etc/drbd.d/r0.res"), text.to_string())],
            None,
            None,
        )
    }

    #[test]
    fn the_workshops_r0_file() {
        let i = one(SEED).expect("imports");
        assert_eq!(i.names, vec!["r0".to_string()]);
        assert!(
            i.toml.contains("protocol = \"C\"  # /etc/drbd.d/r0.res:2"),
            "{}",
            i.toml
        );
        assert!(
            i.toml.contains("address = \"172.28.0.12:7788\""),
            "{}",
            i.toml
        );
        assert!(i.toml.contains("device = \"/dev/drbd0\""), "{}", i.toml);
        assert!(i.toml.contains("disk = \"/dev/sda1\""), "{}", i.toml);
        assert!(i.notes.is_empty(), "{:?}", i.notes);
    }

    #[test]
    fn drbd9_sections_policies_handlers_and_notes() {
        let text = r#"
resource data {
  net { protocol A; after-sb-0pri discard-zero-changes; after-sb-1pri discard-secondary;
        cram-hmac-alg sha1; shared-secret "s3cr3t"; fencing resource-and-stonith;
        csums-alg sha1; }
  disk { al-extents 3389; resync-rate 40M; c-min-rate 4M; c-fill-target 1M; c-max-rate 100M; }
  handlers { split-brain "/usr/lib/drbd/notify-split-brain.sh root"; }
  volume 0 { device minor 1; disk /dev/vg/data; meta-disk internal; }
  on alpha { node-id 0; address ipv4 10.99.0.1:7789; }
  on bravo { node-id 1; address 10.99.0.2:7789; }
  connection-mesh { hosts alpha bravo; }
}"#;
        let i = one(text).expect("imports");
        let t = &i.toml;
        assert!(t.contains("protocol = \"A\""), "{t}");
        assert!(
            t.contains("after_sb_0pri = \"discard-zero-changes\""),
            "{t}"
        );
        assert!(t.contains("al_extents = 3389"), "{t}");
        assert!(t.contains("fencing = \"resource-and-stonith\""), "{t}");
        assert!(t.contains("csums = true"), "{t}");
        assert!(
            t.contains("\"split-brain\" = \"/usr/lib/drbd/notify-split-brain.sh root\""),
            "{t}"
        );
        assert!(t.contains("device = \"/dev/drbd1\""), "{t}");
        assert!(t.contains("disk = \"/dev/vg/data\""), "{t}");
        let notes: Vec<String> = i.notes.iter().map(|d| d.message.clone()).collect();
        let notes = notes.join("\n");
        assert!(
            !t.contains("s3cr3t") && !notes.contains("s3cr3t"),
            "secrets never copied"
        );
        assert!(t.contains("resync_rate = \"40M\""), "{t}");
        assert!(notes.contains("connection-mesh"), "{notes}");
        // The TOML it writes loads as a volume.
        let cfg = format!(
            "cluster = \"c\"\nkey_file = \"k\"\n[[link]]\nname = \"l\"\nkind = \"ucast\"\n[[node]]\nname = \"alpha\"\naddresses = {{ l = \"10.99.0.1\" }}\n[[node]]\nname = \"bravo\"\naddresses = {{ l = \"10.99.0.2\" }}\n{t}"
        );
        let loaded = crate::parse(&cfg, Path::new("/x/tandem.toml")).expect("valid TOML");
        let v = &loaded.config.volumes[0];
        assert_eq!(
            v.split_brain.zero,
            tandem_volumes::split_brain::NoPrimary::DiscardZeroChanges
        );
        assert_eq!(v.fencing, tandem_volumes::Fencing::ResourceAndStonith);
        assert!(v.csums);
        assert_eq!(v.resync_rate_kib, Some(40 * 1024));
        assert_eq!(v.resync_min_rate_kib, Some(4 * 1024));
        let c = v
            .controller
            .expect("the controller (DRBD's default plan-ahead)");
        assert_eq!(
            (c.fill_target_kib, c.max_rate_kib),
            (1024, Some(100 * 1024))
        );
        assert_eq!(v.nodes.len(), 2);
    }

    #[test]
    fn three_hosts_with_an_asynchronous_connection() {
        let text = "resource r0 {\n  protocol C;\n  on alpha { address 10.0.0.1:7789; disk /dev/x; }\n  on bravo { address 10.0.0.2:7789; disk /dev/x; }\n  on charlie { address 10.0.1.3:7789; disk /dev/x; }\n  connection { host alpha; host charlie; net { protocol A; } }\n  connection { host bravo; host charlie; net { protocol A; } }\n}\n";
        let i = one(text).expect("imports");
        let t = &i.toml;
        let cfg = format!(
            "cluster = \"c\"\nkey_file = \"k\"\n[[link]]\nname = \"l\"\nkind = \"ucast\"\n[[node]]\nname = \"alpha\"\naddresses = {{ l = \"10.0.0.1\" }}\n[[node]]\nname = \"bravo\"\naddresses = {{ l = \"10.0.0.2\" }}\n[[node]]\nname = \"charlie\"\naddresses = {{ l = \"10.0.1.3\" }}\n{t}"
        );
        let loaded = crate::parse(&cfg, Path::new("/x/tandem.toml")).expect("valid TOML");
        let v = &loaded.config.volumes[0];
        use crate::ReplicationProtocol::{A, C};
        assert_eq!(v.nodes.len(), 3, "{t}");
        assert_eq!(v.protocol_between("alpha", "bravo"), C, "{t}");
        assert_eq!(v.protocol_between("charlie", "alpha"), A, "{t}");
        assert_eq!(v.protocol_between("bravo", "charlie"), A, "{t}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = one(
            "resource r0 {\n  protocol C;\n  on a { address 10.0.0.1:7788; disk /dev/x; }\n}\n",
        )
        .expect_err("one node");
        assert!(e[0].message.contains("1 `on` section"), "{:?}", e);
        let e = one("resource r0 {\n  protocol C\n  on a { }\n}\n").expect_err("syntax");
        assert_eq!(e[0].line, 2, "{:?}", e);
        assert!(
            e[0].hint
                .as_deref()
                .unwrap_or("")
                .contains("`;` is missing"),
            "{:?}",
            e
        );
        let e = one("resource r0 {\n  protocol C;\n").expect_err("unclosed");
        assert_eq!(e[0].line, 1, "{:?}", e);
        let e = import(
            &[(PathBuf::from("r0.res"), SEED.into())],
            Some(&["r1".to_string()]),
            None,
        )
        .expect_err("missing");
        assert!(e[0].message.contains("no DRBD resource `r1`"), "{:?}", e);
        let e = import(
            &[(PathBuf::from("r0.res"), SEED.into())],
            None,
            Some(&["alice".to_string()]),
        )
        .expect_err("unknown host");
        assert!(e[0].message.contains("not a cluster node"), "{:?}", e);
    }
}
