//! A volume's dynamic resync controller (`c_plan_ahead`, `c_fill_target`,
//! `c_delay_target`, `c_max_rate`: DRBD's `c-*` options).

use std::time::Duration;

use tandem_volumes::ControllerConfig;
use toml::Spanned;

use super::check::Checker;
use super::volumes::parse_rate;
use crate::duration::parse_duration;
use crate::raw::RawVolume;

/// The controller of volume `name`: on when `c_plan_ahead` is given and
/// not zero; the other keys need it.
pub(super) fn parse_controller(
    c: &mut Checker<'_>,
    name: &str,
    v: &RawVolume,
) -> Option<ControllerConfig> {
    let mut duration = |key: &str, raw: &Spanned<String>| {
        c.parsed(
            raw,
            parse_duration,
            |_, e| format!("volume `{name}`: {key}: {e}"),
            "write a duration such as \"2s\" or \"10ms\"",
        )
    };
    let plan_ahead = v
        .c_plan_ahead
        .as_ref()
        .and_then(|p| duration("c_plan_ahead", p));
    let delay_target = v
        .c_delay_target
        .as_ref()
        .and_then(|d| duration("c_delay_target", d));
    let mut size = |key: &str, raw: &Spanned<String>| {
        c.parsed(
            raw,
            |t| parse_rate(t).ok_or(()),
            |t, ()| format!("volume `{name}`: {key}: `{t}` is not a size"),
            "write KiB, or with a suffix: \"256K\", \"100M\"",
        )
    };
    let fill_target_kib = v
        .c_fill_target
        .as_ref()
        .and_then(|f| size("c_fill_target", f));
    // "0": no limit (as DRBD's c-max-rate 0).
    let max_rate_kib = v.c_max_rate.as_ref().and_then(|m| {
        if m.get_ref().trim() == "0" {
            Some(0)
        } else {
            size("c_max_rate", m)
        }
    });
    let Some(plan_ahead) = plan_ahead.filter(|p| !p.is_zero()) else {
        let given = [&v.c_fill_target, &v.c_delay_target, &v.c_max_rate]
            .into_iter()
            .flatten()
            .next();
        if let (Some(k), None) = (given, &v.c_plan_ahead) {
            c.error(
                k.span().start,
                format!(
                    "volume `{name}`: the dynamic resync controller is off without c_plan_ahead"
                ),
                Some("add c_plan_ahead = \"2s\" (DRBD's default) to turn it on".into()),
            );
        }
        return None;
    };
    Some(ControllerConfig {
        plan_ahead,
        fill_target_kib: fill_target_kib.unwrap_or(0),
        delay_target: delay_target.unwrap_or(Duration::from_millis(10)),
        max_rate_kib: Some(max_rate_kib.unwrap_or(100 * 1024)).filter(|m| *m > 0),
    })
}
