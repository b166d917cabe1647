//! Data readiness: whether this node's copy of a group's data (its
//! replicated volumes) is fit to run the group. The daemon watches the
//! volumes and reports each change; a group whose data is not ready here
//! is not placed here (peers see it as unavailable in this node's
//! reports), and the status says why. A group already active here is left
//! to its monitors: readiness governs where a group may *start*.

use tandem_wire::PacketKind;

use super::Brain;
use crate::event::Event;
use crate::time::Timestamp;
use tandem_wire::NodeState;

impl Brain {
    /// Records whether group `group`'s data is ready here (`None`) or why
    /// not. Unknown group names are ignored (the daemon built both lists
    /// from one configuration).
    pub(super) fn set_data_hold(
        &mut self,
        now: Timestamp,
        group: &str,
        hold: Option<String>,
        stale: bool,
    ) {
        let Some(g) = self.cfg.groups.iter().position(|s| s.name == group) else {
            return;
        };
        if self.groups[g].data_hold == hold && self.groups[g].data_stale == stale {
            return;
        }
        self.groups[g].data_stale = stale;
        if self.groups[g].data_hold == hold {
            // Only the peers need to hear of it.
            if self.state != NodeState::Leaving {
                self.queue_heartbeats(PacketKind::Heartbeat);
            }
            return;
        }
        self.events.push_back(Event::DataReadiness {
            group: group.to_string(),
            hold: hold.clone(),
        });
        self.groups[g].data_hold = hold;
        if self.state != NodeState::Leaving {
            self.queue_heartbeats(PacketKind::Heartbeat);
        }
        self.reconcile(now);
    }

    /// Whether this node may not start group `g` because of its data.
    pub(super) fn data_held(&self, g: usize) -> bool {
        let rt = &self.groups[g];
        rt.data_hold.is_some() && !rt.phase().is_active()
    }
}
