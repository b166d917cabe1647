//! Who may use the control socket. Root may do everything; members of the
//! configured admin group may change things (move, standby, cleanup,
//! force-primary, takeover); members of the configured read group may read
//! the status. Decided on every connection from the kernel's record of the
//! peer (SO_PEERCRED and its process's groups), never from anything the
//! client says.

use std::os::unix::net::UnixStream;

use crate::Request;

/// The groups allowed besides root (none: root only, socket mode 0600).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// (name, gid) of the group whose members may change things.
    pub admin_group: Option<(String, u32)>,
    /// (name, gid) of the group whose members may read the status.
    pub read_group: Option<(String, u32)>,
}

/// What one peer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rights {
    /// Everything (root, or the admin group).
    Admin,
    /// `status` only.
    Read,
    /// Nothing.
    None,
}

impl Access {
    /// Whether users other than root may connect at all (the socket is then
    /// mode 0666 and every request is checked here).
    pub fn is_open(&self) -> bool {
        self.admin_group.is_some() || self.read_group.is_some()
    }

    /// The rights of a peer running as `uid` with `groups`.
    pub fn rights(&self, uid: u32, groups: &[u32]) -> Rights {
        let member =
            |g: &Option<(String, u32)>| g.as_ref().is_some_and(|(_, id)| groups.contains(id));
        if uid == 0 || member(&self.admin_group) {
            Rights::Admin
        } else if member(&self.read_group) {
            Rights::Read
        } else {
            Rights::None
        }
    }

    /// Why `req` is refused to a peer with `rights`; `None`: allowed.
    pub fn refusal(&self, req: &Request, rights: Rights) -> Option<String> {
        let changes = !matches!(req, Request::Status);
        let admin = self.admin_group.as_ref().map_or_else(
            || "set [control] admin_group in tandem.toml to allow a group".to_string(),
            |(g, _)| format!("or membership in group `{g}`"),
        );
        match (rights, changes) {
            (Rights::Admin, _) | (Rights::Read, false) => None,
            (Rights::Read, true) => Some(format!(
                "permission denied: this command changes the cluster and needs root ({admin}); your group may only read the status"
            )),
            (Rights::None, _) => {
                let read = self.read_group.as_ref().map_or_else(String::new, |(g, _)| {
                    format!(", or group `{g}` for `tandem status`")
                });
                Some(format!(
                    "permission denied: the control socket needs root ({admin}){read}"
                ))
            }
        }
    }
}

/// The gid of group `name`, from `/etc/group`.
pub fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// The peer's uid and groups (effective gid and supplementary groups), from
/// the kernel: SO_PEERCRED, then `/proc/PID/status` of the peer process.
/// A peer in an ancestor PID namespace (e.g. the host's CLI talking to a
/// daemon in a container) has pid 0: its uid and gid still count.
pub(crate) fn peer(stream: &UnixStream) -> std::io::Result<(u32, Vec<u32>)> {
    let cred = peercred(stream)?;
    let uid = cred.uid;
    let mut groups = vec![cred.gid];
    let status = if cred.pid > 0 {
        std::fs::read_to_string(format!("/proc/{}/status", cred.pid)).unwrap_or_default()
    } else {
        String::new()
    };
    for line in status.lines() {
        if let Some(list) = line.strip_prefix("Groups:") {
            groups.extend(
                list.split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
    }
    Ok((uid, groups))
}

/// SO_PEERCRED as the kernel gives it (a pid of 0 allowed).
#[allow(unsafe_code)]
fn peercred(stream: &UnixStream) -> std::io::Result<libc::ucred> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>())
        .map_err(std::io::Error::other)?;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a live
    // ucred of exactly that size, for an open socket fd.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_and_refusals() {
        let a = Access {
            admin_group: Some(("tandem-admin".into(), 900)),
            read_group: Some(("tandem".into(), 901)),
        };
        assert_eq!(a.rights(0, &[0]), Rights::Admin);
        assert_eq!(a.rights(1000, &[1000, 900]), Rights::Admin);
        assert_eq!(a.rights(1000, &[1000, 901]), Rights::Read);
        assert_eq!(a.rights(1000, &[1000]), Rights::None);
        assert_eq!(a.refusal(&Request::Status, Rights::Read), None);
        let mv = Request::Command(tandem_core::Command::Cleanup {
            group: "web".into(),
        });
        let no = a.refusal(&mv, Rights::Read).unwrap_or_default();
        assert!(no.contains("group `tandem-admin`"), "{no}");
        let no = a
            .refusal(&Request::Status, Rights::None)
            .unwrap_or_default();
        assert!(no.contains("group `tandem` for `tandem status`"), "{no}");
        assert!(!Access::default().is_open());
    }
}
