//! OCF resources at start-up: the timings their meta-data recommends, and
//! whether IPaddr/IPaddr2 run natively (said once per resource).

use tandem_config::Config;

/// Says once per resource how an OCF IPaddr/IPaddr2 resource runs: natively
/// or by its script, and why.
pub fn log_native_paths(config: &Config) {
    for g in &config.groups {
        for r in &g.resources {
            match &r.native {
                tandem_config::Native::None => {}
                tandem_config::Native::IpAddr(f) => tracing::info!(
                    "{}/{}: {} runs natively (netlink: {}/{} on {}, label {}); `native = false` runs the script instead",
                    g.name,
                    r.name,
                    r.agent.label(),
                    f.ip,
                    f.prefix,
                    f.interface,
                    f.label
                ),
                tandem_config::Native::Script(why) => tracing::info!(
                    "{}/{}: {} runs its script, not natively: {why}",
                    g.name,
                    r.name,
                    r.agent.label()
                ),
            }
        }
    }
}

/// Fills the timings an OCF resource's configuration leaves out from its
/// agent's meta-data, as Pacemaker does.
pub fn apply_ocf_defaults(config: &mut Config) {
    for g in &mut config.groups {
        for r in &mut g.resources {
            let tandem_config::AgentKind::Ocf { provider, kind } = &r.agent else {
                continue;
            };
            let Some(d) = tandem_agents::scripts::ocf_meta_data(provider, kind) else {
                tracing::warn!(
                    "{}/{}: no meta-data from ocf:{provider}:{kind}; using tandem's default timeouts",
                    g.name,
                    r.name
                );
                continue;
            };
            let e = r.explicit;
            if let (false, Some(t)) = (e.start, d.start) {
                r.start_timeout = t;
            }
            if let (false, Some(t)) = (e.stop, d.stop) {
                r.stop_timeout = t;
            }
            if let (false, Some(t)) = (e.monitor_timeout, d.monitor_timeout) {
                r.monitor_timeout = t;
            }
            if let (false, Some(t)) = (e.monitor_interval, d.monitor_interval) {
                r.monitor_interval = Some(t);
            }
            tracing::info!(
                "{}/{}: timings from ocf:{provider}:{kind} meta-data where not configured: start {}, stop {}, monitor every {} (timeout {})",
                g.name,
                r.name,
                tandem_core::time::human(r.start_timeout),
                tandem_core::time::human(r.stop_timeout),
                r.monitor_interval
                    .map_or("never".to_string(), tandem_core::time::human),
                tandem_core::time::human(r.monitor_timeout)
            );
        }
    }
}
