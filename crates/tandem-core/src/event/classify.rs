//! Classifying events: what kind each is and what it is about, for the
//! API's event records, filters and alerts.

use super::Event;

/// What an [`Event`] is about (see [`Event::subject`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subject<'a> {
    /// A node, for membership, link and fencing events.
    pub node: Option<&'a str>,
    /// A group, for group and resource events.
    pub group: Option<&'a str>,
    /// A resource, for resource events.
    pub resource: Option<&'a str>,
}

impl Event {
    /// The stable word for what the event is about, for filters, alerts
    /// and the API: `node`, `link`, `group`, `resource`, `quorum`,
    /// `fencing`, `witness`, `lease`, `settings`, `operator`, `volume` or `packet`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::LinkUp { .. } | Event::LinkDead { .. } => "link",
            Event::Late { .. }
            | Event::Resumed { .. }
            | Event::Dead { .. }
            | Event::Joined { .. }
            | Event::Back { .. }
            | Event::Restarted { .. }
            | Event::Left { .. }
            | Event::Stalled { .. }
            | Event::ConfigMismatch { .. }
            | Event::DuplicateNode { .. } => "node",
            Event::Acquiring { .. }
            | Event::Acquired { .. }
            | Event::Releasing { .. }
            | Event::Released { .. } => "group",
            Event::OpStarted { .. }
            | Event::OpDone { .. }
            | Event::MonitorFailed { .. }
            | Event::StartFailed { .. }
            | Event::StopFailed { .. } => "resource",
            Event::Quorum { .. } => "quorum",
            Event::DataReadiness { .. } => "volume",
            Event::LeaseLost { .. } => "lease",
            Event::Fenced { .. } => "fencing",
            Event::Witness { .. } => "witness",
            Event::SettingsChanged { .. } => "settings",
            Event::Operator { .. } => "operator",
            Event::Rejected { .. } => "packet",
        }
    }

    /// The node, group and resource the event is about, where it names
    /// them (for filters and the API's event records).
    pub fn subject(&self) -> Subject<'_> {
        let mut s = Subject::default();
        match self {
            Event::LinkUp { node, .. }
            | Event::LinkDead { node, .. }
            | Event::Late { node, .. }
            | Event::Resumed { node, .. }
            | Event::Dead { node, .. }
            | Event::Joined { node, .. }
            | Event::Back { node, .. }
            | Event::Restarted { node, .. }
            | Event::Left { node }
            | Event::ConfigMismatch { node }
            | Event::DuplicateNode { node, .. }
            | Event::Fenced { node, .. } => s.node = Some(node),
            Event::Acquiring { group, .. }
            | Event::Acquired { group }
            | Event::Releasing { group, .. }
            | Event::Released { group }
            | Event::DataReadiness { group, .. } => s.group = Some(group),
            Event::OpStarted {
                group, resource, ..
            }
            | Event::OpDone {
                group, resource, ..
            }
            | Event::MonitorFailed {
                group, resource, ..
            }
            | Event::StartFailed {
                group, resource, ..
            }
            | Event::StopFailed {
                group, resource, ..
            } => {
                s.group = Some(group);
                s.resource = Some(resource);
            }
            Event::Stalled { .. }
            | Event::Quorum { .. }
            | Event::LeaseLost { .. }
            | Event::Witness { .. }
            | Event::SettingsChanged { .. }
            | Event::Operator { .. }
            | Event::Rejected { .. } => {}
        }
        s
    }

    /// For [`Event::Acquiring`]: `failover`, `move` or `placement` (the
    /// first word of its reason); `None` for other events.
    pub fn acquire_kind(&self) -> Option<&str> {
        match self {
            Event::Acquiring { reason, .. } => reason.split(':').next(),
            _ => None,
        }
    }
}
