//! `[fencing]` and `[watchdog]`: powering off a dead peer, and the
//! hardware watchdog that resets a hung node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::Checker;
use super::{Fencing, Watchdog};
use toml::Spanned;

/// Checks `[fencing]`.
pub(super) fn build_fencing(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<crate::raw::RawFencing>>,
    base: &Path,
) -> Option<Fencing> {
    raw.as_ref().map(|f| {
        let f = f.get_ref();
        let action = f.action.clone().unwrap_or_else(|| "off".into());
        if action != "off" && action != "reboot" {
            c.error(
                f.agent.span().start,
                format!("fencing action `{action}`?"),
                Some("use \"off\" or \"reboot\"".to_string()),
            );
        }
        Fencing {
            agent: base.join(f.agent.get_ref()),
            params: f.params.clone(),
            action,
            timeout: c
                .time(&f.timeout, "timeout")
                .map_or(Duration::from_secs(30), |v| v.0),
        }
    })
}

/// Checks `[watchdog]`.
pub(super) fn build_watchdog(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<crate::raw::RawWatchdog>>,
    base: &Path,
) -> Option<Watchdog> {
    raw.as_ref().map(|w| {
        let w = w.get_ref();
        let timeout = c
            .time(&w.timeout, "timeout")
            .map_or(Duration::from_secs(10), |v| v.0);
        if timeout < Duration::from_secs(1) {
            c.error(
                w.timeout.as_ref().map_or(0, |t| t.span().start),
                "the watchdog timeout must be at least 1s",
                Some("watchdog devices count in whole seconds; 10s is a common choice".to_string()),
            );
        }
        Watchdog {
            device: w.device.as_ref().map_or_else(
                || PathBuf::from("/dev/watchdog"),
                |d| base.join(d.get_ref()),
            ),
            timeout,
        }
    })
}
