//! Placement: which node should run each group. A pure function of what
//! every node knows, so all nodes that see the same cluster agree.

use crate::NodeId;

/// How one group chooses its node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PlacementRules {
    /// Preferred nodes and their scores (higher wins); others score 0.
    pub scores: Vec<(NodeId, i32)>,
    /// Bonus for the node already running the group (avoids needless moves).
    pub stickiness: i32,
    /// When false the group stays where it runs even if a better-scored
    /// node returns (Heartbeat's `auto_failback off`).
    pub auto_failback: bool,
}

/// What placement knows about one candidate node for one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The node.
    pub node: NodeId,
    /// It may run groups (a member, not in standby, not leaving).
    pub eligible: bool,
    /// It is banned for this group (fail count at the threshold).
    pub banned: bool,
    /// It runs (or starts, or stops) the group now.
    pub active: bool,
}

/// Chooses the node for one group: an operator move wins if its node can
/// run the group; otherwise, without auto-failback, the node that runs it
/// keeps it; otherwise the highest score (stickiness added for the current
/// node), ties to the lowest node id. `None` when no node can run it.
pub fn place(
    rules: &PlacementRules,
    candidates: &[Candidate],
    moved_to: Option<NodeId>,
) -> Option<NodeId> {
    let ok = |c: &&Candidate| c.eligible && !c.banned;
    if let Some(m) = moved_to
        && candidates.iter().filter(ok).any(|c| c.node == m)
    {
        return Some(m);
    }
    if !rules.auto_failback
        && let Some(c) = candidates.iter().filter(ok).find(|c| c.active)
    {
        return Some(c.node);
    }
    let score = |c: &Candidate| {
        let base = rules
            .scores
            .iter()
            .find(|(n, _)| *n == c.node)
            .map_or(0, |(_, s)| *s);
        i64::from(base)
            + if c.active {
                i64::from(rules.stickiness)
            } else {
                0
            }
    };
    candidates
        .iter()
        .filter(ok)
        .max_by(|a, b| score(a).cmp(&score(b)).then(b.node.cmp(&a.node)))
        .map(|c| c.node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u16, active: bool) -> Candidate {
        Candidate {
            node: NodeId(n),
            eligible: true,
            banned: false,
            active,
        }
    }

    fn rules(auto_failback: bool) -> PlacementRules {
        PlacementRules {
            scores: vec![(NodeId(1), 200), (NodeId(2), 100)],
            stickiness: 0,
            auto_failback,
        }
    }

    #[test]
    fn scores_failback_stickiness_moves_and_bans() {
        // The S2 users' scores: n1 wins.
        assert_eq!(
            place(&rules(true), &[c(1, false), c(2, false)], None),
            Some(NodeId(1))
        );
        // Failback on: n1 returns and takes the group back from n2.
        assert_eq!(
            place(&rules(true), &[c(1, false), c(2, true)], None),
            Some(NodeId(1))
        );
        // Failback off: n2 keeps it.
        assert_eq!(
            place(&rules(false), &[c(1, false), c(2, true)], None),
            Some(NodeId(2))
        );
        // Stickiness larger than the score gap keeps it too.
        let sticky = PlacementRules {
            stickiness: 150,
            ..rules(true)
        };
        assert_eq!(
            place(&sticky, &[c(1, false), c(2, true)], None),
            Some(NodeId(2))
        );
        // An operator move wins...
        assert_eq!(
            place(&rules(true), &[c(1, true), c(2, false)], Some(NodeId(2))),
            Some(NodeId(2))
        );
        // ...unless its node cannot run the group.
        let mut standby = c(2, false);
        standby.eligible = false;
        assert_eq!(
            place(&rules(true), &[c(1, true), standby], Some(NodeId(2))),
            Some(NodeId(1))
        );
        let mut banned = c(1, false);
        banned.banned = true;
        assert_eq!(
            place(&rules(true), &[banned, c(2, false)], None),
            Some(NodeId(2))
        );
        // Nobody eligible.
        assert_eq!(place(&rules(true), &[banned], None), None);
        // Equal scores: lowest id.
        assert_eq!(
            place(
                &PlacementRules::default(),
                &[c(3, false), c(2, false)],
                None
            ),
            Some(NodeId(2))
        );
    }
}
